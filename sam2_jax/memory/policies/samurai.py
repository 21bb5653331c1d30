"""SAMURAI's motion-aware memory as a memory policy (Yang et al. 2024, "SAMURAI: Adapting
Segment Anything Model for Zero-Shot Visual Tracking with Motion-Aware Memory").

Per object, a Kalman filter on the output box (`sam2_jax.memory.kalman`) and a count of
stable frames. On every frame whose decoder returns multimask candidates (tracked frames,
single-click prompts):
1. no track yet, or the count is 0: the best predicted IoU; the filter starts from its box
   (the count becomes 1);
2. count < `stable_frames_threshold`: the best predicted IoU; the filter predicts, then takes
   its box if that IoU > `stable_ious_threshold` (count + 1), else the count drops to 0;
3. otherwise the filter predicts and each candidate is scored
   `kf_score_weight` x IoU(predicted box, candidate box) + (1 - weight) x predicted IoU; the
   best is taken, and its box corrects the filter unless its predicted IoU is below
   `stable_ious_threshold` (then the count drops to 0).
Boxes are those of the candidate masks upsampled to the model input size (pixels > 0).
An object counts as present where its score logit is above `min_obj_score_logits` (-1).
Memories: `GatedPolicy` with the gate predicted IoU > `memory_bank_iou_threshold`, object
score > `memory_bank_obj_score_threshold` and, on frames chosen by the filter (case 3), the
chosen box's IoU with the prediction > `memory_bank_kf_score_threshold`; object pointers are
SAM 2's.

Deviations from the SAMURAI package (`absolutely-not-samurai`), whose state is one filter per
model (never reset between videos): here the state is per object and per video (the package
tracks one object per model), the filter runs in float32 (the package: float64 NumPy), and a
backward walk mirrors the forward one (the package walks forward only and fails backwards).
The interactive predictor decodes prompted frames outside the frame loop, so there the filter
starts on the first tracked frame; the package starts it on a single-click prompt's frame
(with a box prompt, as in the tests, both start on the first tracked frame). The compiled
loop (`track_video`, `propagate_videos`) decodes prompts inside it, as the package does.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp

from sam2_jax.memory import kalman
from sam2_jax.memory.policies.gated import GatedPolicy, GateFlags
from sam2_jax.memory.policy import StepScores
from sam2_jax.modeling.interpolation import upsample_bilinear


@flax.struct.dataclass
class MotionState:
    """Per-object SAMURAI state: filter mean (B, 8) and covariance (B, 8, 8) in input-size
    pixels, stable-frame count (B,), whether a track exists (B,), the chosen mask's filter IoU
    on the last frame (B,; +inf where the filter did not choose), and the memory gate flags."""

    mean: jax.Array
    covariance: jax.Array
    stable: jax.Array
    started: jax.Array
    kf_score: jax.Array
    flags: GateFlags


@dataclasses.dataclass(frozen=True)
class SamuraiPolicy(GatedPolicy):
    """SAMURAI's defaults are those of its released `sam2.1_hiera_t` / `_s` configs (`_b+` and
    `_l` use kf_score_weight 0.15)."""

    stable_frames_threshold: int = 15
    stable_ious_threshold: float = 0.3
    min_obj_score_logits: float = -1.0
    kf_score_weight: float = 0.25
    memory_bank_iou_threshold: float = 0.5
    memory_bank_obj_score_threshold: float = 0.0
    memory_bank_kf_score_threshold: float = 0.0
    skip_start: int = 2

    @property
    def object_score_threshold(self) -> float:
        return self.min_obj_score_logits

    def init_state(self, num_objects: int) -> Any:
        b = num_objects
        return MotionState(
            mean=jnp.zeros((b, 8), jnp.float32),
            covariance=jnp.zeros((b, 8, 8), jnp.float32),
            stable=jnp.zeros((b,), jnp.int32),
            started=jnp.zeros((b,), bool),
            kf_score=jnp.full((b,), jnp.inf, jnp.float32),
            flags=super().init_state(num_objects),
        )

    def flags(self, state: MotionState) -> GateFlags:
        return state.flags

    def with_flags(self, state: MotionState, flags: GateFlags) -> MotionState:
        return state.replace(flags=flags)

    def _steady(self, state: MotionState) -> jax.Array:
        """(B,) bool: the filter's choice applies (regime 3)."""
        return state.started & (state.stable >= self.stable_frames_threshold)

    def mask_chooser(self, state: MotionState, image_size: int):
        def choose(candidates: jax.Array, ious: jax.Array) -> jax.Array:
            high = upsample_bilinear(candidates, (image_size, image_size))  # (B, S, S, 3)
            predicted, _ = kalman.predict(state.mean, state.covariance)
            box = kalman.xyah_to_xyxy(predicted[:, :4])
            kf_iou = kalman.box_iou(box, kalman.mask_boxes(high))  # (B, 3)
            weighted = self.kf_score_weight * kf_iou + (1 - self.kf_score_weight) * ious
            steady = self._steady(state)[:, None]
            return jnp.argmax(jnp.where(steady, weighted, ious), axis=-1)

        return choose

    def update_state(
        self, state: MotionState, step: StepScores | None, tracked: jax.Array
    ) -> MotionState:
        """The filter after a frame (the module docstring's three cases), for objects decoded
        with multimask candidates; prompted frames with several clicks or a box, and mask
        prompts, leave it unchanged (as in SAMURAI)."""
        if step is None or step.mask_logits is None or step.multimask is None:
            return state
        run = step.multimask & tracked
        image_size = 4 * step.mask_logits.shape[1]  # low-res logits are S / 4 wide
        high = upsample_bilinear(step.mask_logits[..., None], (image_size, image_size))
        box = kalman.mask_boxes(high)[:, 0]  # (B, 4)
        measured = kalman.xyxy_to_xyah(box)
        fresh = ~state.started | (state.stable == 0)
        steady = self._steady(state)
        init_mean, init_cov = kalman.initiate(measured)
        pred_mean, pred_cov = kalman.predict(state.mean, state.covariance)
        upd_mean, upd_cov = kalman.update(pred_mean, pred_cov, measured)
        good = jnp.where(
            steady, step.iou >= self.stable_ious_threshold, step.iou > self.stable_ious_threshold
        )
        mean = jnp.where(fresh[:, None], init_mean, jnp.where(good[:, None], upd_mean, pred_mean))
        cov = jnp.where(
            fresh[:, None, None], init_cov, jnp.where(good[:, None, None], upd_cov, pred_cov)
        )
        stable = jnp.where(
            fresh,
            state.stable + 1,
            jnp.where(good, jnp.where(steady, state.stable, state.stable + 1), 0),
        )
        kf_iou = kalman.box_iou(kalman.xyah_to_xyxy(pred_mean[:, :4]), box[:, None])[:, 0]
        kf_score = jnp.where(steady, kf_iou, jnp.inf)
        return state.replace(
            mean=jnp.where(run[:, None], mean, state.mean),
            covariance=jnp.where(run[:, None, None], cov, state.covariance),
            stable=jnp.where(run, stable, state.stable),
            started=state.started | run,
            kf_score=jnp.where(run, kf_score, jnp.inf),
        )

    def gate(self, step: StepScores, state: MotionState) -> jax.Array:
        return (
            (step.iou > self.memory_bank_iou_threshold)
            & (step.object_score > self.memory_bank_obj_score_threshold)
            & (state.kf_score > self.memory_bank_kf_score_threshold)
        )
