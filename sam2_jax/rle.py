"""Run-length encodings of binary masks: uncompressed (the reference's) and COCO (pycocotools).

Uncompressed RLE: `{"size": [H, W], "counts": [n0, n1, ...]}` over the column-major
(Fortran) flattening of the mask, alternating background / foreground runs and starting with
a background run (0 when the first pixel is foreground). COCO RLE is pycocotools' compressed
string form of the same runs, JSON-serialisable (`counts` decoded to str).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

RLE = dict[str, Any]


def mask_to_rle(mask: np.ndarray) -> RLE:
    """(H, W) bool -> uncompressed RLE."""
    mask = np.asarray(mask, bool)
    if mask.ndim != 2:
        raise ValueError(f"mask must be (H, W), got shape {mask.shape}")
    h, w = mask.shape
    flat = mask.T.reshape(-1)  # column-major
    change = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    bounds = np.concatenate([[0], change, [h * w]])
    counts = np.diff(bounds).tolist()
    if flat.size and flat[0]:
        counts = [0, *counts]
    return {"size": [h, w], "counts": counts}


def rle_to_mask(rle: RLE) -> np.ndarray:
    """Uncompressed RLE -> (H, W) bool."""
    h, w = rle["size"]
    counts = np.asarray(rle["counts"], np.int64)
    if counts.sum() != h * w:
        raise ValueError(f"RLE counts sum to {counts.sum()}, expected {h} * {w} = {h * w}")
    values = np.arange(counts.size) % 2 == 1  # runs alternate background, foreground
    return np.repeat(values, counts).reshape(w, h).T


def area_from_rle(rle: RLE) -> int:
    """Foreground pixel count of an uncompressed RLE."""
    return int(sum(rle["counts"][1::2]))


def masks_to_coco_rle(masks: np.ndarray) -> list[RLE]:
    """(N, H, W) bool -> N COCO RLEs (pycocotools `encode`), counts as str."""
    masks = np.asarray(masks, bool)
    if masks.ndim != 3:
        raise ValueError(f"masks must be (N, H, W), got shape {masks.shape}")
    if masks.shape[0] == 0:
        return []
    fortran = np.asfortranarray(np.moveaxis(masks, 0, -1).astype(np.uint8))  # (H, W, N)
    encoded = mask_utils.encode(fortran)
    for rle in encoded:
        rle["counts"] = rle["counts"].decode("utf-8")
    return encoded


def coco_rle_to_mask(rle: RLE) -> np.ndarray:
    """COCO RLE (counts str or bytes) -> (H, W) bool, with pycocotools."""
    counts = rle["counts"]
    rle = {
        "size": list(rle["size"]),
        "counts": counts.encode() if isinstance(counts, str) else counts,
    }
    return mask_utils.decode(rle).astype(bool)
