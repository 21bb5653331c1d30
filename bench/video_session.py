"""The interactive video session, `SAM2VideoPredictor` vs the reference's, same weights.

One session = a click on frame 0 for each of N objects, then `propagate_in_video` over the
whole video, masks out at video resolution, hole filling off on both (the reference's needs
a CUDA extension); frames already listed (`init_state` outside the
timing for both: the reference decodes every frame there, ours decodes frames on demand
inside the timed propagation). The two run alternately in one process; medians.
"""

from __future__ import annotations

import tempfile

import jax.numpy as jnp
import numpy as np
import torch

from bench.harness import measure_alternating, print_comparison
from bench.video import _frames_folder, _models, _peak_row, _synthetic_folder, peak_growth
from sam2_jax.build import SAM2Model
from sam2_jax.video.predictor import SAM2VideoPredictor

# click positions (fractions of width, height): distinct places for up to 8 objects
CLICKS = [(0.45, 0.6), (0.2, 0.3), (0.7, 0.3), (0.3, 0.8), (0.8, 0.75), (0.55, 0.15),
          (0.1, 0.55), (0.9, 0.5)]  # fmt: skip


def run(
    variant: str,
    image_size: int,
    num_frames: int,
    num_objects: int,
    repeats: int,
    dtype: str = "float32",
) -> dict:
    """`dtype` "bfloat16": ours with bfloat16 activations and products, the reference under
    `torch.autocast("cpu", torch.bfloat16)` (its products in bfloat16 too)."""
    predictor, module, variables = _models(variant, image_size)
    module = module.clone(dtype=jnp.dtype(dtype))
    autocast = torch.autocast("cpu", dtype=torch.bfloat16, enabled=dtype == "bfloat16")
    # hole filling off on both: the reference's needs its CUDA extension (on CPU it skips it)
    predictor.fill_hole_area = 0
    ours = SAM2VideoPredictor(
        SAM2Model(module.config, module, variables["params"]), fill_hole_area=0, progress=False
    )
    with tempfile.TemporaryDirectory() as tmp:
        folder = str(_frames_folder(num_frames, tmp))
        with torch.inference_mode():
            t_state = predictor.init_state(video_path=folder)
        o_state = ours.init_state(folder)
        hw = (o_state.video_height, o_state.video_width)
        clicks = [np.array([[fx * hw[1], fy * hw[0]]], np.float32) for fx, fy in CLICKS]

        def ours_call() -> dict:
            ours.reset_state(o_state)
            for obj in range(num_objects):
                ours.add_new_points_or_box(o_state, 0, obj, points=clicks[obj], labels=[1])
            return {f: np.asarray(m) > 0 for f, _, m in ours.propagate_in_video(o_state)}

        def reference_call() -> dict:
            with torch.inference_mode(), autocast:
                predictor.reset_state(t_state)
                for obj in range(num_objects):
                    predictor.add_new_points_or_box(
                        t_state, 0, obj, points=clicks[obj], labels=np.array([1])
                    )
                return {
                    f: m.float().numpy() > 0 for f, _, m in predictor.propagate_in_video(t_state)
                }

        timings = measure_alternating(
            {"ours": ours_call, "reference": reference_call}, repeats=repeats
        )
        mine, theirs = ours_call(), reference_call()
        agreement = min(float((mine[f] == theirs[f]).mean()) for f in theirs)
    title = (
        f"video session {variant} @ {image_size}, {num_frames} frames, {num_objects} object(s), "
        f"{dtype}"
    )
    result = print_comparison(title, timings["ours"], timings["reference"])
    result["speedup_reference_over_ours"] = timings["reference"].median_s / timings["ours"].median_s
    result["worst_frame_mask_agreement"] = agreement
    print(
        f"speed-up (reference time / ours): {result['speedup_reference_over_ours']:.2f}; "
        f"worst per-frame mask agreement {agreement:.4f}"
    )
    return result


def run_memory(
    variant: str = "sam2.1_hiera_t",
    image_size: int = 256,
    lengths: tuple[int, ...] = (100, 2000),
    reference_lengths: tuple[int, ...] = (50, 150),
    num_objects: int = 2,
) -> dict:
    """Peak RSS of a whole session (init_state on a JPEG folder, a click per object on
    frame 0, propagate_in_video, masks consumed and dropped) per video length: ours first
    for every length, then the reference (seconds per frame on CPU: shorter videos)."""
    import pathlib

    predictor, module, variables = _models(variant, image_size)
    ours = SAM2VideoPredictor(
        SAM2Model(module.config, module, variables["params"]), fill_hole_area=8, progress=False
    )
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        folder = _synthetic_folder(max(lengths + reference_lengths), pathlib.Path(tmp) / "f")
        clicks = [np.array([[fx * 480, fy * 270]], np.float32) for fx, fy in CLICKS]

        def session(length: int) -> None:
            state = ours.init_state(str(folder), max_frames=length)
            for obj in range(num_objects):
                ours.add_new_points_or_box(state, 0, obj, points=clicks[obj], labels=[1])
            for _ in ours.propagate_in_video(state):
                pass

        session(16)  # compile (one program for every length)
        for length in lengths:
            rows.append(_peak_row("sam2_jax", length, lambda n=length: session(n)))
        for length in reference_lengths:
            short = _synthetic_folder(length, pathlib.Path(tmp) / f"r{length}")

            def reference_session(short: pathlib.Path = short) -> None:
                with torch.inference_mode():  # it decodes every frame in init_state
                    state = predictor.init_state(video_path=str(short))
                    for obj in range(num_objects):
                        predictor.add_new_points_or_box(
                            state, 0, obj, points=clicks[obj], labels=np.array([1])
                        )
                    for _ in predictor.propagate_in_video(state):
                        pass

            rows.append(_peak_row("reference", length, reference_session))
    growth = peak_growth(rows)
    print(f"peak process RSS, longest / shortest video: {growth}")
    return {
        "title": f"video session memory vs length {variant} @ {image_size}, {num_objects} objects",
        "rows": rows,
        "peak_growth_longest_over_shortest": growth,
    }


def run_all(repeats: int) -> list[dict]:
    """The registered benchmark: sam2.1_hiera_t at 512 px, 24 frames, 1 and 6 objects (the
    reference takes seconds per frame on CPU: at most 3 rounds)."""
    repeats = min(repeats, 3)
    return [run("sam2.1_hiera_t", 512, 24, n, repeats) for n in (1, 6)] + [run_memory()]


if __name__ == "__main__":
    import argparse

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--objects", type=int, default=1)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--memory", action="store_true", help="the memory-vs-length run")
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    args = parser.parse_args()
    if args.memory:
        run_memory()
    else:
        run("sam2.1_hiera_t", args.size, args.frames, args.objects, args.repeats, args.dtype)
