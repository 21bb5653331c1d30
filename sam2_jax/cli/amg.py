"""`sam2-jax generate-masks`: every mask of an image, as COCO-RLE JSON and an overlay PNG.

Writes to --out: masks.json (one record per mask: COCO RLE segmentation, area, bbox XYWH,
predicted_iou, point_coords, stability_score, crop_box; plus the image, the model, whether
the weights are random and the settings) and overlay.png (the masks in colour, largest
drawn first so small masks stay visible).
"""

from __future__ import annotations

import argparse
import json
import time

from sam2_jax.cli.common import (
    add_model_arguments,
    add_overwrite_argument,
    bundled,
    choose_model,
    describe_weights,
)

SAMPLE = "sample"  # IMAGE value for the bundled sample image
DEFAULT_IMAGE = "groceries.jpg"
RESULTS = ("masks.json", "overlay.png")  # what generate-masks writes in --out


def generate_masks(args: argparse.Namespace) -> None:
    import numpy as np

    from sam2_jax import output_files, visualize
    from sam2_jax.amg.generator import SAM2AutomaticMaskGenerator
    from sam2_jax.build import build_sam2
    from sam2_jax.image import io as image_io

    fail = lambda message: SystemExit(f"sam2-jax generate-masks: error: {message}")
    path = bundled(DEFAULT_IMAGE) if args.image == SAMPLE else args.image
    try:
        image = image_io.read_rgb(path)
    except ValueError as err:  # missing, unreadable or not an image
        raise fail(err) from err
    for name in ("points_per_side", "points_per_batch"):
        if getattr(args, name) < 1:
            raise fail(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    try:
        config_name, checkpoint = choose_model(args)
        out = output_files.prepare_out_dir(args.out, overwrite=args.overwrite, results=RESULTS)
        print("building the model (first run: compiling, this takes a while) ...", flush=True)
        model = build_sam2(config_name, checkpoint, image_size=args.image_size, seed=args.seed)
    except (ValueError, OSError, ImportError) as err:
        raise fail(err) from err
    weights = describe_weights(model, args.seed)
    print(f"model {model.config.name} at {model.config.image_size}px; weights: {weights}")

    settings = dict(
        points_per_side=args.points_per_side,
        points_per_batch=args.points_per_batch,
        pred_iou_thresh=args.pred_iou_thresh,
        stability_score_thresh=args.stability_score_thresh,
        box_nms_thresh=args.box_nms_thresh,
        crop_n_layers=args.crop_n_layers,
        min_mask_region_area=args.min_mask_region_area,
        use_m2m=args.use_m2m,
    )
    generator = SAM2AutomaticMaskGenerator(model, output_mode="coco_rle", **settings)
    start = time.perf_counter()
    records = generator.generate(image)
    seconds = time.perf_counter() - start

    report = {
        "image": str(path),
        "image_hw": [image.height, image.width],
        "model": model.config.name,
        "input_size": model.config.image_size,
        "checkpoint": model.checkpoint,
        "random_weights": model.random_weights,
        "settings": settings,
        "generate_s": round(seconds, 3),
        "annotations": records,
    }
    output_files.write_text(out / "masks.json", json.dumps(report) + "\n")
    order = sorted(range(len(records)), key=lambda i: -records[i]["area"])
    masks = np.zeros((len(records), image.height, image.width), bool)
    if records:
        from sam2_jax.rle import coco_rle_to_mask

        masks = np.stack([coco_rle_to_mask(records[i]["segmentation"]) for i in order])
    colors = [visualize.mask_color(i) for i in range(len(order))]
    output_files.save_image(visualize.render(image, masks, colors=colors), out / "overlay.png")
    print(f"{len(records)} mask(s) in {seconds:.1f} s: masks.json, overlay.png -> {out}")


def add_parser(commands) -> None:
    """Adds `generate-masks` to the `sam2-jax` subcommands."""
    gen = commands.add_parser(
        "generate-masks",
        help="every mask of an image (automatic mask generation): masks.json, overlay.png",
        description=__doc__.split("\n\n")[1]
        + " Without --checkpoint the weights are random and the masks are not meaningful.",
    )
    gen.add_argument(
        "image", help=f"image file, or '{SAMPLE}' for the bundled {DEFAULT_IMAGE} (800x534)"
    )
    gen.add_argument(
        "--out", required=True, help="output directory (created if missing; must be empty)"
    )
    add_overwrite_argument(gen, RESULTS)
    add_model_arguments(gen)
    gen.add_argument("--points-per-side", type=int, default=32, help="grid of clicks per side")
    gen.add_argument("--points-per-batch", type=int, default=64, help="clicks per model call")
    gen.add_argument("--pred-iou-thresh", type=float, default=0.8)
    gen.add_argument("--stability-score-thresh", type=float, default=0.95)
    gen.add_argument("--box-nms-thresh", type=float, default=0.7)
    gen.add_argument("--crop-n-layers", type=int, default=0)
    gen.add_argument("--min-mask-region-area", type=int, default=0)
    gen.add_argument("--use-m2m", action="store_true", help="one mask-to-mask refinement step")
    gen.set_defaults(run=generate_masks)
