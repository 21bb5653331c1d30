"""`sam2-jax track-video`: prompts from a JSON file -> masks for every frame of a video.

Prompts file (coordinates in video pixels; see sam2_jax/assets/bedroom_prompts.json):

    {
      "objects": [
        {"id": 1, "prompts": [{"frame": 0, "points": [[410, 250]], "labels": [1]}]},
        {"id": 2, "prompts": [
          {"frame": 0, "box": [60, 180, 250, 500]},
          {"frame": 12, "points": [[150, 300], [200, 420]], "labels": [1, 0]},
          {"frame": 15, "mask": "mask_frame15.png"}
        ]}
      ]
    }

Each prompt is on one frame: clicks ("points" [[x, y], ...] with "labels", 1 positive /
0 negative; without "labels" every click is positive), a "box" [x0, y0, x1, y1] (optionally
with clicks), or a "mask" (a PNG of the video's size, non-zero = object, path relative to the
JSON file). An "id" is an int or a name of letters, digits, '_' and '-', used by one object
only; an object has at most one prompt per frame. Any other key, a number that is not
finite, a reversed box or a click outside the video is an error, found before the model is
built. Prompts are applied in frame order; then the objects are tracked forward from the
earliest prompted frame to the end, and backward from it to frame 0.

Writes to --out (which must be empty, unless --overwrite): masks/<obj_id>/<frame>.png,
masks_rle.json (COCO RLE), the overlay video and summary.json (frames/s, peak memory, whether
the weights are random), each under a temporary name until complete. If a frame cannot be
read mid-video, the frames tracked before it are kept (masks_rle.json, masks/) and
summary.json says "complete": false and which frames are done.
"""

from __future__ import annotations

import argparse
import json
import math
import pathlib
import resource
import time

import numpy as np

from sam2_jax.cli.common import (
    add_model_arguments,
    add_overwrite_argument,
    bundled,
    choose_model,
    describe_weights,
)
from sam2_jax.cli.prompt_file import load_prompts  # noqa: F401 (also the public home of the reader)
from sam2_jax.output_files import prepare_out_dir, write_text

RESULTS = ("masks", "masks_rle.json", "summary.json", "scores.json")  # and the overlay

# VIDEO values naming bundled clips: (video, prompts, ground-truth annotations or None)
BUNDLED_CLIPS = {
    # a real clip: two children, a click and a box on frame 0
    "sample": ("bedroom.mp4", "bedroom_prompts.json", None),
    # a held-out synthetic moving-shapes clip (one click per shape), with annotations: J&F
    "shapes": ("shapes_clip/frames", "shapes_clip/prompts.json", "shapes_clip/annotations"),
}


def _check_options(args: argparse.Namespace) -> None:
    """The cheap flags, before anything is read."""
    overlay = pathlib.PurePath(args.overlay)
    if overlay.name != args.overlay or overlay.suffix.lower() not in (".mp4", ".gif"):
        raise ValueError(
            f"--overlay must be a file name ending in .mp4 or .gif, got {args.overlay!r}"
        )
    if not (args.fps > 0 and math.isfinite(args.fps)):
        raise ValueError(f"--fps must be a number > 0, got {args.fps}")
    if args.max_frames is not None and args.max_frames < 1:
        raise ValueError(f"--max-frames must be >= 1, got {args.max_frames}")


def _frame_ranges(frames: list[int]) -> str:
    """[0, 1, 2, 5] -> '0-2, 5'."""
    runs: list[list[int]] = []
    for f in sorted(set(frames)):
        if runs and f == runs[-1][1] + 1:
            runs[-1][1] = f
        else:
            runs.append([f, f])
    return ", ".join(f"{a}-{b}" if b > a else f"{a}" for a, b in runs) or "none"


