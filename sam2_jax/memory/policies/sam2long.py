"""SAM2Long's training-free memory tree as a memory policy.

SAM2Long (Ding et al., 2024; its `sam2_video_predictor.py` / `sam2_base.py` /
`memory_attention.py`) keeps P pathways per object, each a memory of its own with a
cumulative score. On every tracked frame after the first one following the prompt, each
pathway decodes its three multimask candidates; candidate j of pathway p scores
S_p + log(IoU_pj + 1e-5), and the P best of the 3P hypotheses become the new pathways (each
continues its parent's memory with the chosen candidate's mask and pointer). When no pathway
is confident (every |object score logit| <= `uncertainty`), the P are taken among hypotheses
with distinct (IoU, rounded to 0.01, signed by presence) and, if those are fewer than P, the
best hypothesis of each pathway not yet continued.

Each pathway reads its memories as SAM 3 and SAMURAI do (`GatedPolicy`): the most recent
frames with predicted IoU > `iou_threshold` and a present object, always the previous frame,
pointers from the same list. The attention keys of the memories it reads are scaled by rank
of their object score (conditioning frames count 10): from `key_scale_low` for the lowest to
`key_scale_high` for the highest, spatial memories and pointers ranked apart, none scaled when
a single spatial memory is read.

Here the pathways are the rows of the step (`MemoryPolicy.expand`: an object's P rows
consecutive), so P pathways x B objects run as one batch inside the compiled loop. The bank
of B objects holds each object's pathway rings side by side (P x the rings of one pathway) and
the per-pathway state (`PathwayState`).

Deviations:
- Output: each frame's mask is the leading pathway's at that frame (online). SAM2Long reports
  the final best pathway's ancestry after the whole video (offline backtracking), which needs
  every pathway's masks of every frame; a streaming loop with a fixed state does not keep them.
- Ties between equal scores (sorting, key-scale ranks) go to the lower index; SAM2Long's
  hypotheses sort stably as here, its key-scale ranks use an unstable argsort.
- SAM2Long handles one conditioning frame, at the start; here every conditioning memory read
  counts 10, and a prompt on a later frame writes the leading pathway's conditioning memory to
  every pathway and restarts the scores.
- A predicted IoU below 0 (models without a sigmoid IoU head) counts as 0 in the logarithm.
- IoU rounding for distinctness is round-half-even on IoU x 100 (Python rounds the decimal).

Shapes: B objects, P pathways, rows = B * P, R / Pp a pathway's ring sizes.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp

from sam2_jax.memory.bank import MemoryBank, map_slots
from sam2_jax.memory.policies.gated import GatedPolicy, GateFlags
from sam2_jax.memory.policy import StepScores
from sam2_jax.memory.selection import MemorySelection

CONDITIONING_SCORE = 10.0  # SAM2Long's object score of a conditioning memory, for the ranks


@flax.struct.dataclass
class PathwayRow:
    """One pathway's own state (leading axis: rows, or (B, P) inside `PathwayState`).

    Attributes:
      flags: gate flags of its ring slots (R), (Pp).
      memory_score: (R,) float32 object score logit of each ring memory's frame.
      pointer_score: (Pp,) float32 the same for each ring pointer.
      cumulative: () float32 sum of log predicted IoU of its masks since the last prompt.
      since_prompt: () int32 frames tracked since the object's last prompt.
    """

    flags: GateFlags
    memory_score: jax.Array
    pointer_score: jax.Array
    cumulative: jax.Array
    since_prompt: jax.Array


@flax.struct.dataclass
class PathwayState:
    """`rows`: (B, P, ...) the pathways; `split`: (B,) bool, whether they have rings of
    their own yet (a fresh bank holds one pathway's, which every pathway starts from)."""

    rows: PathwayRow
    split: jax.Array


def _rank_weights(scores: jax.Array, read: jax.Array, low: float, high: float) -> jax.Array:
    """(B, N) scores of (B, N) read entries -> (B, N) low + (high - low) rank / (n - 1) by
    ascending rank among the n read entries (low when n = 1; 1 where not read)."""
    n = scores.shape[1]
    earlier = jnp.arange(n)[None, :] < jnp.arange(n)[:, None]  # [i, j]: j before i
    below = scores[:, None, :] < scores[:, :, None]  # [b, i, j]: s_j < s_i
    tie = (scores[:, None, :] == scores[:, :, None]) & earlier
    rank = ((below | tie) & read[:, None, :]).sum(axis=2)
    count = read.sum(axis=1, keepdims=True)
    weight = low + (high - low) * rank / jnp.maximum(count - 1, 1)
    return jnp.where(read, weight, 1.0).astype(jnp.float32)


@dataclasses.dataclass(frozen=True)
class Sam2LongPolicy(GatedPolicy):
    """Attributes: pathways (`num_pathway`, 3), iou_threshold (`iou_thre`, 0.1), uncertainty
    (2), key_scale_low / key_scale_high (0.95 / 1.05): SAM2Long's settings."""

    pathways: int = 3
    iou_threshold: float = 0.1
    uncertainty: float = 2.0
    key_scale_low: float = 0.95
    key_scale_high: float = 1.05
    gate_pointers: bool = True

    def __post_init__(self):
        super().__post_init__()
        if self.pathways < 1:
            raise ValueError(f"pathways must be >= 1, got {self.pathways}")

    @property
    def num_pathways(self) -> int:
        return self.pathways

    @property
    def has_pathways(self) -> bool:
        return True

    @property
    def row_recent_slots(self) -> int:
        """R: one pathway's spatial ring."""
        return super().num_recent_slots

    @property
    def row_ptr_slots(self) -> int:
        """Pp: one pathway's pointer ring."""
        return super().num_ptr_slots

    @property
    def num_recent_slots(self) -> int:
        return self.pathways * self.row_recent_slots

    @property
    def num_ptr_slots(self) -> int:
        return self.pathways * self.row_ptr_slots

    def init_state(self, num_objects: int) -> PathwayState:
        lead = (num_objects, self.pathways)
        r, p = self.row_recent_slots, self.row_ptr_slots
        rows = PathwayRow(
            flags=GateFlags(
                memory=jnp.zeros((*lead, r), bool), pointer=jnp.zeros((*lead, p), bool)
            ),
            memory_score=jnp.zeros((*lead, r), jnp.float32),
            pointer_score=jnp.zeros((*lead, p), jnp.float32),
            cumulative=jnp.zeros(lead, jnp.float32),
            since_prompt=jnp.zeros(lead, jnp.int32),
        )
        return PathwayState(rows=rows, split=jnp.zeros((num_objects,), bool))

    # --- pathways as rows ---

    def expand(self, bank: MemoryBank) -> MemoryBank:
        b, paths = bank.num_objects, self.pathways
        split = bank.policy_state.split

        def own_or_first(per: jax.Array) -> jax.Array:  # (B, P, ...) -> (B * P, ...)
            mine = split.reshape((b, 1) + (1,) * (per.ndim - 2))
            per = jnp.where(mine, per, per[:, :1])
            return per.reshape(b * paths, *per.shape[2:])

        def ring(x: jax.Array) -> jax.Array:  # (B, P * S, ...) -> (B * P, S, ...)
            return own_or_first(x.reshape(b, paths, x.shape[1] // paths, *x.shape[2:]))

        def cond(x: jax.Array) -> jax.Array:  # (B, K, ...) -> (B * P, K, ...)
            return jnp.repeat(x, paths, axis=0)

        return map_slots(bank, cond, ring, jax.tree.map(own_or_first, bank.policy_state.rows))

    def collapse(self, rows: MemoryBank, bank: MemoryBank) -> MemoryBank:
        b, paths = bank.num_objects, self.pathways

        def ring(x: jax.Array) -> jax.Array:  # (B * P, S, ...) -> (B, P * S, ...)
            return x.reshape(b, paths * x.shape[1], *x.shape[2:])

        def lead(x: jax.Array) -> jax.Array:  # the leading pathway's conditioning slots
            return x[::paths]

        state = jax.tree.map(lambda x: x.reshape(b, paths, *x.shape[1:]), rows.policy_state)
        return map_slots(rows, lead, ring, PathwayState(rows=state, split=jnp.ones((b,), bool)))

    def choose_pathways(
        self, state: PathwayRow, candidate_ious: jax.Array, object_score: jax.Array, eligible
    ) -> tuple[jax.Array, jax.Array, PathwayRow]:
        paths = self.pathways
        b = object_score.shape[0] // paths
        hyps = 3 * paths
        ious = candidate_ious.astype(jnp.float32).reshape(b, paths, 3)
        present = object_score.reshape(b, paths) > 0
        cumulative = state.cumulative.reshape(b, paths)
        score = cumulative[:, :, None] + jnp.log(jnp.maximum(ious, 0.0) + 1e-5)
        score = score.reshape(b, hyps)  # hypothesis h = 3 p + j
        order = jnp.argsort(-score, axis=1, stable=True)  # (B, 3P) best first
        parent_sorted = order // 3

        # uncertain objects: hypotheses with distinct signed, rounded IoU first ...
        key = jnp.round(jnp.where(present[:, :, None], ious, -ious) * 100).reshape(b, hyps)
        key = jnp.take_along_axis(key, order, axis=1)
        earlier = jnp.arange(hyps)[None, :] < jnp.arange(hyps)[:, None]  # [i, j]: j before i
        first = ~((key[:, None, :] == key[:, :, None]) & earlier).any(axis=2)  # (B, 3P)
        slot = jnp.cumsum(first, axis=1) - 1
        picks = []
        for s in range(paths):
            hit = first & (slot == s)
            picks.append(jnp.where(hit.any(axis=1), jnp.argmax(hit, axis=1), -1))
        chosen = jnp.stack(picks, axis=1)  # (B, P) positions in `order`, -1: none
        continued = jnp.where(
            chosen >= 0, jnp.take_along_axis(parent_sorted, jnp.maximum(chosen, 0), 1), -1
        )
        count = (chosen >= 0).sum(axis=1)
        # ... then the best hypothesis of each pathway none of those continues
        for p in range(paths):
            need = ~(continued == p).any(axis=1) & (count < paths)
            best_of_p = jnp.argmax(parent_sorted == p, axis=1)
            at = jnp.arange(paths)[None, :] == count[:, None]
            chosen = jnp.where(need[:, None] & at, best_of_p[:, None], chosen)
            count = count + need
        confident = (jnp.abs(object_score.reshape(b, paths)) > self.uncertainty).any(axis=1)
        position = jnp.where(confident[:, None], jnp.arange(paths)[None, :], chosen)
        hyp = jnp.take_along_axis(order, jnp.maximum(position, 0), axis=1)  # (B, P)

        go = eligible.reshape(b, paths)[:, 0] & (state.since_prompt.reshape(b, paths)[:, 0] >= 1)
        own = jnp.broadcast_to(jnp.arange(paths)[None, :], (b, paths))
        local = jnp.where(go[:, None], hyp // 3, own)
        parent = (jnp.arange(b)[:, None] * paths + local).reshape(-1)
        candidate = jnp.where(go[:, None], hyp % 3, -1).reshape(-1)
        new_score = jnp.where(go[:, None], jnp.take_along_axis(score, hyp, 1), cumulative)
        state = jax.tree.map(lambda x: x[parent], state)
        state = state.replace(cumulative=new_score.reshape(-1))
        return parent.astype(jnp.int32), candidate.astype(jnp.int32), state

    # --- one pathway: gated reads, scaled keys ---

    def flags(self, state: PathwayRow) -> GateFlags:
        return state.flags

    def with_flags(self, state: PathwayRow, flags: GateFlags) -> PathwayRow:
        return state.replace(flags=flags)

    def gate(self, step: StepScores, state: Any) -> jax.Array:
        del state
        return (step.iou > self.iou_threshold) & (step.object_score > 0)

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
        sel = super().select(
            bank, frame_idx, reverse=reverse, num_frames=num_frames,
            signed_ptr_pos=signed_ptr_pos, training=training,
        )  # fmt: skip
        state: PathwayRow = bank.policy_state
        cond = jnp.full(bank.cond_valid.shape, CONDITIONING_SCORE, jnp.float32)
        memory_read = jnp.concatenate([sel.cond_mem_valid, sel.recent_mem_valid], axis=1)
        memory_scores = jnp.concatenate([cond, state.memory_score], axis=1)
        ptr_read = jnp.concatenate([sel.cond_ptr_valid, sel.recent_ptr_valid], axis=1)
        ptr_scores = jnp.concatenate([cond, state.pointer_score], axis=1)
        low, high = self.key_scale_low, self.key_scale_high
        scaled = (memory_read.sum(axis=1) > 1)[:, None]  # (B, 1)
        return sel.replace(
            memory_key_scale=jnp.where(
                scaled, _rank_weights(memory_scores, memory_read, low, high), 1.0
            ),
            ptr_key_scale=jnp.where(scaled, _rank_weights(ptr_scores, ptr_read, low, high), 1.0),
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
        """`GatedPolicy.write`, then the new slots' object scores and the prompt counters."""
        bank, overflow = super().write(
            bank, frame_idx, features, obj_ptr, is_conditioning, enable, step, reverse=reverse
        )
        state: PathwayRow = bank.policy_state
        t = jnp.asarray(frame_idx, jnp.int32)
        new = enable & ~is_conditioning
        prompted = enable & is_conditioning
        s = jnp.zeros(new.shape, jnp.float32) if step is None else step.object_score
        here_mem = bank.recent_valid & (bank.recent_frame == t) & new[:, None]
        here_ptr = bank.ptr_valid & (bank.ptr_frame == t) & new[:, None]
        state = state.replace(
            memory_score=jnp.where(here_mem, s[:, None], state.memory_score),
            pointer_score=jnp.where(here_ptr, s[:, None], state.pointer_score),
            cumulative=jnp.where(prompted, 0.0, state.cumulative),
            since_prompt=jnp.where(prompted, 0, state.since_prompt + new.astype(jnp.int32)),
        )
        return bank.replace(policy_state=state), overflow
