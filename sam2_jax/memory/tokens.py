"""The token sequence a frame's memory attention reads, assembled from the fixed-size bank
(step 1 of the reference's `_prepare_memory_conditioned_features`), and the conditioning of
a frame's features on it.

Shapes: B objects, K conditioning slots, R recent slots, Pp recent pointers, HW tokens per
spatial memory, M = mem_dim, C = d_model.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from sam2_jax.memory.bank import MemoryBank
from sam2_jax.memory.per_object import call_per_object
from sam2_jax.memory.policy import MemoryPolicy
from sam2_jax.modeling.position_encoding import sine_position_encoding_2d
from sam2_jax.modeling.sam2_base import SAM2


def sine_pe_1d(positions: jax.Array, dim: int, temperature: float = 10000.0) -> jax.Array:
    """The reference's `get_1d_sine_pe`: (...,) -> (..., dim) as [sin block, cos block]."""
    half = dim // 2
    dim_t = temperature ** (2 * (np.arange(half, dtype=np.float32) // 2) / half)  # (half,)
    angles = positions[..., None].astype(jnp.float32) / jnp.asarray(dim_t, jnp.float32)
    return jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], axis=-1)


def memory_sequence(
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
    if sel.memory_key_scale is not None:
        # keys are memory + memory_pos, values memory: scaling the keys alone is a position
        # term of scale * (memory + pos) - memory
        scale = jnp.concatenate(
            [jnp.repeat(sel.memory_key_scale, hw, axis=1), jnp.repeat(sel.ptr_key_scale, split, 1)],
            axis=1,
        )[..., None].astype(memory.dtype)  # (B, N, 1)
        memory_pos = scale * (memory + memory_pos) - memory
    key_mask = jnp.concatenate([features_valid, ptr_tokens_valid], axis=1)
    n_spatial, n_total = (k + r) * hw, memory.shape[1]
    rope_mask = (np.arange(n_total) < n_spatial)[None]
    rope_index = (np.arange(n_total) % hw).astype(np.int32)[None]
    return memory, memory_pos, key_mask, jnp.asarray(rope_mask), jnp.asarray(rope_index)


def condition_on_memory(
    m: SAM2,
    bank: MemoryBank,
    raw: jax.Array,
    pos: jax.Array,
    frame_idx: jax.Array,
    reverse,
    num_frames: int | jax.Array,
    policy: MemoryPolicy,
    *,
    training: bool = False,
    deterministic: bool = True,
) -> jax.Array:
    """Memory attention of a frame's features to what the policy selects from the bank.

    Args:
      m: the bound SAM2 module.
      raw: (B, h, w, C) stride-16 features; pos: (1 or B, h, w, C) their position encoding.
      training: static; the reference's training-mode selection (e.g. the pointers of
        conditioning frames ahead of `frame_idx` too).
      deterministic: static; False runs the attention's dropout (needs a "dropout" rng).

    Returns:
      (B, h, w, C) memory-conditioned features in raw's dtype.
    """
    b, h, w, c = raw.shape
    memory, memory_pos, key_mask, rope_mask, rope_index = memory_sequence(
        m, bank, frame_idx, reverse, num_frames, policy, training
    )
    queries = raw.reshape(b, h * w, c)  # (B, HW, C)
    queries_pos = jnp.broadcast_to(pos, (b, h, w, c)).reshape(b, h * w, c)
    batched = (queries, queries_pos, memory, memory_pos, key_mask)
    fixed = dict(rope_mask=rope_mask, rope_index=rope_index, deterministic=deterministic)
    # objects one at a time on CPU where there is no dropout stream to split and no backward
    # pass to run through the loop (training differentiates the batch)
    if deterministic and not training:
        out = call_per_object(m.memory_attention, *batched, **fixed)
    else:
        out = m.memory_attention(*batched, **fixed)
    return out.reshape(b, h, w, c).astype(raw.dtype)
