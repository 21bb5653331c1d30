"""One video-tracking step as a pure function of a fixed-size memory bank.

`track_step` is the reference's `SAM2Base.track_step` (with `_prepare_memory_conditioned_features`
and `_encode_new_memory`) for B objects that share one frame's image features:

1. Objects with a mask prompt take the mask as their output (`SAM2.use_mask_as_output`), no
   memory involved.
2. Otherwise the frame's stride-16 features are conditioned on the memory bank: initial
   conditioning frames (a prompted frame of an object without a conditioning memory yet) just
   add `no_mem_embed`; every other frame attends to the spatial memories and object pointers
   that the memory policy selects, assembled here as one padded token sequence with a key mask.
3. SAM heads on the padded prompts; multimask output iff the object has at most one click.
4. Memory encoding of the predicted mask (binarized on prompted frames, else sigmoid) and a
   write into the bank, as the memory policy decides.

Everything is computed in the model's dtype (float32 by default); the bank stores spatial
memories in bfloat16, as the reference's video predictor does, and they are promoted back to
the compute dtype before attention (the reference would crash in float32 when a frame has
spatial memories but no pointer; this does not).

Shapes: B objects, S = image_size, h = w = S / 16, HW = h * w, C = 256, M = mem_dim = 64,
P = padded number of points.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from sam2_jax.memory.bank import MemoryBank, has_conditioning
from sam2_jax.memory.policy import REFERENCE, MemoryPolicy, StepScores
from sam2_jax.modeling.interpolation import upsample_bilinear
from sam2_jax.modeling.position_encoding import sine_position_encoding_2d
from sam2_jax.modeling.sam2_base import NO_OBJ_SCORE, SAM2

Variables = dict[str, Any]


class FramePrompts(NamedTuple):
    """The prompts of one frame for B objects, padded to a fixed number of points.

    Attributes:
      point_coords: (B, P, 2) float32 (x, y) in model-input pixels; a box is two points with
        labels 2 / 3 placed before the clicks, as in the reference.
      point_labels: (B, P) int32 (1 positive, 0 negative, 2 / 3 box corners).
      num_points: (B,) int32; the first num_points entries are real, the rest padding.
      mask: (B, S, S) bool mask prompt at the model input size, or None for no mask prompts.
      has_mask: (B,) bool; an object with a mask prompt ignores its points.
    """

    point_coords: jax.Array
    point_labels: jax.Array
    num_points: jax.Array
    mask: jax.Array | None
    has_mask: jax.Array

    @property
    def has_prompt(self) -> jax.Array:
        """(B,) bool."""
        return (self.num_points > 0) | self.has_mask


def no_prompts(num_objects: int, max_points: int = 1, image_size: int | None = None):
    """FramePrompts with nothing in them (a plain tracking frame); with `image_size` the
    mask field is an all-False (B, S, S) array instead of None."""
    b = num_objects
    mask = None if image_size is None else np.zeros((b, image_size, image_size), bool)
    return FramePrompts(
        point_coords=np.zeros((b, max_points, 2), np.float32),
        point_labels=np.zeros((b, max_points), np.int32),
        num_points=np.zeros((b,), np.int32),
        mask=mask,
        has_mask=np.zeros((b,), bool),
    )


class StepOutput(NamedTuple):
    """Per-object results of one step.

    Attributes:
      low_res_masks: (B, 4h, 4w) float32 mask logits (NO_OBJ_SCORE where the object is absent,
        and for objects that are not tracked yet).
      object_score_logits: (B,) float32; the object is present iff > 0.
      obj_ptr: (B, C) float32.
      iou: (B,) float32 predicted IoU of the returned mask (1 for mask prompts).
      memory_features: (B, HW, M) the new spatial memory, in the bank's dtype.
      is_init_cond: (B,) bool, decoded without memory (initial conditioning frame).
      active: (B,) bool, the object was tracked on this frame (and written to the bank).
      overflow: (B,) bool, a conditioning memory was dropped because the object's
        conditioning slots were all taken by other frames.
    """

    low_res_masks: jax.Array
    object_score_logits: jax.Array
    obj_ptr: jax.Array
    iou: jax.Array
    memory_features: jax.Array
    is_init_cond: jax.Array
    active: jax.Array
    overflow: jax.Array


def sine_pe_1d(positions: jax.Array, dim: int, temperature: float = 10000.0) -> jax.Array:
    """The reference's `get_1d_sine_pe`: (...,) -> (..., dim) as [sin block, cos block]."""
    half = dim // 2
    dim_t = temperature ** (2 * (np.arange(half, dtype=np.float32) // 2) / half)  # (half,)
    angles = positions[..., None].astype(jnp.float32) / jnp.asarray(dim_t, jnp.float32)
    return jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], axis=-1)


