"""The DAVIS benchmark's per-frame measures, in NumPy/SciPy.

- J: region similarity, the IoU of a predicted and a ground-truth mask; two empty masks
  score 1 (the DAVIS convention: nothing to find and nothing found).
- F: contour accuracy, the F-measure of boundary precision and recall. Boundaries are the
  one-pixel maps of `seg_to_boundary` (DAVIS's `seg2bmap` on same-size masks); a boundary pixel
  matches when the other boundary, dilated by a disk of radius
  `ceil(bound_th * image diagonal)` (bound_th = 0.008 as in DAVIS), covers it.
  Empty-boundary conventions follow DAVIS: both empty -> P = R = 1; only the prediction
  empty -> P = 1, R = 0; only the ground truth empty -> P = 0, R = 1; F = 0 when P + R = 0.
- Void pixels (255 in DAVIS annotations) are removed from both masks before measuring.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

BOUND_TH = 0.008


def _check_pair(pred: np.ndarray, gt: np.ndarray, void: np.ndarray | None) -> None:
    if pred.shape != gt.shape:
        raise ValueError(f"prediction shape {pred.shape} != ground truth shape {gt.shape}")
    if void is not None and void.shape != gt.shape:
        raise ValueError(f"void mask shape {void.shape} != ground truth shape {gt.shape}")


def region_similarity(
    pred: np.ndarray, gt: np.ndarray, void: np.ndarray | None = None
) -> np.ndarray:
    """J: IoU of (..., H, W) boolean masks -> (...) float64; empty vs empty is 1."""
    pred, gt = np.asarray(pred, bool), np.asarray(gt, bool)
    _check_pair(pred, gt, void)
    if void is not None:
        keep = ~np.asarray(void, bool)
        pred, gt = pred & keep, gt & keep
    inter = np.sum(pred & gt, axis=(-2, -1), dtype=np.float64)
    union = np.sum(pred | gt, axis=(-2, -1), dtype=np.float64)
    return np.where(union == 0, 1.0, inter / np.maximum(union, 1.0))


def seg_to_boundary(seg: np.ndarray) -> np.ndarray:
    """(H, W) mask -> (H, W) bool one-pixel boundary map (DAVIS `seg2bmap` at equal size).

    A pixel is on the boundary when it differs from its right, lower or lower-right
    neighbour; the last row compares only rightwards, the last column only downwards, and
    the bottom-right corner is never a boundary pixel.
    """
    seg = np.asarray(seg, bool)
    right = np.zeros_like(seg)
    down = np.zeros_like(seg)
    diag = np.zeros_like(seg)
    right[:, :-1] = seg[:, 1:]
    down[:-1, :] = seg[1:, :]
    diag[:-1, :-1] = seg[1:, 1:]
    boundary = (seg ^ right) | (seg ^ down) | (seg ^ diag)
    boundary[-1, :] = seg[-1, :] ^ right[-1, :]
    boundary[:, -1] = seg[:, -1] ^ down[:, -1]
    boundary[-1, -1] = False
    return boundary


def disk(radius: int) -> np.ndarray:
    """(2r+1, 2r+1) bool disk: offsets with dx^2 + dy^2 <= r^2 (skimage's `disk`)."""
    yy, xx = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    return (yy * yy + xx * xx) <= radius * radius


def boundary_radius(shape: tuple[int, int], bound_th: float = BOUND_TH) -> int:
    """Matching tolerance in pixels: bound_th itself if >= 1, else ceil(bound_th * diagonal)."""
    if bound_th >= 1:
        return int(bound_th)
    return int(math.ceil(bound_th * math.hypot(*shape)))


def contour_accuracy(
    pred: np.ndarray,
    gt: np.ndarray,
    void: np.ndarray | None = None,
    bound_th: float = BOUND_TH,
) -> float:
    """F: boundary F-measure of two (H, W) boolean masks (see the module docstring)."""
    pred, gt = np.asarray(pred, bool), np.asarray(gt, bool)
    if pred.ndim != 2:
        raise ValueError(f"contour_accuracy takes (H, W) masks, got shape {pred.shape}")
    _check_pair(pred, gt, void)
    if void is not None:
        keep = ~np.asarray(void, bool)
        pred, gt = pred & keep, gt & keep
    radius = boundary_radius(pred.shape, bound_th)
    pred_b = seg_to_boundary(pred)
    gt_b = seg_to_boundary(gt)
    n_pred, n_gt = int(pred_b.sum()), int(gt_b.sum())
    if n_pred == 0 and n_gt == 0:
        return 1.0
    if n_pred == 0:
        precision, recall = 1.0, 0.0
    elif n_gt == 0:
        precision, recall = 0.0, 1.0
    else:
        # Dilated pixels lie within `radius` of a boundary pixel: work on that window only.
        rows = np.flatnonzero((pred_b | gt_b).any(axis=1))
        cols = np.flatnonzero((pred_b | gt_b).any(axis=0))
        window = (
            slice(max(rows[0] - radius, 0), rows[-1] + radius + 1),
            slice(max(cols[0] - radius, 0), cols[-1] + radius + 1),
        )
        pred_b, gt_b = pred_b[window], gt_b[window]
        structure = disk(radius)
        gt_dil = ndimage.binary_dilation(gt_b, structure=structure)
        pred_dil = ndimage.binary_dilation(pred_b, structure=structure)
        precision = float(np.sum(pred_b & gt_dil)) / n_pred
        recall = float(np.sum(gt_b & pred_dil)) / n_gt
    if precision + recall == 0:
        return 0.0
    return 2.0 * precision * recall / (precision + recall)


def contour_accuracy_frames(
    pred: np.ndarray,
    gt: np.ndarray,
    void: np.ndarray | None = None,
    bound_th: float = BOUND_TH,
) -> np.ndarray:
    """F for each frame of (T, H, W) masks -> (T,) float64 (void: (T, H, W) or None)."""
    pred, gt = np.asarray(pred, bool), np.asarray(gt, bool)
    _check_pair(pred, gt, void)
    return np.array(
        [
            contour_accuracy(pred[t], gt[t], None if void is None else void[t], bound_th)
            for t in range(gt.shape[0])
        ],
        np.float64,
    )
