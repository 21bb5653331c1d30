"""The one validation layer for inputs at the package's boundaries.

The image predictor, the video predictor, the `track-video` prompts file and the CLIs all
check clicks, boxes, masks, frame indices and object ids here, so one input gets one rule and
one message wherever it comes in. Every function raises `ValueError` (`TypeError` for a value
of the wrong type, `IndexError` for a frame out of range) whose message starts with the
caller's `context` (the file, the object, the prompt, the frame) and names the argument.

Coordinates are (x, y). `image_hw` is the (height, width) they must lie in; `pixels=False`
means they are already normalised to [0, 1]; `image_hw=None` skips the range check (a
prompts file read before its video is known).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from sam2_jax.prompts import box_and_clicks

# Object ids name output folders (masks/<obj_id>/), so a string id must be a plain name.
SAFE_NAME = re.compile(r"[A-Za-z0-9_-]+")
LABEL_MEANINGS = {1: "1 (positive)", 0: "0 (negative)", 2: "2/3 (box corners)", -1: "-1 (padding)"}
CLICK_LABELS = (0, 1)


def _lead(context: str) -> str:
    return f"{context}: " if context else ""


def _describe_labels(allowed: Sequence[int]) -> str:
    words = [text for value, text in LABEL_MEANINGS.items() if value in allowed]
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " or " + words[-1]


def integer(value: Any, name: str, *, context: str = "") -> int:
    """An int (numpy integers too; not a bool, not a float) -> int."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(
            f"{_lead(context)}{name} must be an int, got {value!r} ({type(value).__name__})"
        )
    return int(value)


def frame_index(
    frame_idx: Any, num_frames: int | None, *, name: str = "frame_idx", context: str = ""
) -> int:
    """A frame index of a video of `num_frames` frames (None: only the type is checked)."""
    frame = integer(frame_idx, name, context=context)
    if num_frames is not None and not 0 <= frame < num_frames:
        raise IndexError(
            f"{_lead(context)}{name} {frame} out of range: the video has {num_frames} frames "
            f"(0 to {num_frames - 1})"
        )
    if frame < 0:
        raise IndexError(f"{_lead(context)}{name} {frame} out of range: frames count from 0")
    return frame


def object_id(obj_id: Any, *, name: str = "obj_id", context: str = "") -> int | str:
    """An object id: an int, or a name of letters, digits, '_' and '-' (ids name the output
    folders masks/<obj_id>/, so '../x' or 'a b' are refused)."""
    if isinstance(obj_id, int | np.integer) and not isinstance(obj_id, bool):
        return int(obj_id)
    rule = "an int or a name of letters, digits, '_' and '-' (it names the output folder)"
    if not isinstance(obj_id, str):
        raise TypeError(f"{_lead(context)}{name} must be {rule}, got {obj_id!r}")
    if not SAFE_NAME.fullmatch(obj_id):
        raise ValueError(f"{_lead(context)}{name} must be {rule}, got {obj_id!r}")
    return obj_id


def numbers(value: Any, name: str, *, context: str = "") -> np.ndarray:
    """An array of finite real numbers -> float32 (bools, strings and NaN / inf refused)."""
    try:
        array = np.asarray(value)
    except ValueError as err:  # ragged nested lists
        raise ValueError(
            f"{_lead(context)}{name} must be an array of numbers, got {value!r}"
        ) from err
    if array.dtype.kind not in "iuf" or array.dtype == object:
        raise ValueError(f"{_lead(context)}{name} must be numbers, got {value!r}")
    bad = ~np.isfinite(array.astype(np.float64))
    if bad.any():
        where = [int(i) for i in np.argwhere(bad)[0]]
        raise ValueError(
            f"{_lead(context)}{name} must be finite numbers, got {array[tuple(where)]} at "
            f"index {where}"
        )
    return array.astype(np.float32)


def labels(
    value: Any, name: str = "labels", *, allowed: Sequence[int] = CLICK_LABELS, context: str = ""
) -> np.ndarray:
    """Point labels -> int32, every one in `allowed` (integral floats such as 1.0 pass)."""
    array = np.asarray(value)
    if array.dtype.kind not in "iuf":
        raise ValueError(
            f"{_lead(context)}{name} must be {_describe_labels(allowed)}; got {value!r}"
        )
    bad = sorted({v for v in array.ravel().tolist() if v not in allowed}, key=str)
    if bad:
        raise ValueError(f"{_lead(context)}{name} must be {_describe_labels(allowed)}; got {bad}")
    return array.astype(np.int32)


def in_image(
    points: np.ndarray,
    image_hw: tuple[int, int] | None,
    *,
    pixels: bool = True,
    what: str = "point",
    kind: str = "image",
    context: str = "",
) -> None:
    """Raises if any (x, y) of (..., 2) lies outside the `kind` (pixels) or [0, 1]."""
    if image_hw is None and pixels:
        return
    if pixels:
        h, w = image_hw
        limit = np.array([w, h], np.float32)
        unit = f"the {w}x{h} {kind} (x in [0, {w}], y in [0, {h}])"
    else:
        limit, unit = np.ones(2, np.float32), "the [0, 1] square (normalize_coords=False)"
    flat = np.asarray(points, np.float32).reshape(-1, 2)
    outside = (flat < 0).any(1) | (flat > limit).any(1) | ~np.isfinite(flat).all(1)
    if outside.any():
        x, y = flat[outside][0].tolist()
        raise ValueError(f"{_lead(context)}{what} ({x:g}, {y:g}) lies outside {unit}")


