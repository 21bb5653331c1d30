"""2D axial rotary position encoding (reference `compute_axial_cis` / `apply_rotary_enc`).

Memory attention rotates queries and keys by angles that depend on each token's (x, y) cell in
the square top-level feature grid. Channel pairs are adjacent, (2j, 2j+1) (the interleaved
"complex" convention, not rotate-half); the first D/4 pairs turn with the column x, the last
D/4 with the row y, pair j at frequency 10000^(-4j/D). Everything is computed in float32.

Instead of the reference's "rotate the first Nk - n keys with the query table tiled per memory
frame", keys carry an explicit grid index and a bool saying whether they are rotated at all; that
is what a fixed-size, padded memory bank needs.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np


@functools.lru_cache(maxsize=8)
def axial_frequencies(dim: int, theta: float = 10000.0) -> np.ndarray:
    """(dim/4,) float32: theta^(-4j/dim) for j = 0 .. dim/4 - 1, as the reference computes it."""
    exponents = np.arange(0, dim, 4, dtype=np.float32)[: dim // 4] / np.float32(dim)
    return (np.float32(1.0) / np.power(np.float32(theta), exponents)).astype(np.float32)


def grid_side(num_tokens: int) -> int:
    """Side of the square grid a query sequence of `num_tokens` tokens lies on."""
    side = math.isqrt(num_tokens)
    if side * side != num_tokens:
        raise ValueError(f"RoPE needs a square token grid, got {num_tokens} tokens")
    return side


def axial_angles(index: jax.Array, side: int, dim: int, theta: float = 10000.0) -> jax.Array:
    """Rotation angles of tokens at flat row-major grid positions.

    Args:
      index: (...) int, flat position n of each token; x = n mod side, y = n div side.
      side: grid width.
      dim: head dim D (a multiple of 4).

    Returns:
      (..., D/2) float32: [x * f_0 .. x * f_{D/4-1}, y * f_0 .. y * f_{D/4-1}].
    """
    freqs = jnp.asarray(axial_frequencies(dim, theta))
    x = (index % side).astype(jnp.float32)[..., None]
    y = (index // side).astype(jnp.float32)[..., None]
    return jnp.concatenate([x * freqs, y * freqs], axis=-1)


def rope_tables(
    index: jax.Array,
    side: int,
    dim: int,
    rotate: jax.Array | None = None,
    theta: float = 10000.0,
) -> tuple[jax.Array, jax.Array]:
    """cos and sin of the rotation angles, each (..., D/2) float32.

    `rotate` (same shape as `index`, bool) marks the tokens that are rotated; the others get
    angle 0 (cos 1, sin 0), which leaves them exactly unchanged.

    The cosines and sines are taken once per grid cell and gathered per token: computed per
    token, XLA fused them into every layer's use, so each of memory attention's 4 layers took
    the cos and sin of every memory key again (~6 ms a layer for 8 memories at 512 px on the
    2-core CPU).
    """
    grid = axial_angles(jnp.arange(side * side), side, dim, theta)  # (side^2, D/2)
    cos, sin = jnp.cos(grid)[index], jnp.sin(grid)[index]  # (..., D/2)
    if rotate is not None:
        cos = jnp.where(rotate[..., None], cos, 1.0)
        sin = jnp.where(rotate[..., None], sin, 0.0)
    return cos, sin


def apply_rope(x: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
    """Rotates adjacent channel pairs of x, in float32, and casts back.

    Args:
      x: (B, N, H, D) projected queries or keys.
      cos, sin: (B or 1, N, D/2) from `rope_tables` (shared by all heads).

    Returns:
      (B, N, H, D) in x's dtype: (a, b) -> (a cos - b sin, a sin + b cos) per pair.
    """
    pairs = x.astype(jnp.float32).reshape(*x.shape[:-1], -1, 2)  # (B, N, H, D/2, 2)
    a, b = pairs[..., 0], pairs[..., 1]
    cos, sin = cos[:, :, None, :], sin[:, :, None, :]  # broadcast over heads
    rotated = jnp.stack([a * cos - b * sin, a * sin + b * cos], axis=-1)
    return rotated.reshape(x.shape).astype(x.dtype)
