"""`sam2-jax eval-synthetic`: one-click J&F and image mIoU on held-out moving-shapes videos."""

from __future__ import annotations

import argparse
import json
import time

from sam2_jax.cli.common import add_model_arguments, add_overwrite_argument


def eval_synthetic(args: argparse.Namespace) -> None:
    from sam2_jax.build import build_sam2
    from sam2_jax.cli.common import choose_model, describe_weights
    from sam2_jax.evaluation.synthetic import evaluate_one_click
    from sam2_jax.image.predictor import SAM2ImagePredictor
    from sam2_jax.memory.policies import policy_name_for_model
    from sam2_jax.output_files import check_new_file, write_text
    from sam2_jax.video.predictor import SAM2VideoPredictor

    if args.videos < 1:
        raise SystemExit(
            f"sam2-jax eval-synthetic: error: --videos must be >= 1, got {args.videos}"
        )
    try:
        if args.out:
            check_new_file(args.out, overwrite=args.overwrite)
        config_name, checkpoint = choose_model(args)
        model = build_sam2(config_name, checkpoint, image_size=args.image_size, seed=args.seed)
    except (ValueError, OSError, ImportError) as err:
        raise SystemExit(f"sam2-jax eval-synthetic: error: {err}") from err
    weights = describe_weights(model, args.seed)
    policy = policy_name_for_model(args.memory_policy, model.memory_policy)
    print(
        f"model {model.config.name} at {model.config.image_size}px; weights: {weights}; "
        f"memory policy {policy}"
    )
    video_predictor = SAM2VideoPredictor(
        model, fill_hole_area=8, memory_policy=policy, progress=False
    )
    image_predictor = SAM2ImagePredictor(model)
    began = time.perf_counter()

    def progress(name, objects):
        row = ", ".join(f"{oid}: J&F {r['J&F']:.3f} IoU {r['image_IoU']:.3f}"
                        for oid, r in objects.items())  # fmt: skip
        print(f"{name}  {row}", flush=True)

    result = evaluate_one_click(
        video_predictor,
        image_predictor,
        args.videos,
        num_frames=args.frames,
        size=args.size,
        start=args.start,
        progress=progress if args.verbose else None,
    )
    result["model"] = {"config": model.config.name, "checkpoint": model.checkpoint}
    result["memory_policy"] = policy
    result["seconds"] = round(time.perf_counter() - began, 1)
    print(
        f"{result['objects']} objects in {args.videos} held-out videos: "
        f"J&F {result['J&F-Mean']:.4f} "
        f"(J {result['J-Mean']:.4f}, F {result['F-Mean']:.4f}); one-click image mIoU "
        f"{result['image-mIoU']:.4f} ({result['seconds']} s)"
    )
    if args.out:
        write_text(args.out, json.dumps(result, indent=1))
        print(f"scores -> {args.out}")


def add_parser(commands) -> None:
    """Registers `eval-synthetic` on the CLI's subparsers."""
    from sam2_jax.memory.policies import POLICIES  # model code: only when the CLI is built

    cmd = commands.add_parser(
        "eval-synthetic",
        help="one-click J&F (video) and mIoU (image) on held-out synthetic moving shapes",
        description="Generates held-out moving-shapes videos (the generator's test stream, never "
        "used for training), clicks once at the centre of every object visible on frame 0, "
        "tracks them with the video predictor and scores J, F and J&F (DAVIS measures, "
        "first and last frame skipped); also scores the image predictor's top mask from the "
        "same click on frame 0 (IoU).",
    )
    add_model_arguments(cmd)
    cmd.add_argument("--videos", type=int, default=50, help="number of held-out videos")
    cmd.add_argument("--start", type=int, default=0, help="index of the first held-out video")
    cmd.add_argument("--frames", type=int, default=16, help="frames per video")
    cmd.add_argument("--size", type=int, default=128, help="video side in pixels")
    cmd.add_argument(
        "--memory-policy",
        choices=sorted(POLICIES),
        help="the video predictor's memory policy (default: the one the checkpoint names, the "
        "bundled default model's dam4sam, else reference)",
    )
    cmd.add_argument("--out", help="write the scores (per video and object) as JSON")
    add_overwrite_argument(cmd)
    cmd.add_argument("--verbose", action="store_true", help="print every video's scores")
    cmd.set_defaults(run=eval_synthetic)
