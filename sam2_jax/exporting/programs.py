"""The five programs `sam2-jax export-compiled` writes, as functions of named arrays.

Each `Program` has a function `fn(module, variables, inputs) -> outputs` (dicts of arrays
keyed by name) and its input shapes; the writer bakes in nothing but the shapes: weights are
the programs' first argument. Every program runs the live predictors' own code (`SAM2`
methods, `memory.step.track_step`, `memory.step.encode_prompted_memory`), only with fixed-shape,
padded inputs:

- `image_encoder`: image (1, S, S, 3) normalized -> vision_features (1, h, h, C),
  high_res_0 (1, 4h, 4h, C/8), high_res_1 (1, 2h, 2h, C/4) (`SAM2.forward_image`).
- `prompt_decoder`: those features + one prompt set (P padded points, a mask) -> both the
  multimask (3) and the single-mask (1) outputs of `SAM2ImagePredictor.predict`.
- `video_prompt_step`: one object's output on a prompted video frame without a memory write
  (the video predictor's interactive decode), from its memory bank.
- `memory_encoder`: a prompted frame's memory from its (post-processed) output.
- `track_step`: one propagation step for B objects: bank in, bank out, plus outputs.

Shapes: S = image_size, h = S / 16, C = d_model, M = mem_dim, HW = h * h, P = max_points,
B = max_objects, K = cond_slots, R = num_maskmem - 1, Q = max_obj_ptrs_in_encoder - 1.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

from sam2_jax.config import ModelConfig
from sam2_jax.memory.bank import MemoryBank, empty_bank
from sam2_jax.memory.policy import REFERENCE
from sam2_jax.memory.step import encode_prompted_memory, track_step
from sam2_jax.modeling.position_encoding import sine_position_encoding_2d
from sam2_jax.modeling.sam2_base import SAM2
from sam2_jax.prompts import FramePrompts, no_prompts
from sam2_jax.serving.manifest import BANK, Layout

Arrays = dict[str, jax.Array]
BANK_FIELDS = tuple(f.name for f in dataclasses.fields(MemoryBank) if f.name != "policy_state")
POLICY = REFERENCE  # the memory rule the video programs are exported with


@dataclasses.dataclass(frozen=True)
class Program:
    """One exported function: `fn(module, variables, inputs)` and its input shapes."""

    name: str
    doc: str
    fn: Callable[[SAM2, dict[str, Any], Arrays], Arrays]
    inputs: dict[str, jax.ShapeDtypeStruct]


def _spec(shape: tuple[int, ...], dtype: Any = jnp.float32) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct(tuple(shape), jnp.dtype(dtype))


def feature_inputs(cfg: ModelConfig) -> dict[str, jax.ShapeDtypeStruct]:
    """The image encoder's outputs, as inputs of the decoding programs."""
    h, c = cfg.embedding_size, cfg.d_model
    return {
        "vision_features": _spec((1, h, h, c)),
        "high_res_0": _spec((1, 4 * h, 4 * h, c // 8)),
        "high_res_1": _spec((1, 2 * h, 2 * h, c // 4)),
    }


def bank_inputs(cfg: ModelConfig, layout: Layout, num_objects: int) -> dict:
    """The memory bank of `num_objects` objects as named arrays (`empty_bank`'s shapes)."""
    shapes = jax.eval_shape(
        lambda: empty_bank(
            num_objects,
            cfg.embedding_size**2,
            mem_dim=cfg.mem_dim,
            hidden_dim=cfg.d_model,
            cond_capacity=layout.cond_slots,
            num_recent=cfg.num_maskmem - 1,
            num_ptrs=cfg.max_obj_ptrs_in_encoder - 1,
        )
    )
    return {
        BANK + f: _spec(getattr(shapes, f).shape, getattr(shapes, f).dtype) for f in BANK_FIELDS
    }


def _bank(inputs: Arrays) -> MemoryBank:
    return MemoryBank(**{f: inputs[BANK + f] for f in BANK_FIELDS})


def _bank_outputs(bank: MemoryBank) -> Arrays:
    return {BANK + f: getattr(bank, f) for f in BANK_FIELDS}


def _features(cfg: ModelConfig, inputs: Arrays) -> dict:
    """The `SAM2.forward_image` dict the tracking code reads, from the encoder's outputs (the
    stride-16 position encoding is parameter-free: the neck's sine encoding)."""
    h = cfg.embedding_size
    position = jnp.asarray(sine_position_encoding_2d(h, h, cfg.d_model))[None]
    top = inputs["vision_features"]
    return {
        "vision_features": top,
        "backbone_fpn": [inputs["high_res_0"], inputs["high_res_1"], top],
        "vision_pos_enc": [None, None, position],
    }


def _image_encoder(module: SAM2, variables, inputs: Arrays) -> Arrays:
    out = module.apply(variables, inputs["image"], method=SAM2.forward_image)
    return {
        "vision_features": out["vision_features"],
        "high_res_0": out["backbone_fpn"][0],
        "high_res_1": out["backbone_fpn"][1],
    }


def _prompt_decoder(module: SAM2, variables, inputs: Arrays) -> Arrays:
    """The image predictor's prompt encoder + mask decoder on one padded prompt set."""

    def decode(m: SAM2) -> Arrays:
        coords, count = inputs["point_coords"], inputs["num_points"]
        valid = jnp.arange(coords.shape[1])[None] < count[:, None]  # (1, P)
        labels = jnp.where(valid, inputs["point_labels"], -1)
        sparse, dense_mask = m.sam_prompt_encoder(coords, labels, inputs["mask_input"][..., None])
        _, dense_none = m.sam_prompt_encoder(None, None, None)
        dense = jnp.where(inputs["has_mask"][:, None, None, None], dense_mask, dense_none)
        # the "not a point" token the prompt encoder appends exists only when there are points
        sparse_mask = jnp.concatenate([valid, count[:, None] > 0], axis=1)  # (1, P + 1)
        embed = inputs["vision_features"] + m.no_mem_embed.reshape(1, 1, 1, -1)
        out = {}
        for multimask, key in ((True, "multimask"), (False, "single")):
            low_res, iou, _, _ = m.sam_mask_decoder(
                image_embeddings=embed,
                image_pe=m.sam_prompt_encoder.get_dense_pe(),
                sparse_prompt_embeddings=sparse,
                dense_prompt_embeddings=dense,
                multimask_output=multimask,
                high_res_features=(inputs["high_res_0"], inputs["high_res_1"]),
                sparse_mask=sparse_mask,
            )
            out[f"{key}_low_res"] = jnp.moveaxis(low_res, -1, 1)  # (1, 4h, 4w, K) -> (1, K, ...)
            out[f"{key}_iou"] = iou
        return out

    return module.apply(variables, method=decode)


def _video_prompt_step(module: SAM2, variables, inputs: Arrays) -> Arrays:
    """`SAM2VideoPredictor`'s decode of one object's prompts (no memory written)."""
    cfg = module.config
    prompts = FramePrompts(
        inputs["point_coords"],
        inputs["point_labels"],
        inputs["num_points"],
        inputs["mask"],
        inputs["has_mask"],
    )

    def run(prev_logits):
        _, out = track_step(
            module,
            variables,
            _bank(inputs),
            _features(cfg, inputs),
            inputs["frame_idx"],
            prompts,
            num_frames=inputs["num_frames"],
            reverse=inputs["reverse"],
            memory_policy=POLICY,
            is_init_cond=inputs["is_init_cond"],
            prev_logits=prev_logits,
            encode_memory=False,
        )
        return out.low_res_masks, out.object_score_logits, out.obj_ptr

    low_res, score, obj_ptr = jax.lax.cond(
        inputs["has_prev_logits"], lambda: run(inputs["prev_logits"]), lambda: run(None)
    )
    return {"low_res": low_res, "object_score": score, "obj_ptr": obj_ptr}


def _memory_encoder(module: SAM2, variables, inputs: Arrays) -> Arrays:
    features = {"vision_features": inputs["vision_features"]}
    memory = encode_prompted_memory(
        module, variables, features, inputs["low_res"], inputs["object_score"]
    )
    return {"memory": memory}


def _track_step(module: SAM2, variables, inputs: Arrays) -> Arrays:
    """One frame of `SAM2VideoPredictor.propagate_in_video` for B objects."""
    b = inputs["track"].shape[0]
    bank, out = track_step(
        module,
        variables,
        _bank(inputs),
        _features(module.config, inputs),
        inputs["frame_idx"],
        no_prompts(b, 1),
        num_frames=inputs["num_frames"],
        reverse=inputs["reverse"],
        memory_policy=POLICY,
        track=inputs["track"],
    )
    return {
        **_bank_outputs(bank),
        "low_res": out.low_res_masks,
        "object_score": out.object_score_logits,
        "obj_ptr": out.obj_ptr,
        "memory": out.memory_features,
    }


def programs(cfg: ModelConfig, layout: Layout) -> list[Program]:
    """The programs of a model config exported with `layout`'s paddings."""
    s, h, p, b = cfg.image_size, cfg.embedding_size, layout.max_points, layout.max_objects
    low = 4 * h
    scalar_int, scalar_bool = _spec((), jnp.int32), _spec((), bool)
    features = feature_inputs(cfg)
    return [
        Program(
            "image_encoder",
            "image (1, S, S, 3) normalized -> the stride-16 features and the two high-res "
            "levels the decoder reads (SAM2.forward_image)",
            _image_encoder,
            {"image": _spec((1, s, s, 3))},
        ),
        Program(
            "prompt_decoder",
            "image features + one prompt set (the first num_points of P points, in "
            "model-input pixels; a low-res mask where has_mask) -> multimask_low_res "
            "(1, 3, 4h, 4h), multimask_iou (1, 3), single_low_res (1, 1, 4h, 4h), "
            "single_iou (1, 1); num_points 0 means no points",
            _prompt_decoder,
            {
                **features,
                "point_coords": _spec((1, p, 2)),
                "point_labels": _spec((1, p), jnp.int32),
                "num_points": _spec((1,), jnp.int32),
                "mask_input": _spec((1, low, low)),
                "has_mask": _spec((1,), bool),
            },
        ),
        Program(
            "video_prompt_step",
            "one object's output on a prompted video frame from its memory bank (no memory "
            "written): low_res (1, 4h, 4h), object_score (1,), obj_ptr (1, C); prev_logits "
            "are fed back as a dense prompt where has_prev_logits",
            _video_prompt_step,
            {
                **bank_inputs(cfg, layout, 1),
                **features,
                "frame_idx": scalar_int,
                "num_frames": scalar_int,
                "reverse": scalar_bool,
                "point_coords": _spec((1, p, 2)),
                "point_labels": _spec((1, p), jnp.int32),
                "num_points": _spec((1,), jnp.int32),
                "mask": _spec((1, s, s), bool),
                "has_mask": _spec((1,), bool),
                "is_init_cond": _spec((1,), bool),
                "prev_logits": _spec((1, low, low)),
                "has_prev_logits": scalar_bool,
            },
        ),
        Program(
            "memory_encoder",
            "a prompted frame's spatial memory (1, HW, M) bfloat16 from its low-res logits "
            "(1, 4h, 4h) and object score (1,)",
            _memory_encoder,
            {
                "vision_features": features["vision_features"],
                "low_res": _spec((1, low, low)),
                "object_score": _spec((1,)),
            },
        ),
        Program(
            "track_step",
            "one propagation frame for B objects (those with track): the memory bank in, the "
            "updated bank out (same names), plus low_res (B, 4h, 4h), object_score (B,), "
            "obj_ptr (B, C) and the frame's memory (B, HW, M)",
            _track_step,
            {
                **bank_inputs(cfg, layout, b),
                **features,
                "frame_idx": scalar_int,
                "num_frames": scalar_int,
                "reverse": scalar_bool,
                "track": _spec((b,), bool),
            },
        ),
    ]


def history_table() -> list[list[int | bool]]:
    """[distance, reads memory, reads pointer] of the earlier frames (in tracking order)
    whose stored outputs seed a bank under `POLICY` (the same in both directions)."""
    if POLICY.memory_temporal_stride != 1:  # strided reads depend on the frame index
        raise ValueError("the exported bank rule needs memory_temporal_stride 1")
    frame = 10**6
    table = [[frame - f, bool(m), bool(p)] for f, m, p in POLICY.history_frames(frame, False)]
    backward = [[f - frame, bool(m), bool(p)] for f, m, p in POLICY.history_frames(frame, True)]
    assert table == backward, "the memory rule reads different frames backward"
    return table
