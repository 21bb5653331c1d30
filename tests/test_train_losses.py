"""The training loss equals the reference's `training.loss_fns.MultiStepMultiMasksAndIous`.

Same random predictions into both: loss terms and the gradients w.r.t. every step's mask
logits, IoU predictions and object scores (jax.grad vs torch autograd). Frames mix multimask
(3 candidates) and single-mask steps, absent objects and padding steps / objects.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
loss_fns = pytest.importorskip("training.loss_fns")

from sam2_jax.train import losses as train_losses  # noqa: E402
from sam2_jax.train.losses import LossConfig, frame_losses, weighted_total  # noqa: E402

N, H, W, K = 3, 24, 24, 3  # objects, mask size, step slots per frame
NAMES = ("loss_mask", "loss_dice", "loss_iou", "loss_class")
# Per frame: real candidates per step (0 = padding step).
FRAME_STEPS = [(3, 1, 0), (1, 0, 0), (3, 3, 1)]


def _reference_criterion():
    return loss_fns.MultiStepMultiMasksAndIous(
        weight_dict={"loss_mask": 20, "loss_dice": 1, "loss_iou": 1, "loss_class": 1},
        focal_alpha=0.25,
        focal_gamma=2,
        supervise_all_iou=True,
        iou_use_l1_loss=True,
        pred_obj_scores=True,
        focal_gamma_obj_score=0.0,
        focal_alpha_obj_score=-1.0,
    )


@pytest.fixture(scope="module")
def case():
    rng = np.random.default_rng(0)
    t = len(FRAME_STEPS)
    logits = rng.normal(0, 3, (t, N, K, H, W, 3)).astype(np.float32)
    logits[0, 1, 0] = -1024.0  # an object scored absent: NO_OBJ_SCORE everywhere
    ious = rng.uniform(0, 1, (t, N, K, 3)).astype(np.float32)
    scores = rng.normal(0, 2, (t, N, K, 1)).astype(np.float32)
    yy, xx = np.mgrid[:H, :W]
    targets = np.zeros((t, N, H, W), bool)
    for f in range(t):
        for n in range(N):
            cy, cx, r = rng.uniform(4, 20), rng.uniform(4, 20), rng.uniform(3, 9)
            targets[f, n] = (yy - cy) ** 2 + (xx - cx) ** 2 < r**2
    targets[1, 2] = False  # absent in the ground truth: only the class loss counts
    num_masks = np.array([[max(m, 1) for m in steps] for steps in FRAME_STEPS], np.int32)
    step_valid = np.array([[m > 0 for m in steps] for steps in FRAME_STEPS])
    return logits, ious, scores, targets, num_masks, step_valid


def _value_and_grad(fn):
    return jax.value_and_grad(fn, (0, 1, 2), has_aux=True)


@jax.jit
def _ours_jit(logits, ious, scores, targets, num_masks, step_valid, object_valid):
    cfg = LossConfig()
    num_objects = jnp.maximum(object_valid.sum().astype(jnp.float32), 1.0)

    def total(logits, ious, scores):
        terms = {name: 0.0 for name in NAMES}
        for f in range(logits.shape[0]):
            frame = frame_losses(
                logits[f], ious[f], scores[f], targets[f], num_masks[f], step_valid[f],
                object_valid, num_objects, cfg,
            )  # fmt: skip
            terms = {k: terms[k] + frame[k] for k in NAMES}
        return weighted_total(terms, cfg), terms

    (loss, terms), grads = _value_and_grad(total)(logits, ious, scores)
    return loss, terms, grads


def _ours(*args):
    loss, terms, grads = _ours_jit(*args)
    return float(loss), {k: float(v) for k, v in terms.items()}, grads


def _reference(logits, ious, scores, targets, num_masks, step_valid, objects):
    """The reference on the chosen objects only (it has no padding objects)."""
    leaves, outs = [], []
    for f, steps in enumerate(step_valid):
        frame = {k: [] for k in ("multistep_pred_multimasks_high_res", "multistep_pred_ious",
                                 "multistep_object_score_logits")}  # fmt: skip
        for k in np.flatnonzero(steps):
            m = int(num_masks[f, k])
            x = torch.tensor(
                np.moveaxis(logits[f][objects, k, :, :, :m], -1, 1), requires_grad=True
            )
            i = torch.tensor(ious[f][objects, k, :m], requires_grad=True)
            s = torch.tensor(scores[f][objects, k], requires_grad=True)
            leaves.append((f, k, m, x, i, s))
            frame["multistep_pred_multimasks_high_res"].append(x)
            frame["multistep_pred_ious"].append(i)
            frame["multistep_object_score_logits"].append(s)
        outs.append(frame)
    losses = _reference_criterion()(outs, torch.tensor(targets[:, objects]))
    losses["core_loss"].backward()
    values = {k: float(losses[k].detach()) for k in (*NAMES, "core_loss")}
    return values.pop("core_loss"), values, leaves


@pytest.mark.parametrize("object_valid", [(True, True, True), (True, False, True)])
def test_loss_and_gradients_match_reference(case, object_valid):
    logits, ious, scores, targets, num_masks, step_valid = case
    valid = np.array(object_valid)
    loss, terms, (g_logits, g_ious, g_scores) = _ours(
        logits, ious, scores, targets, num_masks, step_valid, jnp.asarray(valid)
    )
    objects = np.flatnonzero(valid)
    ref_loss, ref_terms, leaves = _reference(
        logits, ious, scores, targets, num_masks, step_valid, objects
    )
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-5)
    for name in NAMES:
        np.testing.assert_allclose(terms[name], ref_terms[name], rtol=1e-5, atol=1e-7)

    g_logits, g_ious, g_scores = (np.asarray(g) for g in (g_logits, g_ious, g_scores))
    worst = 0.0
    for f, k, m, x, i, s in leaves:
        ours = np.moveaxis(g_logits[f][objects, k, :, :, :m], -1, 1)
        scale = np.abs(x.grad.numpy()).max()
        np.testing.assert_allclose(ours, x.grad.numpy(), rtol=1e-4, atol=1e-5 * scale)
        # Small entries (sigmoid(s) - target cancelling) keep the rounding of their O(max
        # |grad|) terms: 1 ULP of max |grad| seen (3e-8 at 0.3): atol 4 ULP of max |grad|
        for ours_g, theirs_g in (
            (g_ious[f][objects, k, :m], i.grad),
            (g_scores[f][objects, k], s.grad),
        ):
            theirs_g = theirs_g.numpy()
            ulp4 = 4 * np.finfo(np.float32).eps * np.abs(theirs_g).max()
            np.testing.assert_allclose(ours_g, theirs_g, rtol=1e-5, atol=ulp4)
        worst = max(worst, np.abs(ours - x.grad.numpy()).max() / scale)
    # Nothing reaches padding: unused candidate slots, padding steps, padding objects.
    used = np.zeros(g_logits.shape, bool)
    for f, k, m, *_ in leaves:
        used[f, objects[:, None], k, :, :, :m] = True
    assert np.all(g_logits[~used] == 0)
    assert worst < 1e-4


def test_iou_ranking_loss_counts_wrongly_ordered_pairs_by_what_they_cost():
    """`iou_rank_weight` (not in the reference): on multimask steps loss_iou gains the pairwise
    logistic ranking term, written out here pair by pair; single-mask steps and weight 0 keep
    the reference's loss exactly."""
    rng = np.random.default_rng(0)
    pred = rng.uniform(0, 1, (5, 3)).astype(np.float32)
    actual = rng.uniform(0, 1, (5, 3)).astype(np.float32)
    actual[4] = 0.5  # three equal masks: nothing to rank
    valid = np.ones((1, 3), bool)
    rank = train_losses.iou_ranking_loss
    got = np.asarray(rank(jnp.asarray(pred), jnp.asarray(actual), valid, 0.05))
    for n in range(5):
        terms = []
        for j, k in ((0, 1), (0, 2), (1, 2)):
            gap = actual[n, j] - actual[n, k]
            margin = np.sign(gap) * (pred[n, j] - pred[n, k]) / 0.05
            terms.append(abs(gap) * np.log1p(np.exp(-margin)))
        np.testing.assert_allclose(got[n], np.mean(terms), rtol=1e-5)
    assert got[4] == 0.0
    right = np.asarray(rank(jnp.asarray(actual), jnp.asarray(actual), valid, 0.05))
    assert (right[:4] < got[:4]).all()  # predicting the true IoUs ranks better than noise
    two = np.array([[True, True, False]])
    only_two = rank(jnp.asarray(pred), jnp.asarray(actual), two, 0.05)
    gap = actual[:, 0] - actual[:, 1]
    expected = np.abs(gap) * np.log1p(np.exp(-np.sign(gap) * (pred[:, 0] - pred[:, 1]) / 0.05))
    np.testing.assert_allclose(np.asarray(only_two), expected, rtol=1e-5)

    logits = jnp.asarray(rng.normal(0, 2, (5, 16, 16, 3)).astype(np.float32))
    targets = jnp.asarray(rng.uniform(size=(5, 16, 16)) > 0.5)
    score = jnp.zeros((5, 1))
    plain = train_losses.LossConfig()
    ranked = train_losses.LossConfig(iou_rank_weight=2.0)
    for num_masks in (1, 3):
        a = train_losses.step_losses(logits, jnp.asarray(pred), score, targets, num_masks, plain)
        b = train_losses.step_losses(logits, jnp.asarray(pred), score, targets, num_masks, ranked)
        for name in ("loss_mask", "loss_dice", "loss_class"):
            np.testing.assert_array_equal(a[name], b[name])
        extra = np.asarray(b["loss_iou"] - a["loss_iou"])
        if num_masks == 1:
            np.testing.assert_array_equal(extra, 0.0)
        else:
            assert (extra > 0).all()
