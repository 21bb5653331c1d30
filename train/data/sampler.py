"""Cutting a training clip from a video record (the reference's `RandomUniformSampler` and
`VOSDataset.construct`), then augmenting and padding it to the fixed batch shapes.

A clip is `num_frames` consecutive annotated frames from a uniformly drawn start, reversed in
time with probability `reverse_time_prob`; its objects are up to `max_objects` of those visible
in the clip's first frame, in random order. Starts are tried in random order until one has a
visible object (the reference retries up to 1000 random starts, then fails the video); when no
start has one, the clip keeps its frames and has no valid object (it adds nothing to the loss).
"""

from __future__ import annotations

import numpy as np
from pycocotools import mask as mask_utils

from sam2_jax.train.data import augment, records


def choose_clip(
    record: dict[str, object],
    rng: np.random.Generator,
    num_frames: int,
    max_objects: int,
    reverse_time_prob: float = 0.0,
) -> tuple[np.ndarray, np.ndarray]:
    """-> (num_frames,) frame positions in the record, (K <= max_objects,) object columns.

    Raises:
      ValueError: the video has fewer annotated frames than `num_frames`.
    """
    table = records.mask_table(record)  # (T, O) RLE counts
    total = table.shape[0]
    if total < num_frames:
        name = record["video_name"]
        raise ValueError(
            f"video {name!r} has {total} annotated frames, fewer than num_frames={num_frames} "
            "(prepare the dataset with min_frames >= num_frames)"
        )
    h, w = int(record["height"]), int(record["width"])
    for start in rng.permutation(total - num_frames + 1):
        positions = np.arange(start, start + num_frames)
        if rng.random() < reverse_time_prob:
            positions = positions[::-1]
        first = [{"size": [h, w], "counts": c} for c in table[positions[0]]]
        visible = np.flatnonzero(mask_utils.area(first) > 0) if first else np.zeros(0, int)
        if visible.size:
            chosen = rng.permutation(visible)[:max_objects]
            return positions, chosen
    return np.arange(num_frames), np.zeros(0, int)


def make_example(
    record: dict[str, object],
    rng: np.random.Generator,
    *,
    image_size: int,
    num_frames: int,
    max_objects: int,
    reverse_time_prob: float = 0.0,
    augment_cfg: augment.AugmentConfig | None = None,
) -> dict[str, np.ndarray]:
    """One training example from one video record.

    Returns:
      {"frames": (T, S, S, 3) uint8, "masks": (T, O, S, S) bool, "object_valid": (O,) bool}
      with T = num_frames, O = max_objects, S = image_size; padding objects are all-False.
      Without `augment_cfg` frames and masks are only resized.
    """
    positions, objects = choose_clip(record, rng, num_frames, max_objects, reverse_time_prob)
    h, w = int(record["height"]), int(record["width"])
    frames = np.stack([records.decode_image(record["frames"][p]) for p in positions])
    if frames.shape[1:3] != (h, w):
        raise ValueError(
            f"video {record['video_name']!r}: frames are {frames.shape[1:3]}, record says {(h, w)}"
        )
    table = records.mask_table(record)[positions][:, objects]  # (T, K)
    masks = records.decode_masks(table, h, w)  # (T, K, H, W)
    if augment_cfg is not None:
        frames, masks = augment.augment_clip(frames, masks, rng, augment_cfg, image_size)
    else:
        frames, masks = augment.resize_square(frames, masks, image_size)
    k = masks.shape[1]
    out_masks = np.zeros((num_frames, max_objects, image_size, image_size), bool)
    out_masks[:, :k] = masks
    valid = np.zeros((max_objects,), bool)
    valid[:k] = True
    return {"frames": frames, "masks": out_masks, "object_valid": valid}