def track_video(args: argparse.Namespace) -> None:
    from sam2_jax.memory.policies import policy_name_for_model
    from sam2_jax.video.frames import probe
    from sam2_jax.video.output import (
        OverlayWriter,
        RLEWriter,
        decode_rle,
        overlay_frame,
        save_frame_pngs,
    )
    from sam2_jax.video.predictor import build_sam2_video_predictor

    fail = lambda message: SystemExit(f"sam2-jax track-video: error: {message}")
    clip = BUNDLED_CLIPS.get(args.video)
    video = bundled(clip[0]) if clip else args.video
    prompts_path = args.prompts or (bundled(clip[1]) if clip else None)
    gt_dir = args.gt or (bundled(clip[2]) if clip and clip[2] and not args.prompts else None)
    if prompts_path is None:
        raise fail("give --prompts PROMPTS.json (format: sam2-jax track-video --help)")
    # Everything that can be checked is checked before the model is built.
    try:
        _check_options(args)
        num_frames, height, width = probe(video, args.max_frames)
        prompts = load_prompts(prompts_path, num_frames=num_frames, video_hw=(height, width))
    except (ValueError, OSError, IndexError, TypeError) as err:
        raise fail(err) from err
    gt = None if gt_dir is None else _read_annotations(gt_dir, num_frames, prompts)
    try:
        config_name, checkpoint = choose_model(args)
        results = (*RESULTS, args.overlay)
        out = prepare_out_dir(args.out, overwrite=args.overwrite, results=results)
        predictor = build_sam2_video_predictor(
            config_name,
            checkpoint,
            image_size=args.image_size,
            seed=args.seed,
            memory_policy=args.memory_policy,
        )
        state = predictor.init_state(video, max_frames=args.max_frames)
    except (ValueError, OSError, ImportError) as err:
        raise fail(err) from err
    model = predictor.model
    weights = describe_weights(model, args.seed)
    policy = policy_name_for_model(args.memory_policy, model.memory_policy)
    print(
        f"model {model.config.name} at {model.config.image_size}px; weights: {weights}; "
        f"memory policy {policy}; video {video}: {state.num_frames} frames of "
        f"{state.video_width}x{state.video_height}"
    )
    try:
        for p in prompts:
            if "mask" in p:
                predictor.add_new_mask(state, p["frame"], p["obj_id"], p["mask"])
            else:
                predictor.add_new_points_or_box(
                    state,
                    p["frame"],
                    p["obj_id"],
                    points=p.get("points"),
                    labels=p.get("labels"),
                    box=p.get("box"),
                )
    except (ValueError, IndexError, KeyError, TypeError) as err:
        raise fail(f"bad prompt in {prompts_path}: {err}") from err

    rle = RLEWriter(str(video), state.video_height, state.video_width)
    obj_ids = list(state.obj_ids)
    summary = {
        "video": str(video),
        "frames": state.num_frames,
        "video_hw": [state.video_height, state.video_width],
        "model": model.config.name,
        "input_size": model.config.image_size,
        "checkpoint": model.checkpoint,
        "random_weights": model.random_weights,
        "memory_policy": policy,
        "obj_ids": obj_ids,
        "complete": False,
    }
    start = min(p["frame"] for p in prompts)
    tracked = 0
    began = time.perf_counter()
    try:
        for reverse in (False, True):
            for f, ids, masks in predictor.propagate_in_video(state, start, reverse=reverse):
                rle.add(f, ids, masks)
                if not args.no_pngs:
                    save_frame_pngs(out / "masks", f, ids, masks)
                tracked += 1
        seconds = time.perf_counter() - began
        rle.save(out / "masks_rle.json")
        overlay_path = out / args.overlay
        with OverlayWriter(overlay_path, fps=args.fps) as writer:
            for f, frame in enumerate(state.frames.original()):
                frame_masks = rle.data["frames"].get(str(f))
                if frame_masks is None:
                    writer.write(frame)
                    continue
                masks = np.stack([decode_rle(frame_masks[str(i)]) for i in obj_ids])
                writer.write(overlay_frame(frame, masks))
    except (ValueError, OSError) as err:  # a corrupt frame, a full disk: keep what is done
        done = sorted(int(f) for f in rle.data["frames"])
        rle.save(out / "masks_rle.json")
        summary.update(error=str(err), frames_done=_frame_ranges(done), rle="masks_rle.json")
        write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
        kept = (
            f"the {len(done)} frames tracked before it (frames {_frame_ranges(done)}) are kept"
            if done
            else "no frame was tracked before it; what there is is kept"
        )
        raise fail(
            f"{err}; {kept} in {out}/ (masks_rle.json{'' if args.no_pngs else ', masks/'}; "
            'summary.json says "complete": false)'
        ) from err
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    summary.update(
        complete=True,
        outputs=tracked,
        propagation_seconds=round(seconds, 2),
        frames_per_second=round(tracked / seconds, 2) if seconds > 0 else None,
        peak_rss_mib=round(peak_mib, 1),
        overlay=overlay_path.name,
        rle="masks_rle.json",
    )
    if gt is not None:
        summary["scores"] = _score(rle, gt, out)
    write_text(out / "summary.json", json.dumps(summary, indent=2) + "\n")
    print(
        f"{tracked} frame outputs for {len(obj_ids)} object(s) in {seconds:.1f} s "
        f"({summary['frames_per_second']} frames/s, first call includes compiling); "
        f"peak memory {peak_mib:.0f} MiB -> {out}/ ({args.overlay}, masks_rle.json"
        f"{'' if args.no_pngs else ', masks/'}, summary.json)"
    )


