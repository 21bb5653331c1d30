"""Moving-shapes records made on demand: a random-access source of as many videos as asked
for, with nothing prepared or stored.

`MovingShapesSource(num_videos)[i]` is the record the `MovingShapes` tfds builder writes for
video `i` of the same split (same seed stream, same encoding; tfds stores the videos in
another order), so a prepared 1,000-video split holds the first 1,000 videos of this source.
Long from-scratch runs use it to draw fresh videos instead of repeating a prepared set:
preparing a large split is bounded by disk and, past ~1 GB, needs TensorFlow
(`builders.prepare` says so). Each record
costs one `generate_video` call (~10-20 ms for 16 frames at 128 px on one core) plus PNG
encoding; grain's worker processes (`DataConfig.num_workers`) spread that over cores.
"""

from __future__ import annotations

import zlib

import numpy as np

from sam2_jax.train.data import records, synthetic


def split_seed(split: str, seed: int = 0) -> int:
    """The generator seed of a split's stream (train and test never share videos)."""
    return zlib.crc32(split.encode()) ^ seed


def moving_shapes_record(
    split: str,
    index: int,
    *,
    seed: int = 0,
    num_frames: int = 24,
    height: int = 128,
    width: int = 128,
    num_objects: int = 3,
    occluder_prob: float = 0.0,
) -> dict[str, object]:
    """The record of video `index` of `split`: frames as PNG, masks as COCO RLE."""
    video = synthetic.generate_video(
        split_seed(split, seed),
        index,
        num_frames=num_frames,
        height=height,
        width=width,
        num_objects=num_objects,
        occluder_prob=occluder_prob,
    )
    name = f"{split}_{index:06d}"
    t, o = video.masks.shape[:2]
    frames = [records.encode_image(f, fmt="PNG") for f in video.frames]
    return records.make_record(
        name,
        frames,
        np.arange(t),
        np.arange(1, o + 1),
        records.encode_masks(video.masks),
        height,
        width,
    )


class MovingShapesSource:
    """Random access to `num_videos` synthetic videos of one split (`len`, `source[i]`).

    Picklable (grain copies it into its worker processes) and stateless: `source[i]` is a
    pure function of (split, seed, i) and the generator settings.
    """

    def __init__(
        self,
        num_videos: int,
        *,
        split: str = "train",
        seed: int = 0,
        num_frames: int = 24,
        height: int = 128,
        width: int = 128,
        num_objects: int = 3,
        occluder_prob: float = 0.0,
    ):
        if num_videos < 1:
            raise ValueError(f"num_videos must be >= 1, got {num_videos}")
        self.num_videos = num_videos
        self.split = split
        self.generator = dict(
            seed=seed,
            num_frames=num_frames,
            height=height,
            width=width,
            num_objects=num_objects,
            occluder_prob=occluder_prob,
        )

    def __len__(self) -> int:
        return self.num_videos

    def __getitem__(self, index: int) -> dict[str, object]:
        index = int(index)
        if not 0 <= index < self.num_videos:
            raise IndexError(f"video {index} out of range: the source has {self.num_videos}")
        return moving_shapes_record(self.split, index, **self.generator)

    def __repr__(self) -> str:
        return f"MovingShapesSource({self.num_videos}, split={self.split!r}, {self.generator})"
