"""Pieces every model-running subcommand shares: bundled assets, and choosing + checking the
model variant before the (slow) build, with a plain warning when the weights are random."""

from __future__ import annotations

import argparse
import importlib.resources
import sys

from sam2_jax.config import get_config


def bundled(name: str) -> str:
    """Path of a file (or folder) shipped in sam2_jax/assets."""
    return str(importlib.resources.files("sam2_jax") / "assets" / name)


def choose_model(args: argparse.Namespace) -> tuple[str | None, str | None]:
    """(config name, checkpoint) to build from --config / --checkpoint: --config; else tiny
    without a checkpoint, or None (the checkpoint's recorded or matching variant). Validates
    the name (ValueError) before anything slow, and warns on stderr when no checkpoint is
    given (random weights)."""
    config_name = args.config or (None if args.checkpoint else "sam2.1_hiera_t")
    if config_name is not None:
        get_config(config_name, image_size=args.image_size)
    if args.checkpoint is None:
        print(
            f"warning: no --checkpoint given: the weights are RANDOM (seed {args.seed}), so "
            "the masks are not meaningful (they only show that the pipeline runs)",
            file=sys.stderr,
            flush=True,
        )
    return config_name, args.checkpoint
