"""`sam2-jax export-compiled`: the model as serialized `jax.export` programs for serving.

Writes into --out (new or empty, unless --overwrite): image_encoder.jax, prompt_decoder.jax,
video_prompt_step.jax, memory_encoder.jax, track_step.jax (StableHLO, each lowered for every
--platforms entry in one file, cuda and tpu included without an accelerator), weights.npz
(shared by all of them) and manifest.json; with --onnx also image_encoder.onnx and
prompt_decoder.onnx. `sam2_jax.serving` runs them without the model's code.
"""

from __future__ import annotations

import argparse

from sam2_jax.cli.common import (
    add_model_arguments,
    add_overwrite_argument,
    choose_model,
    describe_weights,
)
from sam2_jax.serving.manifest import PLATFORMS, Layout

RESULTS = ("manifest.json", "weights.npz", "*.jax", "*.onnx")  # what a run writes


def parse_platforms(text: str) -> tuple[str, ...]:
    """'cpu,cuda' -> ('cpu', 'cuda'); argparse.ArgumentTypeError naming unknown entries."""
    names = [part.strip() for part in text.split(",")]
    bad = [name for name in names if name not in PLATFORMS]
    if bad or not text.strip():
        shown = ", ".join(repr(name) for name in bad) or repr(text)
        raise argparse.ArgumentTypeError(
            f"unknown platform {shown}: give a comma-separated list of {', '.join(PLATFORMS)}"
        )
    return tuple(dict.fromkeys(names))


def add_parser(commands) -> None:
    cmd = commands.add_parser(
        "export-compiled",
        help="jax.export programs (+ weights, manifest.json) that sam2_jax.serving runs "
        "without the model's code",
        description=__doc__.split("\n\n", 1)[1],
    )
    add_model_arguments(cmd)
    cmd.add_argument("--out", required=True, help="output folder (created; must be empty)")
    add_overwrite_argument(cmd, RESULTS)
    cmd.add_argument(
        "--platforms",
        type=parse_platforms,
        default=PLATFORMS,
        metavar="LIST",
        help=f"platforms to lower for, comma-separated (default: {','.join(PLATFORMS)})",
    )
    cmd.add_argument(
        "--onnx",
        action="store_true",
        help="also image_encoder.onnx and prompt_decoder.onnx (needs jax2onnx: the onnx extra)",
    )
    defaults = Layout()
    cmd.add_argument(
        "--max-points",
        type=int,
        default=defaults.max_points,
        help=f"click bucket: points per prompt, a box counting 2 (default {defaults.max_points})",
    )
    cmd.add_argument(
        "--max-objects",
        type=int,
        default=defaults.max_objects,
        help=f"objects per tracking step (default {defaults.max_objects}; more are tracked "
        "in groups)",
    )
    cmd.add_argument(
        "--cond-slots",
        type=int,
        default=defaults.cond_slots,
        help=f"prompted frames per object (default {defaults.cond_slots})",
    )
    cmd.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    import importlib.util

    from sam2_jax.build import build_sam2
    from sam2_jax.exporting.write import export_compiled
    from sam2_jax.output_files import prepare_out_dir

    fail = lambda message: SystemExit(f"sam2-jax export-compiled: error: {message}")
    try:  # everything cheap first: building the model takes a while
        layout = Layout(args.max_points, args.max_objects, args.cond_slots)
        if args.onnx and importlib.util.find_spec("jax2onnx") is None:
            raise ImportError("--onnx needs jax2onnx: pip install 'sam2-jax[onnx]'")
        config_name, checkpoint = choose_model(args)
        out = prepare_out_dir(args.out, overwrite=args.overwrite, results=RESULTS)
        model = build_sam2(config_name, checkpoint, image_size=args.image_size, seed=args.seed)
    except (ValueError, OSError, ImportError) as err:
        raise fail(err) from err
    size = model.config.image_size
    print(f"model {model.config.name} at {size}px; weights: {describe_weights(model, args.seed)}")
    if model.memory_policy not in (None, "reference"):
        print(
            f"note: the video programs track with SAM 2's memory rule; the checkpoint's "
            f"{model.memory_policy} policy is not exported (the live predictor uses it)"
        )
    print(f"lowering for {', '.join(args.platforms)} ...", flush=True)
    manifest = export_compiled(model, out, platforms=args.platforms, layout=layout, onnx=args.onnx)
    print(f"{len(manifest.functions)} programs, weights.npz, manifest.json -> {out}")
