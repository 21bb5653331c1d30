"""Fixed (parameter-free) position encodings used by the neck and the memory encoder."""

from __future__ import annotations

import functools

import numpy as np


@functools.lru_cache(maxsize=32)
def sine_position_encoding_2d(
    height: int, width: int, num_pos_feats: int, temperature: float = 10000.0
) -> np.ndarray:
    """The reference's `PositionEmbeddingSine` (normalize=True, scale 2*pi) for an H x W map.

    Positions are 1-based and normalized by (size + 1e-6) * 2*pi; each axis gets num_pos_feats/2
    channels with sin and cos interleaved (consecutive pairs share a frequency); the y part
    comes first.

    Returns:
      (H, W, num_pos_feats) float32.
    """
    n = num_pos_feats // 2
    eps, scale = 1e-6, 2 * np.pi
    y = np.arange(1, height + 1, dtype=np.float32) / (height + eps) * scale  # (H,)
    x = np.arange(1, width + 1, dtype=np.float32) / (width + eps) * scale  # (W,)
    dim_t = temperature ** (2 * (np.arange(n, dtype=np.float32) // 2) / n)  # (n,)

    def encode(p: np.ndarray) -> np.ndarray:
        v = p[:, None] / dim_t  # (L, n)
        # even channels sin, odd channels cos: (L, n/2, 2) -> (L, n)
        return np.stack([np.sin(v[:, 0::2]), np.cos(v[:, 1::2])], axis=-1).reshape(len(p), n)

    pos_y = np.broadcast_to(encode(y)[:, None, :], (height, width, n))
    pos_x = np.broadcast_to(encode(x)[None, :, :], (height, width, n))
    return np.concatenate([pos_y, pos_x], axis=-1).astype(np.float32)
