"""The video memory bank as a fixed-size pytree, and the slot writes every policy uses.

The reference keeps every tracked frame's memory in growing Python dicts and picks, per frame,
which ones to attend to. Here the bank has a fixed shape, so the frame loop is one
`jax.lax.scan` whose device footprint does not grow with the video:

- conditioning slots (frames that carry user prompts): `K` slots per object;
- a ring of the most recent non-conditioning spatial memories (`num_maskmem - 1` = 6 slots);
- a ring of the most recent non-conditioning object pointers (`max_obj_ptrs - 1` = 15 slots).

Every slot records the frame it came from and a validity flag. Which slots a frame attends
to, and with which temporal encodings, is derived from `(current frame - slot frame)` and the
tracking direction (`selection.select_memories`); what is written where is the memory policy's
(`policy.MemoryPolicy`).

Leading axis B everywhere = objects (each tracked independently, as the reference does).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp

NO_FRAME = -(2**30)  # frame index stored in empty slots; far from any real frame


@flax.struct.dataclass
class MemoryBank:
    """Fixed-size memory state for B objects.

    Attributes:
      cond_features: (B, K, HW, mem_dim) spatial memories of conditioning frames.
      cond_obj_ptr: (B, K, C) their object pointers.
      cond_frame: (B, K) int32 frame index of each conditioning slot.
      cond_valid: (B, K) bool.
      recent_features: (B, R, HW, mem_dim) spatial memories of recent non-conditioning frames.
      recent_frame: (B, R) int32.
      recent_valid: (B, R) bool.
      ptr: (B, P, C) object pointers of recent non-conditioning frames.
      ptr_frame: (B, P) int32.
      ptr_valid: (B, P) bool.
      policy_state: the memory policy's own per-object state (a pytree with leading axis B,
        or None), carried with the bank through the frame loop.
    """

    cond_features: jax.Array
    cond_obj_ptr: jax.Array
    cond_frame: jax.Array
    cond_valid: jax.Array
    recent_features: jax.Array
    recent_frame: jax.Array
    recent_valid: jax.Array
    ptr: jax.Array
    ptr_frame: jax.Array
    ptr_valid: jax.Array
    policy_state: Any = None

    @property
    def num_objects(self) -> int:
        return self.cond_valid.shape[0]

    @property
    def cond_capacity(self) -> int:
        return self.cond_valid.shape[1]


def empty_bank(
    num_objects: int,
    num_tokens: int,
    *,
    mem_dim: int = 64,
    hidden_dim: int = 256,
    cond_capacity: int = 4,
    num_recent: int = 6,
    num_ptrs: int = 15,
    dtype: jnp.dtype = jnp.bfloat16,
    policy_state: Any = None,
) -> MemoryBank:
    """An empty bank. Spatial memories are stored in bfloat16 by default, as the reference
    stores them in its video predictor; pointers stay float32. `policy_state`: the memory
    policy's `init_state(num_objects)`."""
    b = num_objects

    def frames(n):
        return jnp.full((b, n), NO_FRAME, jnp.int32)

    return MemoryBank(
        cond_features=jnp.zeros((b, cond_capacity, num_tokens, mem_dim), dtype),
        cond_obj_ptr=jnp.zeros((b, cond_capacity, hidden_dim), jnp.float32),
        cond_frame=frames(cond_capacity),
        cond_valid=jnp.zeros((b, cond_capacity), bool),
        recent_features=jnp.zeros((b, num_recent, num_tokens, mem_dim), dtype),
        recent_frame=frames(num_recent),
        recent_valid=jnp.zeros((b, num_recent), bool),
        ptr=jnp.zeros((b, num_ptrs, hidden_dim), jnp.float32),
        ptr_frame=frames(num_ptrs),
        ptr_valid=jnp.zeros((b, num_ptrs), bool),
        policy_state=policy_state,
    )


COND_FIELDS = ("cond_features", "cond_obj_ptr", "cond_frame", "cond_valid")
RING_FIELDS = ("recent_features", "recent_frame", "recent_valid", "ptr", "ptr_frame", "ptr_valid")


def map_slots(
    bank: MemoryBank,
    cond: Callable[[jax.Array], jax.Array],
    ring: Callable[[jax.Array], jax.Array],
    policy_state: Any,
) -> MemoryBank:
    """`bank` with `cond` applied to each conditioning-slot array, `ring` to each recent-ring
    array (memories and pointers), and `policy_state` in place of its policy state."""
    fields = {name: cond(getattr(bank, name)) for name in COND_FIELDS}
    fields.update({name: ring(getattr(bank, name)) for name in RING_FIELDS})
    return MemoryBank(**fields, policy_state=policy_state)


def has_conditioning(bank: MemoryBank) -> jax.Array:
    """(B,) bool: whether each object already has a conditioning memory."""
    return bank.cond_valid.any(axis=1)


