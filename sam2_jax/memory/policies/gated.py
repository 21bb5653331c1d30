"""Score-gated memories: a frame reads the most recent *reliable* frames, not the last ones.

SAMURAI and SAM 3's tracker both replace SAM 2's "the last num_maskmem - 1 frames" by a walk
back from the previous frame that keeps frames whose scores pass a gate (up to
`max_obj_ptrs_in_encoder - 1` of them), always followed by the previous frame itself; the
spatial memories are the last num_maskmem - 1 entries of that list, with temporal positions by
rank (the previous frame is rank 1, the tpos row rank - 1), and SAM 3 takes the object pointers
from the same list (rank 1 .. len - 1, the oldest entry's pointer unread).

On the fixed-size bank the list is a rank: for a slot of frame f behind frame t,
rank = 1 if f is the previous frame, else 2 + (gated slots closer to t, the previous frame
excluded). The rings keep what a later frame can still read: the newest frame and the
most recent gated ones (num_maskmem - 1 spatial memories; `cap` pointers), so the spatial ring
has num_maskmem slots and a gated pointer ring max_obj_ptrs_in_encoder.

The gate flags of the slots live in the policy state (`GateFlags`), aligned with the rings.
Shapes: B objects, R recent slots, P pointer slots.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp

from sam2_jax.memory.bank import MemoryBank, write_conditioning, write_recent
from sam2_jax.memory.policy import MemoryPolicy, StepScores
from sam2_jax.memory.selection import MemorySelection


@flax.struct.dataclass
class GateFlags:
    """Whether each recent slot's frame passed the gate: memory (B, R), pointer (B, P)."""

    memory: jax.Array
    pointer: jax.Array


