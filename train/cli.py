"""`sam2-jax train --config <name or file> [key=value ...]`: runs `sam2_jax.train.loop.train`.

Errors a user can fix are one line on stderr, before anything slow: a bad config or override
(`sam2-jax train: error: batch_size='abc': expected an integer, got str`, exit status 2, as
argparse's), and an unreadable newest checkpoint (exit status 1; `--resume-previous` sets it
aside and resumes from the newest readable one).
"""

from __future__ import annotations

import argparse
import sys

PROG = "sam2-jax train"


def add_parser(commands) -> None:
    """Registers the `train` subcommand on the CLI's subparsers."""
    p = commands.add_parser(
        "train",
        help="train / fine-tune SAM 2 (sharded, resumable Orbax checkpoints)",
        description="Trains with a config from configs/train/ (a name such as 'smoke' or "
        "'finetune_b+', or a path to a .py file with get_config()). Overrides are "
        "dotted key=value pairs: steps=200 optim.base_lr=1e-5 mesh.fsdp=2. Metrics go to "
        "<workdir>/metrics.jsonl (and TensorBoard if installed); checkpoints to "
        "<workdir>/checkpoints, and a rerun with the same workdir resumes from the newest.",
    )
    p.add_argument("--config", required=True, help="config name under configs/train/ or a .py file")
    p.add_argument("--workdir", help="run directory (default: the config's)")
    p.add_argument(
        "--resume-previous",
        action="store_true",
        help="when the newest checkpoint is unreadable, move it to <workdir>/"
        "checkpoints_unreadable/ and resume from the newest readable one",
    )
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides")
    p.set_defaults(run=run_train)


def _usage_error(err: Exception) -> SystemExit:
    """One line on stderr and exit status 2 (a bad command line, as argparse reports it)."""
    print(f"{PROG}: error: {err}", file=sys.stderr)
    return SystemExit(2)


def run_train(args: argparse.Namespace) -> None:
    from sam2_jax.train.checkpointing import CorruptCheckpointError
    from sam2_jax.train.config import ConfigError, apply_overrides, load_config

    overrides = list(args.overrides)
    if args.workdir:
        overrides.append(f"workdir={args.workdir!r}")
    try:
        cfg = apply_overrides(load_config(args.config), overrides)
    except (ValueError, FileNotFoundError) as err:  # ConfigError, or a config's own check
        raise _usage_error(err) from err
    from sam2_jax.train.loop import train

    try:
        result = train(cfg, resume_previous=args.resume_previous)
    except ConfigError as err:
        raise _usage_error(err) from err
    except CorruptCheckpointError as err:
        raise SystemExit(f"{PROG}: error: {err}") from err
    if result["history"]:
        step, last = result["history"][-1]
        print(f"done: step {step}, loss {last['loss']:.4f}; metrics in {cfg.workdir}")
