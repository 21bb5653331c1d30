"""The record every video dataset builder writes, and its decoding.

One record per video (tfds features, all readable without TensorFlow):
- "video_name": text.
- "frames": (T,) encoded images (JPEG, or PNG for synthetic data), one per annotated frame,
  kept as encoded bytes so that a clip decodes only the frames it samples.
- "frame_ids": (T,) int32 frame numbers in the source video.
- "object_ids": (O,) int32 object ids (palette index, SA-V masklet index, ...).
- "masks": (T * O,) COCO RLE `counts` strings (pycocotools' compressed form) of each object's
  mask in each frame, frame-major, at the frame's full (height, width); an absent object has an
  empty mask. (Flat because tfds stores string tensors with one unknown dimension only;
  `mask_table` gives the (T, O) view.)
- "height", "width": int32 frame size.
"""

from __future__ import annotations

import io

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image
from pycocotools import mask as mask_utils


def video_features() -> tfds.features.FeaturesDict:
    """The tfds feature spec of one video record (module docstring)."""
    return tfds.features.FeaturesDict(
        {
            "video_name": tfds.features.Text(),
            "frames": tfds.features.Tensor(shape=(None,), dtype=np.object_),
            "frame_ids": tfds.features.Tensor(shape=(None,), dtype=np.int32),
            "object_ids": tfds.features.Tensor(shape=(None,), dtype=np.int32),
            "masks": tfds.features.Tensor(shape=(None,), dtype=np.object_),
            "height": tfds.features.Scalar(dtype=np.int32),
            "width": tfds.features.Scalar(dtype=np.int32),
        }
    )


def encode_image(rgb: np.ndarray, fmt: str = "JPEG", quality: int = 95) -> bytes:
    """(H, W, 3) uint8 -> encoded bytes."""
    buf = io.BytesIO()
    Image.fromarray(np.asarray(rgb, np.uint8)).save(buf, format=fmt, quality=quality)
    return buf.getvalue()


def decode_image(data: bytes) -> np.ndarray:
    """Encoded bytes -> (H, W, 3) uint8 RGB."""
    with Image.open(io.BytesIO(data)) as img:
        return np.asarray(img.convert("RGB"))


def encode_masks(masks: np.ndarray) -> np.ndarray:
    """(T, O, H, W) bool -> (T, O) object array of RLE counts bytes."""
    masks = np.asarray(masks, bool)
    t, o = masks.shape[:2]
    out = np.empty((t, o), dtype=object)
    for i in range(t):
        if o == 0:
            continue
        # pycocotools wants (H, W, N) Fortran-ordered uint8
        rles = mask_utils.encode(np.asfortranarray(masks[i].transpose(1, 2, 0).astype(np.uint8)))
        for j, rle in enumerate(rles):
            out[i, j] = rle["counts"]
    return out


def decode_masks(counts: np.ndarray, height: int, width: int) -> np.ndarray:
    """(K, O) RLE counts bytes (e.g. the sampled frames' rows) -> (K, O, H, W) bool."""
    k, o = counts.shape
    out = np.zeros((k, o, height, width), bool)
    for i in range(k):
        if o == 0:
            continue
        rles = [{"size": [height, width], "counts": c} for c in counts[i]]
        out[i] = mask_utils.decode(rles).transpose(2, 0, 1).astype(bool)  # (H,W,O) -> (O,H,W)
    return out


def mask_table(record: dict[str, object]) -> np.ndarray:
    """A record's (T * O,) RLE counts -> the (T, O) table."""
    return np.asarray(record["masks"], dtype=object).reshape(
        len(record["frames"]), len(record["object_ids"])
    )


def make_record(
    name: str,
    frames: list[bytes],
    frame_ids: np.ndarray,
    object_ids: np.ndarray,
    masks_rle: np.ndarray,
    height: int,
    width: int,
) -> dict[str, object]:
    """Checks shapes and assembles one record dict for a builder to yield."""
    frames_arr = np.empty((len(frames),), dtype=object)
    frames_arr[:] = frames
    masks_rle = np.asarray(masks_rle, dtype=object)
    if masks_rle.shape != (len(frames), len(object_ids)):
        raise ValueError(
            f"{name}: masks table {masks_rle.shape} != (frames {len(frames)}, "
            f"objects {len(object_ids)})"
        )
    return {
        "video_name": name,
        "frames": frames_arr,
        "frame_ids": np.asarray(frame_ids, np.int32),
        "object_ids": np.asarray(object_ids, np.int32),
        "masks": masks_rle.reshape(-1),  # (T * O,) frame-major
        "height": np.int32(height),
        "width": np.int32(width),
    }
