"""Parity of `SAM2.forward_sam_heads` / `SAM2.use_mask_as_output` with the reference's
`_forward_sam_heads` / `_use_mask_as_output` (prompt encoder + mask decoder + object pointer,
NO_OBJ_SCORE gating, mask-prompt resizing, upsampling, best-mask selection).

Tolerance: max |ours - ref| <= 1e-5 x max |ref|, per example for the masks (so that a gated
example's -1024 does not hide another example's error), per output otherwise. Worst seen
~1e-6.
"""

import copy
import functools

import chex
import jax
import numpy as np
import pytest
import torch

from sam2_jax.modeling.sam2_base import SAM2
from sam2_jax.modeling.sam_heads import NO_OBJ_SCORE, SAMHeadsOutput
from tests import reference as ref

SIZE = 256  # image size: 16x16 embedding, 64x64 low-res masks
TOLERANCE = 1e-5
BATCH = 4


@pytest.fixture(scope="module")
def sam21():
    torch_model = ref.cached_reference("sam2.1_hiera_t", SIZE)
    model, variables = ref.convert_sam_heads(torch_model, "sam2.1_hiera_t", SIZE)
    return torch_model, model, variables


def _features(seed: int = 0):
    rng = np.random.default_rng(seed)
    features = rng.standard_normal((BATCH, 16, 16, 256)).astype(np.float32)
    high_res = (
        rng.standard_normal((BATCH, 64, 64, 32)).astype(np.float32),
        rng.standard_normal((BATCH, 32, 32, 64)).astype(np.float32),
    )
    return features, high_res


# (B, 3) prompts of every kind in one batch: box (labels 2, 3) + click, clicks with negatives,
# a click padded with -1 entries, box + negative click.
MIXED_COORDS = np.asarray(
    [
        [[30.0, 40.0], [180.0, 220.0], [90.0, 100.0]],
        [[128.0, 128.0], [20.0, 240.0], [250.0, 5.0]],
        [[64.0, 200.0], [0.0, 0.0], [0.0, 0.0]],
        [[10.0, 10.0], [120.0, 90.0], [60.0, 50.0]],
    ],
    np.float32,
)
MIXED_LABELS = np.asarray([[2, 3, 1], [1, 0, 0], [1, -1, -1], [2, 3, 0]], np.int32)


