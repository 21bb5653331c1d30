"""The `track-video` prompts file: strict reading and checking, before any model is built.

    {"objects": [
      {"id": 1, "prompts": [{"frame": 0, "points": [[410, 250]], "labels": [1]}]},
      {"id": 2, "prompts": [{"frame": 0, "box": [60, 180, 250, 500]},
                            {"frame": 15, "mask": "mask_frame15.png"}]}
    ]}

Every key is checked: an unknown one (a typo such as "lables") is an error that names it, the
object and the prompt, and suggests the key it resembles. Clicks and boxes go through the
shared `sam2_jax.validation` rules (finite numbers, one label per point, labels 1 / 0, boxes
top-left first, inside the video once its size is known). Object ids are ints or names of
letters, digits, '_' and '-' (they name the folders masks/<id>/), each used once; an object
has at most one prompt per frame.
"""

from __future__ import annotations

import difflib
import json
import os
import pathlib
from typing import Any

import numpy as np

from sam2_jax import validation

TOP_KEYS = {"objects": "the list of objects", "source": "free text, ignored"}
OBJECT_KEYS = {"id", "prompts"}
PROMPT_KEYS = {"frame", "points", "labels", "box", "mask"}


def _check_keys(entry: Any, allowed: Any, what: str, context: str) -> None:
    """Raises unless `entry` is a dict whose keys are all in `allowed`."""
    if not isinstance(entry, dict):
        raise ValueError(f"{context}: {what} must be a JSON object {{...}}, got {entry!r}")
    for key in entry:
        if key not in allowed:
            close = difflib.get_close_matches(str(key), sorted(allowed), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(
                f"{context}: unknown key {key!r} in {what}{hint}; its keys are "
                f"{', '.join(sorted(allowed))}"
            )


def _read_mask(base: pathlib.Path, name: Any, video_hw: tuple[int, int] | None, context: str):
    """A prompt's mask PNG (relative to the prompts file) -> (H, W) bool (non-zero = object)."""
    from PIL import Image

    if not isinstance(name, str) or not name:
        raise ValueError(f"{context}: 'mask' must be a PNG file name, got {name!r}")
    path = base / name
    try:
        with Image.open(path) as image:
            wide = image.mode in ("I", "F") or image.mode.startswith("I;16")  # 16 / 32 bits
            mask = np.asarray(image.convert("I") if wide else image.convert("L"))
    except (OSError, ValueError, SyntaxError) as err:
        raise ValueError(f"{context}: cannot read mask {str(path)!r}: {err}") from err
    shapes = [(video_hw, "the video")] if video_hw is not None else [(mask.shape[:2], "")]
    return validation.binary_mask(mask, shapes, name=f"mask {name!r}", context=context)


def _prompt(
    p: Any,
    k: int,
    obj_context: str,
    obj_id: int | str,
    base: pathlib.Path,
    num_frames: int | None,
    video_hw: tuple[int, int] | None,
) -> dict:
    """One prompt entry -> {"obj_id", "frame", "points"/"labels"/"box" | "mask"}."""
    where = f"{obj_context}, prompts[{k}]"
    _check_keys(p, PROMPT_KEYS, "a prompt", where)
    if "frame" not in p:
        raise ValueError(f"{where}: every prompt needs a 'frame' (an int)")
    frame = validation.frame_index(p["frame"], num_frames, name="'frame'", context=where)
    where = f"{where} (frame {frame})"
    entry: dict[str, Any] = {"obj_id": obj_id, "frame": frame}
    if "mask" in p:
        others = sorted(set(p) & {"points", "labels", "box"})
        if others:
            raise ValueError(
                f"{where}: a 'mask' prompt cannot also have {', '.join(others)}: give them as "
                "a prompt of their own on another frame"
            )
        entry["mask"] = _read_mask(base, p["mask"], video_hw, where)
        return entry
    if "labels" in p and "points" not in p:
        raise ValueError(f"{where}: 'labels' given without 'points'")
    if "points" not in p and "box" not in p:
        raise ValueError(f"{where}: give 'points' (with 'labels'), a 'box' or a 'mask'")
    points = p.get("points")
    labels = p.get("labels")
    if points is not None and not isinstance(points, list):
        raise ValueError(f"{where}: 'points' must be a list of [x, y] pairs, got {points!r}")
    if points is not None and labels is None:  # documented: clicks without labels are positive
        labels = [1] * len(points)
    coords, labs = validation.video_prompt(
        points, labels, p.get("box"), video_hw=video_hw, context=where
    )
    has_box = "box" in p
    if has_box:
        entry["box"] = coords[0:2].reshape(4)
    if points is not None:
        entry["points"], entry["labels"] = coords[2 * has_box :], labs[2 * has_box :]
    return entry


def load_prompts(
    path: str | os.PathLike,
    *,
    num_frames: int | None = None,
    video_hw: tuple[int, int] | None = None,
) -> list[dict]:
    """Reads and checks a prompts file (module docstring).

    Args:
      num_frames, video_hw: the video's frame count and (height, width), when known: frames,
        clicks, boxes and mask sizes are then checked against them too.

    Returns:
      [{"obj_id", "frame", "points" (N, 2) + "labels" (N,) and / or "box" (4,), or "mask"
      (H, W) bool}], sorted by frame.

    Raises:
      ValueError (TypeError, IndexError): the file, its JSON or an entry is bad; the message
        names the file, the object and the prompt.
    """
    path = pathlib.Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ValueError(f"cannot read prompts file {str(path)!r}: {err}") from err
    context = str(path)
    _check_keys(data, TOP_KEYS, "the file", context)
    objects = data.get("objects")
    if not isinstance(objects, list) or not objects:
        raise ValueError(
            f"{context}: expected {{'objects': [{{'id': ..., 'prompts': [...]}}, ...]}} with "
            "at least one object"
        )
    out: list[dict] = []
    seen: dict[str, int] = {}  # str(id) -> objects index (1 and "1" share masks/1/)
    for i, obj in enumerate(objects):
        where = f"{context}: objects[{i}]"
        _check_keys(obj, OBJECT_KEYS, "an object", where)
        if "id" not in obj:
            raise ValueError(f"{where}: every object needs an 'id'")
        obj_id = validation.object_id(obj["id"], name="'id'", context=where)
        if str(obj_id) in seen:
            raise ValueError(
                f"{where}: id {obj_id!r} is already used by objects[{seen[str(obj_id)]}]: "
                "every object needs its own id (put all prompts of one object in its list)"
            )
        seen[str(obj_id)] = i
        where = f"{where} (id {obj_id!r})"
        prompts = obj.get("prompts")
        if not isinstance(prompts, list) or not prompts:
            raise ValueError(f"{where}: 'prompts' must be a non-empty list")
        frames: dict[int, int] = {}
        for k, p in enumerate(prompts):
            entry = _prompt(p, k, where, obj_id, path.parent, num_frames, video_hw)
            if entry["frame"] in frames:
                raise ValueError(
                    f"{where}: prompts[{frames[entry['frame']]}] and prompts[{k}] are both on "
                    f"frame {entry['frame']}: put the clicks and box of one frame in one prompt"
                )
            frames[entry["frame"]] = k
            out.append(entry)
    return sorted(out, key=lambda e: e["frame"])
