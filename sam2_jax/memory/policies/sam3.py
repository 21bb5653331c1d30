"""SAM 3's tracker memory selection as a memory policy.

SAM 3's tracker (`Sam3TrackerBase` with `use_memory_selection`) scores every tracked frame by
`eff_iou_score` = (2 sigmoid(s) - 1 if the object score logit s > 0, else 0) x the predicted
IoU, and reads spatial memories *and* object pointers only from frames scoring above
`mf_threshold` (0.01), walking back from the previous frame with the evaluation stride
(`GatedPolicy`: the previous frame is always read; frame 0 is never on the forward walk).

Deviation: SAM 3 averages the score over the objects decoded together in one batch; here each
object has its own score, as each object has its own memory.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp

from sam2_jax.memory.policies.gated import GatedPolicy
from sam2_jax.memory.policy import StepScores


def memory_score(object_score: jax.Array, iou: jax.Array) -> jax.Array:
    """(B,) SAM 3's per-frame memory score: the object score rescaled to [0, 1) where the
    object is present (0 elsewhere), times the predicted IoU."""
    present = jnp.where(object_score > 0, jax.nn.sigmoid(object_score) * 2 - 1, 0.0)
    return present * iou


@dataclasses.dataclass(frozen=True)
class Sam3Policy(GatedPolicy):
    """Attributes: threshold: SAM 3's `mf_threshold`; stride: its
    `memory_temporal_stride_for_eval`."""

    threshold: float = 0.01
    skip_start: int = 1
    gate_pointers: bool = True

    def gate(self, step: StepScores, state: Any) -> jax.Array:
        del state
        return memory_score(step.object_score, step.iou) > self.threshold
