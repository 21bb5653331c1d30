"""`sam2-jax train --config <name or file> [key=value ...]`: runs `sam2_jax.train.loop.train`."""

from __future__ import annotations

import argparse


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
    p.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config overrides")
    p.set_defaults(run=run_train)


def run_train(args: argparse.Namespace) -> None:
    from sam2_jax.train.config import apply_overrides, load_config
    from sam2_jax.train.loop import train

    overrides = list(args.overrides)
    if args.workdir:
        overrides.append(f"workdir={args.workdir!r}")
    cfg = apply_overrides(load_config(args.config), overrides)
    result = train(cfg)
    if result["history"]:
        step, last = result["history"][-1]
        print(f"done: step {step}, loss {last['loss']:.4f}; metrics in {cfg.workdir}")
