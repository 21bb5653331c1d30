"""The video predictor's host-side post-processing of low-res mask logits (numpy / scipy).

- `fill_holes`: the reference's `fill_holes_in_mask_scores` (it needs a CUDA extension; this
  labels 8-connected components with scipy).
- `non_overlapping`: the reference's `_apply_non_overlapping_constraints`.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

HOLE_LOGIT = np.float32(0.1)  # what a filled hole becomes (just foreground)


def fill_holes(low_res: np.ndarray, max_area: int) -> np.ndarray:
    """Background regions (logits <= 0) that form an 8-connected component of at most
    `max_area` pixels get the logit 0.1 (foreground). Components touching the border count.

    Args:
      low_res: (..., h, w) float32 logits.

    Returns:
      a new array of the same shape.
    """
    out = np.array(low_res, np.float32)
    flat = out.reshape(-1, *out.shape[-2:])
    eight = np.ones((3, 3), bool)
    for i in range(flat.shape[0]):
        labels, count = ndimage.label(flat[i] <= 0, structure=eight)
        if count == 0:
            continue
        areas = np.bincount(labels.ravel(), minlength=count + 1)
        areas[0] = max_area + 1  # label 0 is the foreground, never a hole
        flat[i] = np.where(areas[labels] <= max_area, HOLE_LOGIT, flat[i])
    return out


def non_overlapping(masks: np.ndarray) -> np.ndarray:
    """(N, 1, H, W) logits; at each pixel every object but the highest-scoring one is clamped
    to at most -10."""
    if masks.shape[0] == 1:
        return masks
    keep = np.argmax(masks, axis=0)[None] == np.arange(masks.shape[0])[:, None, None, None]
    return np.where(keep, masks, np.minimum(masks, -10.0))
