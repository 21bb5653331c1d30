"""Video object segmentation evaluation in the DAVIS benchmark's semi-supervised protocol.

Per object and frame: J (region IoU) and F (boundary F-measure) from `measures`. Per object:
mean (M), recall (R: fraction of frames scoring > 0.5) and decay (D: mean of the first
quarter of frames minus mean of the last quarter). The dataset scores are means over all
objects of all videos, and J&F = (J-Mean + F-Mean) / 2.

Like DAVIS, the first frame (the prompt) and the last frame are left out of the average unless
`skip_first_last=False`; an object missing from a prediction counts as an empty mask; a
prediction naming an object the ground truth does not have is an error.

Folder layouts, read by `read_video_masks`:
- DAVIS / YouTube-VOS: `<root>/<video>/<frame>.png`, palettised (or 8-bit grey) PNGs of object
  ids, 0 background, 255 void (ignored pixels). Grey PNGs holding only 0 and 255 are binary
  masks: 255 is then object 1 (with a `BinaryMasksWarning`).
- SA-V (val/test `Annotations_6fps`): `<root>/<video>/<object id>/<frame>.png`, one binary PNG
  per object and frame.
"""

from __future__ import annotations

import dataclasses
import json
import os
import warnings

import numpy as np
from PIL import Image

from sam2_jax.evaluation.measures import BOUND_TH, contour_accuracy_frames, region_similarity
from sam2_jax.output_files import write_text
from sam2_jax.video.io import list_frames

VOID_ID = 255
PNG_SUFFIXES = (".png", ".PNG")


@dataclasses.dataclass(frozen=True)
class VideoMasks:
    """Masks of one video: frame names (T,), object ids (O,), (O, T, H, W) bool masks and an
    optional (T, H, W) bool void map."""

    frames: tuple[str, ...]
    object_ids: tuple[int, ...]
    masks: np.ndarray
    void: np.ndarray | None


def _png_names(folder: str) -> list[str]:
    """The mask PNGs of a folder, by frame number (each must be named by its frame number)."""
    names = [os.path.basename(p) for p in list_frames(folder, PNG_SUFFIXES)]
    if not names:
        raise FileNotFoundError(f"no PNG masks in {folder}")
    return names


class BinaryMasksWarning(UserWarning):
    """Grey PNGs holding only 0 and 255 in the DAVIS layout were read as binary masks."""


def _read_index_png(path: str, modes: list[str] | None = None) -> np.ndarray:
    """A mask PNG -> (H, W) uint8; its PIL mode is appended to `modes`."""
    try:
        with Image.open(path) as img:
            if img.mode not in ("P", "L", "1"):
                raise ValueError(
                    f"{path}: expected a palettised or 8-bit grey PNG, got mode {img.mode}"
                )
            if modes is not None:
                modes.append(img.mode)
            return np.asarray(img.convert("L") if img.mode == "1" else img, np.uint8)
    except (OSError, SyntaxError) as err:
        raise ValueError(f"cannot read mask {path}: {err}") from err


def _binary_grey(labels: np.ndarray, modes: list[str], video_dir: str) -> np.ndarray:
    """Grey (mode L / 1, not palettised) masks whose values are exactly 0 and 255 are binary
    masks of one object (255 = object 1, with a `BinaryMasksWarning`); in palettised DAVIS
    masks, and grey ones holding other ids, 255 stays void."""
    if not set(modes) <= {"L", "1"}:
        return labels
    values = set(np.unique(labels).tolist())
    if 255 not in values or not values <= {0, 255}:
        return labels
    warnings.warn(
        BinaryMasksWarning(
            f"{video_dir}: grey PNGs holding only 0 and 255 are read as binary masks of one "
            "object (255 = object 1); in palettised DAVIS masks 255 means void"
        ),
        stacklevel=3,
    )
    return (labels == 255).astype(np.uint8)