def _memory_sequence(
    m: SAM2,
    bank: MemoryBank,
    frame_idx: jax.Array,
    reverse,
    num_frames: int | jax.Array,
    policy: MemoryPolicy,
    training: bool = False,
):
    """The padded memory sequence a frame attends to (reference `_prepare_memory_conditioned_
    features`, step 1), from the bank and the policy's selection (`training`: the reference's
    training-mode selection, e.g. pointers of conditioning frames ahead too).

    Order: K conditioning memories, R recent memories (each HW tokens), then 4 tokens per
    pointer (K conditioning, then Pp recent). The reference concatenates only the present
    memories; here absent ones are masked out, which gives the same softmax.

    Returns:
      memory (B, N, M), memory_pos (B, N, M) in float32, key mask (B, N) bool, rope_mask
      (1, N) bool (False for pointer tokens) and rope_index (1, N) int32, with
      N = (K + R) * HW + 4 * (K + Pp).
    """
    cfg = m.config
    sel = policy.select(
        bank,
        frame_idx,
        reverse=reverse,
        num_frames=num_frames,
        signed_ptr_pos=cfg.use_signed_tpos_enc_to_obj_ptrs,
        training=training,
    )
    b, k, hw, mem_dim = bank.cond_features.shape
    r = bank.recent_features.shape[1]
    dtype = jnp.float32 if m.dtype is None else m.dtype
    side = int(round(hw**0.5))
    spatial_pos = jnp.asarray(sine_position_encoding_2d(side, side, mem_dim)).reshape(hw, mem_dim)
    tpos = jnp.asarray(m.maskmem_tpos_enc)  # (num_maskmem, M); row num_maskmem - t_pos - 1
    cond_tpos = tpos[sel.cond_tpos_index]  # (B, K, M)
    recent_tpos = tpos[sel.recent_tpos_index]  # (B, R, M)
    features = jnp.concatenate([bank.cond_features, bank.recent_features], axis=1)
    features = features.astype(dtype).reshape(b, (k + r) * hw, mem_dim)  # (B, (K+R)*HW, M)
    frame_tpos = jnp.concatenate([cond_tpos, recent_tpos], axis=1)  # (B, K+R, M)
    features_pos = (spatial_pos[None, None] + frame_tpos[:, :, None]).reshape(
        b, (k + r) * hw, mem_dim
    )  # (B, K+R, HW, M) -> (B, (K+R)*HW, M)
    frame_valid = jnp.concatenate([sel.cond_mem_valid, sel.recent_mem_valid], axis=1)
    features_valid = jnp.repeat(frame_valid, hw, axis=1)  # (B, (K+R)*HW)

    ptrs = jnp.concatenate([bank.cond_obj_ptr, bank.ptr], axis=1).astype(dtype)  # (B, Np, C)
    ptr_pos = jnp.concatenate([sel.cond_ptr_pos, sel.recent_ptr_pos], axis=1)  # (B, Np)
    ptr_valid = jnp.concatenate([sel.cond_ptr_valid, sel.recent_ptr_valid], axis=1)
    n_ptr, c = ptrs.shape[1], ptrs.shape[2]
    split = c // mem_dim  # each C-wide pointer becomes `split` consecutive M-wide tokens
    if cfg.add_tpos_enc_to_obj_ptrs:
        # the reference divides by max_ptrs - 1 (traced: one program for any video length)
        t_diff_max = jnp.maximum(sel.max_ptrs - 1, 1).astype(jnp.float32)
        tpos_dim = c if cfg.proj_tpos_enc_in_obj_ptrs else mem_dim
        ptr_tpos = sine_pe_1d(ptr_pos / t_diff_max, tpos_dim)  # (B, Np, tpos_dim)
        if m.obj_ptr_tpos_proj is not None:
            ptr_tpos = m.obj_ptr_tpos_proj(ptr_tpos)  # (B, Np, M)
    else:
        ptr_tpos = jnp.zeros((b, n_ptr, mem_dim), dtype)
    ptr_tokens = ptrs.reshape(b, n_ptr * split, mem_dim)  # (B, Np, C) -> (B, Np*split, M)
    ptr_tokens_pos = jnp.repeat(ptr_tpos, split, axis=1)  # (B, Np*split, M)
    ptr_tokens_valid = jnp.repeat(ptr_valid, split, axis=1)

    memory = jnp.concatenate([features, ptr_tokens], axis=1)
    memory_pos = jnp.concatenate([features_pos, ptr_tokens_pos.astype(features_pos.dtype)], 1)
    key_mask = jnp.concatenate([features_valid, ptr_tokens_valid], axis=1)
    n_spatial, n_total = (k + r) * hw, memory.shape[1]
    rope_mask = (np.arange(n_total) < n_spatial)[None]
    rope_index = (np.arange(n_total) % hw).astype(np.int32)[None]
    return memory, memory_pos, key_mask, jnp.asarray(rope_mask), jnp.asarray(rope_index)


