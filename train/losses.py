"""The SAM 2 training loss (reference `training.loss_fns.MultiStepMultiMasksAndIous`).

For every frame and every simulated interaction step the model predicts M candidate masks
(M = 3 in multimask mode, else 1), their IoUs and one object score. Per object:

- focal loss (alpha 0.25, gamma 2, mean over pixels) and dice loss per candidate; the candidate
  with the lowest `w_mask * focal + w_dice * dice` is the one supervised;
- L1 (or MSE) between predicted and actual IoU of `logits > 0`, averaged over all candidates
  (`supervise_all_iou`) or taken at the chosen one; optionally (`iou_rank_weight` > 0, not in
  the reference) plus a pairwise ranking term on multimask steps (`iou_ranking_loss`);
- mask, dice and IoU losses count only where the object is present in the ground truth;
- the object score gets a binary cross-entropy against "the ground truth is non-empty".

Every term is divided by the number of objects and summed over objects, steps and frames;
`core_loss = 20 focal + 1 dice + 1 iou + 1 class` with the released weights.

Fixed shapes: candidates always have a slot axis of size M = 3; `num_masks` says how many are
real (1 or 3), and `step_valid` / `object_valid` drop padding steps and padding objects.
Layout: masks are (..., H, W, M), channels last.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class LossConfig:
    """Loss weights and options of the released SAM 2.1 training config."""

    weight_mask: float = 20.0  # focal loss
    weight_dice: float = 1.0
    weight_iou: float = 1.0
    weight_class: float = 1.0  # object score
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    supervise_all_iou: bool = True
    iou_use_l1_loss: bool = True
    focal_alpha_obj_score: float = -1.0  # < 0: no alpha weighting (plain BCE with gamma 0)
    focal_gamma_obj_score: float = 0.0
    # Not in the reference (0 keeps it exact): a pairwise ranking term added to loss_iou on
    # multimask steps, so the candidate the predictor picks (highest predicted IoU) is the best.
    iou_rank_weight: float = 0.0
    iou_rank_temperature: float = 0.05  # predicted-IoU difference that counts as one logit


def _sigmoid_and_log1p_exp(logits: jax.Array) -> tuple[jax.Array, jax.Array]:
    """sigmoid(x) and log(1 + exp(-|x|)) from one exponential (the elementwise loss terms run
    over every pixel of every candidate of every step: 3 transcendentals -> 2)."""
    e = jnp.exp(-jnp.abs(logits))
    prob = jnp.where(logits >= 0, 1.0, e) / (1.0 + e)
    return prob, jnp.log1p(e)


def sigmoid_focal_loss(
    logits: jax.Array,
    targets: jax.Array,
    alpha: float = 0.25,
    gamma: float = 2.0,
    parts: tuple[jax.Array, jax.Array] | None = None,
) -> jax.Array:
    """Elementwise focal loss (RetinaNet), unreduced.

    Args:
      logits, targets: same shape; targets in {0, 1} (float).
      alpha: weight of positives (1 - alpha for negatives); < 0 disables the weighting.
      parts: `_sigmoid_and_log1p_exp(logits)` when the caller has it already.
    """
    prob, log1p_exp = _sigmoid_and_log1p_exp(logits) if parts is None else parts
    # BCE with logits, stable form: max(x, 0) - x y + log(1 + exp(-|x|)).
    ce = jnp.maximum(logits, 0.0) - logits * targets + log1p_exp
    p_t = prob * targets + (1.0 - prob) * (1.0 - targets)
    loss = ce * (1.0 - p_t) ** gamma if gamma != 0 else ce
    if alpha >= 0:
        loss = (alpha * targets + (1.0 - alpha) * (1.0 - targets)) * loss
    return loss


def multimask_losses(
    logits: jax.Array, targets: jax.Array, pred_ious: jax.Array, cfg: LossConfig
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Focal, dice and IoU loss of every candidate mask, not yet divided by the object count.

    Args:
      logits: (N, H, W, M) mask logits at the ground-truth resolution.
      targets: (N, H, W) bool or {0, 1}.
      pred_ious: (N, M) predicted IoUs.

    Returns:
      focal (N, M) mean over pixels, dice (N, M), iou loss (N, M), actual IoU (N, M).
    """
    logits = logits.astype(jnp.float32)
    y = targets.astype(jnp.float32)[..., None]  # (N, H, W, 1), broadcast over M
    parts = _sigmoid_and_log1p_exp(logits)
    focal = sigmoid_focal_loss(logits, y, cfg.focal_alpha, cfg.focal_gamma, parts)
    focal = focal.mean(axis=(1, 2))
    prob = parts[0]
    numerator = 2.0 * (prob * y).sum(axis=(1, 2))  # (N, M)
    denominator = prob.sum(axis=(1, 2)) + y.sum(axis=(1, 2))
    dice = 1.0 - (numerator + 1.0) / (denominator + 1.0)
    pred_fg = logits > 0
    gt_fg = y > 0
    inter = (pred_fg & gt_fg).sum(axis=(1, 2)).astype(jnp.float32)
    union = (pred_fg | gt_fg).sum(axis=(1, 2)).astype(jnp.float32)
    actual_iou = inter / jnp.maximum(union, 1.0)  # no gradient: a count ratio
    diff = pred_ious.astype(jnp.float32) - actual_iou
    iou = jnp.abs(diff) if cfg.iou_use_l1_loss else diff**2
    return focal, dice, iou, actual_iou


