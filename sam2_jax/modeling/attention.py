"""Scaled dot-product attention, the one place every SAM 2 attention goes through.

On CPU, XLA materializes the full (queries x keys) score matrix, which is what makes long
attention (Hiera's global blocks: 4096 tokens at 1024x1024; memory attention: up to ~28k keys)
slow there. For long sequences this computes the same softmax blockwise with a running max and
sum (online softmax), never holding more than one (query block x key block) tile. On CPU
bfloat16 inputs stay so, with float32 products (`matmul`: XLA's fast bfloat16 path there),
other dtypes are computed in float32. On accelerators the inputs keep their dtype (bfloat16 /
float16 stay so, which fused attention kernels need; scores and softmax are float32) and go
through `jax.nn.dot_product_attention`. The choice is made per platform when the program is lowered
(`platform.per_platform`), so a program exported for several platforms holds each one's.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from sam2_jax.modeling.platform import per_platform

# Sequences at least this long (queries and keys) take the blocked path on CPU.
_BLOCKED_MIN_TOKENS = 2048
# Block sizes of the blocked path, fastest of those tried on the 2-core CPU: Hiera's global
# attention at 1024 px (4096 tokens, 4 x 96) 152 ms with 512 x 1024 tiles, 136 ms with
# 256 x 4096; memory attention at 1024 px (4096 queries, 8 memories of 4096 keys) 433 ms with
# 2048-query blocks, 383 ms with 1024.
_QUERY_BLOCK = 256
_KEY_BLOCK = 4096
_MEMORY_QUERY_BLOCK = 1024
# Skipping empty key blocks pays (a cond per tile) from this many queries; below it the
# masked keys cost less than the conds (a training step at 256 px, beside a background job:
# 7.9 -> 7.4 s).
_SKIP_MIN_QUERIES = 1024
_MASKED_SCORE = -0.7 * float(jnp.finfo(jnp.float32).max)


def dot_product_attention(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    *,
    key_mask: jax.Array | None = None,
    dropout_rate: float = 0.0,
    dropout_rng: jax.Array | None = None,
    key_block: int | None = None,
) -> jax.Array:
    """softmax(q k^T / sqrt(D)) v, with float32 scores and softmax (see the module docstring).

    Args:
      q: (B, Nq, H, D) queries.
      k: (B, Nk, H, D) keys.
      v: (B, Nk, H, Dv) values.
      key_mask: optional (B, Nk) or (1, Nk) bool, False for keys that must not be attended
        (padding). A query whose keys are all masked gets a zero output.
      dropout_rate: dropout on the attention probabilities (after normalization, as torch's
        `scaled_dot_product_attention(dropout_p=...)`); applied only when `dropout_rng` is given.
      dropout_rng: PRNG key for that dropout; None means deterministic.
      key_block: optional static block of keys that padding fills whole (a memory frame's
        tokens, rounded up to >= 1024): with a key_mask on CPU and >= 1024 queries the
        blocked path runs with blocks of this size, so the masked blocks (empty bank slots)
        cost nothing.

    Returns:
      (B, Nq, H, Dv) in q's dtype.
    """
    dtype = q.dtype
    b, nk = q.shape[0], k.shape[1]
    if key_mask is not None:
        key_mask = jnp.broadcast_to(key_mask.astype(bool), (b, nk))
    if dropout_rng is None or dropout_rate == 0.0:
        dropout_rate, dropout_rng = 0.0, None

    def on_cpu(q, k, v, key_mask, dropout_rng):
        if dtype != jnp.bfloat16:  # bfloat16 products have a fast path there (`matmul`)
            q, k, v = (t.astype(jnp.float32) for t in (q, k, v))
        nq = q.shape[1]
        skip_blocks = key_block is not None and key_mask is not None and nk > key_block
        if skip_blocks and nq >= _SKIP_MIN_QUERIES:
            query_block = min(nq, _MEMORY_QUERY_BLOCK)
            out = _blocked_attention(
                q, k, v, key_mask, dropout_rate, dropout_rng, query_block, key_block
            )
        elif min(nq, nk) >= _BLOCKED_MIN_TOKENS:
            out = _blocked_attention(q, k, v, key_mask, dropout_rate, dropout_rng)
        else:  # XLA's fused op runs 1.3-2.2x slower there (`_plain_attention`)
            out = _plain_attention(q, k, v, key_mask, dropout_rate, dropout_rng)
        return out.astype(dtype)

    def on_accelerator(q, k, v, key_mask, dropout_rng):
        return _unblocked_attention(q, k, v, key_mask, dropout_rate, dropout_rng).astype(dtype)

    out = per_platform(q, k, v, key_mask, dropout_rng, cpu=on_cpu, default=on_accelerator)
    if key_mask is not None:
        # the fused path averages all values when every key is masked; make that a zero
        out = jnp.where(key_mask.any(axis=1)[:, None, None, None], out, jnp.zeros((), dtype))
    return out


def _unblocked_attention(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    key_mask: jax.Array | None,
    dropout_rate: float,
    dropout_rng: jax.Array | None,
) -> jax.Array:
    """The fused op where it applies, else the materialized softmax; shapes as above."""
    if dropout_rng is not None or v.shape[-1] != q.shape[-1]:
        # the fused op needs values as wide as the queries
        return _plain_attention(q, k, v, key_mask, dropout_rate, dropout_rng)
    mask = None if key_mask is None else key_mask[:, None, None, :]  # (B, 1, 1, Nk)
    return jax.nn.dot_product_attention(q, k, v, mask=mask)


def _dropout_keep(rng: jax.Array, rate: float, shape: tuple[int, ...]) -> jax.Array:
    """Inverted-dropout multiplier: 0 or 1/(1-rate)."""
    keep = jax.random.bernoulli(rng, 1.0 - rate, shape)
    return keep.astype(jnp.float32) / (1.0 - rate)


def _plain_attention(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    key_mask: jax.Array | None,
    dropout_rate: float,
    dropout_rng: jax.Array | None,
) -> jax.Array:
    """Materialized softmax with float32 scores (dropout on the probabilities with a
    dropout_rng); shapes as above.

    Heads go first for the two products and the normalization comes after the values'
    product (exp(s - max) v / sum exp(s - max): one division per output instead of one per
    score). On the 2-core CPU, float32, that ran 1.3-2.2x faster than XLA's
    `jax.nn.dot_product_attention` and 1.3-2.8x faster than the same math with the heads in
    place: Hiera's global attention at 512 px (1024 tokens, 4 x 96) 17.7 -> 8.0 ms, its 8 x 8
    windows (256 x 64 tokens) 5.6 -> 4.2 ms, 1024 tokens of width 256 7.5 -> 4.1 ms.
    """
    scale = jnp.asarray(1.0 / math.sqrt(q.shape[-1]), q.dtype)
    # (B, N, H, D) -> (B, H, N, D)
    qh, kh, vh = (x.transpose(0, 2, 1, 3) for x in (q * scale, k, v))
    scores = jnp.einsum("bhqd,bhkd->bhqk", qh, kh, preferred_element_type=jnp.float32)
    if key_mask is not None:
        # a large finite negative keeps fully masked rows finite (their output is zeroed later)
        scores = jnp.where(key_mask[:, None, None, :], scores, _MASKED_SCORE)
    # the max only shifts the exponent: softmax does not depend on it, nor its gradient
    weights = jnp.exp(scores - jax.lax.stop_gradient(scores.max(axis=-1, keepdims=True)))
    total = weights.sum(axis=-1)  # (B, H, Nq), >= 1
    if dropout_rng is not None:
        weights = weights * _dropout_keep(dropout_rng, dropout_rate, weights.shape)
    out = jnp.einsum(
        "bhqk,bhkd->bhqd", weights.astype(v.dtype), vh, preferred_element_type=jnp.float32
    )
    out = out / total[..., None]
    return out.transpose(0, 2, 1, 3)  # (B, Nq, H, Dv)


def _pad_axis1(x: jax.Array, multiple: int) -> jax.Array:
    pad = -x.shape[1] % multiple
    if pad == 0:
        return x
    widths = [(0, 0)] * x.ndim
    widths[1] = (0, pad)
    return jnp.pad(x, widths)


def _blocked_attention(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    key_mask: jax.Array | None,
    dropout_rate: float = 0.0,
    dropout_rng: jax.Array | None = None,
    query_block: int = _QUERY_BLOCK,
    key_block: int = _KEY_BLOCK,
) -> jax.Array:
    """Online-softmax attention over (query block, key block) tiles; shapes as above.

    Key blocks whose keys are all masked (the empty slots of a fixed-size memory bank, and the
    padding up to a whole block) are skipped: they would add exactly nothing. Dropout multiplies
    the probabilities only where they meet the values, not the running sum, which is dropout
    applied after normalization.
    """
    b, nq, h, d = q.shape
    nk, dv = k.shape[1], v.shape[-1]
    qb, kb = min(query_block, nq), min(key_block, nk)
    valid = jnp.ones((b, nk), bool) if key_mask is None else key_mask
    q = _pad_axis1(q * (1.0 / math.sqrt(d)), qb)
    k, v, valid = _pad_axis1(k, kb), _pad_axis1(v, kb), _pad_axis1(valid, kb)
    n_qblocks, n_kblocks = q.shape[1] // qb, k.shape[1] // kb
    # heads first, as in `_plain_attention`: (B, N, H, D) -> (nblocks, B, H, block, D)
    q_blocks = q.reshape(b, n_qblocks, qb, h, d).transpose(1, 0, 3, 2, 4)
    k_blocks = k.reshape(b, n_kblocks, kb, h, d).transpose(1, 0, 3, 2, 4)
    v_blocks = v.reshape(b, n_kblocks, kb, h, dv).transpose(1, 0, 3, 2, 4)
    valid_blocks = valid.reshape(b, n_kblocks, kb).transpose(1, 0, 2)

    def one_query_block(args):
        q_blk, q_index = args  # (B, H, qb, D), ()

        def tile(carry, kv):
            running_max, running_sum, acc = carry
            k_blk, v_blk, valid_blk, k_index = kv
            scores = jnp.einsum("bhqd,bhkd->bhqk", q_blk, k_blk, preferred_element_type=jnp.float32)
            scores = jnp.where(valid_blk[:, None, None, :], scores, -jnp.inf)
            new_max = jnp.maximum(running_max, scores.max(axis=-1))  # (B, H, qb)
            safe_max = jnp.where(jnp.isfinite(new_max), new_max, 0.0)
            correction = jnp.exp(
                jnp.where(jnp.isfinite(running_max), running_max - safe_max, -jnp.inf)
            )
            probs = jnp.exp(scores - safe_max[..., None])
            running_sum = running_sum * correction + probs.sum(axis=-1)
            if dropout_rng is not None:
                rng = jax.random.fold_in(dropout_rng, q_index * n_kblocks + k_index)
                probs = probs * _dropout_keep(rng, dropout_rate, probs.shape)
            values = jnp.einsum(
                "bhqk,bhkd->bhqd",
                probs.astype(v_blk.dtype),
                v_blk,
                preferred_element_type=jnp.float32,
            )
            acc = acc * correction[..., None] + values
            return new_max, running_sum, acc

        def step(carry, kv):
            carry = jax.lax.cond(kv[2].any(), tile, lambda c, _: c, carry, kv)
            return carry, None

        init = (
            jnp.full((b, h, qb), -jnp.inf, jnp.float32),
            jnp.zeros((b, h, qb), jnp.float32),
            jnp.zeros((b, h, qb, dv), jnp.float32),
        )
        xs = (k_blocks, v_blocks, valid_blocks, jnp.arange(n_kblocks))
        (_, total, acc), _ = jax.lax.scan(step, init, xs)
        total = jnp.where(total > 0, total, 1.0)  # rows with no valid key: acc is 0
        return acc / total[..., None]  # (B, H, qb, Dv)

    out = jax.lax.map(one_query_block, (q_blocks, jnp.arange(n_qblocks)))  # (nqb, B, H, qb, Dv)
    out = out.transpose(1, 0, 3, 2, 4).reshape(b, n_qblocks * qb, h, dv)
    return out[:, :nq]
