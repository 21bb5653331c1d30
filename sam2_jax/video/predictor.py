"""Interactive video segmentation with the reference `SAM2VideoPredictor`'s API and semantics.

The session API and its semantics are `sam2_jax.video.session.VideoSessionAPI`; this is its
backend on the live model, over the compiled video core:

- clicks, boxes and masks are decoded one object at a time by the compiled `track_step`
  (`encode_memory=False`: memories of prompted frames are encoded when propagation starts,
  from the post-processed output, as the reference's preflight does);
- propagation is the compiled `lax.scan` of `video.chunks.iter_chunks` over the frames, all
  objects at once, on a fixed-size `MemoryBank` built from the stored outputs at the start
  frame (conditioning frames, and the memories and pointers of the frames just behind it).

Per-frame results live on the host, per object, as the reference keeps them: low-res mask
logits (after hole filling), object score, object pointer and the bfloat16 spatial memory.
The device holds the weights, one frame's features and the fixed-size bank of one chunk.

Shapes: S = image_size, h = S / 16, low-res masks (4h, 4h), HW = h * h, M = mem_dim.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from sam2_jax.buckets import click_bucket, cond_slot_bucket, object_bucket
from sam2_jax.build import SAM2Model, build_sam2
from sam2_jax.memory.bank import NO_FRAME, MemoryBank
from sam2_jax.memory.policies import policy_for_model
from sam2_jax.memory.policy import MemoryPolicy
from sam2_jax.memory.step import encode_prompted_memory, track_step
from sam2_jax.modeling.sam2_base import SAM2
from sam2_jax.modeling.sam_heads import NO_OBJ_SCORE
from sam2_jax.prompts import FramePrompts, no_prompts, pack_frame_prompts
from sam2_jax.video.backend import TrackedChunk
from sam2_jax.video.chunks import iter_chunks
from sam2_jax.video.session import VideoSessionAPI
from sam2_jax.video.state import FrameOutput, InferenceState, ObjectState, bank_arrays

Variables = dict[str, Any]


# ---------------------------------------------------------------------------------------------
# Compiled pieces (shared by every predictor of the same model)


@functools.partial(jax.jit, static_argnames="module")
def _frame_features(module: SAM2, variables: Variables, frame: jax.Array) -> dict:
    """(S, S, 3) normalized frame -> `forward_image` output with batch 1."""
    return module.apply(variables, frame[None], method=SAM2.forward_image)


@functools.partial(jax.jit, static_argnames=("module", "memory_policy"))
def _decode_prompted(
    module: SAM2,
    variables: Variables,
    bank: MemoryBank,
    features: dict,
    frame_idx: jax.Array,
    prompts: FramePrompts,
    is_init_cond: jax.Array,
    reverse: jax.Array,
    prev_logits: jax.Array | None,
    *,
    num_frames: int | jax.Array,
    memory_policy: MemoryPolicy,
):
    """One object's output on a prompted frame, without a memory (reference
    `_run_single_frame_inference(run_mem_encoder=False)`)."""
    _, out = track_step(
        module,
        variables,
        bank,
        features,
        frame_idx,
        prompts,
        num_frames=num_frames,
        reverse=reverse,
        is_init_cond=is_init_cond,
        prev_logits=prev_logits,
        encode_memory=False,
        memory_policy=memory_policy,
    )
    return out.low_res_masks, out.object_score_logits, out.obj_ptr


_encode_memory = jax.jit(encode_prompted_memory, static_argnames=("module", "dtype"))


# ---------------------------------------------------------------------------------------------


class SAM2VideoPredictor(VideoSessionAPI):
    """Interactive video object segmentation (reference `SAM2VideoPredictor`).

    Example:
      predictor = build_sam2_video_predictor("sam2.1_hiera_t", "sam2.1_hiera_tiny.pt")
      state = predictor.init_state("video.mp4")
      predictor.add_new_points_or_box(state, 0, obj_id=1, points=[[210, 350]], labels=[1])
      for frame_idx, obj_ids, masks in predictor.propagate_in_video(state):
          ...  # masks: (N_obj, 1, H, W) logits; masks > 0 is the segmentation
    """

    def __init__(
        self,
        model: SAM2Model,
        *,
        fill_hole_area: int = 8,
        non_overlap_masks: bool = False,
        add_all_frames_to_correct_as_cond: bool = False,
        chunk_size: int = 8,
        progress: bool = True,
        memory_policy: MemoryPolicy | str | None = None,
    ):
        """Args:
        model: from `build_sam2`.
        fill_hole_area, non_overlap_masks, add_all_frames_to_correct_as_cond, progress: see
          `VideoSessionAPI`.
        chunk_size: frames per compiled propagation call.
        memory_policy: what each frame reads from the memory and writes into it
          (`sam2_jax.memory`, or a name of `get_policy`). None: the one the checkpoint names
          (`model.memory_policy`: the bundled default model's DAM4SAM memory), else SAM 2's
          rule.
        """
        super().__init__(
            fill_hole_area=fill_hole_area,
            non_overlap_masks=non_overlap_masks,
            add_all_frames_to_correct_as_cond=add_all_frames_to_correct_as_cond,
            progress=progress,
        )
        self.model = model
        self.module = model.module
        self.variables = model.variables
        self.config = model.config
        self.image_size = model.config.image_size
        self.low_res_side = 4 * model.config.embedding_size
        self.no_obj_score = NO_OBJ_SCORE
        self.chunk_size = chunk_size
        self.memory_policy = policy_for_model(memory_policy, model.memory_policy)

    def _encode_frame(self, state: InferenceState, frame_idx: int) -> dict:
        frame = state.frames.load(np.array([frame_idx]))[0]
        return _frame_features(self.module, self.variables, frame)

    def _decode_prompt(
        self,
        state: InferenceState,
        o: ObjectState,
        frame_idx: int,
        features: dict,
        *,
        points: tuple[np.ndarray, np.ndarray] | None,
        mask: np.ndarray | None,
        is_init: bool,
        reverse: bool,
        prev_logits: np.ndarray | None,
    ) -> tuple[np.ndarray, float, np.ndarray]:
        n = 0 if points is None else len(points[0])
        masks = None if mask is None else [mask]
        prompts = pack_frame_prompts([points], masks, click_bucket(n), self.image_size)
        low_res, score, ptr = _decode_prompted(
            self.module,
            self.variables,
            self._bank([o], frame_idx, reverse),
            features,
            np.int32(frame_idx),
            prompts,
            np.array([is_init]),
            np.bool_(reverse),
            prev_logits,
            num_frames=state.num_frames,
            memory_policy=self.memory_policy,
        )
        return np.asarray(low_res[0]), float(score[0]), np.asarray(ptr[0])

    def _encode_memory(self, features: dict, out: FrameOutput) -> np.ndarray:
        low_res = jnp.asarray(out.low_res)[None]
        score = jnp.asarray([out.score], jnp.float32)
        return np.asarray(_encode_memory(self.module, self.variables, features, low_res, score)[0])

    def _bank(
        self, objects: list[ObjectState], frame_idx: int, reverse: bool, rows: int | None = None
    ) -> MemoryBank:
        """The fixed-size bank of `objects` for tracking from `frame_idx` in a direction:
        all their conditioning memories, and the stored memories and pointers of the frames
        behind it that the memory policy reads (`history_frames`), as the reference looks
        them up in its dicts. `rows` >= len(objects) pads the object axis with empty rows."""
        cfg = self.config
        b, hw = rows or len(objects), cfg.embedding_size**2
        k = cond_slot_bucket(max([len(o.cond) for o in objects] + [1]))
        r, p = self.memory_policy.num_recent_slots, self.memory_policy.num_ptr_slots
        m, c, mem = cfg.mem_dim, cfg.d_model, jnp.bfloat16
        fields = dict(
            cond_features=((b, k, hw, m), mem),
            cond_obj_ptr=((b, k, c), np.float32),
            cond_frame=((b, k), np.int32),
            cond_valid=((b, k), bool),
            recent_features=((b, r, hw, m), mem),
            recent_frame=((b, r), np.int32),
            recent_valid=((b, r), bool),
            ptr=((b, p, c), np.float32),
            ptr_frame=((b, p), np.int32),
            ptr_valid=((b, p), bool),
        )
        history = self.memory_policy.history_frames(frame_idx, reverse)
        arrays = bank_arrays(objects, history, fields, NO_FRAME)
        bank = MemoryBank(**{name: jnp.asarray(a) for name, a in arrays.items()})
        return bank.replace(policy_state=self.memory_policy.init_state(b))

    def _track(
        self,
        state: InferenceState,
        objects: Sequence[ObjectState],
        order: Sequence[int],
        track: np.ndarray,
        start: int,
        reverse: bool,
    ) -> Iterator[TrackedChunk]:
        """All objects at once, in padded rows (untracked, their outputs dropped), through
        the compiled scan a chunk at a time."""
        b = len(objects)
        rows = object_bucket(b)
        padded = np.zeros((len(order), rows), bool)
        padded[:, :b] = track
        empty = no_prompts(rows, 1)
        chunks = iter_chunks(
            self.module,
            self.variables,
            self._bank(list(objects), start, reverse, rows),
            order,
            state.frames.load,
            lambda f: empty,
            padded,
            num_frames=state.num_frames,
            reverse=reverse,
            chunk_size=self.chunk_size,
            memory_policy=self.memory_policy,
        )
        for idx, out in chunks:
            yield TrackedChunk(
                idx, out.low_res_masks, out.object_score_logits, out.obj_ptr, out.memory_features
            )


def build_sam2_video_predictor(
    config_name: str | None = None,
    checkpoint: str | os.PathLike | None = None,
    *,
    image_size: int | None = None,
    seed: int = 0,
    compute_dtype: str = "float32",
    **kwargs,
) -> SAM2VideoPredictor:
    """`build_sam2` + `SAM2VideoPredictor` (hole filling of area 8 on, as the reference's
    builder sets it).

    Args:
      config_name: a variant name, or None with a checkpoint that records / implies it.
        Neither: the bundled default model (see `build_sam2`).
      checkpoint: reference `.pt`, Hugging Face checkpoint or converted directory; None with
        a config name draws random weights (`predictor.model.random_weights` is then True).
      image_size: model input side (default: the checkpoint's, else 1024).
      compute_dtype: "float32" or "bfloat16" (see `build_sam2`).
      **kwargs: `SAM2VideoPredictor` options (fill_hole_area, non_overlap_masks,
        memory_policy, ...).
    """
    model = build_sam2(
        config_name, checkpoint, image_size=image_size, seed=seed, compute_dtype=compute_dtype
    )
    return SAM2VideoPredictor(model, **kwargs)
