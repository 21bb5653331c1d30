"""Scaled dot-product attention, the one place every SAM 2 attention goes through.

On CPU, XLA materializes the full (queries x keys) score matrix, which is what makes long
attention (Hiera's global blocks: 4096 tokens at 1024x1024; memory attention: up to ~28k keys)
slow there. For long sequences this computes the same softmax blockwise with a running max and
sum (online softmax), never holding more than one (query block x key block) tile. Elsewhere, and
on accelerators, it uses `jax.nn.dot_product_attention`, which XLA/cuDNN fuse.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

# Sequences at least this long (queries and keys) take the blocked path on CPU.
_BLOCKED_MIN_TOKENS = 2048
_QUERY_BLOCK = 512
_KEY_BLOCK = 1024


def dot_product_attention(
    q: jax.Array, k: jax.Array, v: jax.Array, *, key_mask: jax.Array | None = None
) -> jax.Array:
    """softmax(q k^T / sqrt(D)) v, computed in float32.

    Args:
      q: (B, Nq, H, D) queries.
      k: (B, Nk, H, D) keys.
      v: (B, Nk, H, Dv) values.
      key_mask: optional (B, Nk) bool, False for keys that must not be attended (padding).

    Returns:
      (B, Nq, H, Dv) in q's dtype.
    """
    dtype = q.dtype
    q, k, v = (t.astype(jnp.float32) for t in (q, k, v))
    nq, nk = q.shape[1], k.shape[1]
    on_cpu = jax.default_backend() == "cpu"
    if on_cpu and min(nq, nk) >= _BLOCKED_MIN_TOKENS:
        out = _blocked_attention(q, k, v, key_mask)
    else:
        mask = None if key_mask is None else key_mask[:, None, None, :]  # (B, 1, 1, Nk)
        out = jax.nn.dot_product_attention(q, k, v, mask=mask)
    return out.astype(dtype)


def _pad_axis1(x: jax.Array, multiple: int) -> jax.Array:
    pad = -x.shape[1] % multiple
    if pad == 0:
        return x
    widths = [(0, 0)] * x.ndim
    widths[1] = (0, pad)
    return jnp.pad(x, widths)


def _blocked_attention(
    q: jax.Array, k: jax.Array, v: jax.Array, key_mask: jax.Array | None
) -> jax.Array:
    """Online-softmax attention over (query block, key block) tiles; shapes as above."""
    b, nq, h, d = q.shape
    nk, dv = k.shape[1], v.shape[-1]
    qb, kb = min(_QUERY_BLOCK, nq), min(_KEY_BLOCK, nk)
    valid = jnp.ones((b, nk), bool) if key_mask is None else key_mask
    q = _pad_axis1(q * (1.0 / math.sqrt(d)), qb)
    k, v, valid = _pad_axis1(k, kb), _pad_axis1(v, kb), _pad_axis1(valid, kb)
    n_qblocks, n_kblocks = q.shape[1] // qb, k.shape[1] // kb
    # (B, N, H, D) -> (nblocks, B, block, H, D)
    q_blocks = q.reshape(b, n_qblocks, qb, h, d).transpose(1, 0, 2, 3, 4)
    k_blocks = k.reshape(b, n_kblocks, kb, h, d).transpose(1, 0, 2, 3, 4)
    v_blocks = v.reshape(b, n_kblocks, kb, h, dv).transpose(1, 0, 2, 3, 4)
    valid_blocks = valid.reshape(b, n_kblocks, kb).transpose(1, 0, 2)

    def one_query_block(q_blk):  # (B, qb, H, D)
        def step(carry, kv):
            running_max, running_sum, acc = carry
            k_blk, v_blk, valid_blk = kv
            scores = jnp.einsum("bqhd,bkhd->bhqk", q_blk, k_blk)
            scores = jnp.where(valid_blk[:, None, None, :], scores, -jnp.inf)
            new_max = jnp.maximum(running_max, scores.max(axis=-1))  # (B, H, qb)
            safe_max = jnp.where(jnp.isfinite(new_max), new_max, 0.0)
            correction = jnp.exp(
                jnp.where(jnp.isfinite(running_max), running_max - safe_max, -jnp.inf)
            )
            probs = jnp.exp(scores - safe_max[..., None])
            running_sum = running_sum * correction + probs.sum(axis=-1)
            acc = acc * correction[..., None] + jnp.einsum("bhqk,bkhd->bhqd", probs, v_blk)
            return (new_max, running_sum, acc), None

        init = (
            jnp.full((b, h, qb), -jnp.inf, jnp.float32),
            jnp.zeros((b, h, qb), jnp.float32),
            jnp.zeros((b, h, qb, dv), jnp.float32),
        )
        (_, total, acc), _ = jax.lax.scan(step, init, (k_blocks, v_blocks, valid_blocks))
        return (acc / total[..., None]).transpose(0, 2, 1, 3)  # (B, qb, H, Dv)

    out = jax.lax.map(one_query_block, q_blocks)  # (nqb, B, qb, H, Dv)
    out = out.transpose(1, 0, 2, 3, 4).reshape(b, n_qblocks * qb, h, dv)
    return out[:, :nq]
