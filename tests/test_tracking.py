"""Video tracking parity: `track_video` vs the reference `SAM2VideoPredictor`.

Both get the same weights (every parameter re-randomized), the same first 30 frames of the
sample video at image size 256, and the same prompts, all given before propagation. Every
frame's mask logits are compared at video resolution (the reference's hole filling is a no-op
on CPU, so it is off on both sides):

- masks (logits > 0) identical on >= MIN_MASK_AGREEMENT of the pixels of every frame;
- prompted frames' logits within MAX_PROMPTED_LOGIT_ERROR (max |diff| / max |ref|);
- every output's object score within MAX_SCORE_ERROR (absolute).

Re-randomized weights put tracked objects near the present / absent threshold, and absent
objects have all logits at -1024, which leaves the masks nothing to compare; most cases
therefore shift the object-score bias (on both sides) so objects are present, one shifts it
the other way to cover the absent path.

Tracked frames drift apart slowly: memories are stored in bfloat16 on both sides, so a
float32 rounding difference can flip a bfloat16 rounding and is then carried by the memory.
"""

import numpy as np
import pytest

from sam2_jax.video.io import mask_to_model, points_to_model
from sam2_jax.video.offline import ObjectPrompt, track_video
from tests import tracking_harness as th


def ellipse_mask(hw, center, radii) -> np.ndarray:
    ys, xs = np.mgrid[: hw[0], : hw[1]]
    return ((xs - center[0]) / radii[0]) ** 2 + ((ys - center[1]) / radii[1]) ** 2 <= 1.0


def case_prompts(case: str, hw) -> tuple[list[dict], list[dict], dict]:
    """(reference prompts, reference propagation passes, track_video kwargs) for a case.

    three_objects: a click, a box and a mask, each for its own object, on frame 0; forward.
    frames_0_and_15: one object clicked on frame 0 and corrected (a positive and a negative
      click) on frame 15, both given before propagation (two conditioning frames); forward.
    cond_frames_both_ways: clicks for one object on frames 8 and 20 (two conditioning
      frames), a forward pass from 8, then a reverse pass from 8 (its successors tracked).
    """
    h, w = hw
    if case == "three_objects":
        click = np.array([[0.45 * w, 0.6 * h]], np.float32)
        box = np.array([0.05 * w, 0.1 * h, 0.3 * w, 0.5 * h], np.float32)
        mask = ellipse_mask(hw, (0.75 * w, 0.7 * h), (0.12 * w, 0.15 * h))
        prompts = [
            dict(kind="points", frame=0, obj_id=1, points=click, labels=np.array([1], np.int32)),
            dict(kind="points", frame=0, obj_id=2, box=box),
            dict(kind="mask", frame=0, obj_id=5, mask=mask),
        ]
        return prompts, [{}], {}
    if case == "frames_0_and_15":
        first = np.array([[0.45 * w, 0.6 * h]], np.float32)
        later = np.array([[0.5 * w, 0.55 * h], [0.3 * w, 0.25 * h]], np.float32)
        prompts = [
            dict(kind="points", frame=0, obj_id=1, points=first, labels=np.array([1])),
            dict(kind="points", frame=15, obj_id=1, points=later, labels=np.array([1, 0])),
        ]
        return prompts, [{}], {}
    if case == "cond_frames_both_ways":
        first = np.array([[0.45 * w, 0.6 * h], [0.2 * w, 0.2 * h]], np.float32)
        later = np.array([[0.5 * w, 0.55 * h]], np.float32)
        prompts = [
            dict(kind="points", frame=8, obj_id=1, points=first, labels=np.array([1, 0])),
            dict(kind="points", frame=20, obj_id=1, points=later, labels=np.array([1])),
        ]
        return prompts, [{}, {"reverse": True}], {"both_directions": True}
    raise ValueError(case)


def our_prompts(prompts: list[dict], hw) -> list[ObjectPrompt]:
    ids = sorted({p["obj_id"] for p in prompts})
    out = []
    for p in prompts:
        obj = ids.index(p["obj_id"])
        if p["kind"] == "mask":
            out.append(ObjectPrompt(p["frame"], obj, mask=mask_to_model(p["mask"], th.SIZE)))
            continue
        points = None if p.get("points") is None else points_to_model(p["points"], hw, th.SIZE)
        box = None if p.get("box") is None else points_to_model(p["box"].reshape(2, 2), hw, th.SIZE)
        out.append(ObjectPrompt(p["frame"], obj, points=points, labels=p.get("labels"), box=box))
    return out


# (variant, case, obj_score_bias): with random weights tracked objects sit near the
# present / absent threshold; +2 makes them present (real masks to compare), -2 absent (the
# no-object pointer and spatial-embedding path, compared through the object scores).
# The other variants' cases are in test_tracking_variants.py (a file per worker when the
# suite runs on several processes).
CASES = [
    ("sam2.1_hiera_t", "three_objects", 2.0),
    ("sam2.1_hiera_t", "frames_0_and_15", 2.0),
    ("sam2.1_hiera_t", "cond_frames_both_ways", -2.0),
]


@pytest.mark.slow
@pytest.mark.parametrize("name,case,bias", CASES)
def test_track_video_matches_reference(name, case, bias, tmp_path_factory):
    check_case(name, case, bias, tmp_path_factory)


def check_case(name: str, case: str, bias: float, tmp_path_factory) -> None:
    video = th.sample_video(tmp_path_factory)
    predictor, module, variables = th.model_pair(name, bias)
    prompts, passes, kwargs = case_prompts(case, video.hw)
    theirs, their_scores = th.run_reference(predictor, video, prompts, passes)
    result = track_video(
        module,
        variables,
        video.frames,
        th.NUM_FRAMES,
        our_prompts(prompts, video.hw),
        max_points=th.MAX_POINTS,
        cond_capacity=th.COND_CAPACITY,
        chunk_size=th.CHUNK,
        mask_prompts=True,
        **kwargs,
    )
    prompted = sorted({p["frame"] for p in prompts})
    stats = th.compare(result, theirs, their_scores, video, prompted)
    print(f"{name} {case} bias {bias}: {stats}")
    assert stats.frames == th.NUM_FRAMES
    assert stats.worst_agreement >= th.MIN_MASK_AGREEMENT, stats
    assert stats.prompted_logit_error <= th.MAX_PROMPTED_LOGIT_ERROR, stats
    assert stats.max_score_error <= th.MAX_SCORE_ERROR, stats
    assert stats.present > 0.9 if bias > 0 else stats.present < 0.2, stats