def _write_slot(values: jax.Array, slot: jax.Array, new: jax.Array, enable: jax.Array):
    """values (B, S, ...) with values[b, slot[b]] = new[b] where enable[b]."""
    b = values.shape[0]
    current = values[jnp.arange(b), slot]
    new = jnp.where(enable.reshape((b,) + (1,) * (new.ndim - 1)), new.astype(values.dtype), current)
    return values.at[jnp.arange(b), slot].set(new)


def write_conditioning(
    bank: MemoryBank,
    frame_idx: jax.Array,
    features: jax.Array,
    obj_ptr: jax.Array,
    enable: jax.Array,
) -> tuple[MemoryBank, jax.Array]:
    """Stores a conditioning frame's memory (per object where `enable`).

    A frame already in the bank is overwritten (re-prompting a frame); otherwise the first
    free slot is used. Any non-conditioning entry for the same frame is invalidated, as the
    reference moves a frame from its non-conditioning to its conditioning outputs.

    Args:
      frame_idx: () int32.
      features: (B, HW, mem_dim); obj_ptr: (B, C); enable: (B,) bool.

    Returns:
      the new bank and (B,) bool `overflow`: objects whose K slots were all taken by other
      frames (their write was dropped; callers must raise a clear error).
    """
    frame_idx = jnp.asarray(frame_idx, jnp.int32)
    same = bank.cond_valid & (bank.cond_frame == frame_idx)  # (B, K)
    free = ~bank.cond_valid
    slot = jnp.where(same.any(1), jnp.argmax(same, 1), jnp.argmax(free, 1))
    overflow = enable & ~same.any(1) & ~free.any(1)
    enable = enable & ~overflow
    bank = bank.replace(
        cond_features=_write_slot(bank.cond_features, slot, features, enable),
        cond_obj_ptr=_write_slot(bank.cond_obj_ptr, slot, obj_ptr, enable),
        cond_frame=_write_slot(
            bank.cond_frame, slot, jnp.broadcast_to(frame_idx, slot.shape), enable
        ),
        cond_valid=_write_slot(bank.cond_valid, slot, jnp.ones_like(enable), enable),
    )
    # The frame is conditioning now: drop it from the recent rings.
    in_recent = (bank.recent_frame == frame_idx) & enable[:, None]
    in_ptr = (bank.ptr_frame == frame_idx) & enable[:, None]
    bank = bank.replace(
        recent_valid=bank.recent_valid & ~in_recent, ptr_valid=bank.ptr_valid & ~in_ptr
    )
    return bank, overflow


def _ring_slot(
    frames: jax.Array, valid: jax.Array, frame_idx: jax.Array, keep: jax.Array | None = None
) -> jax.Array:
    """(B,) slot for frame_idx: its own slot if present, else a free one, else the oldest entry
    not in `keep` ((B, S) bool: entries a later frame still reads), else the oldest.

    "Oldest" is the entry written longest ago; entries are written in tracking order, so it is
    the one farthest from the current frame.
    """
    same = valid & (frames == frame_idx)
    free = ~valid
    distance = jnp.where(valid, jnp.abs(frames - frame_idx), -1)
    if keep is not None:  # evictable entries rank above kept ones, oldest first
        distance = jnp.where(keep, distance, distance + 2**30)
    return jnp.where(
        same.any(1),
        jnp.argmax(same, 1),
        jnp.where(free.any(1), jnp.argmax(free, 1), jnp.argmax(distance, 1)),
    )


def write_recent(
    bank: MemoryBank,
    frame_idx: jax.Array,
    features: jax.Array,
    obj_ptr: jax.Array,
    enable: jax.Array,
    keep: jax.Array | None = None,
    keep_ptr: jax.Array | None = None,
) -> MemoryBank:
    """Stores a non-conditioning frame's memory and pointer in the recent rings.

    Args:
      frame_idx: () int32; features: (B, HW, mem_dim); obj_ptr: (B, C); enable: (B,) bool.
      keep: (B, R) bool, recent memories a later frame still reads (evicted last); default:
        the oldest is evicted.
      keep_ptr: (B, P) bool, the same for the pointer ring.
    """
    frame_idx = jnp.asarray(frame_idx, jnp.int32)
    frame_b = jnp.broadcast_to(frame_idx, enable.shape)
    mem_slot = _ring_slot(bank.recent_frame, bank.recent_valid, frame_idx, keep)
    ptr_slot = _ring_slot(bank.ptr_frame, bank.ptr_valid, frame_idx, keep_ptr)
    return bank.replace(
        recent_features=_write_slot(bank.recent_features, mem_slot, features, enable),
        recent_frame=_write_slot(bank.recent_frame, mem_slot, frame_b, enable),
        recent_valid=_write_slot(bank.recent_valid, mem_slot, jnp.ones_like(enable), enable),
        ptr=_write_slot(bank.ptr, ptr_slot, obj_ptr, enable),
        ptr_frame=_write_slot(bank.ptr_frame, ptr_slot, frame_b, enable),
        ptr_valid=_write_slot(bank.ptr_valid, ptr_slot, jnp.ones_like(enable), enable),
    )
