"""Writes the bundled moving-shapes clip: JPEG frames, DAVIS-style annotations, click prompts.

    python -m sam2_jax.evaluation.sample_clip sam2_jax/assets/shapes_clip

The clip is a held-out video (the generator's "test" stream, never used in training). Objects
visible on frame 0 get one centre click each (prompts.json, the `track-video` format) and
are annotated in `annotations/<frame>.png` (palettised, object id = palette index); objects
that are not clicked are left out of the annotations.
"""

from __future__ import annotations

import argparse
import json
import pathlib

import numpy as np
from PIL import Image

from sam2_jax.evaluation.synthetic import TEST_SEED, center_click, clicked_objects

# The clip is the first test video from FIRST_INDEX on with >= 2 objects clickable on frame 0
# that stay visible (>= min_area pixels) on every frame.
FIRST_INDEX = 1000
PALETTE = [0, 0, 0, 230, 25, 75, 60, 180, 75, 255, 225, 25, 0, 130, 200]


def write_sample_clip(
    out_dir: str | pathlib.Path, *, num_frames: int = 24, size: int = 128, min_area: int = 64
) -> dict:
    """Writes frames/, annotations/ and prompts.json under out_dir; returns the prompts."""
    from sam2_jax.train.data.synthetic import generate_video

    index = FIRST_INDEX
    while True:
        video = generate_video(TEST_SEED, index, num_frames=num_frames, height=size, width=size)
        objects = clicked_objects(video.masks, min_area)
        areas = video.masks[:, objects].sum(axis=(2, 3))  # (T, O')
        if len(objects) >= 2 and (areas >= min_area).all():
            break
        index += 1
    out = pathlib.Path(out_dir)
    (out / "frames").mkdir(parents=True, exist_ok=True)
    (out / "annotations").mkdir(parents=True, exist_ok=True)
    for t, frame in enumerate(video.frames):
        Image.fromarray(frame).save(out / "frames" / f"{t:05d}.jpg", quality=95, subsampling=0)
        labels = np.zeros(frame.shape[:2], np.uint8)
        for o in objects:
            labels[video.masks[t, o]] = o + 1
        png = Image.fromarray(labels, mode="P")
        png.putpalette(PALETTE)
        png.save(out / "annotations" / f"{t:05d}.png")
    prompts = {
        "source": f"moving shapes, test stream seed {TEST_SEED}, video {index}, "
        f"{num_frames} frames of {size}x{size}",
        "objects": [
            {
                "id": o + 1,
                "prompts": [
                    {
                        "frame": 0,
                        "points": [center_click(video.masks[0, o]).tolist()],
                        "labels": [1],
                    }
                ],
            }
            for o in objects
        ],
    }
    (out / "prompts.json").write_text(json.dumps(prompts, indent=1) + "\n")
    return prompts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out_dir")
    args = parser.parse_args()
    print(json.dumps(write_sample_clip(args.out_dir), indent=1))


if __name__ == "__main__":
    main()
