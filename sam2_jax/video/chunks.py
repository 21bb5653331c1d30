"""The host-side driver of the frame loop: any frame order through one compiled scan.

`stream` (and the generator `iter_chunks`) feeds a frame order of any length through
`sam2_jax.video.loop.propagate` in fixed-size chunks (the last one padded with untracked
steps), carrying the bank, so device memory does not depend on the video's length.

Shapes: n frames in a chunk, B objects, S = image_size.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Generator, Sequence

import jax
import numpy as np

from sam2_jax.memory.bank import MemoryBank
from sam2_jax.memory.policy import REFERENCE, MemoryPolicy
from sam2_jax.memory.step import StepOutput
from sam2_jax.modeling.sam2_base import SAM2
from sam2_jax.prompts import FramePrompts
from sam2_jax.video.loop import StepInputs, Variables, propagate


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
