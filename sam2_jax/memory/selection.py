"""Which memories a frame reads: the reference's `_prepare_memory_conditioned_features`
selection, computed on the fixed-size bank.

For frame t tracked in direction s (+1 forward, -1 reverse), the reference reads:
- conditioning memories: all of them, or with `max_cond_frames_in_attn = n` the n closest
  (`select_closest_cond_frames`: the closest one before t, the closest one at or after t, then
  the nearest others, ties in insertion order), all with temporal row num_maskmem - 1. The
  reference asserts n >= 2 once more than n conditioning frames exist; n = 1 runs its
  selection code without that assertion (as `python -O` does): the closest before and the
  closest at or after t are both kept, then all the others but the farthest;
- recent memories at temporal positions t_rel = 1 .. num_maskmem - 1: t_rel = 1 is frame
  t - s; with stride r (`memory_temporal_stride_for_eval`) t_rel >= 2 is frame
  base - s (t_rel - 2) r with base the nearest multiple of r at or beyond t - 2s (r = 1: frame
  t - s t_rel). A conditioning frame left out by the limit above may fill such a position;
  temporal row t_rel - 1;
- object pointers: the selected conditioning frames' (at eval only those not ahead of t),
  then frames t - s d for d = 1 .. min(num_frames, max_obj_ptrs_in_encoder) - 1 inside the
  video (non-conditioning or left-out conditioning frames).

A slot is used iff the reference would have found that frame's output in its dicts.
Shapes: B objects, K conditioning slots, R recent slots, P recent pointer slots.
"""

from __future__ import annotations

import flax.struct
import jax
import jax.numpy as jnp

from sam2_jax.memory.bank import MemoryBank


@flax.struct.dataclass
class MemorySelection:
    """Which bank slots a frame attends to, and their temporal encodings.

    Attributes:
      cond_mem_valid: (B, K) bool, conditioning memories read.
      cond_tpos_index: (B, K) int32 row of `maskmem_tpos_enc` of each (num_maskmem - 1 for
        selected conditioning frames; t_rel - 1 for one read in a recent position).
      recent_mem_valid: (B, R) bool, recent memories read.
      recent_tpos_index: (B, R) int32 row of `maskmem_tpos_enc` for each recent slot.
      cond_ptr_valid: (B, K) bool, conditioning pointers read.
      cond_ptr_pos: (B, K) float32 temporal position of each conditioning pointer.
      recent_ptr_valid: (B, P) bool.
      recent_ptr_pos: (B, P) float32.
      max_ptrs: () int32, min(num_frames, max_obj_ptrs_in_encoder); positions are divided
        by max_ptrs - 1 before the sine encoding. Traced: the video length is never static.
      memory_key_scale: optional (B, K + R) float32 factor on the attention keys (memory +
        position) of each spatial memory's tokens (SAM2Long's modulation); None: 1.
      ptr_key_scale: optional (B, K + P) float32, the same for each pointer's tokens.
    """

    cond_mem_valid: jax.Array
    cond_tpos_index: jax.Array
    recent_mem_valid: jax.Array
    recent_tpos_index: jax.Array
    cond_ptr_valid: jax.Array
    cond_ptr_pos: jax.Array
    recent_ptr_valid: jax.Array
    recent_ptr_pos: jax.Array
    max_ptrs: jax.Array
    memory_key_scale: jax.Array | None = None
    ptr_key_scale: jax.Array | None = None


