"""Video propagation: sam2_jax `track_video` vs the reference `SAM2VideoPredictor`.

- speed: one object clicked on frame 0 and tracked through the same frames (the sample video,
  or synthetic frames without it) with the same weights; frames/s of the whole call (prompt
  + propagation, frames already decoded) for both. The first JAX call includes compilation
  and is reported separately.
- memory: the process's peak RSS while tracking videos of different lengths (synthetic
  frames), ours streaming them from the host in chunks, the reference loading them with
  `init_state`. Ours must not grow with the length (the reference keeps every frame and
  every frame's outputs, so its memory does).
"""

from __future__ import annotations

import os
import pathlib
import tempfile
import time
from collections.abc import Callable

import jax
import numpy as np
import torch

from bench.harness import _read_status_kib, _reset_peak_rss, measure_pair, print_comparison
from sam2_jax.config import get_config
from sam2_jax.convert import state_dict_to_params
from sam2_jax.memory.bank import empty_bank
from sam2_jax.modeling.sam2_base import SAM2, param_shapes
from sam2_jax.video.chunks import stream
from sam2_jax.video.io import list_frames, load_frames, points_to_model, video_size
from sam2_jax.video.offline import ObjectPrompt, frame_prompts, track_video
from tests import reference as ref

VIDEO = ref.SHARED_DATA / "videos" / "bedroom"
OBJ_SCORE_BIAS = 2.0  # random weights call tracked objects absent; this keeps them present


def _models(variant: str, image_size: int):
    predictor = ref.build_reference(variant, image_size, video=True)
    with torch.no_grad():
        predictor.sam_mask_decoder.pred_obj_score_head.layers[-1].bias += OBJ_SCORE_BIAS
    module = SAM2(get_config(variant, image_size=image_size))
    params = state_dict_to_params(ref.numpy_state_dict(predictor), param_shapes(module))
    return predictor, module, {"params": jax.device_put(params)}


def _frames_folder(num_frames: int, tmp: str) -> pathlib.Path:
    """A folder with `num_frames` JPEG frames: the sample video's, or synthetic ones."""
    folder = pathlib.Path(tmp) / "frames"
    folder.mkdir()
    if VIDEO.is_dir() and len(list_frames(VIDEO)) >= num_frames:
        for p in list_frames(VIDEO)[:num_frames]:
            os.symlink(p, folder / os.path.basename(p))
        return folder
    from PIL import Image

    rng = np.random.default_rng(0)
    for i in range(num_frames):
        img = rng.integers(0, 256, (270, 480, 3), np.uint8)
        Image.fromarray(img).save(folder / f"{i:05d}.jpg")
    return folder


def run_speed(variant: str, image_size: int, num_frames: int, repeats: int) -> dict:
    predictor, module, variables = _models(variant, image_size)
    with tempfile.TemporaryDirectory() as tmp:
        folder = _frames_folder(num_frames, tmp)
        paths = list_frames(folder)
        hw = video_size(paths[0])
        frames = load_frames(paths, image_size)
        click = np.array([[0.45 * hw[1], 0.6 * hw[0]]], np.float32)
        prompt = ObjectPrompt(
            0, 0, points=points_to_model(click, hw, image_size), labels=np.array([1])
        )

        def ours_call():
            return track_video(module, variables, frames, num_frames, [prompt])

        with torch.inference_mode():
            state = predictor.init_state(video_path=str(folder))

        def reference_call():
            with torch.inference_mode():
                predictor.reset_state(state)
                predictor.add_new_points_or_box(state, 0, 1, points=click, labels=np.array([1]))
                return {
                    f: m[0, 0].float().numpy() for f, _, m in predictor.propagate_in_video(state)
                }

        ours, theirs = measure_pair(ours_call, reference_call, repeats=repeats)
        # The timed outputs must agree: masks at model resolution, every frame.
        ours_low = ours_call().low_res_masks[:, 0]  # (T, 4h, 4w)
        theirs_video = reference_call()
        agreement = _agreement(ours_low, theirs_video, hw)
    title = f"video propagation {variant} @ {image_size}, {num_frames} frames, 1 object"
    result = print_comparison(title, ours, theirs)
    result["frames_per_s"] = {
        "ours": num_frames / ours.median_s,
        "reference": num_frames / theirs.median_s,
    }
    result["worst_frame_mask_agreement"] = agreement
    print(
        f"frames/s: sam2_jax {num_frames / ours.median_s:.2f}, reference "
        f"{num_frames / theirs.median_s:.2f}; worst per-frame mask agreement {agreement:.4f}"
    )
    return result


def _agreement(ours_low: np.ndarray, theirs: dict, hw: tuple[int, int]) -> float:
    from sam2_jax.video.io import to_video_resolution

    worst = 1.0
    for f, expected in theirs.items():
        got = np.asarray(to_video_resolution(ours_low[f][None], hw))[0]
        worst = min(worst, float(((got > 0) == (expected > 0)).mean()))
    return worst