def _new_memory(
    m: SAM2,
    raw: jax.Array,
    low_res: jax.Array,
    score: jax.Array,
    binarize: jax.Array,
    dtype: jnp.dtype,
) -> jax.Array:
    """New spatial memories (reference `_encode_new_memory`) from low-res logits.

    The mask is the low-res logits upsampled to the input size, as the video predictor does
    for prompted frames; binarized (`> 0`) where `binarize`, else a sigmoid.

    Args:
      raw: (B, h, w, C) the frame's stride-16 features (not memory-conditioned).
      low_res: (B, 4h, 4w) logits; score: (B,) object score logits; binarize: (B,) bool.

    Returns:
      (B, HW, M) in `dtype`.
    """
    cfg = m.config
    b, h, w, _ = raw.shape
    size = cfg.image_size
    high = upsample_bilinear(low_res[..., None].astype(jnp.float32), (size, size))
    mask_for_mem = jnp.where(
        binarize[:, None, None, None], (high > 0).astype(high.dtype), jax.nn.sigmoid(high)
    )
    mask_for_mem = mask_for_mem * cfg.sigmoid_scale_for_mem_enc + cfg.sigmoid_bias_for_mem_enc
    mem, _ = m.memory_encoder(raw, mask_for_mem)  # (B, h, w, M)
    if m.no_obj_embed_spatial is not None:
        absent = (score <= 0).astype(mem.dtype)[:, None, None, None]
        mem = mem + absent * m.no_obj_embed_spatial.reshape(1, 1, 1, -1).astype(mem.dtype)
    return mem.reshape(b, h * w, -1).astype(dtype)  # (B, h, w, M) -> (B, HW, M)