def _rank(
    frames: jax.Array, valid: jax.Array, gated: jax.Array, prev: jax.Array, dist: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """(B, S) rank in the walk-back list of each slot (module docstring) and (B, S) bool
    candidate (the previous frame, or gated)."""
    is_prev = frames == prev
    cand = valid & (gated | is_prev)
    others = cand & ~is_prev
    closer = (others[:, None, :] & (dist[:, None, :] < dist[:, :, None])).sum(axis=2)
    return jnp.where(is_prev, 1, 2 + closer), cand


@dataclasses.dataclass(frozen=True)
class GatedPolicy(MemoryPolicy):
    """Base of score-gated policies: subclasses define `gate(step, state)`.

    Attributes:
      skip_start: frames at the start of the video (in tracking order; SAMURAI: 2, from its
        walk `range(t - 1, 1, -1)`) never read as gated memories (the previous frame still is).
      stride: only frames t - 1, t - 1 - stride, ... are walked (SAM 3 honours
        `memory_temporal_stride_for_eval`; SAMURAI walks every frame).
      gate_pointers: object pointers from the list too (SAM 3), or SAM 2's pointer window
        (SAMURAI).
    """

    skip_start: int = 0
    stride: int = 1
    gate_pointers: bool = False

    def __post_init__(self):
        if self.stride < 1:
            raise ValueError(f"stride must be >= 1, got {self.stride}")

    @property
    def cap(self) -> int:
        """How many gated frames the walk keeps."""
        return self.max_obj_ptrs_in_encoder - 1

    @property
    def num_recent_slots(self) -> int:
        return self.num_maskmem

    @property
    def num_ptr_slots(self) -> int:
        return self.max_obj_ptrs_in_encoder if self.gate_pointers else self.cap

    def init_state(self, num_objects: int) -> Any:
        return GateFlags(
            memory=jnp.zeros((num_objects, self.num_recent_slots), bool),
            pointer=jnp.zeros((num_objects, self.num_ptr_slots), bool),
        )

    def gate(self, step: StepScores, state: Any) -> jax.Array:
        """(B,) bool: whether this frame's memory is reliable enough to be read later."""
        raise NotImplementedError

    def flags(self, state: Any) -> GateFlags:
        """The gate flags inside this policy's state (subclasses with more state override)."""
        return state

    def with_flags(self, state: Any, flags: GateFlags) -> Any:
        return flags

    def _walk(self, frames: jax.Array, frame_idx, sign, num_frames) -> jax.Array:
        """(B, S) bool: slots on the walk behind frame t (stride, start frames skipped)."""
        dist = (frame_idx - frames) * sign
        start = jnp.where(sign > 0, frames, num_frames - 1 - frames)
        return (dist >= 1) & ((dist - 1) % self.stride == 0) & (start >= self.skip_start)

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
        base = super().select(  # SAM 2's selection (stride 1, every conditioning frame)
            bank, frame_idx, reverse=reverse, num_frames=num_frames,
            signed_ptr_pos=signed_ptr_pos, training=training,
        )  # fmt: skip
        sign = jnp.where(reverse, -1, 1).astype(jnp.int32)
        t = jnp.asarray(frame_idx, jnp.int32)
        num_frames = jnp.asarray(num_frames, jnp.int32)
        prev = t - sign
        flags = self.flags(bank.policy_state)

        frames = bank.recent_frame
        dist = (t - frames) * sign
        on_walk = bank.recent_valid & (self._walk(frames, t, sign, num_frames) | (frames == prev))
        rank, cand = _rank(frames, on_walk, flags.memory, prev, dist)
        use = cand & (rank <= self.num_maskmem - 1)
        selection = base.replace(
            recent_mem_valid=use,
            recent_tpos_index=jnp.clip(rank - 1, 0, self.num_maskmem - 1).astype(jnp.int32),
        )
        if not self.gate_pointers:
            return selection
        frames = bank.ptr_frame
        dist = (t - frames) * sign
        on_walk = bank.ptr_valid & (self._walk(frames, t, sign, num_frames) | (frames == prev))
        rank, cand = _rank(frames, on_walk, flags.pointer, prev, dist)
        # list length: the cap's most recent gated frames, plus the previous frame if not one
        prev_gated = (cand & (frames == prev) & flags.pointer).any(axis=1, keepdims=True)
        n_gated = (cand & flags.pointer).sum(axis=1, keepdims=True)
        length = jnp.minimum(self.cap, n_gated) + (~prev_gated).astype(jnp.int32)
        in_video = (frames >= 0) & (frames < num_frames)
        return selection.replace(
            recent_ptr_valid=cand & (rank < length) & in_video,
            recent_ptr_pos=rank.astype(jnp.float32),
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
        """Conditioning frames as the reference; a tracked frame enters the rings with its
        gate flag, evicting what no later frame reads (neither it nor the most recent
        gated frames)."""
        state = self.update_state(bank.policy_state, step, enable)
        bank = bank.replace(policy_state=state)
        bank, overflow = write_conditioning(
            bank, frame_idx, features, obj_ptr, enable & is_conditioning
        )
        t = jnp.asarray(frame_idx, jnp.int32)
        sign = jnp.where(reverse, -1, 1).astype(jnp.int32)
        flags = self.flags(state)

        def kept(frames, valid, gated, count):
            dist = jnp.where(valid, (t - frames) * sign, 2**30)
            g = valid & gated
            closer = (g[:, None, :] & (dist[:, None, :] < dist[:, :, None])).sum(axis=2)
            return g & (closer < count)

        keep_mem = kept(bank.recent_frame, bank.recent_valid, flags.memory, self.num_maskmem - 1)
        keep_ptr = kept(bank.ptr_frame, bank.ptr_valid, flags.pointer, self.cap)
        new = enable & ~is_conditioning
        bank = write_recent(
            bank, t, features, obj_ptr, new, keep_mem, keep_ptr if self.gate_pointers else None
        )
        gate = self.gate(step, state) if step is not None else jnp.zeros_like(new)
        here_mem = bank.recent_valid & (bank.recent_frame == t) & new[:, None]
        here_ptr = bank.ptr_valid & (bank.ptr_frame == t) & new[:, None]
        flags = GateFlags(
            memory=jnp.where(here_mem, gate[:, None], flags.memory),
            pointer=jnp.where(here_ptr, gate[:, None], flags.pointer),
        )
        return bank.replace(policy_state=self.with_flags(state, flags)), overflow

    def update_state(self, state: Any, step: StepScores | None, tracked: jax.Array) -> Any:
        """The policy state after a frame (before its gate is read; `tracked`: (B,) the objects
        decoded on it, prompted or not): unchanged here."""
        del step, tracked
        return state

    def history_frames(self, frame_idx: int, reverse: bool) -> list[tuple[int, bool, bool]]:
        """No stored history: which frames passed the gate is known only inside the loop that
        tracked them, so a bank rebuilt from stored outputs starts from the conditioning
        memories alone."""
        del frame_idx, reverse
        return []
