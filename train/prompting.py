"""Interactive-prompt simulation of the reference trainer (`SAM2Train`), with `jax.random`.

One `PromptPlan` per training step decides, as the reference does once per batch:
- whether the initial prompts are ground-truth masks or points (P(points) = 0.5);
- the initial conditioning frames: frame 0 plus 0 or 1 random other frames (1-2 frames);
- per initial frame with points: a noisy box (P = 0.5) or one click sampled in the ground truth;
- the frames that receive correction clicks (points only): the initial frames, plus with
  `rand_frames_to_correct` up to `num_frames_to_correct` in total, the extra ones at random.
Correction clicks themselves depend on the predictions, so the forward pass samples them
(`sample_points_from_errors`) between decoder steps; a plan may also carry them, given.

Shapes: N objects (all videos' objects, flattened), T frames, S image size, C correction
clicks per frame. Coordinates are (x, y) in model-input pixels, as the reference's samplers
return them (integer pixel positions, boxes jittered in float).
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import jax
import jax.numpy as jnp


@dataclasses.dataclass(frozen=True)
class TrainPromptConfig:
    """`SAM2Train` prompt-simulation settings; defaults are the released SAM 2.1 training
    config (`sam2.1_hiera_b+_MOSE_finetune.yaml`)."""

    prob_to_use_pt_input: float = 0.5  # else the initial prompt is the ground-truth mask
    prob_to_use_box_input: float = 0.5  # per initial frame, given point input
    num_frames_to_correct: int = 2  # frames with correction clicks, the initial ones included
    rand_frames_to_correct: bool = True  # draw num_init .. num_frames_to_correct of them
    num_init_cond_frames: int = 2
    rand_init_cond_frames: bool = True  # draw 1 .. num_init_cond_frames of them
    add_all_frames_to_correct_as_cond: bool = True  # corrected frames become conditioning
    num_correction_pt_per_frame: int = 7
    prob_to_sample_from_gt: float = 0.1  # a correction click drawn from the GT, not the errors
    box_noise: float = 0.1  # box corner jitter as a fraction of the box size ...
    box_noise_bound: float = 20.0  # ... at most this many pixels

    def __post_init__(self):
        if self.num_init_cond_frames < 1:
            raise ValueError(f"num_init_cond_frames must be >= 1, got {self.num_init_cond_frames}")
        if self.prob_to_use_pt_input > 0 and self.num_frames_to_correct < self.num_init_cond_frames:
            raise ValueError(
                "num_frames_to_correct must be >= num_init_cond_frames with point input, got "
                f"{self.num_frames_to_correct} < {self.num_init_cond_frames}"
            )

    @property
    def max_cond_frames(self) -> int:
        """Most conditioning frames a clip can get (the memory bank's conditioning slots)."""
        if self.add_all_frames_to_correct_as_cond:
            return max(self.num_init_cond_frames, self.num_frames_to_correct)
        return self.num_init_cond_frames

    @property
    def max_points(self) -> int:
        """Point slots per frame: a box (2 points) plus every correction click."""
        return 2 + self.num_correction_pt_per_frame


def eval_prompt_config(num_correction_pt_per_frame: int = 7) -> TrainPromptConfig:
    """The reference's evaluation settings: the ground-truth mask on frame 0 only."""
    return TrainPromptConfig(
        prob_to_use_pt_input=0.0,
        prob_to_use_box_input=0.0,
        num_frames_to_correct=1,
        rand_frames_to_correct=False,
        num_init_cond_frames=1,
        rand_init_cond_frames=False,
        num_correction_pt_per_frame=num_correction_pt_per_frame,
        prob_to_sample_from_gt=0.0,
    )


class PromptPlan(NamedTuple):
    """The prompts of one clip (all arrays; one decision per batch, as in the reference).

    Attributes:
      use_mask: () bool, the initial prompt is the ground-truth mask (no clicks at all).
      init_cond: (T,) bool, initial conditioning frames (frame 0 always).
      correct: (T,) bool, frames that receive correction clicks.
      init_coords: (N, T, 2, 2) float32, initial points per frame (box corners or one click).
      init_labels: (N, T, 2) int32 (2 / 3 box corners, 1 positive, 0 negative).
      init_num_points: (T,) int32, 0 (mask prompt or none), 1 (click) or 2 (box).
      correction_coords: (N, T, C, 2) float32 given correction clicks, or None to sample them
        from the prediction errors during the forward pass.
      correction_labels: (N, T, C) int32, or None.
    """

    use_mask: jax.Array
    init_cond: jax.Array
    correct: jax.Array
    init_coords: jax.Array
    init_labels: jax.Array
    init_num_points: jax.Array
    correction_coords: jax.Array | None = None
    correction_labels: jax.Array | None = None

    def processing_order(self) -> jax.Array:
        """(T,) int32: initial conditioning frames first, then the others, each ascending."""
        t = self.init_cond.shape[0]
        frames = jnp.arange(t, dtype=jnp.int32)
        return jnp.argsort(jnp.where(self.init_cond, frames, frames + t)).astype(jnp.int32)


def mask_to_box(masks: jax.Array) -> jax.Array:
    """(N, H, W) bool -> (N, 4) int32 (x0, y0, x1, y1), inclusive; an empty mask gives
    (W, H, -1, -1), as the reference's `mask_to_box`."""
    _, h, w = masks.shape
    rows = masks.any(axis=2)  # (N, H)
    cols = masks.any(axis=1)  # (N, W)
    xs, ys = jnp.arange(w), jnp.arange(h)
    x0 = jnp.where(cols, xs, w).min(axis=1)
    x1 = jnp.where(cols, xs, -1).max(axis=1)
    y0 = jnp.where(rows, ys, h).min(axis=1)
    y1 = jnp.where(rows, ys, -1).max(axis=1)
    return jnp.stack([x0, y0, x1, y1], axis=1).astype(jnp.int32)


def sample_box_points(
    key: jax.Array, masks: jax.Array, noise: float = 0.1, noise_bound: float = 20.0
) -> tuple[jax.Array, jax.Array]:
    """A noisy bounding box of each mask as two points (reference `sample_box_points`).

    Each corner coordinate moves by U(-1, 1) * min(noise * box side, noise_bound), then is
    clamped to the image.

    Args:
      masks: (N, H, W) bool.

    Returns:
      coords (N, 2, 2) float32 [(x0, y0), (x1, y1)], labels (N, 2) int32 = [2, 3].
    """
    n, h, w = masks.shape
    box = mask_to_box(masks).astype(jnp.float32)  # (N, 4)
    if noise > 0.0:  # as in the reference, the clamp comes with the noise
        max_dx = jnp.minimum((box[:, 2] - box[:, 0]) * noise, noise_bound)
        max_dy = jnp.minimum((box[:, 3] - box[:, 1]) * noise, noise_bound)
        jitter = jax.random.uniform(key, (n, 4), jnp.float32) * 2.0 - 1.0
        box = box + jitter * jnp.stack([max_dx, max_dy, max_dx, max_dy], axis=1)
        box = jnp.clip(box, 0.0, jnp.asarray([w - 1, h - 1, w - 1, h - 1], jnp.float32))
    labels = jnp.broadcast_to(jnp.asarray([2, 3], jnp.int32), (n, 2))
    return box.reshape(n, 2, 2), labels  # (N, 4) -> (N, 2 corners, xy)


def sample_points_from_errors(
    key: jax.Array, gt_masks: jax.Array, pred_masks: jax.Array | None = None
) -> tuple[jax.Array, jax.Array]:
    """One click per object, uniform over the error region (reference
    `sample_random_points_from_errors` with num_pt = 1).

    False negatives (gt & ~pred) give positive clicks (label 1), false positives (~gt & pred)
    negative ones (label 0); a pixel-perfect prediction gives a negative click in the
    background. `pred_masks=None` samples from the ground truth (an empty prediction).

    Args:
      gt_masks, pred_masks: (N, H, W) bool.

    Returns:
      coords (N, 2) float32 (x, y) pixel positions, labels (N,) int32.
    """
    n, h, w = gt_masks.shape
    gt = gt_masks.astype(bool)
    pred = jnp.zeros_like(gt) if pred_masks is None else pred_masks.astype(bool)
    fp = ~gt & pred
    fn = gt & ~pred
    all_correct = ~(fp | fn).reshape(n, -1).any(axis=1)[:, None, None]  # (N, 1, 1)
    negative_region = fp | (all_correct & ~gt)
    # The argmax of uniform noise over the allowed pixels is a uniform draw among them;
    # channel 0 (negative) and 1 (positive) as in the reference.
    noise = jax.random.uniform(key, (n, h, w, 2), jnp.float32)
    noise = noise * jnp.stack([negative_region, fn], axis=-1)
    idx = jnp.argmax(noise.reshape(n, -1), axis=1)  # (N,) over (H, W, 2) flattened
    labels = (idx % 2).astype(jnp.int32)
    pixel = idx // 2
    coords = jnp.stack([pixel % w, pixel // w], axis=1).astype(jnp.float32)
    return coords, labels


def _rank(scores: jax.Array) -> jax.Array:
    """(T,) -> (T,) int32 rank of each entry in ascending order."""
    return jnp.argsort(jnp.argsort(scores)).astype(jnp.int32)


def sample_plan(key: jax.Array, gt_masks: jax.Array, cfg: TrainPromptConfig) -> PromptPlan:
    """Draws the prompts of one clip as `SAM2Train.prepare_prompt_inputs` does in training.

    Args:
      gt_masks: (N, T, S, S) bool ground-truth masks.

    Returns:
      a PromptPlan without correction clicks (they are sampled in the forward pass).
    """
    n, t = gt_masks.shape[:2]
    keys = jax.random.split(key, 8)
    use_pt = jax.random.uniform(keys[0]) < cfg.prob_to_use_pt_input
    if t == 1:  # image data: the reference forces one click-prompted, corrected frame
        use_pt = jnp.asarray(True)
        max_init, max_correct = 1, 1
    else:
        max_init, max_correct = cfg.num_init_cond_frames, cfg.num_frames_to_correct
    max_init = min(max_init, t)
    num_init = jnp.asarray(max_init, jnp.int32)
    if t > 1 and cfg.rand_init_cond_frames and max_init > 1:
        num_init = jax.random.randint(keys[1], (), 1, max_init + 1)
    num_correct = jnp.asarray(max_correct, jnp.int32)
    if t > 1 and cfg.rand_frames_to_correct:
        drawn = jax.random.randint(keys[2], (), num_init, max_correct + 1)
        num_correct = jnp.where(max_correct > num_init, drawn, max_correct)
    num_correct = jnp.minimum(num_correct, t)

    frames = jnp.arange(t)
    # Frame 0 plus num_init - 1 other frames, uniformly without replacement.
    others = jnp.where(frames == 0, jnp.inf, jax.random.uniform(keys[3], (t,)))
    init_cond = (frames == 0) | (_rank(others) < num_init - 1)
    # Correction frames: the initial ones plus num_correct - num_init of the others.
    rest = jnp.where(init_cond, jnp.inf, jax.random.uniform(keys[4], (t,)))
    extra = jnp.maximum(num_correct - num_init, 0)
    correct = (init_cond | (_rank(rest) < extra)) & use_pt

    # Initial points, drawn on the (at most max_init) candidate initial frames only: a box or
    # one click in the ground truth, per frame (used where init_cond & use_pt).
    first = jnp.argsort(jnp.where(init_cond, frames, frames + t))[:max_init]  # (I,)
    cand = gt_masks[:, first].reshape(n * max_init, *gt_masks.shape[2:])  # (N*I, S, S)
    box, box_labels = sample_box_points(keys[5], cand, cfg.box_noise, cfg.box_noise_bound)
    click, click_label = sample_points_from_errors(keys[6], cand, None)
    use_box = jax.random.uniform(keys[7], (t,)) < cfg.prob_to_use_box_input  # per frame
    ub = use_box[first][None, :, None]  # (1, I, 1)
    click = jnp.concatenate([click.reshape(n, max_init, 1, 2), jnp.zeros((n, max_init, 1, 2))], 2)
    click_labels = jnp.stack(
        [click_label.reshape(n, max_init), jnp.zeros((n, max_init), jnp.int32)], axis=2
    )  # (N, I, 2); the second slot is padding
    coords = jnp.where(ub[..., None], box.reshape(n, max_init, 2, 2), click)
    labels = jnp.where(ub, box_labels.reshape(n, max_init, 2), click_labels)
    init_coords = jnp.zeros((n, t, 2, 2), jnp.float32).at[:, first].set(coords)
    init_labels = jnp.zeros((n, t, 2), jnp.int32).at[:, first].set(labels)
    init_num_points = jnp.where(init_cond & use_pt, jnp.where(use_box, 2, 1), 0)
    return PromptPlan(
        use_mask=~use_pt,
        init_cond=init_cond,
        correct=correct,
        init_coords=init_coords.astype(jnp.float32),
        init_labels=init_labels.astype(jnp.int32),
        init_num_points=init_num_points.astype(jnp.int32),
    )