def _step(
    m: SAM2,
    bank: MemoryBank,
    features: dict,
    frame_idx: jax.Array,
    prompts: FramePrompts,
    track: jax.Array,
    is_init_cond: jax.Array | None,
    num_frames: int | jax.Array,
    reverse,
    policy: MemoryPolicy,
    prev_logits: jax.Array | None = None,
    encode_memory: bool = True,
) -> tuple[MemoryBank, StepOutput]:
    """`track_step` on a bound module.

    prev_logits: optional (B, 4h, 4w) low-res logits fed to the prompt encoder as a dense
      prompt (clamped to [-32, 32]), as the reference does when a frame is clicked again.
    encode_memory: static; False skips the memory encoder and leaves the bank unchanged
      (memory_features are zeros), as the reference's interactive decoding does.
    """
    cfg = m.config
    b = prompts.num_points.shape[0]
    feat = features["vision_features"]  # (1, h, w, C)
    _, h, w, c = feat.shape
    high_res = tuple(jnp.broadcast_to(x, (b, *x.shape[1:])) for x in features["backbone_fpn"][:2])
    raw = jnp.broadcast_to(feat, (b, h, w, c))

    has_prompt = prompts.has_prompt
    has_cond = has_conditioning(bank)
    if is_init_cond is None:
        is_init_cond = has_prompt & ~has_cond
    active = track & (has_prompt | has_cond)

    # Memory-conditioned features (reference `_prepare_memory_conditioned_features`).
    def attend(_):
        memory, memory_pos, key_mask, rope_mask, rope_index = _memory_sequence(
            m, bank, frame_idx, reverse, num_frames, policy
        )
        curr = raw.reshape(b, h * w, c)  # (B, HW, C)
        curr_pos = jnp.broadcast_to(features["vision_pos_enc"][-1], (b, h, w, c))
        out = m.memory_attention(
            curr,
            curr_pos.reshape(b, h * w, c),
            memory,
            memory_pos,
            memory_mask=key_mask,
            rope_mask=rope_mask,
            rope_index=rope_index,
        )
        return out.reshape(b, h, w, c).astype(raw.dtype)

    needs_memory = active & ~is_init_cond & ~prompts.has_mask
    with_memory = jax.lax.cond(needs_memory.any(), attend, lambda _: raw, None)
    no_mem = raw + m.no_mem_embed.reshape(1, 1, 1, c).astype(raw.dtype)
    pix_feat = jnp.where(is_init_cond[:, None, None, None], no_mem, with_memory)

    # SAM heads on the padded points; multimask iff at most one click (0 on tracking frames).
    p = prompts.point_coords.shape[1]
    point_valid = jnp.arange(p)[None, :] < prompts.num_points[:, None]  # (B, P)
    dense = None if prev_logits is None else jnp.clip(prev_logits, -32.0, 32.0)[..., None]
    heads = m.forward_sam_heads(
        pix_feat,
        prompts.point_coords,
        prompts.point_labels,
        dense,
        high_res,
        multimask_output=prompts.num_points <= 1,
        point_valid=point_valid,
    )
    low_res = heads.low_res_masks[..., 0]  # (B, 4h, 4w)
    score = heads.object_score_logits[:, 0]
    obj_ptr = heads.obj_ptr
    iou = heads.ious[:, 0]

    if prompts.mask is not None:  # mask prompts: the mask is the output (no memory)

        def from_mask(_):
            out = m.use_mask_as_output(raw, high_res, prompts.mask[..., None])
            return out.low_res_masks[..., 0], out.object_score_logits[:, 0], out.obj_ptr

        mask_out = jax.lax.cond(
            prompts.has_mask.any(),
            from_mask,
            lambda _: (low_res, score, obj_ptr),
            None,
        )
        use = prompts.has_mask
        low_res = jnp.where(use[:, None, None], mask_out[0], low_res)
        score = jnp.where(use, mask_out[1], score)
        obj_ptr = jnp.where(use[:, None], mask_out[2], obj_ptr)
        iou = jnp.where(use, 1.0, iou)

    if encode_memory:
        mem = _new_memory(m, raw, low_res, score, has_prompt, bank.recent_features.dtype)
        scores = StepScores(iou=iou.astype(jnp.float32), object_score=score.astype(jnp.float32))
        bank, overflow = policy.write(
            bank, frame_idx, mem, obj_ptr, has_prompt, active, scores, reverse=reverse
        )
    else:
        mem = jnp.zeros((b, h * w, cfg.mem_dim), bank.recent_features.dtype)
        overflow = jnp.zeros((b,), bool)
    low_res = jnp.where(active[:, None, None], low_res, NO_OBJ_SCORE)
    outputs = StepOutput(
        low_res_masks=low_res.astype(jnp.float32),
        object_score_logits=score.astype(jnp.float32),
        obj_ptr=obj_ptr.astype(jnp.float32),
        iou=iou.astype(jnp.float32),
        memory_features=mem,
        is_init_cond=is_init_cond & active,
        active=active,
        overflow=overflow,
    )
    return bank, outputs


