"""The `sam2-jax` command line."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time

import numpy as np

from sam2_jax.cli import amg as amg_cli
from sam2_jax.cli import video as video_cli
from sam2_jax.cli.common import (
    add_model_arguments,
    add_overwrite_argument,
    bundled,
    choose_model,
    describe_weights,
)
from sam2_jax.evaluation import memory_cli, synthetic_cli
from sam2_jax.exporting import cli as export_compiled_cli
from sam2_jax.train import cli as train_cli
from sam2_jax.train import export as train_export

DEFAULT_IMAGE = "groceries.jpg"


def encode_image(args: argparse.Namespace) -> None:
    import jax
    import jax.numpy as jnp
    from PIL import Image

    from sam2_jax.config import get_config
    from sam2_jax.image.io import read_rgb
    from sam2_jax.modeling.sam2_base import SAM2

    path = args.image or bundled(DEFAULT_IMAGE)
    try:
        config = get_config(args.config, image_size=args.image_size)
        image = read_rgb(path)
    except ValueError as err:
        raise SystemExit(f"sam2-jax encode-image: error: {err}") from err
    size = config.image_size
    pixels = np.asarray(image.resize((size, size), Image.BILINEAR), np.float32) / 255.0
    pixels = (pixels - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    batch = jnp.asarray(pixels[None], jnp.float32)

    model = SAM2(config)
    print(f"model {config.name} at {size}x{size}; weights: random (seed {args.seed})")
    variables = jax.jit(lambda key: model.init(key, batch, method=SAM2.forward_image))(
        jax.random.key(args.seed)
    )
    encode = jax.jit(lambda v, x: model.apply(v, x, method=SAM2.forward_image))
    start = time.perf_counter()
    jax.block_until_ready(encode(variables, batch))
    compile_s = time.perf_counter() - start
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        out = jax.block_until_ready(encode(variables, batch))
        times.append(time.perf_counter() - start)
    report = {
        "image": path,
        "image_hw": [image.height, image.width],
        "backbone_fpn": [list(f.shape) for f in out["backbone_fpn"]],
        "vision_pos_enc": [list(p.shape) for p in out["vision_pos_enc"]],
        "first_call_s (compile + run)": round(compile_s, 3),
        "median_encode_s": round(float(np.median(times)), 3),
        "backend": jax.default_backend(),
    }
    print(json.dumps(report, indent=2))


@contextlib.contextmanager
def _checkpoint_errors(command: str):
    """Turns the expected checkpoint errors into a one-line message and exit status 1."""
    from sam2_jax.convert import CheckpointMismatchError
    from sam2_jax.convert.checkpoint_io import CheckpointFormatError

    try:
        yield
    except (
        FileNotFoundError,
        FileExistsError,
        ImportError,
        CheckpointFormatError,
        CheckpointMismatchError,
    ) as err:
        raise SystemExit(f"sam2-jax {command}: error: {err}") from err


def _summary(config, params, **extra) -> str:
    import jax

    leaves = jax.tree.leaves(params)
    report = {
        "config": config.name,
        "image_size": config.image_size,
        "tensors": len(leaves),
        "parameters": int(sum(np.size(leaf) for leaf in leaves)),
        **extra,
    }
    return json.dumps(report, indent=2)


def convert_checkpoint(args: argparse.Namespace) -> None:
    from sam2_jax.convert import checkpoint_io

    with _checkpoint_errors("convert"):
        fmt = checkpoint_io.detect_format(args.checkpoint)
        config, params = checkpoint_io.load_checkpoint(
            args.checkpoint, args.config, image_size=args.image_size
        )
        out = checkpoint_io.save_converted(
            params, config, args.out, overwrite=args.overwrite, source=str(args.checkpoint)
        )
    print(_summary(config, params, source=str(args.checkpoint), format=fmt, out=str(out)))


def export_checkpoint(args: argparse.Namespace) -> None:
    from sam2_jax.convert import checkpoint_io
    from sam2_jax.output_files import check_new_file

    try:
        check_new_file(args.out, overwrite=args.overwrite)
    except ValueError as err:
        raise SystemExit(f"sam2-jax export: error: {err}") from err
    with _checkpoint_errors("export"):
        config, params = checkpoint_io.load_checkpoint(args.checkpoint, args.config)
        out = checkpoint_io.write_reference_checkpoint(params, args.out)
    print(_summary(config, params, source=str(args.checkpoint), out=str(out)))


SAMPLE = "sample"  # segment-image's IMAGE value for the bundled sample
SEGMENT_RESULTS = ("mask_*.png", "overlay.png", "scores.json")  # what segment-image writes


def _numbers(text: str, what: str, count: tuple[int, ...], usage: str) -> list[float]:
    """'1,2.5,3' -> [1.0, 2.5, 3.0]; argparse.ArgumentTypeError naming `text` otherwise."""
    parts = [p.strip() for p in text.split(",")]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        values = None
    if values is None or len(values) not in count or not np.isfinite(values).all():
        raise argparse.ArgumentTypeError(f"bad {what} {text!r}: expected {usage}")
    return values


def parse_point(text: str) -> tuple[float, float, int]:
    """'X,Y' or 'X,Y,LABEL' (image pixels; LABEL 1 positive, the default, or 0 negative)."""
    usage = "X,Y or X,Y,LABEL with pixel coordinates X, Y and LABEL 1 (positive) or 0 (negative)"
    values = _numbers(text, "--point", (2, 3), usage)
    label = values[2] if len(values) == 3 else 1
    if label not in (0, 1):
        raise argparse.ArgumentTypeError(f"bad --point {text!r}: LABEL must be 1 or 0")
    return values[0], values[1], int(label)


def parse_box(text: str) -> tuple[float, float, float, float]:
    """'X0,Y0,X1,Y1' in image pixels, top-left then bottom-right corner."""
    x0, y0, x1, y1 = _numbers(text, "--box", (4,), "X0,Y0,X1,Y1 in pixels")
    if x1 < x0 or y1 < y0:
        raise argparse.ArgumentTypeError(
            f"bad --box {text!r}: X0,Y0 must be the top-left corner (X0 <= X1, Y0 <= Y1)"
        )
    return x0, y0, x1, y1


def segment_image(args: argparse.Namespace) -> None:
    """Prompts -> masks (PNG), an overlay and scores.json in args.out."""
    from sam2_jax import output_files, validation, visualize
    from sam2_jax.build import build_sam2
    from sam2_jax.image import io as image_io
    from sam2_jax.image.predictor import SAM2ImagePredictor

    fail = lambda message: SystemExit(f"sam2-jax segment-image: error: {message}")
    if not args.point and args.box is None:
        raise fail("give at least one --point X,Y[,LABEL] or a --box X0,Y0,X1,Y1")
    path = bundled(DEFAULT_IMAGE) if args.image == SAMPLE else args.image
    # Check everything cheap before the model is built (compiling takes a while).
    try:
        image = image_io.read_rgb(path)
        hw = (image.height, image.width)
        if args.point:
            validation.points(
                [p[:2] for p in args.point], [p[2] for p in args.point], image_hw=hw,
                names=("--point", "--point labels"),
            )  # fmt: skip
        if args.box:
            validation.boxes(args.box, image_hw=hw, name="--box")
        config_name, checkpoint = choose_model(args)
        out = output_files.prepare_out_dir(
            args.out, overwrite=args.overwrite, results=SEGMENT_RESULTS
        )
        print("building the model (first run: compiling, this takes a while) ...", flush=True)
        model = build_sam2(config_name, checkpoint, image_size=args.image_size, seed=args.seed)
    except (ValueError, OSError, ImportError) as err:
        raise fail(err) from err
    weights = describe_weights(model, args.seed)
    print(f"model {model.config.name} at {model.config.image_size}px; weights: {weights}")

    coords = np.array([p[:2] for p in args.point], np.float32) if args.point else None
    labels = np.array([p[2] for p in args.point], np.int32) if args.point else None
    box = np.array(args.box, np.float32) if args.box else None
    multimask = args.multimask
    if multimask is None:  # one click is ambiguous (part or whole?): the reference's advice
        multimask = len(args.point) == 1 and args.box is None
    predictor = SAM2ImagePredictor(model)
    predictor.set_image(image)
    masks, scores, _ = predictor.predict(coords, labels, box, multimask_output=multimask)

    files = visualize.save_masks(masks, out)
    order = np.argsort(scores)  # best mask drawn last, on top
    overlay = visualize.render(
        image,
        masks[order],
        point_coords=coords,
        point_labels=labels,
        boxes=box,
        colors=[visualize.mask_color(int(i)) for i in order],
    )
    output_files.save_image(overlay, out / "overlay.png")
    report = {
        "image": str(path),
        "image_hw": [image.height, image.width],
        "model": model.config.name,
        "input_size": model.config.image_size,
        "checkpoint": model.checkpoint,
        "random_weights": model.random_weights,
        "multimask_output": multimask,
        "prompts": {
            "points": [{"x": x, "y": y, "label": label} for x, y, label in args.point],
            "box": list(args.box) if args.box else None,
        },
        "masks": [
            {"file": f.name, "iou_prediction": float(s), "area": int(m.sum())}
            for f, s, m in zip(files, scores, masks, strict=True)
        ],
        "best": int(np.argmax(scores)),
        "overlay": "overlay.png",
    }
    output_files.write_text(out / "scores.json", json.dumps(report, indent=2) + "\n")
    ious = ", ".join(f"{s:.3f}" for s in scores)
    print(f"{len(files)} mask(s) (IoU predictions {ious}), overlay.png, scores.json -> {out}")


def evaluate_vos(args: argparse.Namespace) -> None:
    import warnings

    from sam2_jax.evaluation import evaluate_folders, format_results, to_json, write_results
    from sam2_jax.output_files import check_new_file, write_text

    fail = lambda message: SystemExit(f"sam2-jax eval: error: {message}")
    gts, preds = args.gt, args.pred
    if len(gts) == 1:
        gts = gts * len(preds)
    if len(gts) != len(preds):
        raise fail(f"{len(args.gt)} --gt folders for {len(preds)} --pred folders")
    if len(preds) > 1 and args.out and not args.out.endswith(".json"):
        raise fail("with several --pred folders, --out must be a .json file")
    if args.out:
        try:
            check_new_file(args.out, overwrite=args.overwrite)
        except ValueError as err:
            raise fail(err) from err
    for folder in (*args.gt, *preds):
        if not os.path.isdir(folder):
            raise fail(f"{folder!r} is not a folder")
    results = {}
    for gt, pred in zip(gts, preds, strict=True):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                res = evaluate_folders(
                    gt, pred, skip_first_last=not args.all_frames, bound_th=args.bound_th
                )
            except (OSError, ValueError) as err:
                raise fail(f"{pred} vs {gt}: {err}") from err
        for w in caught:
            print(f"sam2-jax eval: warning: {w.message}", file=sys.stderr)
        results[pred] = res
        print(f"== {pred} vs {gt}")
        print(format_results(res))
    if args.out:
        if len(preds) == 1:
            write_results(results[preds[0]], args.out)
        else:
            write_text(args.out, json.dumps({p: to_json(r) for p, r in results.items()}, indent=1))
        print(f"scores -> {args.out}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="sam2-jax", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    enc = commands.add_parser("encode-image", help="run the image encoder and report shapes/time")
    enc.add_argument("image", nargs="?", help=f"image file (default: bundled {DEFAULT_IMAGE})")
    enc.add_argument("--config", default="sam2.1_hiera_t")
    enc.add_argument("--image-size", type=int, default=None, help="default: the model's 1024")
    enc.add_argument("--repeats", type=int, default=3)
    enc.add_argument("--seed", type=int, default=0)
    enc.set_defaults(run=encode_image)

    conv = commands.add_parser(
        "convert",
        help="convert a reference .pt / Hugging Face checkpoint to a sam2_jax (Orbax) directory",
    )
    conv.add_argument("checkpoint", help="reference .pt, HF directory or .safetensors file")
    conv.add_argument("--config", default=None, help="e.g. sam2.1_hiera_t (default: guessed)")
    conv.add_argument("--out", required=True, help="output directory")
    conv.add_argument("--image-size", type=int, default=None, help="recorded default input size")
    conv.add_argument("--overwrite", action="store_true", help="replace an existing output")
    conv.set_defaults(run=convert_checkpoint)

    exp = commands.add_parser(
        "export", help="write any supported checkpoint as a reference-loadable {'model': ...} .pt"
    )
    exp.add_argument("checkpoint", help="converted directory (or reference .pt / HF checkpoint)")
    exp.add_argument("--config", default=None, help="default: recorded or guessed")
    exp.add_argument("--out", required=True, help="the .pt file to write")
    add_overwrite_argument(exp)
    exp.set_defaults(run=export_checkpoint)

    seg = commands.add_parser(
        "segment-image",
        help="masks from clicks and/or a box: mask_*.png, overlay.png, scores.json",
        description="Segments one object in an image from clicks and/or a box. All prompts "
        "describe the same object. Writes mask_0.png, ... (0/255), overlay.png (masks in "
        "colour, positive clicks green, negative red, the box outlined) and scores.json "
        "(IoU predictions, prompts, model, whether the weights are random). Without "
        "--checkpoint the weights are random and the masks are not meaningful.",
    )
    seg.add_argument(
        "image", help=f"image file, or '{SAMPLE}' for the bundled {DEFAULT_IMAGE} (800x534)"
    )
    seg.add_argument(
        "--point",
        type=parse_point,
        action="append",
        default=[],
        metavar="X,Y[,LABEL]",
        help="a click in image pixels; LABEL 1 positive (default) or 0 negative; repeatable",
    )
    seg.add_argument("--box", type=parse_box, metavar="X0,Y0,X1,Y1", help="a box in pixels")
    add_model_arguments(seg)
    seg.add_argument(
        "--multimask",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="three candidate masks instead of one (default: only for a single click)",
    )
    seg.add_argument(
        "--out", required=True, help="output directory (created if missing; must be empty)"
    )
    add_overwrite_argument(seg, SEGMENT_RESULTS)
    seg.set_defaults(run=segment_image)

    ev = commands.add_parser(
        "eval",
        help="video object segmentation scores: J, F and J&F per object, video and dataset",
        description="Scores predicted masks against ground truth with the DAVIS measures: "
        "J (region IoU), F (boundary F-measure, tolerance 0.008 x image diagonal) and J&F, "
        "skipping the first and last frame as DAVIS does. Folders hold <video>/<frame>.png "
        "palettised object-id PNGs (DAVIS / YouTube-VOS; 255 = void) or "
        "<video>/<object id>/<frame>.png binary PNGs (SA-V).",
    )
    ev.add_argument("--gt", action="append", required=True, help="ground-truth root; repeatable")
    ev.add_argument(
        "--pred",
        action="append",
        required=True,
        help="prediction root; repeatable (one --gt for all, or one --gt per --pred)",
    )
    ev.add_argument("--out", help="write scores as .json (all) or .csv (per object)")
    add_overwrite_argument(ev)
    ev.add_argument("--all-frames", action="store_true", help="also score the first and last frame")
    ev.add_argument("--bound-th", type=float, default=0.008, help="F boundary tolerance")
    ev.set_defaults(run=evaluate_vos)

    video_cli.add_parser(commands)  # track-video
    amg_cli.add_parser(commands)  # generate-masks
    train_cli.add_parser(commands)  # train
    train_export.add_parser(commands)  # train-export
    synthetic_cli.add_parser(commands)  # eval-synthetic
    memory_cli.add_parser(commands)  # eval-memory
    export_compiled_cli.add_parser(commands)  # export-compiled

    args = parser.parse_args(argv)
    args.run(args)


if __name__ == "__main__":
    main()
