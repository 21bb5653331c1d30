"""Writers for video segmentation results: per-object PNG masks, an overlay video, COCO RLE.

- PNGs: `<out>/<obj_id>/<frame:05d>.png`, 8-bit, 255 foreground.
- Overlay: every object in its own colour (`visualize.mask_color` of its position) over the
  frame; an mp4 (H.264, via PyAV) or an animated gif (PIL), chosen by the file suffix.
- COCO RLE: one JSON file, `{"video", "height", "width", "obj_ids", "frames": {frame:
  {obj_id: {"size": [H, W], "counts": str}}}}`, run-length encoded with pycocotools.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import secrets
from collections.abc import Hashable, Sequence

import numpy as np
from PIL import Image

from sam2_jax import output_files, validation, visualize


def save_frame_pngs(
    out_dir: str | os.PathLike, frame_idx: int, obj_ids: Sequence[Hashable], masks: np.ndarray
) -> list[pathlib.Path]:
    """masks (N, H, W) or (N, 1, H, W), bool or logits (> 0) -> one PNG per object."""
    masks = _binary(masks)
    paths = []
    for obj_id, mask in zip(obj_ids, masks, strict=True):
        folder = pathlib.Path(out_dir) / str(validation.object_id(obj_id))  # never outside
        path = folder / f"{frame_idx:05d}.png"
        output_files.save_image(visualize.mask_to_image(mask), path)
        paths.append(path)
    return paths


def _binary(masks: np.ndarray) -> np.ndarray:
    """(N, 1, H, W) or (N, H, W) logits / bool -> (N, H, W) bool."""
    masks = np.asarray(masks)
    if masks.ndim == 4:
        masks = masks[:, 0]
    if masks.ndim != 3:
        raise ValueError(f"masks must be (N, H, W) or (N, 1, H, W), got {masks.shape}")
    return masks if masks.dtype == bool else masks > 0


def overlay_frame(
    frame: np.ndarray, masks: np.ndarray, color_index: Sequence[int] | None = None
) -> np.ndarray:
    """(H, W, 3) uint8 frame + (N, [1,] H, W) masks -> (H, W, 3) uint8 overlay."""
    masks = _binary(masks)
    index = range(len(masks)) if color_index is None else color_index
    colors = [visualize.mask_color(i) for i in index]
    return np.asarray(visualize.overlay_masks(frame, masks, colors=colors))


class OverlayWriter:
    """Writes overlay frames to an .mp4 (H.264) or .gif, one `write` per frame.

    The file is written under a temporary name and renamed to `path` by `close`; used as a
    context manager, a block that raises leaves no file (`discard`).
    """

    def __init__(self, path: str | os.PathLike, fps: float = 10.0):
        self.path = pathlib.Path(path)
        self.fps = fps
        suffix = self.path.suffix.lower()
        if suffix not in (".mp4", ".gif"):
            raise ValueError(f"overlay video must be .mp4 or .gif, got {str(self.path)!r}")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        token = f"{os.getpid()}-{secrets.token_hex(4)}"
        self._temporary = self.path.with_name(f".{self.path.stem}.{token}.partial{suffix}")
        self._gif: list[Image.Image] | None = [] if suffix == ".gif" else None
        self._container = self._stream = None
        self.frames = 0

    def write(self, rgb: np.ndarray) -> None:
        """rgb: (H, W, 3) uint8."""
        rgb = np.asarray(rgb, np.uint8)
        if self._gif is not None:
            self._gif.append(Image.fromarray(rgb))
        else:
            import av

            if self._container is None:
                h, w = rgb.shape[:2]
                self._container = av.open(str(self._temporary), mode="w")
                self._stream = self._container.add_stream("libx264", rate=round(self.fps))
                # yuv420p needs even sizes: pad by one pixel where needed
                self._stream.width, self._stream.height = w + w % 2, h + h % 2
                self._stream.pix_fmt = "yuv420p"
            h, w = rgb.shape[:2]
            if (w % 2) or (h % 2):
                rgb = np.pad(rgb, ((0, h % 2), (0, w % 2), (0, 0)), mode="edge")
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            for packet in self._stream.encode(frame):
                self._container.mux(packet)
        self.frames += 1

    def close(self) -> None:
        """Finishes the file and renames it into place."""
        if self._gif is not None:
            if self._gif:
                self._gif[0].save(
                    self._temporary,
                    save_all=True,
                    append_images=self._gif[1:],
                    duration=round(1000 / self.fps),
                    loop=0,
                )
            self._gif = []
        elif self._container is not None:
            for packet in self._stream.encode():
                self._container.mux(packet)
            self._container.close()
            self._container = None
        if self._temporary.exists():
            os.replace(self._temporary, self.path)

    def discard(self) -> None:
        """Drops what was written: no file is left."""
        if self._container is not None:
            with contextlib.suppress(Exception):
                self._container.close()
            self._container = None
        self._gif = []
        self._temporary.unlink(missing_ok=True)

    def __enter__(self) -> OverlayWriter:
        return self

    def __exit__(self, exc_type, *exc) -> None:
        if exc_type is None:
            self.close()
        else:
            self.discard()


def encode_rle(mask: np.ndarray) -> dict:
    """(H, W) bool -> COCO RLE {"size": [H, W], "counts": str} (pycocotools)."""
    from pycocotools import mask as mask_utils

    rle = mask_utils.encode(np.asfortranarray(np.asarray(mask, np.uint8)))
    return {"size": [int(s) for s in rle["size"]], "counts": rle["counts"].decode("ascii")}


def decode_rle(rle: dict) -> np.ndarray:
    """COCO RLE -> (H, W) bool."""
    from pycocotools import mask as mask_utils

    return mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode("ascii")}) > 0


class RLEWriter:
    """Collects per-frame masks and writes them as one COCO RLE JSON file."""

    def __init__(self, video: str, height: int, width: int):
        self.data = {"video": video, "height": height, "width": width, "obj_ids": [], "frames": {}}

    def add(self, frame_idx: int, obj_ids: Sequence[Hashable], masks: np.ndarray) -> None:
        masks = _binary(masks)
        for obj_id in obj_ids:
            if obj_id not in self.data["obj_ids"]:
                self.data["obj_ids"].append(obj_id)
        self.data["frames"][str(frame_idx)] = {
            str(obj_id): encode_rle(m) for obj_id, m in zip(obj_ids, masks, strict=True)
        }

    def save(self, path: str | os.PathLike) -> None:
        frames = dict(sorted(self.data["frames"].items(), key=lambda kv: int(kv[0])))
        output_files.write_text(path, json.dumps({**self.data, "frames": frames}) + "\n")


def load_rle_json(path: str | os.PathLike) -> dict[int, dict[str, np.ndarray]]:
    """A file from `RLEWriter.save` -> {frame: {obj_id (str): (H, W) bool}}."""
    data = json.loads(pathlib.Path(path).read_text())
    return {
        int(f): {obj: decode_rle(rle) for obj, rle in objs.items()}
        for f, objs in data["frames"].items()
    }
