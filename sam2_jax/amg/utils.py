"""Host-side helpers of automatic mask generation: point grids, crops, boxes and NMS.

Everything here is small numpy work on (N, 4) boxes or (P, 2) points; the per-pixel work
(upsampling, stability scores, tight boxes) is compiled, in `sam2_jax.amg.mask_scoring`.
Boxes are XYXY with *inclusive* max coordinates (the last foreground column / row), as the
reference's `batched_mask_to_box` produces them; an empty mask has the box (0, 0, 0, 0).
"""

from __future__ import annotations

import math

import numpy as np


def build_point_grid(n_per_side: int) -> np.ndarray:
    """(n*n, 2) float64 x, y in [0, 1]: cell centres (k + 0.5) / n, x varying fastest."""
    if n_per_side < 1:
        raise ValueError(f"points per side must be >= 1, got {n_per_side}")
    offset = 1 / (2 * n_per_side)
    side = np.linspace(offset, 1 - offset, n_per_side)
    xs, ys = np.meshgrid(side, side)  # (n, n) each, x along columns
    return np.stack([xs, ys], axis=-1).reshape(-1, 2)


def build_all_layer_point_grids(
    n_per_side: int, n_layers: int, scale_per_layer: int
) -> list[np.ndarray]:
    """One grid per crop layer; layer i has int(n_per_side / scale_per_layer**i) per side."""
    return [build_point_grid(int(n_per_side / (scale_per_layer**i))) for i in range(n_layers + 1)]


def generate_crop_boxes(
    im_size: tuple[int, int], n_layers: int, overlap_ratio: float
) -> tuple[list[list[int]], list[int]]:
    """Crop boxes (XYXY, exclusive max) and their layer indices.

    Layer 0 is the whole image; layer i >= 1 has (2**i)**2 overlapping crops, x-major order
    (for each x0, every y0), as the reference orders them.
    """
    im_h, im_w = im_size
    short_side = min(im_h, im_w)
    boxes, layers = [[0, 0, im_w, im_h]], [0]

    def crop_len(orig_len: int, n_crops: int, overlap: int) -> int:
        return int(math.ceil((overlap * (n_crops - 1) + orig_len) / n_crops))

    for layer in range(n_layers):
        n_crops = 2 ** (layer + 1)
        overlap = int(overlap_ratio * short_side * (2 / n_crops))
        crop_w = crop_len(im_w, n_crops, overlap)
        crop_h = crop_len(im_h, n_crops, overlap)
        x0s = [int((crop_w - overlap) * i) for i in range(n_crops)]
        y0s = [int((crop_h - overlap) * i) for i in range(n_crops)]
        for x0 in x0s:
            for y0 in y0s:
                boxes.append([x0, y0, min(x0 + crop_w, im_w), min(y0 + crop_h, im_h)])
                layers.append(layer + 1)
    return boxes, layers


def is_box_near_crop_edge(
    boxes: np.ndarray, crop_box: list[int], orig_box: list[int], atol: float = 20.0
) -> np.ndarray:
    """(N, 4) crop-frame boxes -> (N,) bool: a side within `atol` px of a crop edge that is
    not also an image edge (such masks are likely cut off by the crop)."""
    offset = np.array([crop_box[0], crop_box[1]] * 2, np.float32)
    boxes = boxes.astype(np.float32) + offset
    near_crop = np.abs(boxes - np.asarray(crop_box, np.float32)) <= atol
    near_image = np.abs(boxes - np.asarray(orig_box, np.float32)) <= atol
    return (near_crop & ~near_image).any(axis=1)


def box_xyxy_to_xywh(boxes: np.ndarray) -> np.ndarray:
    """(..., 4) XYXY -> XYWH (width = x1 - x0 with the inclusive x1, as the reference)."""
    boxes = np.array(boxes, copy=True)
    boxes[..., 2:] -= boxes[..., :2]
    return boxes


def box_area(boxes: np.ndarray) -> np.ndarray:
    """(N, 4) XYXY -> (N,) (x1 - x0) * (y1 - y0)."""
    return (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])


def nms(boxes: np.ndarray, scores: np.ndarray, iou_threshold: float) -> np.ndarray:
    """Greedy non-maximum suppression; torchvision's `nms` semantics, in float32.

    Boxes are visited by descending score (ties in input order); a box is dropped when its
    IoU with a kept, higher-ranked box is > iou_threshold. IoU = inter / (area_a + area_b -
    inter) with area (x1 - x0) * (y1 - y0); a NaN IoU (two empty boxes) suppresses nothing.

    Args:
      boxes: (N, 4) XYXY. scores: (N,).

    Returns:
      (K,) int64 indices of the kept boxes, by descending score.
    """
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    scores = np.asarray(scores, np.float32).reshape(-1)
    if boxes.shape[0] != scores.shape[0]:
        raise ValueError(f"{boxes.shape[0]} boxes but {scores.shape[0]} scores")
    order = np.argsort(-scores, kind="stable")
    if order.size == 0:
        return order.astype(np.int64)
    b = boxes[order]
    area = box_area(b)
    # (N, N) pairwise IoU in score order; suppression runs over its rows.
    lt = np.maximum(b[:, None, :2], b[None, :, :2])
    rb = np.minimum(b[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt, 0, None)
    inter = wh[..., 0] * wh[..., 1]
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = inter / (area[:, None] + area[None, :] - inter)  # float32, as torchvision
    overlaps = iou.astype(np.float64) > float(iou_threshold)  # compared in double, as torchvision
    suppressed = np.zeros(len(b), bool)
    keep = []
    for i in range(len(b)):
        if suppressed[i]:
            continue
        keep.append(i)
        suppressed |= overlaps[i]
    return order[np.asarray(keep, np.int64)]
