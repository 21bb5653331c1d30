"""The compiled frame loop: one `jax.lax.scan` over frames whose carry is the memory bank.

- `propagate`: the scan. Its carry is the memory bank (and optionally a "seed" bank that
  captures the memories a later reverse pass from the same start needs); each step encodes
  its frame and runs `sam2_jax.memory.step` for B objects that share the frame's features.
  Per-frame outputs (low-res logits, object scores, ...) are the scan's outputs.
- `propagate_videos`: the same scan vmapped over a leading video axis, optionally split
  over the devices of a `Mesh`.
- `reverse_bank`: the bank a reverse pass from the start frame begins with.

The host-side driver that feeds frames in fixed-size chunks is `sam2_jax.video.chunks`;
offline tracking from prompts given up front is `sam2_jax.video.offline`.

Shapes: T frames in a chunk, B objects, S = image_size, h = S / 16, P padded points.
"""

from __future__ import annotations

import functools
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.sharding import Mesh, PartitionSpec

from sam2_jax.memory.bank import NO_FRAME, MemoryBank, has_conditioning, write_recent
from sam2_jax.memory.policy import REFERENCE, MemoryPolicy
from sam2_jax.memory.selection import recent_position
from sam2_jax.memory.step import StepOutput, _step
from sam2_jax.modeling.sam2_base import SAM2
from sam2_jax.modeling.sam_heads import NO_OBJ_SCORE
from sam2_jax.prompts import FramePrompts

Variables = dict[str, Any]


class StepInputs(NamedTuple):
    """Per-step scan inputs (leading axis T).

    Attributes:
      frames: (T, S, S, 3) float32 normalized frames.
      frame_idx: (T,) int32.
      prompts: `FramePrompts` with leading (T, B).
      track: (T, B) bool, objects processed on each step (False on padding steps; a step
        without any tracked object is skipped entirely).
      init_cond: (T, B) bool, decode as an initial conditioning frame (no memory attention)
        even if the object already has a conditioning memory: the reference treats every
        prompt given before tracking so.
    """

    frames: jax.Array
    frame_idx: jax.Array
    prompts: FramePrompts
    track: jax.Array
    init_cond: jax.Array


def _scan(
    module: SAM2,
    variables: Variables,
    bank: MemoryBank,
    seed: MemoryBank | None,
    inputs: StepInputs,
    reverse: jax.Array,
    seed_start: jax.Array,
    num_frames: int | jax.Array,
    memory_policy: MemoryPolicy,
) -> tuple[tuple[MemoryBank, MemoryBank | None], StepOutput]:
    """The frame loop; see `propagate`."""
    cfg = module.config

    def step(m: SAM2, bank: MemoryBank, x: StepInputs) -> tuple[MemoryBank, StepOutput]:
        features = m.forward_image(x.frames[None])
        has_cond = has_conditioning(bank)
        is_init = x.init_cond | (x.prompts.has_prompt & ~has_cond)
        return _step(
            m, bank, features, x.frame_idx, x.prompts, x.track, is_init, num_frames, reverse,
            memory_policy,
        )  # fmt: skip

    def skip(bank: MemoryBank, x: StepInputs) -> tuple[MemoryBank, StepOutput]:
        b, emb = x.track.shape[0], cfg.embedding_size
        zeros = jnp.zeros((b,), jnp.float32)
        off = jnp.zeros((b,), bool)
        return bank, StepOutput(
            low_res_masks=jnp.full((b, 4 * emb, 4 * emb), NO_OBJ_SCORE, jnp.float32),
            object_score_logits=zeros,
            obj_ptr=jnp.zeros((b, cfg.d_model), jnp.float32),
            iou=zeros,
            memory_features=jnp.zeros((b, emb * emb, cfg.mem_dim), bank.recent_features.dtype),
            is_init_cond=off,
            active=off,
            overflow=off,
        )

    def body(m: SAM2, carry, x: StepInputs):
        bank, seed = carry
        # Padding steps (no object tracked) skip all compute, the image encoder included.
        bank, out = jax.lax.cond(x.track.any(), lambda: step(m, bank, x), lambda: skip(bank, x))
        if seed is not None:
            # A later reverse pass from seed_start needs the non-conditioning outputs of the
            # frames just after it, up to the policy's history span.
            dist = (x.frame_idx - seed_start) * jnp.where(reverse, -1, 1)
            window = memory_policy.history_span
            keep = out.active & ~x.prompts.has_prompt & (dist >= 1) & (dist <= window)
            seed = write_recent(seed, x.frame_idx, out.memory_features, out.obj_ptr, keep)
        return (bank, seed), out

    def run(m: SAM2):
        return jax.lax.scan(lambda c, x: body(m, c, x), (bank, seed), inputs)

    return module.apply(variables, method=run)


