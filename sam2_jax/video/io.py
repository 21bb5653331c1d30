"""Host-side video input/output in the reference video predictor's conventions.

- Frames: a folder of JPEGs sorted by integer stem; each frame PIL-resized to S x S with
  PIL's bicubic filter (aspect ratio not kept), /255, ImageNet mean/std (reference
  `load_video_frames_from_jpg_images`). Loaded on demand, so a video streams in chunks.
- Prompts: click / box coordinates in video pixels -> model-input pixels (`x / W * S`);
  masks at video resolution -> S x S by antialiased bilinear resizing and `>= 0.5`.
- Outputs: low-res logits -> video resolution by bilinear upsampling (align_corners=False).
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from sam2_jax.modeling.interpolation import downsample_bilinear_antialias, resize_bilinear_banded

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)
_JPEG_SUFFIXES = (".jpg", ".jpeg", ".JPG", ".JPEG")
_FRAME_NUMBER = re.compile(r"[0-9]+")


def list_frames(folder: str | os.PathLike, suffixes: Sequence[str] = _JPEG_SUFFIXES) -> list[str]:
    """Frame paths of a video folder (JPEGs, or the files ending in `suffixes`: the PNG masks
    of `sam2-jax eval`), sorted by the frame number each file is named by.

    Raises:
      ValueError: a frame file not named by a number (e.g. "00000 (copy).jpg"), or two files
        of the same number ("1.jpg" and "00001.jpg"); the message names the files.
    """
    numbered: dict[int, str] = {}
    for name in sorted(os.listdir(folder)):
        if not name.endswith(tuple(suffixes)):
            continue
        stem = os.path.splitext(name)[0]
        if not _FRAME_NUMBER.fullmatch(stem):
            example = suffixes[0]
            raise ValueError(
                f"{os.fspath(folder)}: frame file {name!r} is not named by its frame number "
                f"(00000{example}, 00001{example}, ...): rename it or move it out of the folder"
            )
        number = int(stem)
        if number in numbered:
            raise ValueError(
                f"{os.fspath(folder)}: frame files {numbered[number]!r} and {name!r} have the "
                f"same number {number}"
            )
        numbered[number] = name
    return [os.path.join(folder, numbered[n]) for n in sorted(numbered)]


def load_frames(paths: Sequence[str], image_size: int) -> np.ndarray:
    """Frames -> (n, S, S, 3) float32 normalized model inputs."""
    from PIL import Image

    out = np.empty((len(paths), image_size, image_size, 3), np.float32)
    for i, path in enumerate(paths):
        with Image.open(path) as img:
            rgb = img.convert("RGB").resize((image_size, image_size), Image.BICUBIC)
        out[i] = (np.asarray(rgb, np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD
    return out


def video_size(path: str) -> tuple[int, int]:
    """(height, width) of a frame file."""
    from PIL import Image

    with Image.open(path) as img:
        return img.height, img.width


def points_to_model(points: np.ndarray, video_hw: tuple[int, int], image_size: int) -> np.ndarray:
    """(..., 2) (x, y) in video pixels -> model-input pixels, in float32 as the reference."""
    h, w = video_hw
    points = np.asarray(points, np.float32) / np.array([w, h], np.float32)
    return points * np.float32(image_size)


def mask_to_model(mask: np.ndarray, image_size: int) -> np.ndarray:
    """(H, W) bool mask at video resolution -> (S, S) bool at the model input size."""
    mask = np.asarray(mask, np.float32)
    if mask.shape == (image_size, image_size):
        return mask > 0
    resized = downsample_bilinear_antialias(jnp.asarray(mask)[None, ..., None], (image_size,) * 2)
    return np.asarray(resized[0, ..., 0] >= 0.5)


@functools.partial(jax.jit, static_argnames="video_hw")
def to_video_resolution(low_res: jax.Array, video_hw: tuple[int, int]) -> jax.Array:
    """(B, h, w) low-res logits -> (B, H, W) logits (bilinear, align_corners=False)."""
    return resize_bilinear_banded(low_res[..., None], video_hw)[..., 0]
