"""Prompts as fixed-shape arrays, the one packer for every path (numpy only).

Clicks and boxes become padded point sets: a box is two points labelled 2 / 3 placed before
the clicks (as the reference concatenates them), padding entries are labelled -1 and
`num_points` says how many are real, so a prompt of any click count fits a program compiled
for a bucket of them (`sam2_jax.buckets`). The image predictor, the video predictor, the
stream tracker, the offline tracker and the exported predictors all pack prompts here.

Shapes: B objects (or prompt sets), P padded points, S model input size.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

PAD_LABEL = -1  # label of a padding point (the decoder never attends to it)

Points = tuple[np.ndarray, np.ndarray]  # (n, 2) float32 (x, y) model-input pixels, (n,) labels


class FramePrompts(NamedTuple):
    """The prompts of one frame for B objects, padded to a fixed number of points.

    Attributes:
      point_coords: (B, P, 2) float32 (x, y) in model-input pixels; a box is two points with
        labels 2 / 3 placed before the clicks, as in the reference.
      point_labels: (B, P) int32 (1 positive, 0 negative, 2 / 3 box corners, -1 padding).
      num_points: (B,) int32; the first num_points entries are real, the rest padding.
      mask: (B, S, S) bool mask prompt at the model input size, or None for no mask prompts.
      has_mask: (B,) bool; an object with a mask prompt ignores its points.
    """

    point_coords: np.ndarray
    point_labels: np.ndarray
    num_points: np.ndarray
    mask: np.ndarray | None
    has_mask: np.ndarray

    @property
    def has_prompt(self):
        """(B,) bool."""
        return (self.num_points > 0) | self.has_mask


def box_and_clicks(
    box: np.ndarray | None, points: np.ndarray | None, labels: np.ndarray | None
) -> Points:
    """One object's box (4,) x0, y0, x1, y1 and clicks (n, 2) / (n,) as one point set, the
    box corners first: ((m, 2) float32, (m,) int32)."""
    coords = [np.zeros((0, 2), np.float32)]
    out_labels = [np.zeros((0,), np.int32)]
    if box is not None:
        coords.append(np.asarray(box, np.float32).reshape(2, 2))
        out_labels.append(np.array([2, 3], np.int32))
    if points is not None:
        coords.append(np.asarray(points, np.float32).reshape(-1, 2))
        out_labels.append(np.asarray(labels, np.int32).reshape(-1))
    return np.concatenate(coords), np.concatenate(out_labels)


def pad_points(
    point_sets: Sequence[Points | None], max_points: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """B point sets (None: no points) -> (B, P, 2) float32, (B, P) int32, (B,) int32 counts.

    Raises:
      ValueError: a set has more than `max_points` points.
    """
    b = len(point_sets)
    coords = np.zeros((b, max_points, 2), np.float32)
    labels = np.full((b, max_points), PAD_LABEL, np.int32)
    count = np.zeros((b,), np.int32)
    for i, points in enumerate(point_sets):
        if points is None:
            continue
        n = len(points[0])
        if n > max_points:
            raise ValueError(
                f"{n} prompt points (a box counts as 2) but at most {max_points} fit here"
            )
        coords[i, :n], labels[i, :n], count[i] = points[0], points[1], n
    return coords, labels, count


def pack_frame_prompts(
    point_sets: Sequence[Points | None],
    masks: Sequence[np.ndarray | None] | None,
    max_points: int,
    image_size: int | None,
) -> FramePrompts:
    """The `FramePrompts` of B objects: per object a point set, a (S, S) mask or neither.

    An object with a mask ignores its points. image_size: with a value, the mask field is a
    (B, S, S) array (all False for objects without a mask); None leaves it out (then no
    object may have a mask).
    """
    coords, labels, count = pad_points(point_sets, max_points)
    b = len(point_sets)
    masks = [None] * b if masks is None else list(masks)
    if len(masks) != b:
        raise ValueError(f"{len(masks)} masks for {b} point sets")
    has_mask = np.array([m is not None for m in masks], bool)
    if image_size is None:
        if has_mask.any():
            raise ValueError("a mask prompt needs image_size")
        return FramePrompts(coords, labels, count, None, has_mask)
    mask = np.zeros((b, image_size, image_size), bool)
    for i, m in enumerate(masks):
        if m is not None:
            mask[i] = np.asarray(m, bool)
    count = np.where(has_mask, 0, count).astype(np.int32)
    return FramePrompts(coords, labels, count, mask, has_mask)


def no_prompts(num_objects: int, max_points: int = 1, image_size: int | None = None):
    """FramePrompts with nothing in them (a plain tracking frame); with `image_size` the
    mask field is an all-False (B, S, S) array instead of None."""
    return pack_frame_prompts([None] * num_objects, None, max_points, image_size)
