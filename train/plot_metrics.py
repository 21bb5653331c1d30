"""Training curves of a run as a PNG: `python -m sam2_jax.train.plot_metrics RUN_DIR OUT.png`.

Reads `<RUN_DIR>/metrics.jsonl` (one record per logged step) and draws the total loss and its
four terms (log scale, with a running mean) and the learning-rate scale. Needs matplotlib
(`pip install sam2-jax[plot]`).
"""

from __future__ import annotations

import argparse
import json
import pathlib

import numpy as np

TERMS = ("loss", "loss_mask", "loss_dice", "loss_iou", "loss_class")


def read_metrics(run_dir: str | pathlib.Path) -> dict[str, np.ndarray]:
    """{"step": (N,), name: (N,) ...} from metrics.jsonl (names every record has)."""
    path = pathlib.Path(run_dir, "metrics.jsonl")
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    if not records:
        raise ValueError(f"{path} has no records")
    names = set.intersection(*(set(r) for r in records))
    return {n: np.array([r[n] for r in records], np.float64) for n in sorted(names)}


def running_mean(x: np.ndarray, window: int) -> np.ndarray:
    """Mean of the last `window` values at every position (shorter at the start)."""
    c = np.cumsum(np.insert(x, 0, 0.0))
    idx = np.arange(1, x.size + 1)
    lo = np.maximum(idx - window, 0)
    return (c[idx] - c[lo]) / (idx - lo)


def plot(run_dir: str | pathlib.Path, out: str | pathlib.Path, window: int = 10) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = read_metrics(run_dir)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), gridspec_kw={"width_ratios": [3, 1]})
    for name in TERMS:
        if name in m:
            line = axes[0].plot(m["step"], m[name], alpha=0.25, lw=0.8)[0]
            axes[0].plot(m["step"], running_mean(m[name], window), color=line.get_color(),
                         label=f"{name} (mean of {window} logs)")  # fmt: skip
    axes[0].set_yscale("log")
    axes[0].set_xlabel("step")
    axes[0].set_title(f"training losses: {pathlib.Path(run_dir).name}")
    axes[0].legend(fontsize=8)
    axes[0].grid(alpha=0.3)
    if "lr_scale" in m:
        axes[1].plot(m["step"], m["lr_scale"])
        axes[1].set_title("learning-rate scale")
        axes[1].set_xlabel("step")
        axes[1].grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("out")
    parser.add_argument("--window", type=int, default=10, help="running-mean window (logs)")
    args = parser.parse_args()
    plot(args.run_dir, args.out, args.window)
    print(f"-> {args.out}")


if __name__ == "__main__":
    main()