def read_video_masks(video_dir: str, frames: list[str] | None = None) -> VideoMasks:
    """Reads one video's masks in either layout (module docstring).

    Args:
      video_dir: `<root>/<video>`.
      frames: frame file names to read (e.g. the ground truth's); None reads every PNG.
    """
    entries = sorted(os.listdir(video_dir))
    object_dirs = [e for e in entries if os.path.isdir(os.path.join(video_dir, e))]
    if object_dirs:  # SA-V: one folder of binary PNGs per object
        bad = [d for d in object_dirs if not d.isdigit()]
        if bad:
            raise ValueError(f"{video_dir}: object folders must be integer ids, got {bad}")
        object_dirs.sort(key=int)
        if frames is None:
            frames = _png_names(os.path.join(video_dir, object_dirs[0]))
        per_object = []
        for d in object_dirs:
            stack = []
            for name in frames:
                path = os.path.join(video_dir, d, name)
                stack.append(_read_index_png(path) > 0 if os.path.exists(path) else None)
            shape = next((m.shape for m in stack if m is not None), None)
            if shape is None:
                raise FileNotFoundError(f"{video_dir}/{d}: none of the frames {frames[:3]}...")
            per_object.append(np.stack([np.zeros(shape, bool) if m is None else m for m in stack]))
        masks = np.stack(per_object)  # (O, T, H, W)
        ids = tuple(int(d) for d in object_dirs)
        return VideoMasks(tuple(frames), ids, masks, None)
    if frames is None:
        frames = _png_names(video_dir)
    missing = [n for n in frames if not os.path.exists(os.path.join(video_dir, n))]
    if missing:
        raise FileNotFoundError(f"{video_dir}: missing masks for frames {missing[:5]}")
    modes: list[str] = []
    labels = [_read_index_png(os.path.join(video_dir, n), modes) for n in frames]
    sizes = {m.shape for m in labels}
    if len(sizes) > 1:
        first = labels[0].shape
        bad = next(n for n, m in zip(frames, labels, strict=True) if m.shape != first)
        raise ValueError(
            f"{video_dir}: mask {bad} is {labels[frames.index(bad)].shape[1]}x"
            f"{labels[frames.index(bad)].shape[0]} but {frames[0]} is {first[1]}x{first[0]}"
        )
    labels = _binary_grey(np.stack(labels), modes, video_dir)  # (T, H, W)
    void = labels == VOID_ID
    labels = np.where(void, 0, labels)
    num = int(labels.max())
    ids = tuple(range(1, num + 1))
    masks = labels[None] == np.arange(1, num + 1, dtype=np.uint8)[:, None, None, None]
    return VideoMasks(tuple(frames), ids, masks, void if void.any() else None)


def _statistics(per_frame: np.ndarray) -> dict[str, float]:
    """(T,) scores -> mean, recall (> 0.5) and decay (DAVIS `db_statistics`: 4 bins whose edges
    are round(linspace(1, T, 5)) - 1, each bin including its right edge)."""
    mean = float(np.nanmean(per_frame))
    recall = float(np.nanmean(per_frame > 0.5))
    edges = (np.round(np.linspace(1, per_frame.size, 5) + 1e-10) - 1).astype(int)
    first = per_frame[edges[0] : edges[1] + 1]
    last = per_frame[edges[3] : edges[4] + 1]
    decay = float(np.nanmean(first) - np.nanmean(last))
    return {"mean": mean, "recall": recall, "decay": decay}


def evaluate_video(
    gt: VideoMasks,
    pred: VideoMasks,
    *,
    skip_first_last: bool = True,
    bound_th: float = BOUND_TH,
) -> dict[int, dict[str, object]]:
    """Per-object J and F of one video -> {object id: {"J": stats, "F": stats, "J&F": mean,
    "J_frames": [...], "F_frames": [...]}} (frames counted after skipping)."""
    if gt.frames != pred.frames:
        raise ValueError("prediction and ground truth frames differ")
    if pred.masks.shape[2:] != gt.masks.shape[2:]:
        raise ValueError(
            f"prediction size {pred.masks.shape[2:]} != ground truth size {gt.masks.shape[2:]}"
        )
    extra = sorted(set(pred.object_ids) - set(gt.object_ids))
    if extra:
        raise ValueError(f"prediction has object ids {extra} that the ground truth lacks")
    sel = slice(1, -1) if skip_first_last else slice(None)
    if len(gt.frames[sel]) == 0:
        raise ValueError(f"{len(gt.frames)} frames: nothing left after skipping first and last")
    void = None if gt.void is None else gt.void[sel]
    pred_index = {oid: i for i, oid in enumerate(pred.object_ids)}
    out: dict[int, dict[str, object]] = {}
    for i, oid in enumerate(gt.object_ids):
        g = gt.masks[i, sel]
        p = pred.masks[pred_index[oid], sel] if oid in pred_index else np.zeros_like(g)
        j = region_similarity(p, g, void)
        f = contour_accuracy_frames(p, g, void, bound_th)
        js, fs = _statistics(j), _statistics(f)
        out[oid] = {
            "J": js,
            "F": fs,
            "J&F": (js["mean"] + fs["mean"]) / 2,
            "J_frames": j.tolist(),
            "F_frames": f.tolist(),
        }
    return out


