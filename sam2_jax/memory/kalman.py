"""A constant-velocity Kalman filter on boxes, batched over objects (SAMURAI's motion model).

The state is (x, y, a, h, vx, vy, va, vh): box centre, aspect ratio w / h, height and their
velocities; a box (x, y, a, h) is observed directly. The noise model is the one DeepSORT
introduced and SAMURAI uses (standard deviations proportional to the box height: 1/20 for
positions, 1/160 for velocities). SAMURAI's filter runs in float64 NumPy; this one runs in
float32 inside the compiled frame loop (a choice between two masks can differ where their
scores tie to float32 precision).

Shapes: B objects; mean (B, 8), covariance (B, 8, 8), boxes (B, 4) or (B, K, 4) as
(x1, y1, x2, y2) in pixels.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

_POSITION = 1.0 / 20.0
_VELOCITY = 1.0 / 160.0
# NumPy constants: importing this module must not start a JAX backend
_MOTION = np.eye(8, dtype=np.float32) + np.eye(8, k=4, dtype=np.float32)  # x += v (dt = 1)
_OBSERVE = np.eye(4, 8, dtype=np.float32)


def xyxy_to_xyah(box: jax.Array) -> jax.Array:
    """(..., 4) corners -> (..., 4) centre, aspect ratio, height (a height of 0 counts as 1)."""
    x1, y1, x2, y2 = jnp.moveaxis(box, -1, 0)
    h = y2 - y1
    h = jnp.where(h == 0, 1.0, h)
    return jnp.stack([(x1 + x2) / 2, (y1 + y2) / 2, (x2 - x1) / h, h], axis=-1)


def xyah_to_xyxy(box: jax.Array) -> jax.Array:
    """(..., 4) centre, aspect ratio, height -> (..., 4) corners."""
    xc, yc, a, h = jnp.moveaxis(box, -1, 0)
    return jnp.stack([xc - a * h / 2, yc - h / 2, xc + a * h / 2, yc + h / 2], axis=-1)


def _diag(std: jax.Array) -> jax.Array:
    """(B, n) standard deviations -> (B, n, n) diagonal covariances."""
    return jax.vmap(jnp.diag)(jnp.square(std))


def initiate(measurement: jax.Array) -> tuple[jax.Array, jax.Array]:
    """A track from one (B, 4) xyah box: zero velocity, uncertainty scaled by its height."""
    h = measurement[:, 3]
    one = jnp.ones_like(h)
    std = jnp.stack(
        [2 * _POSITION * h, 2 * _POSITION * h, 1e-2 * one, 2 * _POSITION * h,
         10 * _VELOCITY * h, 10 * _VELOCITY * h, 1e-5 * one, 10 * _VELOCITY * h],
        axis=1,
    )  # fmt: skip
    mean = jnp.concatenate([measurement, jnp.zeros_like(measurement)], axis=1)
    return mean, _diag(std)


def predict(mean: jax.Array, covariance: jax.Array) -> tuple[jax.Array, jax.Array]:
    """One step of constant-velocity motion."""
    h = mean[:, 3]
    one = jnp.ones_like(h)
    std = jnp.stack(
        [_POSITION * h, _POSITION * h, 1e-2 * one, _POSITION * h,
         _VELOCITY * h, _VELOCITY * h, 1e-5 * one, _VELOCITY * h],
        axis=1,
    )  # fmt: skip
    mean = mean @ _MOTION.T
    covariance = jnp.einsum("ij,bjk,lk->bil", _MOTION, covariance, _MOTION) + _diag(std)
    return mean, covariance


def update(
    mean: jax.Array, covariance: jax.Array, measurement: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """The state corrected by a (B, 4) xyah measurement."""
    h = mean[:, 3]
    one = jnp.ones_like(h)
    std = jnp.stack([_POSITION * h, _POSITION * h, 1e-1 * one, _POSITION * h], axis=1)
    projected_mean = mean @ _OBSERVE.T  # (B, 4)
    projected_cov = jnp.einsum("ij,bjk,lk->bil", _OBSERVE, covariance, _OBSERVE) + _diag(std)
    cross = jnp.einsum("bij,kj->bik", covariance, _OBSERVE)  # (B, 8, 4) = P H^T
    # gain = P H^T S^-1, with S symmetric: solve S gain^T = (P H^T)^T
    gain = jnp.swapaxes(jnp.linalg.solve(projected_cov, jnp.swapaxes(cross, 1, 2)), 1, 2)
    new_mean = mean + jnp.einsum("bi,bji->bj", measurement - projected_mean, gain)
    new_cov = covariance - jnp.einsum("bij,bjk,blk->bil", gain, projected_cov, gain)
    return new_mean, new_cov


def box_iou(box: jax.Array, boxes: jax.Array) -> jax.Array:
    """IoU of (B, 4) boxes with (B, K, 4) boxes: (B, K); 0 against an all-zero box (an empty
    mask's) and where the union is 0 (SAMURAI's convention: corners, no +1)."""
    x1, y1, x2, y2 = (box[:, None, i] for i in range(4))
    u1, v1, u2, v2 = (boxes[..., i] for i in range(4))
    inter = jnp.maximum(0.0, jnp.minimum(x2, u2) - jnp.maximum(x1, u1)) * jnp.maximum(
        0.0, jnp.minimum(y2, v2) - jnp.maximum(y1, v1)
    )
    union = (x2 - x1) * (y2 - y1) + (u2 - u1) * (v2 - v1) - inter
    iou = jnp.where(union != 0, inter / jnp.where(union != 0, union, 1.0), 0.0)
    return jnp.where(jnp.all(boxes == 0, axis=-1), 0.0, iou)


def mask_boxes(logits: jax.Array) -> jax.Array:
    """(B, H, W, K) mask logits -> (B, K, 4) float32 boxes (x_min, y_min, x_max, y_max) of the
    pixels > 0, inclusive pixel indices; all zeros for an empty mask."""
    fg = logits > 0
    rows, cols = fg.any(axis=2), fg.any(axis=1)  # (B, H, K), (B, W, K)

    def extent(hit: jax.Array) -> tuple[jax.Array, jax.Array]:
        n = hit.shape[1]
        idx = jnp.arange(n)[None, :, None]
        lo = jnp.min(jnp.where(hit, idx, n), axis=1)
        hi = jnp.max(jnp.where(hit, idx, -1), axis=1)
        return lo, hi  # (B, K)

    y0, y1 = extent(rows)
    x0, x1 = extent(cols)
    box = jnp.stack([x0, y0, x1, y1], axis=-1).astype(jnp.float32)
    return jnp.where(fg.any(axis=(1, 2))[..., None], box, 0.0)
