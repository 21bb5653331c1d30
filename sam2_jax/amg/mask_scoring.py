"""Compiled per-mask work of automatic mask generation, at the crop's resolution.

Low-resolution logits (N, h, w) are upsampled to the crop size (H, W) with PyTorch's
bilinear rule (align_corners=False), as gathers of two taps per axis: O(H * W) per mask,
where a resize by dense interpolation matrices would cost O(h * H * W). The full-size float
logits never reach the host: `score_masks` gets one byte of threshold bits per pixel and
reduces it to stability scores and tight boxes; `binary_masks` thresholds only the masks
that survive filtering and NMS.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from sam2_jax.modeling.interpolation import linear_taps

CHUNK = 16  # masks upsampled at a time (bounds the (CHUNK, H, W) temporaries)


def upsample_bilinear(logits: jax.Array, out_hw: tuple[int, int]) -> jax.Array:
    """(N, h, w) -> (N, H, W), equal to `F.interpolate(bilinear, align_corners=False)`."""
    h, w = logits.shape[-2:]
    y0, y1, wy = linear_taps(h, out_hw[0])
    x0, x1, wx = linear_taps(w, out_hw[1])
    rows = logits[..., x0] * (1 - wx) + logits[..., x1] * wx  # (N, h, W)
    return rows[..., y0, :] * (1 - wy)[:, None] + rows[..., y1, :] * wy[:, None]  # (N, H, W)


def _chunked(fn, logits: jax.Array):
    """Applies fn to (CHUNK, h, w) slices of (N, h, w) logits in a loop (N % CHUNK == 0)."""
    n = logits.shape[0]
    out = jax.lax.map(fn, logits.reshape(n // CHUNK, CHUNK, *logits.shape[1:]))
    return jax.tree.map(lambda a: a.reshape(n, *a.shape[2:]), out)


def _pad_to_chunk(logits: jax.Array) -> tuple[jax.Array, int]:
    n = logits.shape[0]
    pad = -n % CHUNK
    return jnp.pad(logits, ((0, pad), (0, 0), (0, 0))), n


@functools.partial(jax.jit, static_argnames="out_hw")
def level_codes(
    logits: jax.Array, out_hw: tuple[int, int], mask_threshold, stability_offset
) -> jax.Array:
    """Upsampled logits, reduced to one byte per pixel of threshold bits.

    Args:
      logits: (N, h, w) low-resolution mask logits.
      out_hw: the crop's (H, W).
      mask_threshold, stability_offset: scalars (traced: no recompile when they change).

    Returns:
      (N, H, W) uint8: bit 0 = up > thr - off, bit 1 = up > thr, bit 2 = up > thr + off,
      `up` being the logits upsampled to out_hw.
    """
    logits, n = _pad_to_chunk(jnp.asarray(logits, jnp.float32))

    def one_chunk(x):  # (CHUNK, h, w) -> (CHUNK, H, W)
        up = upsample_bilinear(x, out_hw)
        bit = lambda t, b: (up > t).astype(jnp.uint8) << b
        return (
            bit(mask_threshold - stability_offset, 0)
            | bit(mask_threshold, 1)
            | bit(mask_threshold + stability_offset, 2)
        )

    return _chunked(one_chunk, logits)[:n]


def score_masks(
    logits, out_hw: tuple[int, int], mask_threshold: float, stability_offset: float
) -> tuple[np.ndarray, np.ndarray]:
    """Stability scores and tight boxes of masks at the crop resolution.

    The per-pixel work is compiled (`level_codes`); the counts run on the host, where numpy's
    byte counting is much faster than XLA's CPU reductions of the same arrays.

    Args:
      logits: (N, h, w) low-resolution mask logits.
      out_hw: the crop's (H, W).

    Returns:
      stability (N,) float32: |up > thr + off| / |up > thr - off| (NaN when both are 0), and
      boxes (N, 4) int32 XYXY of `up > thr` with inclusive max, (0, 0, 0, 0) when empty.
    """
    codes = np.asarray(level_codes(logits, out_hw, mask_threshold, stability_offset))
    n = codes.shape[0]
    inter, union = np.zeros(n, np.int64), np.zeros(n, np.int64)
    boxes = np.zeros((n, 4), np.int32)
    for i, code in enumerate(codes):  # (H, W) uint8
        union[i] = np.count_nonzero(code & 1)
        inter[i] = np.count_nonzero(code & 4)
        fg = (code & 2).astype(bool)
        rows, cols = np.flatnonzero(fg.any(axis=1)), np.flatnonzero(fg.any(axis=0))
        if rows.size:
            boxes[i] = cols[0], rows[0], cols[-1], rows[-1]
    with np.errstate(invalid="ignore", divide="ignore"):
        stability = inter.astype(np.float32) / union.astype(np.float32)
    return stability, boxes


@functools.partial(jax.jit, static_argnames="out_hw")
def binary_masks(logits: jax.Array, out_hw: tuple[int, int], mask_threshold) -> jax.Array:
    """(N, h, w) logits -> (N, H, W) bool: upsampled to out_hw and thresholded (> thr)."""
    logits, n = _pad_to_chunk(jnp.asarray(logits, jnp.float32))
    masks = _chunked(lambda x: upsample_bilinear(x, out_hw) > mask_threshold, logits)
    return masks[:n]
