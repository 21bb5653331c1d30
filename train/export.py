"""`sam2-jax train-export`: a training run's params -> a converted model directory.

The result loads like any converted checkpoint (`build_sam2(None, out_dir)`, `--checkpoint
out_dir`): `params/` (Orbax) and `config.json` (variant, input size and, with
`--memory-policy`, the memory policy the video predictors track with by default). Weights can
be stored in float16 to halve the size; they are read back as float32.

A non-empty output folder is refused before the run is read, unless `--overwrite` (which
deletes an earlier export there first); both files are written atomically.
"""

from __future__ import annotations

import argparse
import os
import pathlib

import jax
import numpy as np

from sam2_jax.cli.common import add_overwrite_argument
from sam2_jax.output_files import prepare_out_dir

RESULTS = ("params", "config.json")  # what an export writes into its folder


def run_step(workdir: str, step: int | None = None) -> tuple[pathlib.Path, int]:
    """(checkpoints folder, step) of a run's checkpoint (default: the newest), nothing read.

    Raises:
      FileNotFoundError: no checkpoint in `<workdir>/checkpoints` (or not `step`).
    """
    root = pathlib.Path(workdir, "checkpoints").absolute()
    steps = sorted(int(p.name) for p in root.iterdir() if p.name.isdigit()) if root.is_dir() else []
    if not steps:
        raise FileNotFoundError(f"no checkpoints in {root}")
    step = steps[-1] if step is None else step
    if step not in steps:
        raise FileNotFoundError(f"no checkpoint of step {step} in {root} (have {steps})")
    return root, step


def read_run_params(workdir: str, step: int | None = None) -> tuple[int, dict]:
    """(step, params tree with numpy leaves) of a run's checkpoint (default: the newest).

    Raises:
      FileNotFoundError: no checkpoint in `<workdir>/checkpoints` (or not `step`).
      CorruptCheckpointError: Orbax cannot read it (one line).
    """
    import orbax.checkpoint as ocp

    from sam2_jax.train.checkpointing import reading

    root, step = run_step(workdir, step)
    with reading(root, step), ocp.StandardCheckpointer() as checkpointer:
        state = checkpointer.restore(root / str(step) / "state")
    return step, state["params"]


def export_run(
    workdir: str,
    out_dir: str,
    model: str,
    image_size: int,
    *,
    step: int | None = None,
    dtype: str = "float32",
    overwrite: bool = False,
    memory_policy: str | None = None,
) -> pathlib.Path:
    """Writes the run's params as a converted checkpoint of `model` at `image_size`
    (`memory_policy`: the policy name its config.json records, see `save_converted`).

    The tree is checked strictly against the variant (missing / extra / misshaped leaves
    raise) by reading the written directory back with `load_checkpoint`.

    Raises:
      FileNotFoundError: the run has no such checkpoint (checked first).
      ValueError: `out_dir` is a file, or not empty without `overwrite`, or an unknown
        `memory_policy` (checked before the run's params are read).
    """
    from sam2_jax.config import get_config
    from sam2_jax.convert.checkpoint_io import load_checkpoint, save_converted
    from sam2_jax.memory.policies import get_policy

    config = get_config(model, image_size=image_size)
    if memory_policy is not None:
        get_policy(memory_policy)  # an unknown name raises ValueError, naming the known ones
    _, step = run_step(workdir, step)
    prepare_out_dir(out_dir, overwrite=overwrite, results=RESULTS)
    step, params = read_run_params(workdir, step)
    source = f"{os.path.abspath(workdir)} step {step} ({dtype})"
    params = jax.tree.map(lambda a: np.asarray(a).astype(dtype), params)
    out = save_converted(params, config, out_dir, source=source, memory_policy=memory_policy)
    load_checkpoint(out)  # strict read-back
    return out


def add_parser(commands) -> None:
    p = commands.add_parser(
        "train-export",
        help="write a training run's params as a converted model directory (--checkpoint)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--workdir", required=True, help="the run directory (holds checkpoints/)")
    p.add_argument("--model", required=True, help="the run's model variant, e.g. sam2.1_hiera_mini")
    p.add_argument("--image-size", type=int, required=True, help="the run's image size")
    p.add_argument("--out", required=True, help="output directory (new or empty)")
    p.add_argument("--step", type=int, help="checkpoint step (default: the newest)")
    p.add_argument("--dtype", default="float32", choices=("float32", "float16", "bfloat16"))
    p.add_argument(
        "--memory-policy",
        help="record this memory policy (reference, samurai, sam3, dam4sam, sam2long) in "
        "config.json: the video predictors track with it unless given another",
    )
    add_overwrite_argument(p, RESULTS)
    p.set_defaults(run=run_export)


def run_export(args: argparse.Namespace) -> None:
    from sam2_jax.train.checkpointing import CorruptCheckpointError

    try:
        out = export_run(
            args.workdir,
            args.out,
            args.model,
            args.image_size,
            step=args.step,
            dtype=args.dtype,
            overwrite=args.overwrite,
            memory_policy=args.memory_policy,
        )
    except (FileNotFoundError, FileExistsError, ValueError, CorruptCheckpointError) as err:
        raise SystemExit(f"sam2-jax train-export: error: {err}") from err
    size = sum(f.stat().st_size for f in out.rglob("*") if f.is_file())
    print(f"exported {args.workdir} -> {out} ({size / 2**20:.1f} MiB)")