def iou_ranking_loss(
    pred_ious: jax.Array, actual_ious: jax.Array, slot_valid: jax.Array, temperature: float
) -> jax.Array:
    """How often, weighted by what it costs, the predicted IoUs order two candidates wrongly.

    For every pair (j, k) of real candidates: |a_j - a_k| * softplus(-s (p_j - p_k) / t), with
    s = sign(a_j - a_k), averaged over the pairs: a logistic ranking loss weighted by the IoU
    lost when the worse of the two is picked (pairs of equal masks cost nothing).

    Args:
      pred_ious: (N, M) predicted IoUs; actual_ious: (N, M) (no gradient).
      slot_valid: (1, M) or (N, M) bool, the real candidates.

    Returns:
      (N,) the loss per object (0 with fewer than two real candidates).
    """
    p = pred_ious.astype(jnp.float32)
    a = jax.lax.stop_gradient(actual_ious)
    gap = a[:, :, None] - a[:, None, :]  # (N, M, M): a_j - a_k
    margin = (p[:, :, None] - p[:, None, :]) * jnp.sign(gap) / temperature  # (N, M, M)
    pair = slot_valid[:, :, None] & slot_valid[:, None, :]  # (N or 1, M, M)
    pair = pair & (jnp.arange(p.shape[1])[:, None] < jnp.arange(p.shape[1])[None, :])  # j < k
    cost = jnp.abs(gap) * jax.nn.softplus(-margin) * pair
    return cost.sum(axis=(1, 2)) / jnp.maximum(pair.sum(axis=(1, 2)), 1)


def step_losses(
    logits: jax.Array,
    pred_ious: jax.Array,
    object_score_logits: jax.Array,
    targets: jax.Array,
    num_masks: jax.Array | int,
    cfg: LossConfig,
) -> dict[str, jax.Array]:
    """Per-object losses of one prediction step (reference `_update_losses`), undivided.

    Args:
      logits: (N, H, W, M) candidate mask logits; only the first `num_masks` slots are real.
      pred_ious: (N, M).
      object_score_logits: (N, 1).
      targets: (N, H, W) bool ground truth.
      num_masks: () int, 1 or M (a multimask step with M > 1 picks the best candidate).

    Returns:
      dict of (N,) arrays: loss_mask, loss_dice, loss_iou, loss_class.
    """
    n, m = pred_ious.shape
    focal, dice, iou, actual_iou = multimask_losses(logits, targets, pred_ious, cfg)
    slot_valid = jnp.arange(m)[None, :] < jnp.asarray(num_masks)  # (1, M)
    combo = cfg.weight_mask * focal + cfg.weight_dice * dice
    best = jnp.argmin(jnp.where(slot_valid, combo, jnp.inf), axis=-1)  # (N,)
    pick = jax.nn.one_hot(best, m, dtype=focal.dtype)  # (N, M)
    multi = jnp.asarray(num_masks) > 1
    loss_mask = (focal * pick).sum(-1)
    loss_dice = (dice * pick).sum(-1)
    if cfg.supervise_all_iou:
        mean_iou = (iou * slot_valid).sum(-1) / jnp.maximum(slot_valid.sum(-1), 1)
        loss_iou = jnp.where(multi, mean_iou, iou[:, 0])
    else:
        loss_iou = (iou * pick).sum(-1)
    if cfg.iou_rank_weight:
        rank = iou_ranking_loss(pred_ious, actual_iou, slot_valid, cfg.iou_rank_temperature)
        loss_iou = loss_iou + cfg.iou_rank_weight * jnp.where(multi, rank, 0.0)
    present = targets.reshape(n, -1).any(axis=1).astype(jnp.float32)  # (N,)
    loss_class = sigmoid_focal_loss(
        object_score_logits[:, 0].astype(jnp.float32),
        present,
        cfg.focal_alpha_obj_score,
        cfg.focal_gamma_obj_score,
    )  # the reference averages over the single score per object
    return {
        "loss_mask": loss_mask * present,
        "loss_dice": loss_dice * present,
        "loss_iou": loss_iou * present,
        "loss_class": loss_class,
    }


def weighted_total(losses: dict[str, jax.Array], cfg: LossConfig) -> jax.Array:
    """`core_loss`: the weighted sum of the four terms (reference `reduce_loss`)."""
    return (
        cfg.weight_mask * losses["loss_mask"]
        + cfg.weight_dice * losses["loss_dice"]
        + cfg.weight_iou * losses["loss_iou"]
        + cfg.weight_class * losses["loss_class"]
    )


def frame_losses(
    logits: jax.Array,
    pred_ious: jax.Array,
    object_score_logits: jax.Array,
    targets: jax.Array,
    num_masks: jax.Array,
    step_valid: jax.Array,
    object_valid: jax.Array,
    num_objects: jax.Array | float,
    cfg: LossConfig,
) -> dict[str, jax.Array]:
    """The four loss terms of one frame, summed over its valid steps and objects.

    Args:
      logits: (N, K, H, W, M) candidate logits of K steps (padding steps allowed).
      pred_ious: (N, K, M); object_score_logits: (N, K, 1).
      targets: (N, H, W) bool.
      num_masks: (K,) int, real candidates per step (1 or 3).
      step_valid: (K,) bool.
      object_valid: (N,) bool; padding objects add nothing.
      num_objects: the normalizer (the reference's object count, at least 1).

    Returns:
      dict of () arrays: loss_mask, loss_dice, loss_iou, loss_class.
    """

    per_step = jax.vmap(
        lambda x, i, s, m: step_losses(x, i, s, targets, m, cfg), in_axes=(1, 1, 1, 0)
    )(logits, pred_ious, object_score_logits, num_masks)  # each (K, N)
    weights = step_valid.astype(jnp.float32)[:, None] * object_valid.astype(jnp.float32)[None]
    return {name: (value * weights).sum() / num_objects for name, value in per_step.items()}
