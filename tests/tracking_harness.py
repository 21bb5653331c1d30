"""Shared pieces of the video-tracking tests: the reference video predictor and our converted
model on the same weights, the sample video, and the comparison."""

from __future__ import annotations

import dataclasses
import functools
import os
import pathlib

import jax
import numpy as np
import pytest
import torch

from sam2_jax.config import get_config
from sam2_jax.convert import state_dict_to_params
from sam2_jax.modeling.sam2_base import SAM2, param_shapes
from sam2_jax.video.io import list_frames, load_frames, to_video_resolution, video_size
from tests import reference as ref

SIZE = 256
NUM_FRAMES = 30
VIDEO = ref.SHARED_DATA / "videos" / "bedroom"
MIN_MASK_AGREEMENT = 0.99  # per frame, thresholded at 0, at video resolution
MAX_PROMPTED_LOGIT_ERROR = 1e-3  # prompted frames: max |diff| / max |ref| of the logits
MAX_SCORE_ERROR = 1e-2  # object score logits of every output, absolute
# Shapes fixed across cases so each (variant, objects) pair compiles once.
MAX_POINTS = 4
COND_CAPACITY = 2
CHUNK = 8


@functools.lru_cache(maxsize=4)
def model_pair(name: str, obj_score_bias: float = 0.0):
    """(reference SAM2VideoPredictor, our module, our variables) on the same random weights.

    With re-randomized weights the object-score head puts tracked objects just below 0
    ("absent": all logits -1024). `obj_score_bias` is added to its output bias (both sides)
    so that objects are present and the tracked masks are real.
    """
    torch_model = ref.build_reference(name, SIZE, video=True)
    with torch.no_grad():
        torch_model.sam_mask_decoder.pred_obj_score_head.layers[-1].bias += obj_score_bias
    module = SAM2(get_config(name, image_size=SIZE))
    params = state_dict_to_params(ref.numpy_state_dict(torch_model), param_shapes(module))
    return torch_model, module, {"params": jax.device_put(params)}


@dataclasses.dataclass
class Video:
    folder: pathlib.Path  # the first NUM_FRAMES frames, linked
    frames: np.ndarray  # (T, S, S, 3) our normalized inputs
    hw: tuple[int, int]


@functools.lru_cache(maxsize=1)
def _video(folder: str) -> Video:
    paths = list_frames(VIDEO)[:NUM_FRAMES]
    os.makedirs(folder, exist_ok=True)
    for p in paths:
        os.symlink(p, os.path.join(folder, os.path.basename(p)))
    return Video(pathlib.Path(folder), load_frames(paths, SIZE), video_size(paths[0]))


def sample_video(tmp_path_factory) -> Video:
    if not VIDEO.is_dir() or len(list_frames(VIDEO)) < NUM_FRAMES:
        pytest.skip(f"sample video not found at {VIDEO}")
    return _video(str(tmp_path_factory.getbasetemp() / "bedroom_frames"))


def run_reference(predictor, video: Video, prompts: list[dict], passes: list[dict]) -> dict:
    """Adds prompts ({'kind': 'points'|'mask', 'frame', 'obj_id', ...}) then runs each
    propagation pass.

    Returns:
      {frame: (N_obj, H, W) logits}, later passes overwriting, and the object scores
      {frame: {obj_idx: score}} of the final state.
    """
    with torch.inference_mode():
        state = predictor.init_state(video_path=str(video.folder))
        for p in prompts:
            if p["kind"] == "mask":
                predictor.add_new_mask(state, p["frame"], p["obj_id"], p["mask"])
            else:
                predictor.add_new_points_or_box(
                    state,
                    frame_idx=p["frame"],
                    obj_id=p["obj_id"],
                    points=p.get("points"),
                    labels=p.get("labels"),
                    box=p.get("box"),
                )
        out = {}
        for kwargs in passes:
            for f, _, masks in predictor.propagate_in_video(state, **kwargs):
                out[f] = masks[:, 0].float().numpy()
    scores = {}
    for obj_idx, outputs in sorted(state["output_dict_per_obj"].items()):
        for kind in ("cond_frame_outputs", "non_cond_frame_outputs"):
            for f, o in outputs[kind].items():
                scores.setdefault(f, {})[obj_idx] = float(o["object_score_logits"].reshape(()))
    return out, scores


@dataclasses.dataclass
class Comparison:
    worst_agreement: float
    worst_frame: int
    prompted_logit_error: float
    max_score_error: float  # object score logits, absolute, every output
    frames: int
    present: float  # fraction of (frame, object) outputs with the object present


def compare(ours, theirs: dict, their_scores: dict, video: Video, prompted: list[int]):
    """ours: a `VideoResult`; theirs {frame: (B, H, W)}, their_scores {frame: {obj: score}}.

    Frames the reference did not output must be untracked in ours.
    """
    worst, worst_frame, prompted_err, score_err = 1.0, -1, 0.0, 0.0
    for f in range(ours.low_res_masks.shape[0]):
        if f not in theirs:
            assert not ours.tracked[f].any(), f
            continue
        assert ours.tracked[f].all(), f
        masks = np.asarray(to_video_resolution(ours.low_res_masks[f], video.hw))
        agreement = float(((masks > 0) == (theirs[f] > 0)).mean())
        if agreement < worst:
            worst, worst_frame = agreement, f
        if f in prompted:
            prompted_err = max(prompted_err, ref.relative_max_error(masks, theirs[f]))
        for obj, score in their_scores[f].items():
            score_err = max(score_err, abs(float(ours.object_score_logits[f, obj]) - score))
    present = float(np.mean([s > 0 for f in theirs for s in their_scores[f].values()]))
    return Comparison(worst, worst_frame, prompted_err, score_err, len(theirs), present)
