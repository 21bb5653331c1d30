"""Resampling that reproduces torch.nn.functional.interpolate exactly.

`jax.image.resize(..., "cubic")` uses Keys' A=-0.5 and a different border rule than PyTorch's
bicubic (A=-0.75, replicate border), so bicubic resizing is done here as a matrix product with
weights built from PyTorch's formula. Bilinear upsampling without antialias and antialiased
bilinear downsampling both match `jax.image.resize`, and thin wrappers say which is which.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np


def _cubic_weights(t: np.ndarray, a: float) -> np.ndarray:
    """Weights of the 4 taps at offsets -1, 0, 1, 2 for fractional positions t: (N,) -> (N, 4)."""

    def near(x):  # |x| <= 1
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x):  # 1 < |x| < 2
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    return np.stack([far(t + 1), near(t), near(1 - t), far(2 - t)], axis=-1)


@functools.lru_cache(maxsize=64)
def torch_bicubic_matrix(in_size: int, out_size: int, a: float = -0.75) -> np.ndarray:
    """(out_size, in_size) matrix M with `M @ v` == torch bicubic resize of v (align_corners=False).

    PyTorch maps output pixel d to source `(d + 0.5) * in/out - 0.5` (not clamped for cubic),
    takes taps floor(src)-1 .. floor(src)+2 and clamps their indices into the input.
    """
    dst = np.arange(out_size, dtype=np.float64)
    src = (dst + 0.5) * (in_size / out_size) - 0.5
    base = np.floor(src)
    weights = _cubic_weights(src - base, a)  # (out, 4)
    matrix = np.zeros((out_size, in_size), dtype=np.float64)
    for tap in range(4):
        index = np.clip(base.astype(np.int64) - 1 + tap, 0, in_size - 1)
        np.add.at(matrix, (np.arange(out_size), index), weights[:, tap])
    return matrix.astype(np.float32)


def resize_bicubic_torch(x: jax.Array, size: tuple[int, int]) -> jax.Array:
    """Bicubic resize of the two leading spatial axes of x: (H, W, ...) -> (*size, ...)."""
    rows = jnp.asarray(torch_bicubic_matrix(x.shape[0], size[0]))
    cols = jnp.asarray(torch_bicubic_matrix(x.shape[1], size[1]))
    # (h, H) x (w, W) x (H, W, ...) -> (h, w, ...)
    return jnp.einsum("hH,wW,HW...->hw...", rows, cols, x, precision=jax.lax.Precision.HIGHEST)


def upsample_bilinear(x: jax.Array, size: tuple[int, int]) -> jax.Array:
    """torch bilinear, align_corners=False, no antialias. x: (B, H, W, C) -> (B, *size, C)."""
    shape = (x.shape[0], *size, x.shape[-1])
    return jax.image.resize(x, shape, method="linear", antialias=False)


def downsample_bilinear_antialias(x: jax.Array, size: tuple[int, int]) -> jax.Array:
    """torch bilinear with antialias=True. x: (B, H, W, C) -> (B, *size, C)."""
    shape = (x.shape[0], *size, x.shape[-1])
    return jax.image.resize(x, shape, method="linear", antialias=True)