def _mask(seed: int, size: int = SIZE) -> np.ndarray:
    """(BATCH, size, size, 1) 0/1 float blobs."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    centres = rng.uniform(0.2, 0.8, (BATCH, 2)) * size
    radii = rng.uniform(0.1, 0.3, BATCH) * size
    masks = [
        (yy - cy) ** 2 + (xx - cx) ** 2 < r**2 for (cy, cx), r in zip(centres, radii, strict=True)
    ]
    return np.stack(masks).astype(np.float32)[..., None]


@functools.partial(jax.jit, static_argnums=(0, 6))
def _ours(model, variables, features, coords, labels, masks, multimask, high_res):
    return model.apply(
        variables,
        features,
        coords,
        labels,
        masks,
        high_res,
        multimask,
        method=SAM2.forward_sam_heads,
    )


def _reference(torch_model, features, coords, labels, masks, multimask, high_res):
    points = None
    if coords is not None:
        points = {
            "point_coords": torch.from_numpy(coords),
            "point_labels": torch.from_numpy(labels),
        }
    with torch.no_grad():
        out = torch_model._forward_sam_heads(
            backbone_features=ref.nchw(features),
            point_inputs=points,
            mask_inputs=None if masks is None else ref.nchw(masks),
            high_res_features=[ref.nchw(h) for h in high_res],
            multimask_output=multimask,
        )
    out = [ref.nhwc(t) if t.ndim == 4 else t.numpy() for t in out]
    ious = out[2]  # the selected mask is the best candidate by IoU (or the only one)
    return SAMHeadsOutput(*out, iou=ious.max(axis=1, keepdims=True))


def _errors(ours: SAMHeadsOutput, expected: SAMHeadsOutput) -> dict[str, float]:
    errors = {}
    for name, a, b in zip(SAMHeadsOutput._fields, ours, expected, strict=True):
        if b is None:  # not asked for (candidate pointers)
            assert a is None, name
            continue
        a = np.asarray(a)
        assert a.shape == b.shape, (name, a.shape, b.shape)
        if a.ndim == 4:  # masks: per example
            errors[name] = max(ref.relative_max_error(a[i], b[i]) for i in range(a.shape[0]))
        else:
            errors[name] = ref.relative_max_error(a, b)
    return errors


def _check(models, coords, labels, masks, multimask, seed=0, label=""):
    torch_model, model, variables = models
    features, high_res = _features(seed)
    ours = _ours(model, variables, features, coords, labels, masks, multimask, high_res)
    expected = _reference(torch_model, features, coords, labels, masks, multimask, high_res)
    errors = _errors(ours, expected)
    print(f"{label}: worst {max(errors.values()):.1e} {errors}")
    assert max(errors.values()) <= TOLERANCE, errors
    # not vacuous: some object is present, so some masks are not all NO_OBJ_SCORE
    assert (expected.object_score_logits > 0).any()
    return ours, expected


def test_one_click_multimask_traces_once_per_shape(sam21):
    """1 click, multimask (best of 3); new clicks of the same shape reuse the trace, another
    click count is a new shape."""
    torch_model, model, variables = sam21
    features, high_res = _features(0)

    @jax.jit
    @chex.assert_max_traces(n=1)
    def run(v, f, h, coords, labels):
        return model.apply(v, f, coords, labels, None, h, True, method=SAM2.forward_sam_heads)

    coords = np.asarray([[[100.0, 60.0]], [[5.0, 250.0]], [[200.0, 200.0]], [[128.0, 0.0]]])
    coords, labels = coords.astype(np.float32), np.ones((BATCH, 1), np.int32)
    ours = run(variables, features, high_res, coords, labels)
    expected = _reference(torch_model, features, coords, labels, None, True, high_res)
    errors = _errors(ours, expected)
    print(f"1 click: worst {max(errors.values()):.1e} {errors}")
    assert max(errors.values()) <= TOLERANCE, errors
    assert (expected.object_score_logits > 0).all()
    assert ours.low_res_multimasks.shape == (BATCH, 64, 64, 3)
    assert ours.high_res_masks.shape == (BATCH, SIZE, SIZE, 1)
    # best-of-3 by predicted IoU, the same index as the reference picked, where the reference's
    # top two IoUs are further apart than the IoU tolerance (2x: either side may be off by it)
    best = np.argmax(expected.ious, axis=1)
    top2 = np.sort(expected.ious, axis=1)[:, -2:]
    decided = top2[:, 1] - top2[:, 0] > 2 * TOLERANCE * np.abs(expected.ious).max()
    assert decided.any()
    np.testing.assert_array_equal(np.argmax(np.asarray(ours.ious), axis=1)[decided], best[decided])

    rng = np.random.default_rng(0)
    for label in (0, 2, -1):
        coords = rng.uniform(0, SIZE, (BATCH, 1, 2)).astype(np.float32)
        run(variables, features, high_res, coords, np.full((BATCH, 1), label, np.int32))
    with pytest.raises(AssertionError):  # a second click: a second trace (n=1 exceeded)
        run(variables, features, high_res, np.zeros((BATCH, 2, 2), np.float32), labels[:, [0, 0]])


def test_box_clicks_negatives_and_padding_single_mask(sam21):
    """One batch with box + click, clicks with negatives, -1 padding; single mask output
    (with the decoder's dynamic stability fallback, as the reference's builder sets it)."""
    _check(sam21, MIXED_COORDS, MIXED_LABELS, None, False, label="mixed prompts")


def test_no_prompt_uses_the_dummy_point(sam21):
    """No clicks (a tracking frame): one -1 dummy point plus the padding token."""
    ours, _ = _check(sam21, None, None, None, True, seed=1, label="no prompt")
    assert ours.ious.shape == (BATCH, 3)


def test_mask_prompt_is_resized_with_antialias(sam21):
    """A (B, 256, 256, 1) mask prompt is downsampled to the 64x64 mask-input size."""
    _check(sam21, None, None, _mask(seed=2), False, seed=2, label="mask prompt")


def _with_absent_objects(torch_model, n_absent: int):
    """A copy of the reference whose object-score head says "absent" for exactly `n_absent`
    of the mixed-prompt examples (its last layer scaled x10, its bias shifted between two
    sorted scores), so both sides of the gate are far from 0."""
    torch_model = copy.deepcopy(torch_model)
    head = torch_model.sam_mask_decoder.pred_obj_score_head.layers[2]
    features, high_res = _features(0)
    scores = _reference(torch_model, features, MIXED_COORDS, MIXED_LABELS, None, False, high_res)
    scores = 10.0 * np.sort(scores.object_score_logits[:, 0])
    with torch.no_grad():
        head.weight.mul_(10.0)
        head.bias.mul_(10.0).sub_(float((scores[n_absent - 1] + scores[n_absent]) / 2))
    return torch_model


def _check_gated(name, torch_model, n_absent, label):
    torch_model = _with_absent_objects(torch_model, n_absent)
    model, variables = ref.convert_sam_heads(torch_model, name, SIZE)
    models = (torch_model, model, variables)
    ours, expected = _check(models, MIXED_COORDS, MIXED_LABELS, None, False, label=label)
    absent = expected.object_score_logits[:, 0] <= 0
    print(f"object scores {expected.object_score_logits[:, 0]}")
    assert absent.sum() == n_absent and np.abs(expected.object_score_logits).min() > 0.01
    no_obj_ptr = torch_model.no_obj_ptr.detach().numpy()[0]
    for i in np.flatnonzero(absent):
        assert np.all(np.asarray(ours.low_res_multimasks[i]) == NO_OBJ_SCORE)
        assert np.all(expected.low_res_multimasks[i] == NO_OBJ_SCORE)
        np.testing.assert_allclose(ours.obj_ptr[i], no_obj_ptr, rtol=0, atol=1e-7)
    for i in np.flatnonzero(~absent):
        assert np.asarray(ours.low_res_multimasks[i]).max() > -100


def test_absent_objects_are_gated(sam21):
    """Object score <= 0: every mask logit is NO_OBJ_SCORE and the pointer is no_obj_ptr."""
    _check_gated("sam2.1_hiera_t", sam21[0], n_absent=2, label="gating")


def test_sam2_0_variant():
    """SAM 2 (2.0) tiny: its own converted weights (whose raw object scores are all negative
    for these inputs, so one absent and three present objects are set up as above)."""
    name = "sam2_hiera_t"
    _check_gated(name, ref.cached_reference(name, SIZE), n_absent=1, label=name)


def test_use_mask_as_output(sam21):
    torch_model, model, variables = sam21
    features, high_res = _features(3)
    masks = _mask(seed=3) > 0.5
    masks[0] = False  # an empty mask: object absent, no_obj_ptr
    masks[3] = True  # a full one
    ours = jax.jit(lambda v, f, h, m: model.apply(v, f, h, m, method=SAM2.use_mask_as_output))(
        variables, features, high_res, masks
    )
    with torch.no_grad():
        expected = torch_model._use_mask_as_output(
            ref.nchw(features), [ref.nchw(h) for h in high_res], ref.nchw(masks)
        )
    expected = [ref.nhwc(t) if t.ndim == 4 else t.numpy() for t in expected]
    expected = SAMHeadsOutput(*expected, iou=expected[2])  # the one mask's IoU
    errors = _errors(ours, expected)
    print(f"use_mask_as_output: {errors}")
    assert max(errors.values()) <= TOLERANCE, errors
    np.testing.assert_array_equal(np.asarray(ours.object_score_logits)[:, 0], [-10, 10, 10, 10])
    np.testing.assert_allclose(
        ours.obj_ptr[0], torch_model.no_obj_ptr.detach().numpy()[0], rtol=0, atol=1e-7
    )
