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
0 negative), a "box" [x0, y0, x1, y1] (optionally with clicks), or a "mask" (a PNG of the
video's size, non-zero = object, path relative to the JSON file). Prompts are applied in
frame order; then the objects are tracked forward from the earliest prompted frame to the
end, and backward from it to frame 0.

Writes to --out: masks/<obj_id>/<frame>.png, masks_rle.json (COCO RLE), the overlay video
and summary.json (frames/s, peak memory, whether the weights are random).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import resource
import time

import numpy as np

from sam2_jax.cli_common import add_model_arguments, bundled, choose_model, describe_weights

# VIDEO values naming bundled clips: (video, prompts, ground-truth annotations or None)
BUNDLED_CLIPS = {
    # a real clip: two children, a click and a box on frame 0
    "sample": ("bedroom.mp4", "bedroom_prompts.json", None),
    # a held-out synthetic moving-shapes clip (one click per shape), with annotations: J&F
    "shapes": ("shapes_clip/frames", "shapes_clip/prompts.json", "shapes_clip/annotations"),
}


def load_prompts(path: str | pathlib.Path) -> list[dict]:
    """The prompts file -> [{"obj_id", "frame", "points"|"labels"|"box"|"mask"}], sorted by
    frame (masks loaded as (H, W) bool arrays).

    Raises:
      ValueError: the file is not valid JSON or not in the documented format.
    """
    from PIL import Image

    path = pathlib.Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"cannot read prompts file {str(path)!r}: {err}") from err
    objects = data.get("objects") if isinstance(data, dict) else None
    if not isinstance(objects, list) or not objects:
        raise ValueError(f"{path}: expected {{'objects': [{{'id': ..., 'prompts': [...]}}]}}")
    out = []
    for obj in objects:
        if "id" not in obj or not obj.get("prompts"):
            raise ValueError(f"{path}: every object needs an 'id' and a non-empty 'prompts' list")
        for p in obj["prompts"]:
            if not isinstance(p.get("frame"), int):
                raise ValueError(f"{path}: object {obj['id']}: every prompt needs a 'frame' int")
            entry = {"obj_id": obj["id"], "frame": p["frame"]}
            if "mask" in p:
                with Image.open(path.parent / p["mask"]) as image:
                    entry["mask"] = np.asarray(image.convert("L")) > 0
            elif "points" in p or "box" in p:
                if "points" in p:
                    entry["points"] = np.asarray(p["points"], np.float32).reshape(-1, 2)
                    entry["labels"] = np.asarray(p.get("labels", [1] * len(p["points"])))
                if "box" in p:
                    entry["box"] = np.asarray(p["box"], np.float32)
            else:
                raise ValueError(
                    f"{path}: object {obj['id']} frame {p['frame']}: give points, box or mask"
                )
            out.append(entry)
    return sorted(out, key=lambda e: e["frame"])


def track_video(args: argparse.Namespace) -> None:
    from sam2_jax.video_output import OverlayWriter, RLEWriter, overlay_frame, save_frame_pngs
    from sam2_jax.video_predictor import build_sam2_video_predictor

    fail = lambda message: SystemExit(f"sam2-jax track-video: error: {message}")
    clip = BUNDLED_CLIPS.get(args.video)
    video = bundled(clip[0]) if clip else args.video
    prompts_path = args.prompts or (bundled(clip[1]) if clip else None)
    gt_dir = args.gt or (bundled(clip[2]) if clip and clip[2] and not args.prompts else None)
    if prompts_path is None:
        raise fail("give --prompts PROMPTS.json (format: sam2-jax track-video --help)")
    try:
        prompts = load_prompts(prompts_path)
    except (ValueError, OSError) as err:
        raise fail(err) from err
    try:
        config_name, checkpoint = choose_model(args)
        predictor = build_sam2_video_predictor(
            config_name, checkpoint, image_size=args.image_size, seed=args.seed
        )
        state = predictor.init_state(video, max_frames=args.max_frames)
    except (ValueError, OSError, ImportError) as err:
        raise fail(err) from err
    gt = None if gt_dir is None else _read_annotations(gt_dir, state.num_frames, prompts)
    model = predictor.model
    weights = describe_weights(model, args.seed)
    print(
        f"model {model.config.name} at {model.config.image_size}px; weights: {weights}; "
        f"video {video}: {state.num_frames} frames of {state.video_width}x{state.video_height}"
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
    except (ValueError, IndexError, KeyError) as err:
        raise fail(f"bad prompt in {prompts_path}: {err}") from err

    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rle = RLEWriter(str(video), state.video_height, state.video_width)
    start = min(p["frame"] for p in prompts)
    tracked = 0
    began = time.perf_counter()
    for reverse in (False, True):
        for f, obj_ids, masks in predictor.propagate_in_video(state, start, reverse=reverse):
            rle.add(f, obj_ids, masks)
            if not args.no_pngs:
                save_frame_pngs(out / "masks", f, obj_ids, masks)
            tracked += 1
    seconds = time.perf_counter() - began
    rle.save(out / "masks_rle.json")

    overlay_path = out / args.overlay
    obj_ids = list(state.obj_ids)
    with OverlayWriter(overlay_path, fps=args.fps) as writer:
        for f, frame in enumerate(state.frames.original()):
            frame_masks = rle.data["frames"].get(str(f))
            if frame_masks is None:
                writer.write(frame)
                continue
            from sam2_jax.video_output import decode_rle

            masks = np.stack([decode_rle(frame_masks[str(i)]) for i in obj_ids])
            writer.write(overlay_frame(frame, masks))
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    summary = {
        "video": str(video),
        "frames": state.num_frames,
        "video_hw": [state.video_height, state.video_width],
        "model": model.config.name,
        "input_size": model.config.image_size,
        "checkpoint": model.checkpoint,
        "random_weights": model.random_weights,
        "obj_ids": obj_ids,
        "outputs": tracked,
        "propagation_seconds": round(seconds, 2),
        "frames_per_second": round(tracked / seconds, 2) if seconds > 0 else None,
        "peak_rss_mib": round(peak_mib, 1),
        "overlay": overlay_path.name,
        "rle": "masks_rle.json",
    }
    if gt is not None:
        summary["scores"] = _score(rle, gt, out)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
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
    from sam2_jax.video_output import decode_rle

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
    (out / "scores.json").write_text(json.dumps(scores, indent=2) + "\n")
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
    cmd.add_argument("--out", required=True, help="output directory (created if missing)")
    add_model_arguments(cmd)
    cmd.add_argument("--max-frames", type=int, help="only the first frames of the video")
    cmd.add_argument("--overlay", default="overlay.mp4", help="overlay file name (.mp4 / .gif)")
    cmd.add_argument("--fps", type=float, default=10.0, help="overlay frame rate")
    cmd.add_argument("--no-pngs", action="store_true", help="skip the per-frame mask PNGs")
    cmd.set_defaults(run=track_video)