def evaluate_folders(
    gt_root: str,
    pred_root: str,
    *,
    videos: list[str] | None = None,
    skip_first_last: bool = True,
    bound_th: float = BOUND_TH,
) -> dict[str, object]:
    """Evaluates every ground-truth video (or `videos`) of `gt_root` against `pred_root`.

    Returns {"videos": {video: {object id: per-object result}}, "J-Mean", "J-Recall",
    "J-Decay", "F-Mean", "F-Recall", "F-Decay", "J&F-Mean"} with the dataset scores averaged
    over all objects of all videos (the DAVIS definition).
    """
    if videos is None:
        videos = sorted(e for e in os.listdir(gt_root) if os.path.isdir(os.path.join(gt_root, e)))
    if not videos:
        raise FileNotFoundError(f"no video folders in {gt_root}")
    per_video: dict[str, dict[int, dict[str, object]]] = {}
    for video in videos:
        pred_dir = os.path.join(pred_root, video)
        if not os.path.isdir(pred_dir):
            raise FileNotFoundError(f"no predictions for video {video!r} ({pred_dir})")
        gt = read_video_masks(os.path.join(gt_root, video))
        pred = read_video_masks(pred_dir, list(gt.frames))
        per_video[video] = evaluate_video(
            gt, pred, skip_first_last=skip_first_last, bound_th=bound_th
        )
    objects = [r for v in per_video.values() for r in v.values()]
    result: dict[str, object] = {"videos": per_video}
    for m in ("J", "F"):
        for stat, key in (("mean", "Mean"), ("recall", "Recall"), ("decay", "Decay")):
            result[f"{m}-{key}"] = float(np.mean([o[m][stat] for o in objects]))
    result["J&F-Mean"] = (result["J-Mean"] + result["F-Mean"]) / 2
    return result


def format_results(result: dict[str, object]) -> str:
    """A plain-text table: dataset scores, then one row per video object."""
    lines = [
        "J&F-Mean  J-Mean  J-Recall  J-Decay  F-Mean  F-Recall  F-Decay",
        "  ".join(
            f"{result[k]:.4f}".rjust(w)
            for k, w in (
                ("J&F-Mean", 8),
                ("J-Mean", 6),
                ("J-Recall", 8),
                ("J-Decay", 7),
                ("F-Mean", 6),
                ("F-Recall", 8),
                ("F-Decay", 7),
            )
        ),
        "",
        f"{'video':<24} {'object':>6} {'J&F':>7} {'J':>7} {'F':>7}",
    ]
    for video, objs in result["videos"].items():
        for oid, r in objs.items():
            lines.append(
                f"{video:<24} {oid:>6} {r['J&F']:7.4f} {r['J']['mean']:7.4f} {r['F']['mean']:7.4f}"
            )
    return "\n".join(lines)


def write_results(result: dict[str, object], path: str) -> None:
    """Writes the result as JSON (object ids become strings) or, for a .csv path, one row per
    video object."""
    if path.endswith(".csv"):
        rows = ["video,object,J&F,J-Mean,J-Recall,J-Decay,F-Mean,F-Recall,F-Decay\n"]
        for video, objs in result["videos"].items():
            for oid, r in objs.items():
                j, fm = r["J"], r["F"]
                rows.append(
                    f"{video},{oid},{r['J&F']:.6f},{j['mean']:.6f},{j['recall']:.6f},"
                    f"{j['decay']:.6f},{fm['mean']:.6f},{fm['recall']:.6f},{fm['decay']:.6f}\n"
                )
        write_text(path, "".join(rows))
        return
    write_text(path, json.dumps(to_json(result), indent=1))


def to_json(result: dict[str, object]) -> dict[str, object]:
    """The result with string object ids, ready for `json.dump`."""
    serial = dict(result)
    serial["videos"] = {v: {str(k): r for k, r in o.items()} for v, o in result["videos"].items()}
    return serial
