"""`sam2-jax eval-memory`: memory policies side by side on the stress sets."""

from __future__ import annotations

import argparse
import json

from sam2_jax.cli.common import add_model_arguments, add_overwrite_argument

RESULTS = ("memory_eval.json", "memory_eval.md", "memory_eval.png")


def _names(text: str, known, what: str) -> list[str]:
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if not names or unknown:
        given = ", ".join(map(repr, unknown)) or "(none)"
        raise SystemExit(
            f"sam2-jax eval-memory: error: unknown {what} {given}; known: {', '.join(known)}"
        )
    return names


def eval_memory(args: argparse.Namespace) -> None:
    from sam2_jax.build import build_sam2
    from sam2_jax.cli.common import choose_model, describe_weights
    from sam2_jax.evaluation.memory_eval import evaluate_policies, plot, table
    from sam2_jax.evaluation.stress import STRESS_SETS
    from sam2_jax.memory.policies import POLICIES, get_policy
    from sam2_jax.output_files import prepare_out_dir, write_text

    fail = lambda message: SystemExit(f"sam2-jax eval-memory: error: {message}")
    policies = _names(args.policies, list(POLICIES), "memory policy")
    sets = _names(args.sets, STRESS_SETS, "stress set")
    for flag, value, low in (("--videos", args.videos, 1), ("--frames", args.frames, 2),
                             ("--long-frames", args.long_frames, 2)):  # fmt: skip
        if value is not None and value < low:
            raise fail(f"{flag} must be >= {low}, got {value}")
    try:
        out = prepare_out_dir(args.out, overwrite=args.overwrite, results=RESULTS)
        config_name, checkpoint = choose_model(args)
        model = build_sam2(config_name, checkpoint, image_size=args.image_size, seed=args.seed)
    except (ValueError, OSError, ImportError) as err:
        raise fail(err) from err
    print(
        f"model {model.config.name} at {model.config.image_size}px; weights: "
        f"{describe_weights(model, args.seed)}; policies {', '.join(policies)}"
    )
    lengths = {s: args.long_frames if s == "long" else args.frames for s in sets}

    def progress(kind, policy, video, row):
        if args.verbose:
            print(f"{kind:12s} {policy:10s} {video}  J&F {row['J&F']:.3f}", flush=True)

    result = evaluate_policies(
        model, {p: get_policy(p) for p in policies}, lengths, args.videos, progress=progress
    )
    result["model"] = {"config": model.config.name, "checkpoint": model.checkpoint}
    text = table(result)
    write_text(out / "memory_eval.json", json.dumps(result, indent=1) + "\n")
    write_text(out / "memory_eval.md", text)
    plot(result, str(out / "memory_eval.png"))
    print(text, end="")
    print(f"-> {out}/ ({', '.join(RESULTS)})")


def add_parser(commands) -> None:
    """Registers `eval-memory` on the CLI's subparsers."""
    cmd = commands.add_parser(
        "eval-memory",
        help="memory policies side by side on synthetic stress sets (J&F, frames/s, memory)",
        description="Tracks the target of every video of the stress sets (long occlusions, "
        "look-alike distractors, fast motion, long videos; never used for training) from one "
        "click on frame 0 with each memory policy, and writes a table of J&F per set and "
        "policy, frames/s and the bank's size per object (memory_eval.md / .json) and a "
        "PNG of the J&F bars.",
    )
    add_model_arguments(cmd)
    cmd.add_argument("--out", required=True, help="output directory (created; must be empty)")
    add_overwrite_argument(cmd, RESULTS)
    cmd.add_argument(
        "--policies", default="reference,samurai,sam3,dam4sam,sam2long", help="comma-separated"
    )
    cmd.add_argument(
        "--sets", default="occlusion,distractors,fast_motion,long", help="comma-separated"
    )
    cmd.add_argument("--videos", type=int, default=8, help="videos per set")
    cmd.add_argument("--frames", type=int, help="frames per video (default: per set)")
    cmd.add_argument("--long-frames", type=int, default=600, help="frames of the long videos")
    cmd.add_argument("--verbose", action="store_true", help="print every video's score")
    cmd.set_defaults(run=eval_memory)