def recent_position(
    frames: jax.Array, frame_idx: jax.Array, sign: jax.Array, stride: int, num_maskmem: int
) -> jax.Array:
    """t_rel (1 .. num_maskmem - 1) at which frame t = `frame_idx` reads a memory of each of
    `frames` (any shape, int32), or 0 where it reads none (module docstring)."""
    t = jnp.asarray(frame_idx, jnp.int32)
    frames = jnp.asarray(frames, jnp.int32)
    # the nearest multiple of the stride at or beyond t - 2 s (floor forward, ceil reverse)
    base = jnp.where(sign > 0, ((t - 2) // stride) * stride, -((-(t + 2)) // stride) * stride)
    offset = (base - frames) * sign  # >= 0 behind base, in steps of the stride
    strided = (offset >= 0) & (offset % stride == 0)
    t_rel = jnp.where(strided, offset // stride + 2, 0)
    t_rel = jnp.where(t_rel <= num_maskmem - 1, t_rel, 0)
    return jnp.where(frames == t - sign, 1, t_rel).astype(jnp.int32)


def closest_conditioning(
    cond_frame: jax.Array, cond_valid: jax.Array, frame_idx: jax.Array, limit: int
) -> jax.Array:
    """(B, K) bool: the conditioning slots `select_closest_cond_frames` keeps for frame t
    (all when limit is -1 or not exceeded). Slot order is insertion order."""
    valid = cond_valid
    if limit < 0:
        return valid
    t = jnp.asarray(frame_idx, jnp.int32)
    big = jnp.int32(2**30)
    before = valid & (cond_frame < t)
    after = valid & (cond_frame >= t)
    last_before = jnp.max(jnp.where(before, cond_frame, -big), axis=1, keepdims=True)
    first_after = jnp.min(jnp.where(after, cond_frame, big), axis=1, keepdims=True)
    chosen = (before & (cond_frame == last_before)) | (after & (cond_frame == first_after))
    others = valid & ~chosen
    # how many of the others to add: the reference's `sorted(...)[:limit - len(chosen)]`,
    # a Python slice, so with limit 1 and two chosen it keeps all the others but the last
    remain = limit - chosen.sum(axis=1, keepdims=True)  # (B, 1)
    remain = jnp.where(remain >= 0, remain, others.sum(axis=1, keepdims=True) + remain)
    # the others ranked by distance, ties by slot: rank = how many others come first
    dist = jnp.where(others, jnp.abs(cond_frame - t), big)  # (B, K)
    k = cond_frame.shape[1]
    slot = jnp.arange(k)
    ahead = (dist[:, None, :] < dist[:, :, None]) | (
        (dist[:, None, :] == dist[:, :, None]) & (slot[None, None, :] < slot[None, :, None])
    )  # (B, K, K): [b, i, j] = slot j ranks before slot i
    rank = (ahead & others[:, None, :]).sum(axis=2)
    chosen = chosen | (others & (rank < remain))
    return jnp.where(valid.sum(axis=1, keepdims=True) <= limit, valid, chosen)


def select_memories(
    bank: MemoryBank,
    frame_idx: jax.Array,
    *,
    reverse: bool | jax.Array,
    num_frames: int | jax.Array,
    num_maskmem: int = 7,
    max_obj_ptrs_in_encoder: int = 16,
    signed_ptr_pos: bool = True,
    training: bool = False,
    memory_temporal_stride: int = 1,
    max_cond_frames_in_attn: int = -1,
) -> MemorySelection:
    """The reference's selection (module docstring) on the fixed arrays.

    Args:
      bank: the memory state.
      frame_idx: () int32, the frame being tracked.
      reverse: tracking direction (static or traced bool).
      num_frames: () length of the video (may be traced): bounds the pointer window.
      signed_ptr_pos: SAM 2.1 uses signed conditioning-pointer distances; SAM 2.0 absolute.
      training: at eval only conditioning pointers from the past (in tracking order) are used;
        in training the stride is 1, as in the reference.
      memory_temporal_stride: the reference's `memory_temporal_stride_for_eval`.
      max_cond_frames_in_attn: the reference's limit on conditioning frames (-1: none).
    """
    sign = jnp.where(reverse, -1, 1).astype(jnp.int32)
    frame_idx = jnp.asarray(frame_idx, jnp.int32)
    stride = 1 if training else memory_temporal_stride

    selected = closest_conditioning(
        bank.cond_frame, bank.cond_valid, frame_idx, max_cond_frames_in_attn
    )
    left_out = bank.cond_valid & ~selected

    # Recent memories (and left-out conditioning frames) at their temporal positions.
    recent_rel = recent_position(bank.recent_frame, frame_idx, sign, stride, num_maskmem)
    recent_valid = bank.recent_valid & (recent_rel > 0)
    cond_rel = recent_position(bank.cond_frame, frame_idx, sign, stride, num_maskmem)
    cond_as_recent = left_out & (cond_rel > 0)
    # tpos row = num_maskmem - t_pos - 1 = t_rel - 1; conditioning frames use the last row
    cond_tpos_index = jnp.where(cond_as_recent, cond_rel - 1, num_maskmem - 1)

    # Conditioning pointers: signed (or absolute) distance; at eval only those not ahead.
    cond_delta = (frame_idx - bank.cond_frame) * sign
    cond_ptr_valid = selected
    if not training:
        cond_ptr_valid = cond_ptr_valid & (cond_delta >= 0)
    cond_ptr_pos = cond_delta if signed_ptr_pos else jnp.abs(frame_idx - bank.cond_frame)

    # Recent pointers (and left-out conditioning frames'): t - s d, d = 1 .. max_ptrs - 1.
    num_frames = jnp.asarray(num_frames, jnp.int32)
    max_ptrs = jnp.minimum(num_frames, max_obj_ptrs_in_encoder)

    def in_window(frames):
        dist = (frame_idx - frames) * sign
        ok = (dist >= 1) & (dist <= max_ptrs - 1) & (frames >= 0) & (frames < num_frames)
        return ok, dist

    ptr_ok, ptr_dist = in_window(bank.ptr_frame)
    left_ok, left_dist = in_window(bank.cond_frame)
    left_ptr = left_out & left_ok
    return MemorySelection(
        cond_mem_valid=selected | cond_as_recent,
        cond_tpos_index=cond_tpos_index.astype(jnp.int32),
        recent_mem_valid=recent_valid,
        recent_tpos_index=jnp.clip(recent_rel - 1, 0, num_maskmem - 1).astype(jnp.int32),
        cond_ptr_valid=cond_ptr_valid | left_ptr,
        cond_ptr_pos=jnp.where(left_ptr, left_dist, cond_ptr_pos).astype(jnp.float32),
        recent_ptr_valid=bank.ptr_valid & ptr_ok,
        recent_ptr_pos=ptr_dist.astype(jnp.float32),
        max_ptrs=max_ptrs,
    )
