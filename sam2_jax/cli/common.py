"""Pieces every model-running subcommand shares: bundled assets, and choosing + checking the
model variant before the (slow) build, with a plain warning when the weights are random."""

from __future__ import annotations

import argparse
import importlib.resources
import os
import sys
from collections.abc import Sequence

from sam2_jax.config import get_config


def bundled(name: str) -> str:
    """Path of a file (or folder) shipped in sam2_jax/assets."""
    return str(importlib.resources.files("sam2_jax") / "assets" / name)


def add_model_arguments(cmd: argparse.ArgumentParser) -> None:
    """--config, --checkpoint, --random-weights, --image-size and --seed: which model runs."""
    cmd.add_argument(
        "--config",
        help="model variant (default: the checkpoint's; with --random-weights sam2.1_hiera_t)",
    )
    cmd.add_argument(
        "--checkpoint",
        help="reference .pt, HF checkpoint or converted directory (default: the bundled "
        "default model, sam2.1_hiera_nano trained on synthetic shapes)",
    )
    cmd.add_argument(
        "--random-weights",
        action="store_true",
        help="no checkpoint: randomly initialised weights of --config (masks are meaningless)",
    )
    cmd.add_argument(
        "--image-size", type=int, help="model input side (default: the checkpoint's, else 1024)"
    )
    cmd.add_argument("--seed", type=int, default=0, help="seed of the random weights")


def add_overwrite_argument(
    cmd: argparse.ArgumentParser, results: Sequence[str] | None = None
) -> None:
    """--overwrite: write into a non-empty --out folder, deleting an earlier run's `results`
    first (`output_files.prepare_out_dir`); without `results`, --out is a file, which
    --overwrite replaces (`output_files.check_new_file`)."""
    if results is None:
        text = "replace an existing --out file"
    else:
        text = (
            "write into a non-empty --out: the results of an earlier run there "
            f"({', '.join(results)}) are deleted first; other files are kept"
        )
    cmd.add_argument("--overwrite", action="store_true", help=text)


def choose_model(args: argparse.Namespace) -> tuple[str | None, str | None]:
    """(config name, checkpoint) to build from the `add_model_arguments` flags.

    --checkpoint: it, with --config when given (else its recorded or matching variant).
    --random-weights: --config (default sam2.1_hiera_t) randomly initialised, with a warning on
    stderr. Neither: the bundled default model. Validates everything (ValueError) before
    anything slow.
    """
    from sam2_jax.build import DEFAULT_MODEL_DIR, default_model_dir

    if args.random_weights and args.checkpoint:
        raise ValueError("give --checkpoint or --random-weights, not both")
    if args.random_weights:
        config_name = args.config or "sam2.1_hiera_t"
        get_config(config_name, image_size=args.image_size)
        print(
            f"warning: --random-weights: the weights are RANDOM (seed {args.seed}), so the "
            "masks are not meaningful (they only show that the pipeline runs)",
            file=sys.stderr,
            flush=True,
        )
        return config_name, None
    if args.checkpoint:
        if args.config:
            get_config(args.config, image_size=args.image_size)
        return args.config, args.checkpoint
    config = get_config(args.config, image_size=args.image_size) if args.config else None
    checkpoint = str(default_model_dir())
    if config is not None:
        from sam2_jax.convert.checkpoint_io import read_converted_config

        default = read_converted_config(DEFAULT_MODEL_DIR).name
        if config.name != default:
            raise ValueError(
                f"--config {args.config}: no weights for it without --checkpoint (the bundled "
                f"default model is {default}); give --checkpoint, or --random-weights"
            )
    return args.config, checkpoint


def describe_weights(model, seed: int) -> str:
    """What the run's weights are, for its first output line."""
    from sam2_jax.build import DEFAULT_MODEL_DIR

    if model.random_weights:
        return f"RANDOM (seed {seed})"
    if os.path.samefile(model.checkpoint, DEFAULT_MODEL_DIR):
        return f"the bundled default model ({model.checkpoint}; trained on synthetic shapes only)"
    return model.checkpoint