def points(
    coords: Any,
    point_labels: Any,
    *,
    image_hw: tuple[int, int] | None,
    pixels: bool = True,
    allowed: Sequence[int] = CLICK_LABELS,
    batched: bool = False,
    names: tuple[str, str] = ("points", "labels"),
    kind: str = "image",
    context: str = "",
) -> tuple[np.ndarray, np.ndarray]:
    """Clicks -> (coords float32 (N, 2) (or (B, N, 2) with batched), labels int32 (N,) / (B, N)).

    Checks: labels given, numbers, finite, shapes, one label per point, label values, and
    every click inside the image.
    """
    coords_name, labels_name = names
    lead = _lead(context)
    if point_labels is None:
        raise ValueError(
            f"{lead}{labels_name} must be supplied together with {coords_name}: one label per "
            f"point, {_describe_labels(allowed)}"
        )
    xy = numbers(coords, coords_name, context=context)
    shapes = "(N, 2) or (B, N, 2)" if batched else "(N, 2)"
    if xy.ndim not in ((2, 3) if batched else (2,)) or xy.shape[-1] != 2:
        raise ValueError(f"{lead}{coords_name} must be {shapes} (x, y) pairs, got shape {xy.shape}")
    labs = labels(point_labels, labels_name, allowed=allowed, context=context)
    if labs.shape != xy.shape[:-1]:
        raise ValueError(
            f"{lead}{labels_name} shape {labs.shape} does not match {coords_name} {xy.shape}: "
            "one label per point"
        )
    in_image(xy, image_hw, pixels=pixels, what="point", kind=kind, context=context)
    return xy, labs


def boxes(
    box: Any,
    *,
    image_hw: tuple[int, int] | None,
    pixels: bool = True,
    batched: bool = False,
    name: str = "box",
    kind: str = "image",
    context: str = "",
) -> np.ndarray:
    """A box x0, y0, x1, y1 (top-left, then bottom-right) -> float32 (4,) (or (B, 4))."""
    lead = _lead(context)
    array = numbers(box, name, context=context)
    shapes = "(4,) or (B, 4)" if batched else "(4,)"
    if array.shape[-1:] != (4,) or array.ndim not in ((1, 2) if batched else (1,)):
        raise ValueError(
            f"{lead}{name} must be {shapes} as x0, y0, x1, y1; got shape {array.shape}"
        )
    corners = array.reshape(-1, 2, 2)
    reversed_ = (corners[:, 1] < corners[:, 0]).any(-1)
    if reversed_.any():
        bad = [float(v) for v in array.reshape(-1, 4)[reversed_][0]]
        raise ValueError(
            f"{lead}{name} {bad} is reversed: corners must satisfy x0 <= x1 and y0 <= y1 "
            "(top-left corner first)"
        )
    in_image(corners, image_hw, pixels=pixels, what=f"{name} corner", kind=kind, context=context)
    return array


def video_prompt(
    coords: Any,
    point_labels: Any,
    box: Any,
    *,
    video_hw: tuple[int, int] | None,
    pixels: bool = True,
    context: str = "",
) -> tuple[np.ndarray, np.ndarray]:
    """Clicks and / or a box for one object on one video frame -> (coords (N, 2) float32,
    labels (N,) int32), the box first as two points labelled 2 and 3 (the reference's order).

    Accepts the reference's (1, N, 2) / (1, N) clicks too.
    """
    lead = _lead(context)
    if coords is None and point_labels is not None:
        raise ValueError(f"{lead}labels given without points: they go together")
    if coords is None and box is None:
        raise ValueError(f"{lead}give points (with labels) or a box")
    xy = np.zeros((0, 2), np.float32)
    labs = np.zeros((0,), np.int32)
    if coords is not None:
        raw = np.asarray(coords) if not isinstance(coords, np.ndarray) else coords
        if point_labels is not None and raw.ndim == 3 and len(raw) == 1:  # the reference's (1, N)
            coords, point_labels = raw[0], np.asarray(point_labels).reshape(-1)
        xy, labs = points(
            coords, point_labels, image_hw=video_hw, pixels=pixels, kind="video", context=context
        )
        if len(xy) == 0 and box is None:
            raise ValueError(f"{lead}points is empty and no box is given")
    corners = None
    if box is not None:
        corners = boxes(box, image_hw=video_hw, pixels=pixels, kind="video", context=context)
    return box_and_clicks(corners, xy, labs)


def mask_logits(mask: Any, *, side: int, name: str = "mask_input", context: str = "") -> np.ndarray:
    """Low-res mask logits (1, side, side) or (B, 1, side, side) -> float32 (B, 1, side, side)."""
    array = numbers(mask, name, context=context)
    if array.ndim == 3:
        array = array[None]
    if array.ndim != 4 or array.shape[1:] != (1, side, side):
        raise ValueError(
            f"{_lead(context)}{name} must be (1, {side}, {side}) or (B, 1, {side}, {side}) "
            f"low-res logits (e.g. a previous call's third output); got {array.shape}"
        )
    return array


def binary_mask(
    mask: Any,
    shapes: Sequence[tuple[tuple[int, int], str]],
    *,
    name: str = "mask",
    context: str = "",
) -> np.ndarray:
    """A mask (H, W), bool or numbers (non-zero = object; NaN / inf refused) -> bool.

    Args:
      shapes: the allowed (H, W) sizes, each with what it is ("the video").
    """
    array = np.asarray(mask)
    if array.dtype != bool:
        array = numbers(array, name, context=context) != 0
    if array.ndim != 2 or tuple(array.shape) not in [s for s, _ in shapes]:
        allowed = " or ".join(f"({h}, {w}) ({what})" for (h, w), what in shapes)
        raise ValueError(
            f"{_lead(context)}{name} must be (H, W) = {allowed}, got shape {array.shape}"
        )
    return array
