"""Video propagation: one compiled `jax.lax.scan` over frames, streamed from the host in chunks.

- `propagate`: the scan. Its carry is the memory bank (and optionally a "seed" bank that
  captures the memories a later reverse pass from the same start needs); each step encodes
  its frame and runs `tracking.track_step` for B objects that share the frame's features.
  Per-frame outputs (low-res logits, object scores, ...) are the scan's outputs.
- `propagate_videos`: the same scan vmapped over a leading video axis.
- `stream` (and the generator `iter_chunks`): the host-side driver. It feeds a frame order
  of any length through the one compiled scan in fixed-size chunks (the last one padded with
  untracked steps), carrying the bank, so device memory does not depend on the video's length.
- `track_video`: the reference video predictor's behaviour when every prompt is given before
  propagation. Prompted frames are decoded first as initial conditioning frames (no memory)
  and written as conditioning memories; propagation then tracks every other frame from the
  start frame (forward, reverse, or forward then reverse), reusing the prompt outputs on
  prompted frames instead of re-tracking them.

Shapes: T frames in a chunk, B objects, S = image_size, h = S / 16, P padded points.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Generator, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from sam2_jax.memory.bank import MemoryBank, empty_bank, has_conditioning, write_recent
from sam2_jax.memory.policy import REFERENCE, MemoryPolicy
from sam2_jax.memory.selection import recent_position
from sam2_jax.memory.step import StepOutput, _step
from sam2_jax.modeling.sam2_base import SAM2
from sam2_jax.modeling.sam_heads import NO_OBJ_SCORE
from sam2_jax.prompts import FramePrompts, box_and_clicks, pack_frame_prompts

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


@functools.partial(jax.jit, static_argnames=("module", "memory_policy"))
def propagate_videos(
    module: SAM2,
    variables: Variables,
    banks: MemoryBank,
    inputs: StepInputs,
    reverse: jax.Array,
    *,
    num_frames: int | jax.Array,
    memory_policy: MemoryPolicy = REFERENCE,
) -> tuple[MemoryBank, StepOutput]:
    """`propagate` for V videos in one call: every argument but module / variables has a
    leading video axis (banks (V, B, ...), inputs (V, T, ...), reverse (V,)). The videos share
    `num_frames`; pad shorter ones with untracked steps.

    Returns:
      banks (V, B, ...) and StepOutput with leading (V, T, B).
    """

    def one(bank, x, rev):
        (bank, _), out = _scan(
            module, variables, bank, None, x, rev, jnp.int32(0), num_frames, memory_policy
        )
        return bank, out

    return jax.vmap(one)(banks, inputs, jnp.asarray(reverse, bool))


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

    def take(x, order):
        return jnp.take_along_axis(x, order.reshape(order.shape + (1,) * (x.ndim - 2)), 1)

    mem = jnp.argsort(mem_rank, axis=1)[:, :r]  # (B, R)
    ptr = jnp.argsort(ptr_rank, axis=1)[:, :p]  # (B, P)
    return bank.replace(
        recent_features=take(seed.recent_features, mem),
        recent_frame=take(seed.recent_frame, mem),
        recent_valid=take(seed.recent_valid & (reads > 0), mem),
        ptr=take(seed.ptr, ptr),
        ptr_frame=take(seed.ptr_frame, ptr),
        ptr_valid=take(seed.ptr_valid, ptr),
    )


def _head(x: jax.Array, n: int) -> np.ndarray:
    return np.asarray(x)[:n]


def _stack_prompts(prompts: Sequence[FramePrompts]) -> FramePrompts:
    mask = None if prompts[0].mask is None else np.stack([p.mask for p in prompts])
    return FramePrompts(
        point_coords=np.stack([p.point_coords for p in prompts]),
        point_labels=np.stack([p.point_labels for p in prompts]),
        num_points=np.stack([p.num_points for p in prompts]),
        mask=mask,
        has_mask=np.stack([p.has_mask for p in prompts]),
    )


def iter_chunks(
    module: SAM2,
    variables: Variables,
    bank: MemoryBank,
    order: Sequence[int],
    load_frames: Callable[[np.ndarray], np.ndarray],
    prompts: Callable[[int], FramePrompts],
    track: np.ndarray,
    *,
    init_cond: np.ndarray | None = None,
    num_frames: int | jax.Array,
    reverse: bool = False,
    chunk_size: int = 8,
    memory_policy: MemoryPolicy = REFERENCE,
    seed: MemoryBank | None = None,
    seed_start: int = 0,
) -> Generator[tuple[np.ndarray, StepOutput], None, tuple[MemoryBank, MemoryBank | None]]:
    """`stream` as a generator: yields (frame indices (n,), StepOutput as numpy with leading
    (n, B)) after each chunk, without the padding steps, and returns (bank, seed).

    A consumer that stops early leaves the remaining chunks uncomputed.
    """
    order = np.asarray(order, np.int32)
    track = np.asarray(track, bool)
    init_cond = np.zeros_like(track) if init_cond is None else np.asarray(init_cond, bool)
    for begin in range(0, len(order), chunk_size):
        idx = order[begin : begin + chunk_size]
        n = len(idx)
        pad = chunk_size - n
        padded = np.concatenate([idx, np.repeat(idx[-1:], pad)])
        no = np.zeros((pad, track.shape[1]), bool)
        step_track = np.concatenate([track[begin : begin + n], no])
        step_init = np.concatenate([init_cond[begin : begin + n], no])
        frames = np.asarray(load_frames(idx), np.float32)
        frames = np.concatenate([frames, np.repeat(frames[-1:], pad, axis=0)])
        inputs = StepInputs(
            frames=frames,
            frame_idx=padded,
            prompts=_stack_prompts([prompts(int(f)) for f in padded]),
            track=step_track,
            init_cond=step_init,
        )
        (bank, seed), out = propagate(
            module,
            variables,
            bank,
            inputs,
            reverse,
            seed,
            seed_start,
            num_frames=num_frames,
            memory_policy=memory_policy,
        )
        out = jax.tree.map(functools.partial(_head, n=n), out)
        if out.overflow.any():
            step, obj = np.argwhere(out.overflow)[0]
            raise ValueError(
                f"object {obj} got a conditioning memory on frame {idx[step]} but its "
                f"{bank.cond_capacity} conditioning slots are taken; use a larger cond_capacity"
            )
        yield idx, out
    return bank, seed


def stream(
    module: SAM2,
    variables: Variables,
    bank: MemoryBank,
    order: Sequence[int],
    load_frames: Callable[[np.ndarray], np.ndarray],
    prompts: Callable[[int], FramePrompts],
    track: np.ndarray,
    *,
    init_cond: np.ndarray | None = None,
    num_frames: int | jax.Array,
    reverse: bool = False,
    chunk_size: int = 8,
    memory_policy: MemoryPolicy = REFERENCE,
    seed: MemoryBank | None = None,
    seed_start: int = 0,
    consume: Callable[[np.ndarray, StepOutput], None] | None = None,
) -> tuple[MemoryBank, MemoryBank | None]:
    """Runs `propagate` over `order` in chunks of `chunk_size` steps (one compiled program).

    Args:
      order: frame indices in tracking order.
      load_frames: (n,) frame indices -> (n, S, S, 3) float32 normalized frames; called once
        per chunk, so only a chunk of frames is ever in memory.
      prompts: frame index -> that frame's `FramePrompts` (B objects, fixed P).
      track: (len(order), B) bool, objects processed at each step.
      init_cond: (len(order), B) bool, force initial-conditioning decoding (default none).
      consume: called with (frame indices (n,), StepOutput as numpy with leading (n, B)) after
        each chunk, without the padding steps.

    Returns:
      (bank, seed) after the last frame.

    Raises:
      ValueError: when a conditioning memory does not fit the bank's conditioning slots.
    """
    chunks = iter_chunks(
        module,
        variables,
        bank,
        order,
        load_frames,
        prompts,
        track,
        init_cond=init_cond,
        num_frames=num_frames,
        reverse=reverse,
        chunk_size=chunk_size,
        memory_policy=memory_policy,
        seed=seed,
        seed_start=seed_start,
    )
    while True:
        try:
            idx, out = next(chunks)
        except StopIteration as done:
            return done.value
        if consume is not None:
            consume(idx, out)


@dataclasses.dataclass
class ObjectPrompt:
    """A prompt for one object on one frame, in model-input coordinates.

    Attributes:
      frame: frame index.
      obj: object index in 0 .. B-1.
      points: (N, 2) (x, y) in model-input pixels, or None.
      labels: (N,) 1 positive / 0 negative, or None.
      box: (4,) x0, y0, x1, y1 in model-input pixels, or None (becomes two points with labels
        2 / 3 placed before the clicks).
      mask: (S, S) bool at the model input size, or None (then points or box are required).
    """

    frame: int
    obj: int
    points: np.ndarray | None = None
    labels: np.ndarray | None = None
    box: np.ndarray | None = None
    mask: np.ndarray | None = None

    def point_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        """(N, 2) float32 coordinates and (N,) int32 labels, the box corners first."""
        return box_and_clicks(self.box, self.points, self.labels)


def frame_prompts(
    prompts: Sequence[ObjectPrompt], num_objects: int, max_points: int, image_size: int | None
) -> FramePrompts:
    """The padded `FramePrompts` of one frame from its ObjectPrompts (at most one per object).

    image_size: with a value, the mask field is a (B, S, S) array; None leaves it out.
    """
    points: list = [None] * num_objects
    masks: list = [None] * num_objects
    for p in prompts:
        if p.mask is not None:
            masks[p.obj] = p.mask
            continue
        points[p.obj] = p.point_arrays()
        if len(points[p.obj][0]) == 0:
            raise ValueError(f"prompt for object {p.obj} on frame {p.frame} is empty")
    return pack_frame_prompts(points, masks, max_points, image_size)


@dataclasses.dataclass
class VideoResult:
    """Per-frame outputs of `track_video`.

    Attributes:
      low_res_masks: (T, B, 4h, 4w) float32 logits; NO_OBJ_SCORE where an object was not
        tracked (frames before the start frame of a forward pass, ...).
      object_score_logits: (T, B) float32 (NO_OBJ_SCORE where not tracked).
      tracked: (T, B) bool, whether the object has an output on the frame (prompted or
        tracked).
      bank: the memory bank after the last pass.
    """

    low_res_masks: np.ndarray
    object_score_logits: np.ndarray
    tracked: np.ndarray
    bank: MemoryBank


def track_video(
    module: SAM2,
    variables: Variables,
    frames: np.ndarray | Callable[[np.ndarray], np.ndarray],
    num_frames: int | jax.Array,
    prompts: Sequence[ObjectPrompt],
    *,
    num_objects: int | None = None,
    start_frame: int | None = None,
    reverse: bool = False,
    both_directions: bool = False,
    chunk_size: int = 8,
    max_points: int | None = None,
    cond_capacity: int | None = None,
    mask_prompts: bool | None = None,
    memory_policy: MemoryPolicy = REFERENCE,
) -> VideoResult:
    """Segments B objects through a video from prompts given up front.

    Reproduces the reference `SAM2VideoPredictor` for: `add_new_points_or_box` /
    `add_new_mask` for every prompt, then `propagate_in_video(start_frame_idx=start_frame,
    reverse=reverse)` (with `both_directions`: a forward pass, then a reverse pass, both from
    the start frame). Not applied: the reference's hole filling of output masks
    (`fill_hole_area`, a CUDA op that is a no-op in CPU installs) and its non-overlap option.

    Args:
      frames: (num_frames, S, S, 3) normalized frames, or a loader from frame indices (n,) to
        (n, S, S, 3) (only one chunk of frames is then held at a time).
      prompts: at most one ObjectPrompt per (frame, object); every object needs one.
      start_frame: default the earliest prompted frame.
      chunk_size: frames per compiled scan call.
      max_points: padded number of points (default: the most any prompt has); fixing it
        (and chunk_size, cond_capacity) lets different videos share one compiled program.
      cond_capacity: conditioning slots per object (default: the most prompted frames any
        object has).
      mask_prompts: compile the mask-prompt path (default: iff a prompt is a mask).

    Returns:
      VideoResult.
    """
    cfg = module.config
    size = cfg.image_size
    if callable(frames):
        load = frames
    else:
        all_frames = np.asarray(frames)

        def load(idx: np.ndarray) -> np.ndarray:
            return all_frames[idx]

    b = num_objects if num_objects is not None else 1 + max(p.obj for p in prompts)
    by_frame: dict[int, list[ObjectPrompt]] = {}
    for p in prompts:
        by_frame.setdefault(int(p.frame), []).append(p)
    missing = set(range(b)) - {p.obj for p in prompts}
    if missing:
        raise ValueError(f"objects {sorted(missing)} have no prompt")
    counts = [len(p.point_arrays()[0]) for p in prompts if p.mask is None]
    p_max = max_points if max_points is not None else max([1, *counts])
    with_masks = any(p.mask is not None for p in prompts)
    if mask_prompts is not None:
        if with_masks and not mask_prompts:
            raise ValueError("mask_prompts=False but a prompt is a mask")
        with_masks = mask_prompts
    mask_size = size if with_masks else None
    per_object = [sum(p.obj == o for p in prompts) for o in range(b)]
    k = cond_capacity if cond_capacity is not None else max(per_object)
    if max(per_object) > k:
        raise ValueError(f"an object has {max(per_object)} prompted frames > cond_capacity {k}")

    hw = cfg.embedding_size**2
    bank = empty_bank(
        b, hw, mem_dim=cfg.mem_dim, hidden_dim=cfg.d_model, cond_capacity=k,
        policy_state=memory_policy.init_state(b),
    )  # fmt: skip
    low = np.full((num_frames, b, 4 * cfg.embedding_size, 4 * cfg.embedding_size), NO_OBJ_SCORE)
    low = low.astype(np.float32)
    scores = np.full((num_frames, b), NO_OBJ_SCORE, np.float32)
    prompted = np.zeros((num_frames, b), bool)
    tracked = np.zeros((num_frames, b), bool)
    empty = frame_prompts([], b, p_max, mask_size)

    # 1. Prompted frames, decoded without memory, become conditioning memories.
    prompt_frames = sorted(by_frame)
    per_frame = {f: frame_prompts(by_frame[f], b, p_max, mask_size) for f in prompt_frames}
    for f in prompt_frames:
        prompted[f] = np.asarray(per_frame[f].has_prompt)

    def keep_prompted(idx: np.ndarray, out: StepOutput) -> None:
        for i, f in enumerate(idx):
            has = prompted[f]
            low[f][has] = out.low_res_masks[i][has]
            scores[f][has] = out.object_score_logits[i][has]
            tracked[f] |= has

    bank, _ = stream(
        module,
        variables,
        bank,
        prompt_frames,
        load,
        per_frame.__getitem__,
        prompted[prompt_frames],
        init_cond=prompted[prompt_frames],
        num_frames=num_frames,
        chunk_size=chunk_size,
        memory_policy=memory_policy,
        consume=keep_prompted,
    )

    # 2. Propagation; prompted (frame, object) pairs keep their prompt outputs.
    start = min(by_frame) if start_frame is None else start_frame
    forward_order = list(range(start, num_frames))
    reverse_order = list(range(start, -1, -1)) if start > 0 else []

    def consume(idx: np.ndarray, out: StepOutput) -> None:
        active = out.active
        for i, f in enumerate(idx):
            low[f][active[i]] = out.low_res_masks[i][active[i]]
            scores[f][active[i]] = out.object_score_logits[i][active[i]]
            tracked[f] |= active[i]

    def run(order, rev, bank, seed=None):
        return stream(
            module,
            variables,
            bank,
            order,
            load,
            lambda f: empty,
            ~prompted[np.asarray(order, np.int64)],
            num_frames=num_frames,
            reverse=rev,
            chunk_size=chunk_size,
            memory_policy=memory_policy,
            seed=seed,
            seed_start=start,
            consume=consume,
        )

    if reverse and not both_directions:
        bank, _ = run(reverse_order, True, bank)
    else:
        seed = None
        if both_directions:
            span = memory_policy.history_span
            seed = empty_bank(
                b, hw, mem_dim=cfg.mem_dim, hidden_dim=cfg.d_model, cond_capacity=1,
                num_recent=span, num_ptrs=span,
            )  # fmt: skip
        bank, seed = run(forward_order, False, bank, seed)
        if both_directions and reverse_order:
            bank = reverse_bank(bank, seed, start, memory_policy)
            bank, _ = run(reverse_order, True, bank)
    return VideoResult(low, scores, tracked, bank)
