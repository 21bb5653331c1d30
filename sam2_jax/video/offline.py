"""Offline tracking: the reference video predictor's behaviour when every prompt is given
before propagation (`track_video`).

Prompted frames are decoded first as initial conditioning frames (no memory) and written as
conditioning memories; propagation then tracks every other frame from the start frame
(forward, reverse, or forward then reverse), reusing the prompt outputs on prompted frames
instead of re-tracking them.

Shapes: T frames, B objects, S = image_size, h = S / 16.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence

import jax
import numpy as np

from sam2_jax.memory.bank import MemoryBank, empty_bank
from sam2_jax.memory.policy import REFERENCE, MemoryPolicy
from sam2_jax.memory.step import StepOutput
from sam2_jax.modeling.sam2_base import SAM2
from sam2_jax.modeling.sam_heads import NO_OBJ_SCORE
from sam2_jax.prompts import FramePrompts, box_and_clicks, pack_frame_prompts
from sam2_jax.video.chunks import stream
from sam2_jax.video.loop import Variables, reverse_bank


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
        num_recent=memory_policy.num_recent_slots, num_ptrs=memory_policy.num_ptr_slots,
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