def track_step(
    module: SAM2,
    variables: Variables,
    bank: MemoryBank,
    features: dict,
    frame_idx: jax.Array,
    prompts: FramePrompts,
    *,
    num_frames: int | jax.Array,
    reverse: bool | jax.Array = False,
    memory_policy: MemoryPolicy = REFERENCE,
    track: jax.Array | None = None,
    is_init_cond: jax.Array | None = None,
    prev_logits: jax.Array | None = None,
    encode_memory: bool = True,
) -> tuple[MemoryBank, StepOutput]:
    """Tracks B objects on one frame and writes their new memories into the bank.

    Args:
      module, variables: the SAM2 module and `{"params": ...}`.
      bank: the memory state of the B objects.
      features: `SAM2.forward_image` of this frame with batch 1 (shared by the objects).
      frame_idx: () int32.
      prompts: this frame's prompts (`FramePrompts`, leading axis B).
      num_frames: video length (traced, never static); bounds and normalizes the pointer
        window.
      reverse: tracking direction.
      memory_policy: what the frame reads from the bank and writes into it
        (`sam2_jax.memory.reference_policy()` by default).
      track: (B,) bool, objects to process (default all); the others are not written and
        get NO_OBJ_SCORE outputs. Objects without any prompt so far are never processed.
      is_init_cond: (B,) bool override of "decode without memory" (default: prompted and no
        conditioning memory yet). The video predictor's prompts given before propagation are
        all initial conditioning frames, even for an object prompted on several frames.
      prev_logits: (B, 4h, 4w) previous low-res logits of a frame clicked again, fed to the
        prompt encoder as a dense prompt (clamped to [-32, 32]); None for no dense prompt.
      encode_memory: False skips the memory encoder and returns the bank unchanged (the
        reference decodes interactive clicks so; `encode_prompted_memory` encodes later).

    Returns:
      the new bank and the per-object `StepOutput`.
    """
    b = prompts.num_points.shape[0]
    track = jnp.ones((b,), bool) if track is None else jnp.asarray(track, bool)

    def run(m: SAM2):
        return _step(
            m, bank, features, frame_idx, prompts, track, is_init_cond, num_frames, reverse,
            memory_policy, prev_logits, encode_memory,
        )  # fmt: skip

    return module.apply(variables, method=run)


def encode_prompted_memory(
    module: SAM2,
    variables: Variables,
    features: dict,
    low_res: jax.Array,
    object_score_logits: jax.Array,
    dtype: jnp.dtype = jnp.bfloat16,
) -> jax.Array:
    """The memory of an interactively prompted frame, from its (post-processed) output.

    The reference's `propagate_in_video_preflight`: the low-res logits upsampled to the input
    size and binarized, through the memory encoder.

    Args:
      features: `SAM2.forward_image` of the frame with batch 1.
      low_res: (B, 4h, 4w) logits; object_score_logits: (B,).

    Returns:
      (B, HW, M) memory features in `dtype`.
    """
    b = low_res.shape[0]
    feat = features["vision_features"]  # (1, h, w, C)
    raw = jnp.broadcast_to(feat, (b, *feat.shape[1:]))

    def run(m: SAM2):
        return _new_memory(m, raw, low_res, object_score_logits, jnp.ones((b,), bool), dtype)

    return module.apply(variables, method=run)


def encode_frame(module: SAM2, variables: Variables, frame: jax.Array) -> dict:
    """(S, S, 3) normalized frame -> `SAM2.forward_image` output with batch 1."""
    return module.apply(variables, frame[None], method=SAM2.forward_image)
