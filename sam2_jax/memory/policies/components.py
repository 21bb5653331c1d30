"""The largest 8-connected component of a batch of masks, inside `jit` (static shapes).

Each pixel starts labelled with its raster index; labels spread as 3x3 minima within the mask
until nothing changes, so a component ends labelled with its first pixel in raster order, and
ties between equally large components go to the one that starts first (as OpenCV's
`connectedComponentsWithStats` order does).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def component_labels(mask: jax.Array) -> jax.Array:
    """(B, H, W) bool -> (B, H, W) int32: each pixel's component label (its first pixel's
    raster index), H * W outside the mask."""
    b, h, w = mask.shape
    big = h * w
    start = jnp.where(mask, jnp.arange(h * w, dtype=jnp.int32).reshape(1, h, w), big)

    def spread(labels: jax.Array) -> jax.Array:
        padded = jnp.pad(labels, ((0, 0), (1, 1), (1, 1)), constant_values=big)
        shifted = [padded[:, dy : dy + h, dx : dx + w] for dy in range(3) for dx in range(3)]
        return jnp.where(mask, jnp.min(jnp.stack(shifted), axis=0), big)

    def cond(state):
        labels, previous = state
        return jnp.any(labels != previous)

    def body(state):
        labels, _ = state
        return spread(labels), labels

    labels, _ = jax.lax.while_loop(cond, body, (spread(start), start))
    return labels


def largest_component(mask: jax.Array) -> jax.Array:
    """(B, H, W) bool -> (B, H, W) bool: the largest 8-connected component of each mask
    (empty where the mask is)."""
    b, h, w = mask.shape
    labels = component_labels(mask).reshape(b, h * w)
    counts = jax.vmap(lambda lab: jnp.zeros(h * w + 1, jnp.int32).at[lab].add(1))(labels)
    counts = counts[:, : h * w]  # drop the background label
    best = jnp.argmax(counts, axis=1)  # the first of equally large ones
    return (labels == best[:, None]).reshape(b, h, w) & mask