def _synthetic_folder(num_frames: int, folder: pathlib.Path) -> pathlib.Path:
    """`num_frames` random 270x480 JPEG frames (the reference reads videos from folders)."""
    from PIL import Image

    folder.mkdir()
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (270, 480, 3), np.uint8)
    for i in range(num_frames):
        Image.fromarray(np.roll(base, 3 * i, axis=1)).save(folder / f"{i:05d}.jpg")
    return folder


def _peak_row(name: str, length: int, run: Callable[[], object]) -> dict:
    """Runs `run()` with the process's peak RSS reset; the peak above the resident size
    before the call, and the absolute peak of the process."""
    baseline = _read_status_kib("VmRSS")
    _reset_peak_rss()
    start = time.perf_counter()
    run()
    seconds = time.perf_counter() - start
    peak = _read_status_kib("VmHWM")
    row = {
        "implementation": name,
        "frames": length,
        "peak_mib_above_start": round((peak - baseline) / 1024, 1),
        "peak_process_mib": round(peak / 1024, 1),
        "seconds": round(seconds, 2),
        "frames_per_s": round(length / seconds, 2),
    }
    print(
        f"{name:9s} {length:5d} frames: peak RSS {row['peak_process_mib']:8.1f} MiB "
        f"(+{row['peak_mib_above_start']:7.1f} during the call), "
        f"{row['frames_per_s']:6.2f} frames/s"
    )
    return row


def peak_growth(rows: list[dict]) -> dict[str, float]:
    """implementation -> peak process RSS of its longest run / its shortest run."""
    growth = {}
    for name in ("sam2_jax", "reference"):
        peaks = [r["peak_process_mib"] for r in rows if r["implementation"] == name]
        if len(peaks) > 1:
            growth[name] = round(peaks[-1] / peaks[0], 3)
    return growth


def run_memory(
    variant: str,
    image_size: int,
    lengths: tuple[int, ...],
    reference_lengths: tuple[int, ...] = (),
    chunk: int = 8,
) -> dict:
    """Peak RSS while tracking one clicked object through synthetic videos of each length:
    ours streams the frames from the host in chunks through the fixed-size bank; the reference
    `SAM2VideoPredictor` (same weights) loads the video with `init_state` and keeps every
    frame's outputs. Ours runs first for every length, so the reference's larger allocations
    cannot lower our numbers. The reference takes seconds per frame on CPU, so it gets its
    own (shorter) lengths; its memory grows linearly with them."""
    predictor, module, variables = _models(variant, image_size)
    cfg = module.config
    prompts = frame_prompts([], 1, 1, None)

    def load(idx: np.ndarray) -> np.ndarray:  # synthetic frames, made on demand
        rng = np.random.default_rng(int(idx[0]))
        return rng.standard_normal((len(idx), image_size, image_size, 3), np.float32)

    def track(num_frames: int, steps: int) -> None:
        """The first frame as a prompted (conditioning) frame, then `steps` - 1 tracked."""
        bank = empty_bank(1, cfg.embedding_size**2, cond_capacity=1)
        click = ObjectPrompt(0, 0, points=np.array([[5.0, 5.0]]), labels=np.array([1]))
        first = frame_prompts([click], 1, 1, None)
        yes = np.ones((1, 1), bool)
        bank, _ = stream(
            module, variables, bank, [0], load, lambda f: first, yes,
            init_cond=yes, num_frames=num_frames, chunk_size=chunk,
        )  # fmt: skip
        stream(
            module, variables, bank, range(1, steps), load, lambda f: prompts,
            np.ones((steps - 1, 1), bool), num_frames=num_frames, chunk_size=chunk,
            consume=lambda idx, out: None,
        )  # fmt: skip

    rows = []
    for length in lengths:
        track(length, 2 * chunk)  # compile for this length (num_frames is static)
        rows.append(_peak_row("sam2_jax", length, lambda n=length: track(n, n)))
    for length in reference_lengths:
        with tempfile.TemporaryDirectory() as tmp:
            folder = _synthetic_folder(length, pathlib.Path(tmp) / "frames")

            def reference_call(folder=folder) -> None:
                with torch.inference_mode():
                    state = predictor.init_state(video_path=str(folder))
                    predictor.add_new_points_or_box(
                        state, 0, 1, points=np.array([[200.0, 100.0]]), labels=np.array([1])
                    )
                    for _ in predictor.propagate_in_video(state):
                        pass

            rows.append(_peak_row("reference", length, reference_call))
    growth = peak_growth(rows)
    print(f"peak process RSS, longest / shortest video: {growth}")
    return {
        "title": f"memory vs video length {variant} @ {image_size}",
        "rows": rows,
        "peak_growth_longest_over_shortest": growth,
    }


def run_all(repeats: int) -> list[dict]:
    """The registered benchmark: sam2.1_hiera_t at 512 and 1024 (8 frames; the reference
    takes seconds per frame on CPU, so at most 2 timed repeats), and memory at 256: ours for
    50 vs 1000 streamed frames, the reference for 50 vs 300."""
    repeats = min(repeats, 2)
    results = [run_speed("sam2.1_hiera_t", size, 8, repeats) for size in (512, 1024)]
    results.append(run_memory("sam2.1_hiera_t", 256, (50, 1000), reference_lengths=(50, 300)))
    return results
