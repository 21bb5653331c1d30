"""Memory policies side by side on the stress sets (`sam2_jax.evaluation.stress`).

Every policy tracks the same videos from the same prompt: one click at the centre of the
target (object 0) on frame 0, through the interactive video predictor (hole filling as the
reference's builder sets it). Scores are the DAVIS J, F and J&F of the target (first and last
frame skipped); frames/s is the tracking time after a warm-up call that compiles; memory is
the bank of one object with one prompted frame (what the frame loop carries per object).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import jax
import numpy as np

from sam2_jax.evaluation.stress import stress_videos
from sam2_jax.evaluation.synthetic import center_click, track_one_click
from sam2_jax.evaluation.vos import VideoMasks, evaluate_video
from sam2_jax.memory.bank import empty_bank
from sam2_jax.memory.policy import MemoryPolicy


def bank_bytes(model, policy: MemoryPolicy) -> int:
    """Bytes of one object's bank (one conditioning slot) and policy state under `policy`."""
    cfg = model.config
    bank = empty_bank(
        1, cfg.embedding_size**2, mem_dim=cfg.mem_dim, hidden_dim=cfg.d_model,
        cond_capacity=1, num_recent=policy.num_recent_slots, num_ptrs=policy.num_ptr_slots,
        policy_state=policy.init_state(1),
    )  # fmt: skip
    return int(sum(np.asarray(x).nbytes for x in jax.tree.leaves(bank)))


def _score(video, pred: np.ndarray) -> dict[str, float]:
    """J, F, J&F of the target: pred (T, H, W) bool."""
    names = tuple(f"{t:05d}" for t in range(video.frames.shape[0]))
    scores = evaluate_video(
        VideoMasks(names, (1,), video.masks[:, 0][None], None),
        VideoMasks(names, (1,), pred[None], None),
    )[1]
    return {"J&F": scores["J&F"], "J": scores["J"]["mean"], "F": scores["F"]["mean"]}


def evaluate_policies(
    model,
    policies: dict[str, MemoryPolicy],
    sets: dict[str, int | None],
    num_videos: int,
    *,
    progress: Callable[[str, str, str, dict], None] | None = None,
) -> dict:
    """Tracks every stress video of `sets` (name -> frames per video, None: the set's
    default) with every policy.

    Returns {"sets": {set: {policy: {"J&F", "J", "F", "frames_per_s", "videos": {video:
    {"J&F", "J", "F"}}}}}, "bank_bytes": {policy: bytes}, "protocol": {...}}.
    """
    from sam2_jax.video.predictor import SAM2VideoPredictor

    predictors = {
        name: SAM2VideoPredictor(model, memory_policy=p, fill_hole_area=8, progress=False)
        for name, p in policies.items()
    }
    out: dict = {"sets": {}, "bank_bytes": {n: bank_bytes(model, p) for n, p in policies.items()}}
    frames_of = {}
    for kind, frames in sets.items():
        videos = list(stress_videos(kind, num_videos, num_frames=frames))
        frames_of[kind] = int(videos[0][1].frames.shape[0])
        out["sets"][kind] = {}
        for name, predictor in predictors.items():
            first = videos[0][1]
            click = {0: center_click(first.masks[0, 0])}
            track_one_click(predictor, first.frames[:3], click)  # compiles
            rows, seconds, count = {}, 0.0, 0
            for video_name, video in videos:
                click = {0: center_click(video.masks[0, 0])}
                began = time.perf_counter()
                pred = track_one_click(predictor, video.frames, click)[0]
                seconds += time.perf_counter() - began
                count += video.frames.shape[0]
                rows[video_name] = _score(video, pred)
                if progress is not None:
                    progress(kind, name, video_name, rows[video_name])
            mean = lambda key, rows=rows: float(np.mean([r[key] for r in rows.values()]))
            out["sets"][kind][name] = {
                "J&F": mean("J&F"),
                "J": mean("J"),
                "F": mean("F"),
                "frames_per_s": count / seconds,
                "videos": rows,
            }
    out["protocol"] = {
        "videos_per_set": num_videos,
        "frames": frames_of,
        "prompt": "one click at the centre of the target on frame 0",
        "measures": "DAVIS J, F, J&F of the target, first and last frame skipped",
    }
    return out


def table(result: dict) -> str:
    """A Markdown table: J&F per set and policy, then frames/s and bank KiB per object."""
    sets = list(result["sets"])
    policies = list(result["bank_bytes"])
    lines = [
        "| policy | " + " | ".join(f"{s} J&F" for s in sets) + " | frames/s | bank KiB / object |",
        "|---|" + "---|" * (len(sets) + 2),
    ]
    for p in policies:
        jf = " | ".join(f"{result['sets'][s][p]['J&F']:.3f}" for s in sets)
        fps = np.mean([result["sets"][s][p]["frames_per_s"] for s in sets])
        lines.append(f"| {p} | {jf} | {fps:.1f} | {result['bank_bytes'][p] / 1024:.0f} |")
    return "\n".join(lines) + "\n"


def plot(result: dict, path: str) -> None:
    """Grouped bars of J&F per set and policy, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sets = list(result["sets"])
    policies = list(result["bank_bytes"])
    width = 0.8 / len(policies)
    fig, ax = plt.subplots(figsize=(1.8 + 1.6 * len(sets), 3.2))
    for i, p in enumerate(policies):
        values = [result["sets"][s][p]["J&F"] for s in sets]
        ax.bar(np.arange(len(sets)) + (i - (len(policies) - 1) / 2) * width, values, width,
               label=p)  # fmt: skip
    ax.set_xticks(np.arange(len(sets)), sets)
    ax.set_ylabel("J&F")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    ax.set_title("memory policies on the stress sets")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
