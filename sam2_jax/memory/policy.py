"""Memory policies: what a frame reads from the bank and what it writes into it.

A `MemoryPolicy` is a frozen (hashable) dataclass, so it is a static argument of the compiled
frame loop: changing its fields compiles a new program, a video of another length does not.
Every path takes one: `propagate` / `propagate_videos` / `track_video`, `SAM2VideoPredictor`
(`build_sam2_video_predictor(memory_policy=...)`), `StreamTracker`.

A policy implements
- `select(bank, frame_idx, ...) -> MemorySelection`: the slots read and their temporal
  encodings;
- `write(bank, frame_idx, features, obj_ptr, is_conditioning, enable, step) -> (bank,
  overflow)`: what enters the bank after the frame's decode (`step` carries the frame's
  predicted IoU and object score, for quality-gated writes);
- `init_state(num_objects)`: optional per-object state of its own (a motion model, a score
  history), kept in `MemoryBank.policy_state` and so carried by the scan; `write` may
  update it;
- `mask_chooser(state, image_size)`: optionally, which multimask candidate a frame takes in
  place of the highest predicted IoU (a motion model's choice), and `object_score_threshold`,
  the object score above which an object counts as present (the reference: 0);
- `num_recent_slots` / `num_ptr_slots`: the sizes of the bank's recent rings the policy
  needs (the reference: num_maskmem - 1 and max_obj_ptrs_in_encoder - 1);
- `history_frames(frame_idx, reverse)`: the non-conditioning frames, behind `frame_idx` in
  tracking order, whose stored memories seed a bank for tracking from it (the interactive
  predictor rebuilds its bank from stored outputs);
- `has_pathways` (SAM2Long): several hypotheses per object (`num_pathways`). The step runs on
  `expand(bank)` (an object's pathways as consecutive rows), lets `choose_pathways` pick, for
  each new row, a parent row and one of its multimask candidates, and `collapse`s the rows
  back into the bank of B objects; the frame's output is each object's first row.

`reference_policy()` is SAM 2 as released; its two evaluation settings are the reference's
`memory_temporal_stride_for_eval` and `max_cond_frames_in_attn`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from sam2_jax.memory.bank import MemoryBank, write_conditioning, write_recent
from sam2_jax.memory.selection import MemorySelection, recent_position, select_memories


class StepScores(NamedTuple):
    """What a write may look at besides the memory itself."""

    iou: jax.Array  # (B,) float32 predicted IoU of the output mask
    object_score: jax.Array  # (B,) float32 object score logit (> 0: the object is visible)
    mask_logits: jax.Array | None = None  # (B, 4h, 4w) the output's low-res logits
    multimask: jax.Array | None = None  # (B,) bool: chosen among multimask candidates
    candidates: jax.Array | None = None  # (B, 4h, 4w, 3) the multimask candidates' logits
    candidate_ious: jax.Array | None = None  # (B, 3) their predicted IoUs
    binarized: jax.Array | None = None  # (B,) bool: the policy's `binarize_memory` decision


@dataclasses.dataclass(frozen=True)
class MemoryPolicy:
    """Base class: the reference's reads and writes (subclasses override what they change).

    Attributes:
      num_maskmem: spatial memories read per frame including conditioning (the model's 7).
      max_obj_ptrs_in_encoder: pointer window (the model's 16).
    """

    num_maskmem: int = 7
    max_obj_ptrs_in_encoder: int = 16

    @property
    def memory_temporal_stride(self) -> int:
        return 1

    @property
    def max_cond_frames_in_attn(self) -> int:
        return -1

    @property
    def object_score_threshold(self) -> float:
        """An object is present where its score logit is above this."""
        return 0.0

    @property
    def num_recent_slots(self) -> int:
        """R, the bank's ring of recent spatial memories."""
        return self.num_maskmem - 1

    @property
    def num_ptr_slots(self) -> int:
        """P, the bank's ring of recent object pointers."""
        return self.max_obj_ptrs_in_encoder - 1

    def init_state(self, num_objects: int) -> Any:
        """Per-object state carried in the bank (None: none)."""
        del num_objects
        return None

    @property
    def num_pathways(self) -> int:
        """Hypotheses kept per object (SAM2Long's pathways); 1: one track per object."""
        return 1

    @property
    def has_pathways(self) -> bool:
        """Whether the step runs on `expand`ed rows and lets `choose_pathways` pick (also
        with a single pathway, whose state then has the pathways' layout)."""
        return self.num_pathways > 1

    def expand(self, bank: MemoryBank) -> MemoryBank:
        """With pathways: the bank of B objects as B * num_pathways rows (an object's
        pathways consecutive), each an ordinary bank row with its own per-row state."""
        return bank

    def collapse(self, rows: MemoryBank, bank: MemoryBank) -> MemoryBank:
        """`expand`'s inverse after a frame: the bank of B objects (`bank`: the one expanded)
        holding the B * num_pathways rows."""
        del bank
        return rows

    def choose_pathways(
        self, state: Any, candidate_ious: jax.Array, object_score: jax.Array, eligible: jax.Array
    ) -> tuple[jax.Array, jax.Array, Any]:
        """With pathways, on rows = B * num_pathways: which row each row continues and which
        multimask candidate it takes.

        Args:
          state: the per-row policy state of the expanded bank.
          candidate_ious: (rows, 3) predicted IoUs of each row's candidates.
          object_score: (rows,) object score logits.
          eligible: (rows,) bool, rows whose candidates may be chosen (tracked, not prompted,
            multimask); equal within an object.

        Returns:
          parent (rows,) int32 row each row continues (its own where not eligible),
          candidate (rows,) int32 in 0..2, or -1 to keep the parent's own output, and the
          per-row state gathered from the parents and updated.
        """
        raise NotImplementedError(f"{type(self).__name__} keeps one pathway per object")

    def binarize_memory(self, state: Any, step: StepScores, frame_idx: jax.Array) -> Any:
        """None, or (B,) bool: frames whose memory is encoded from the binarized mask (as
        prompted frames' are) rather than its sigmoid, decided before the write."""
        del state, step, frame_idx
        return None

    def mask_chooser(
        self, state: Any, image_size: int
    ) -> Callable[[jax.Array, jax.Array], jax.Array] | None:
        """None (the best predicted IoU), or (gated candidate logits (B, 4h, 4w, 3), IoUs
        (B, 3)) -> (B,) index of the candidate each object takes, given the policy state."""
        del state, image_size
        return None

    def select(
        self,
        bank: MemoryBank,
        frame_idx: jax.Array,
        *,
        reverse: bool | jax.Array,
        num_frames: int | jax.Array,
        signed_ptr_pos: bool = True,
        training: bool = False,
    ) -> MemorySelection:
        return select_memories(
            bank,
            frame_idx,
            reverse=reverse,
            num_frames=num_frames,
            num_maskmem=self.num_maskmem,
            max_obj_ptrs_in_encoder=self.max_obj_ptrs_in_encoder,
            signed_ptr_pos=signed_ptr_pos,
            training=training,
            memory_temporal_stride=self.memory_temporal_stride,
            max_cond_frames_in_attn=self.max_cond_frames_in_attn,
        )

    def write(
        self,
        bank: MemoryBank,
        frame_idx: jax.Array,
        features: jax.Array,
        obj_ptr: jax.Array,
        is_conditioning: jax.Array,
        enable: jax.Array,
        step: StepScores | None = None,
        *,
        reverse: bool | jax.Array = False,
    ) -> tuple[MemoryBank, jax.Array]:
        """Prompted frames become conditioning memories, every other tracked frame a recent
        one; the recent ring evicts first what the next frame no longer reads.

        Args:
          frame_idx: () int32; features: (B, HW, M); obj_ptr: (B, C); is_conditioning,
            enable: (B,) bool; step: the frame's scores (unused here).

        Returns:
          the new bank and (B,) bool overflow (conditioning slots exhausted).
        """
        del step
        bank, overflow = write_conditioning(
            bank, frame_idx, features, obj_ptr, enable & is_conditioning
        )
        sign = jnp.where(reverse, -1, 1).astype(jnp.int32)
        next_frame = jnp.asarray(frame_idx, jnp.int32) + sign
        still_read = recent_position(
            bank.recent_frame, next_frame, sign, self.memory_temporal_stride, self.num_maskmem
        )
        keep = bank.recent_valid & (still_read > 0)
        bank = write_recent(bank, frame_idx, features, obj_ptr, enable & ~is_conditioning, keep)
        return bank, overflow

    @property
    def history_span(self) -> int:
        """How far behind a frame (in tracking order) the outputs it reads can lie: the pointer
        window, or the farthest strided memory position, 1 + (num_maskmem - 2) x stride."""
        return max(
            self.max_obj_ptrs_in_encoder - 1,
            1 + (self.num_maskmem - 2) * self.memory_temporal_stride,
        )

    def history_frames(self, frame_idx: int, reverse: bool) -> list[tuple[int, bool, bool]]:
        """(frame, memory read, pointer read) for every frame behind `frame_idx` (in tracking
        order) whose stored output the frame reads: the spatial-memory positions and the
        pointer window. The interactive predictor seeds its bank with them."""
        sign = -1 if reverse else 1
        stride, span = self.memory_temporal_stride, self.max_obj_ptrs_in_encoder - 1
        reach = self.history_span
        frames = [frame_idx - sign * d for d in range(1, reach + 1)]
        rel = recent_position(jnp.asarray(frames), frame_idx, sign, stride, self.num_maskmem)
        return [
            (f, r > 0, d <= span)
            for d, (f, r) in enumerate(zip(frames, rel.tolist(), strict=True), start=1)
            if r > 0 or d <= span
        ]


@dataclasses.dataclass(frozen=True)
class ReferencePolicy(MemoryPolicy):
    """SAM 2 as released, with its two evaluation-time memory settings.

    Attributes:
      stride: `memory_temporal_stride_for_eval` (1: the last num_maskmem - 1 frames).
      max_cond: `max_cond_frames_in_attn` (-1: every conditioning frame). The reference
        asserts >= 2 once a video has more conditioning frames than that; 1 follows its
        selection code without the assertion (`sam2_jax.memory.selection`).
    """

    stride: int = 1
    max_cond: int = -1

    def __post_init__(self):
        if self.stride < 1:
            raise ValueError(f"memory_temporal_stride must be >= 1, got {self.stride}")
        if self.max_cond != -1 and self.max_cond < 1:
            raise ValueError(
                f"max_cond_frames_in_attn must be -1 (no limit) or >= 1, got {self.max_cond}"
            )

    @property
    def memory_temporal_stride(self) -> int:
        return self.stride

    @property
    def max_cond_frames_in_attn(self) -> int:
        return self.max_cond


def reference_policy(
    memory_temporal_stride: int = 1,
    max_cond_frames_in_attn: int = -1,
    *,
    num_maskmem: int = 7,
    max_obj_ptrs_in_encoder: int = 16,
) -> ReferencePolicy:
    """SAM 2's memory rule, with the reference's `memory_temporal_stride_for_eval` and
    `max_cond_frames_in_attn` (the model's `num_maskmem` / `max_obj_ptrs_in_encoder`)."""
    return ReferencePolicy(
        num_maskmem=num_maskmem,
        max_obj_ptrs_in_encoder=max_obj_ptrs_in_encoder,
        stride=memory_temporal_stride,
        max_cond=max_cond_frames_in_attn,
    )


REFERENCE = reference_policy()