@functools.partial(jax.jit, static_argnames=("module", "memory_policy"))
def propagate(
    module: SAM2,
    variables: Variables,
    bank: MemoryBank,
    inputs: StepInputs,
    reverse: bool | jax.Array = False,
    seed: MemoryBank | None = None,
    seed_start: int | jax.Array = 0,
    *,
    num_frames: int | jax.Array,
    memory_policy: MemoryPolicy = REFERENCE,
) -> tuple[tuple[MemoryBank, MemoryBank | None], StepOutput]:
    """Tracks B objects through a chunk of frames in one scan.

    Args:
      module, variables: the SAM2 module and `{"params": ...}`.
      bank: the memory state at the start of the chunk.
      inputs: `StepInputs` for T steps, in tracking order.
      reverse: tracking direction (traced: both directions share the compiled program).
      seed: optional bank with recent rings of `memory_policy.history_span` slots; the steps
        write into it the non-conditioning memories of the frames 1 .. history_span after
        `seed_start` (in tracking order), which `reverse_bank` turns into the starting bank of
        a reverse pass from `seed_start`, as the reference's dicts hold them.
      num_frames: video length (traced: one program for every length).
      memory_policy: what each frame reads from the bank and writes into it (static).

    Returns:
      ((bank, seed) after the chunk, StepOutput with leading (T, B)).
    """
    reverse = jnp.asarray(reverse, bool)
    seed_start = jnp.asarray(seed_start, jnp.int32)
    return _scan(
        module, variables, bank, seed, inputs, reverse, seed_start, num_frames, memory_policy
    )


@functools.partial(jax.jit, static_argnames=("module", "memory_policy", "mesh", "video_axis"))
def propagate_videos(
    module: SAM2,
    variables: Variables,
    banks: MemoryBank,
    inputs: StepInputs,
    reverse: jax.Array,
    *,
    num_frames: int | jax.Array,
    memory_policy: MemoryPolicy = REFERENCE,
    mesh: Mesh | None = None,
    video_axis: str = "videos",
) -> tuple[MemoryBank, StepOutput]:
    """`propagate` for V videos in one call: every argument but module / variables has a
    leading video axis (banks (V, B, ...), inputs (V, T, ...), reverse (V,)). The videos share
    `num_frames`; pad shorter ones with untracked steps.

    With a `mesh`, the videos are split over its `video_axis` (the weights replicated): each
    device runs the scan of its own videos, with no communication between devices. V need not
    divide the axis size: the call pads the video axis with untracked copies of the first
    video (their steps skip all compute) and drops them from the results.

    Returns:
      banks (V, B, ...) and StepOutput with leading (V, T, B).
    """

    def run(variables, banks, inputs, reverse):
        def one(bank, x, rev):
            (bank, _), out = _scan(
                module, variables, bank, None, x, rev, jnp.int32(0), num_frames, memory_policy
            )
            return bank, out

        return jax.vmap(one)(banks, inputs, reverse)

    reverse = jnp.asarray(reverse, bool)
    if mesh is None:
        return run(variables, banks, inputs, reverse)
    v = reverse.shape[0]
    pad = -v % mesh.shape[video_axis]
    if pad:
        # (V, ...) -> (V + pad, ...): copies of video 0 that track nothing
        banks, inputs, reverse = jax.tree.map(
            lambda a: jnp.concatenate([a, jnp.repeat(a[:1], pad, axis=0)]),
            (banks, inputs, reverse),
        )
        untracked = inputs.track.at[v:].set(False)
        inputs = inputs._replace(track=untracked)
    videos = PartitionSpec(video_axis)
    sharded = jax.shard_map(
        run,
        mesh=mesh,
        in_specs=(PartitionSpec(), videos, videos, videos),
        out_specs=(videos, videos),
        check_vma=False,  # the scan's cond / switch mix replicated weights and per-video data
    )
    banks, out = sharded(variables, banks, inputs, reverse)
    return jax.tree.map(lambda a: a[:v], (banks, out))


def reverse_bank(
    bank: MemoryBank, seed: MemoryBank, start: int, memory_policy: MemoryPolicy = REFERENCE
) -> MemoryBank:
    """The bank a reverse pass from `start` begins with, after a forward pass from `start`
    that filled `seed` (rings of `memory_policy.history_span` slots): the conditioning slots of
    `bank`, the seed's memories that frame `start` reads in reverse, and its pointers nearest
    to `start`."""
    r, p = bank.recent_valid.shape[1], bank.ptr_valid.shape[1]
    reads = recent_position(
        seed.recent_frame,
        start,
        jnp.int32(-1),
        memory_policy.memory_temporal_stride,
        memory_policy.num_maskmem,
    )
    mem_rank = jnp.where(seed.recent_valid & (reads > 0), reads, 2**30)
    ptr_rank = jnp.where(seed.ptr_valid, jnp.abs(seed.ptr_frame - start), 2**30)

    def take(x, order, slots):
        x = jnp.take_along_axis(x, order.reshape(order.shape + (1,) * (x.ndim - 2)), 1)
        # a seed with fewer slots than the policy's ring: empty slots after its memories
        pad = [(0, 0), (0, slots - order.shape[1])] + [(0, 0)] * (x.ndim - 2)
        return jnp.pad(x, pad, constant_values=NO_FRAME if x.dtype == jnp.int32 else 0)

    mem = jnp.argsort(mem_rank, axis=1)[:, :r]  # (B, min(R, seed slots))
    ptr = jnp.argsort(ptr_rank, axis=1)[:, :p]  # (B, min(P, seed slots))
    return bank.replace(
        recent_features=take(seed.recent_features, mem, r),
        recent_frame=take(seed.recent_frame, mem, r),
        recent_valid=take(seed.recent_valid & (reads > 0), mem, r),
        ptr=take(seed.ptr, ptr, p),
        ptr_frame=take(seed.ptr_frame, ptr, p),
        ptr_valid=take(seed.ptr_valid, ptr, p),
        policy_state=memory_policy.init_state(bank.num_objects),  # a new pass starts afresh
    )
