"""Prompt simulation: the click sampler's label rule over many random masks, the noisy box
against the reference's `sample_box_points`, and the prompt-plan probabilities against the
reference trainer's own `prepare_prompt_inputs` run many times."""

from __future__ import annotations

import collections
import types

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sam2_jax.train.prompting import (
    TrainPromptConfig,
    mask_to_box,
    sample_box_points,
    sample_plan,
    sample_points_from_errors,
)

torch = pytest.importorskip("torch")


def _random_masks(rng: np.random.Generator, count: int, size: int) -> np.ndarray:
    """(count, size, size) bool: unions of random rectangles, some empty, some full."""
    masks = np.zeros((count, size, size), bool)
    for i in range(count):
        for _ in range(rng.integers(0, 4)):
            y0, x0 = rng.integers(0, size, 2)
            h, w = rng.integers(1, size // 2, 2)
            masks[i, y0 : y0 + h, x0 : x0 + w] = True
    masks[::17] = False
    masks[5::23] = True
    return masks


def test_click_lies_in_error_region_with_the_label_rule():
    """Positive clicks lie in false negatives, negative ones in false positives, or in the
    background when the prediction is exactly right; over 600 random (gt, pred) pairs x 8
    draws, predictions including exact copies, empty ones and sampling from the GT alone."""
    rng = np.random.default_rng(0)
    count, size, draws = 600, 32, 8
    gt = _random_masks(rng, count, size)
    pred = _random_masks(rng, count, size)
    pred[::5] = gt[::5]  # all correct
    pred[1::7] = False  # sampling from the ground truth
    # An all-foreground GT predicted perfectly has no error and no background: excluded.
    keep = ~(gt.all(axis=(1, 2)) & (gt == pred).all(axis=(1, 2)))
    gt, pred = gt[keep], pred[keep]

    sample = jax.jit(jax.vmap(sample_points_from_errors, in_axes=(0, None, None)))
    keys = jax.random.split(jax.random.key(1), draws)
    coords, labels = (np.asarray(a) for a in sample(keys, jnp.asarray(gt), jnp.asarray(pred)))
    assert coords.shape == (draws, len(gt), 2) and labels.shape == (draws, len(gt))
    x, y = coords[..., 0].astype(int), coords[..., 1].astype(int)
    assert np.all(coords == np.floor(coords)) and x.min() >= 0 and x.max() < size
    idx = np.arange(len(gt))[None]
    g, p = gt[idx, y, x], pred[idx, y, x]
    all_correct = (gt == pred).all(axis=(1, 2))[None]
    positive = labels == 1
    assert np.all(g[positive] & ~p[positive]), "positive clicks must be false negatives"
    negative_ok = (~g & p) | (all_correct & ~g)
    assert np.all(negative_ok[~positive]), "negative clicks: false positives or background"
    # Where there are false negatives but no false positives, every click is positive.
    fn_only = ((gt & ~pred).any((1, 2)) & ~(~gt & pred).any((1, 2)))[None]
    assert np.all(positive[np.broadcast_to(fn_only, positive.shape)])


def test_click_is_uniform_over_the_error_pixels():
    """P(positive) = |FN| / (|FN| + |FP|) over 4000 draws (within 4 standard deviations)."""
    gt = np.zeros((1, 32, 32), bool)
    gt[0, 4:20, 4:20] = True  # 256 px
    pred = np.zeros_like(gt)
    pred[0, 4:20, 4:12] = True  # FN = 128 px
    pred[0, 24:30, 0:32] = True  # FP = 192 px
    keys = jax.random.split(jax.random.key(2), 4000)
    _, labels = jax.jit(jax.vmap(sample_points_from_errors, in_axes=(0, None, None)))(
        keys, jnp.asarray(gt), jnp.asarray(pred)
    )
    p = 128 / (128 + 192)
    frac = float(np.mean(np.asarray(labels)))
    assert abs(frac - p) < 4 * np.sqrt(p * (1 - p) / 4000), frac


def test_box_matches_reference():
    """mask_to_box equals the reference's (empty masks included); the noisy box stays within
    min(0.1 side, 20 px) of the tight box, clamped, labels 2 / 3, as the reference's does."""
    from sam2.modeling.sam2_utils import sample_box_points as ref_sample_box_points
    from sam2.utils.misc import mask_to_box as ref_mask_to_box

    rng = np.random.default_rng(3)
    masks = _random_masks(rng, 64, 48)
    ref_box = ref_mask_to_box(torch.from_numpy(masks[:, None])).numpy()[:, 0]
    np.testing.assert_array_equal(np.asarray(mask_to_box(jnp.asarray(masks))), ref_box)

    coords, labels = sample_box_points(jax.random.key(0), jnp.asarray(masks), noise=0.0)
    ref_coords, ref_labels = ref_sample_box_points(torch.from_numpy(masks[:, None]), noise=0.0)
    np.testing.assert_array_equal(np.asarray(coords), ref_coords.numpy())
    np.testing.assert_array_equal(np.asarray(labels), ref_labels.numpy())

    present = masks.any(axis=(1, 2))
    keys = jax.random.split(jax.random.key(4), 50)
    noisy, _ = jax.vmap(sample_box_points, in_axes=(0, None))(keys, jnp.asarray(masks))
    noisy = np.asarray(noisy).reshape(50, -1, 4)[:, present]
    tight = ref_box[present].astype(np.float32)
    side = np.stack([tight[:, 2] - tight[:, 0], tight[:, 3] - tight[:, 1]] * 2, axis=1)
    bound = np.minimum(0.1 * side, 20.0)
    assert np.all(np.abs(noisy - tight) <= bound + 1e-5)
    assert noisy.min() >= 0 and noisy.max() <= 47
    assert np.any(np.abs(noisy - tight) > 0.5 * bound)  # the jitter is really applied


def _plan_category(use_mask, num_init, num_correct, num_box) -> tuple:
    return (bool(use_mask), int(num_init), int(num_correct), int(num_box))


def _reference_categories(runs: int, num_frames: int) -> collections.Counter:
    """The reference's `SAM2Train.prepare_prompt_inputs` (training mode, released settings)
    on a stand-in object with its attributes; counts plan categories."""
    from training.model.sam2 import SAM2Train

    cfg = TrainPromptConfig()
    fake = types.SimpleNamespace(
        training=True,
        rng=np.random.default_rng(42),
        prob_to_use_pt_input_for_train=cfg.prob_to_use_pt_input,
        prob_to_use_box_input_for_train=cfg.prob_to_use_box_input,
        num_frames_to_correct_for_train=cfg.num_frames_to_correct,
        rand_frames_to_correct_for_train=cfg.rand_frames_to_correct,
        num_init_cond_frames_for_train=cfg.num_init_cond_frames,
        rand_init_cond_frames_for_train=cfg.rand_init_cond_frames,
        pt_sampling_for_eval="center",
    )
    masks = torch.zeros(num_frames, 1, 16, 16, dtype=torch.bool)
    masks[:, :, 4:9, 5:12] = True
    batch = types.SimpleNamespace(masks=masks, num_frames=num_frames)
    counts = collections.Counter()
    for _ in range(runs):
        out = SAM2Train.prepare_prompt_inputs(fake, {}, batch)
        init = out["init_cond_frames"]
        assert init[0] == 0
        corr = out["frames_to_add_correction_pt"]
        boxes = sum(
            int(p["point_labels"].shape[1] == 2) for p in out["point_inputs_per_frame"].values()
        )
        counts[_plan_category(not out["use_pt_input"], len(init), len(corr), boxes)] += 1
    return counts


def test_plan_probabilities_match_reference():
    """Joint frequencies of (mask prompt, #initial frames, #corrected frames, #boxes) over
    2000 plans equal those of the reference's sampler within 0.03; structural rules hold on
    every plan (frame 0 initial, corrected frames include the initial ones with point input,
    none with mask input, one click or a box on each initial frame)."""
    runs, t, n = 2000, 8, 2
    gt = np.zeros((n, t, 16, 16), bool)
    gt[:, :, 4:9, 5:12] = True
    plans = jax.jit(jax.vmap(sample_plan, in_axes=(0, None, None)), static_argnums=2)(
        jax.random.split(jax.random.key(5), runs), jnp.asarray(gt), TrainPromptConfig()
    )
    plans = jax.tree.map(np.asarray, plans)
    assert plans.init_cond[:, 0].all()
    use_mask, init, corr = plans.use_mask, plans.init_cond, plans.correct
    assert not corr[use_mask].any()
    assert np.all(corr[~use_mask] >= init[~use_mask])
    npts = plans.init_num_points
    assert np.all((npts > 0) == (init & ~use_mask[:, None]))
    box = npts == 2
    assert np.all(plans.init_labels[box[:, None].repeat(n, 1)] >= 2)
    clicks = (npts == 1)[:, None].repeat(n, 1)
    assert np.all(plans.init_labels[clicks][:, 0] == 1)  # a click in the GT is positive

    ours = collections.Counter(
        _plan_category(u, i.sum(), c.sum(), b.sum())
        for u, i, c, b in zip(use_mask, init, corr, box, strict=True)
    )
    ref = _reference_categories(runs, t)
    for cat in set(ours) | set(ref):
        assert abs(ours[cat] - ref[cat]) / runs < 0.03, (cat, ours[cat], ref[cat])