def _read_annotations(gt_dir: str, num_frames: int, prompts: list[dict]):
    """The annotations to score against, checked against the video and the prompts."""
    from sam2_jax.evaluation import read_video_masks

    fail = lambda message: SystemExit(f"sam2-jax track-video: error: {message}")
    try:
        gt = read_video_masks(gt_dir)
    except (OSError, ValueError) as err:
        raise fail(f"cannot read annotations: {err}") from err
    if len(gt.frames) != num_frames:
        raise fail(f"{gt_dir} has {len(gt.frames)} annotated frames, the video {num_frames}")
    prompted = {p["obj_id"] for p in prompts}
    unknown = [i for i in gt.object_ids if i not in prompted]
    if unknown:
        raise fail(f"annotated object ids {unknown} have no prompts")
    return gt


def _score(rle, gt, out: pathlib.Path) -> dict:
    """J, F and J&F of the tracked objects against the annotations (printed, and written to
    out/scores.json)."""
    from sam2_jax.evaluation import VideoMasks, evaluate_video
    from sam2_jax.video.output import decode_rle

    num_frames = len(gt.frames)
    masks = np.zeros((len(gt.object_ids), num_frames, *gt.masks.shape[2:]), bool)
    for f in range(num_frames):
        frame = rle.data["frames"].get(str(f))
        for k, oid in enumerate(gt.object_ids):
            if frame is not None and str(oid) in frame:
                masks[k, f] = decode_rle(frame[str(oid)])
    per_object = evaluate_video(gt, VideoMasks(gt.frames, gt.object_ids, masks, None))
    scores = {
        "J&F": float(np.mean([r["J&F"] for r in per_object.values()])),
        "J": float(np.mean([r["J"]["mean"] for r in per_object.values()])),
        "F": float(np.mean([r["F"]["mean"] for r in per_object.values()])),
        "objects": {
            str(oid): {"J&F": r["J&F"], "J": r["J"]["mean"], "F": r["F"]["mean"]}
            for oid, r in per_object.items()
        },
    }
    write_text(out / "scores.json", json.dumps(scores, indent=2) + "\n")
    rows = ", ".join(f"object {oid}: J&F {r['J&F']:.3f}" for oid, r in scores["objects"].items())
    print(f"J&F {scores['J&F']:.4f} (J {scores['J']:.4f}, F {scores['F']:.4f}); {rows}")
    return scores


def add_parser(commands) -> None:
    """Registers `track-video` on the CLI's subparsers."""
    cmd = commands.add_parser(
        "track-video",
        help="track objects through a video from clicks / boxes / masks in a JSON file",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    cmd.add_argument(
        "video",
        help="JPEG folder or video file; 'sample' for the bundled real clip and its prompts, "
        "'shapes' for the bundled moving-shapes clip with its prompts and annotations (J&F is "
        "printed)",
    )
    cmd.add_argument(
        "--gt",
        help="DAVIS-style annotation folder (<frame>.png, palette index = object id) of this "
        "video: J, F and J&F are printed and written to scores.json",
    )
    cmd.add_argument("--prompts", help="prompts JSON file (format above)")
    cmd.add_argument(
        "--out", required=True, help="output directory (created if missing; must be empty)"
    )
    add_overwrite_argument(cmd, (*RESULTS, "the overlay"))
    add_model_arguments(cmd)
    cmd.add_argument("--max-frames", type=int, help="only the first frames of the video")
    cmd.add_argument("--overlay", default="overlay.mp4", help="overlay file name (.mp4 / .gif)")
    cmd.add_argument("--fps", type=float, default=10.0, help="overlay frame rate")
    cmd.add_argument("--no-pngs", action="store_true", help="skip the per-frame mask PNGs")
    from sam2_jax.memory.policies import POLICIES  # model code: only when the CLI is built

    cmd.add_argument(
        "--memory-policy",
        choices=sorted(POLICIES),
        help="what each frame reads from the memory and writes into it: SAM 2's rule "
        "(reference), SAMURAI's motion-aware memory (samurai), SAM 3's memory selection "
        "(sam3), DAM4SAM's distractor-aware memory (dam4sam), SAM2Long's memory tree "
        "(sam2long: 3 pathways per object); default: the one the checkpoint names (the "
        "bundled default model: dam4sam), else reference",
    )
    cmd.set_defaults(run=track_video)
