"""Camera-style tracking: frames arrive one at a time, memory stays bounded.

`StreamTracker` keeps only the fixed-size `MemoryBank` (conditioning slots, the recent
memories and pointers) on the device and nothing per frame on the host, so a stream of any
length runs in constant memory. Each `track(frame)` encodes the frame and runs the compiled
`track_step` for every object; prompts given with `add_prompt` apply to the next frame.

Semantics follow the video predictor's: a prompted frame is decoded without memory (it
becomes a conditioning memory, binarized), every other frame attends to the memories. It
differs from propagating a stored video in one way: a prompted frame's memory is encoded
from its mask before hole filling (the predictor encodes the filled one).

Shapes: S = image_size, low-res masks (S/4, S/4), outputs (N_obj, 1, H, W) logits.
"""

from __future__ import annotations

import functools
from collections.abc import Hashable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from sam2_jax import validation
from sam2_jax.build import SAM2Model
from sam2_jax.memory.bank import MemoryBank, empty_bank
from sam2_jax.memory.policies import policy_for_model
from sam2_jax.memory.policy import MemoryPolicy
from sam2_jax.memory.step import track_step
from sam2_jax.modeling.sam2_base import SAM2
from sam2_jax.prompts import FramePrompts, pack_frame_prompts
from sam2_jax.video.frames import _resize, normalize
from sam2_jax.video.io import mask_to_model, to_video_resolution
from sam2_jax.video.postprocess import fill_holes, non_overlapping

STREAM_NUM_FRAMES = 2**30  # no known end: the pointer window is the full 16 frames

Variables = dict[str, Any]


@functools.partial(jax.jit, static_argnames=("module", "memory_policy"))
def _stream_step(
    module: SAM2,
    variables: Variables,
    bank: MemoryBank,
    frame: jax.Array,
    frame_idx: jax.Array,
    prompts: FramePrompts,
    memory_policy: MemoryPolicy,
):
    features = module.apply(variables, frame[None], method=SAM2.forward_image)
    bank, out = track_step(
        module,
        variables,
        bank,
        features,
        frame_idx,
        prompts,
        num_frames=STREAM_NUM_FRAMES,
        is_init_cond=prompts.has_prompt,
        memory_policy=memory_policy,
    )
    return bank, out.low_res_masks, out.object_score_logits, out.overflow


class StreamTracker:
    """Tracks objects through frames fed one at a time (a camera, a long video)."""

    def __init__(
        self,
        model: SAM2Model,
        video_hw: tuple[int, int],
        *,
        cond_capacity: int = 4,
        max_points: int = 8,
        fill_hole_area: int = 8,
        non_overlap_masks: bool = False,
        memory_policy: MemoryPolicy | str | None = None,
    ):
        """Args:
        model: from `build_sam2`.
        video_hw: (H, W) of the incoming frames.
        cond_capacity: prompted frames kept per object (more is an error).
        max_points: clicks (box corners included) per object and frame.
        fill_hole_area, non_overlap_masks: output post-processing, as in the predictor.
        memory_policy: what each frame reads from the memory and writes into it
          (`sam2_jax.memory`, or a name of `get_policy`). None: the one the checkpoint names
          (`model.memory_policy`), else SAM 2's rule.
        """
        self.model = model
        self.size = model.config.image_size
        self.video_hw = tuple(video_hw)
        self.cond_capacity = cond_capacity
        self.max_points = max_points
        self.fill_hole_area = fill_hole_area
        self.non_overlap_masks = non_overlap_masks
        self.memory_policy = policy_for_model(memory_policy, model.memory_policy)
        self.obj_ids: list[Hashable] = []
        self.frame_idx = 0  # index of the next frame
        self.scores = np.zeros((0,), np.float32)  # object scores of the last frame
        self._bank: MemoryBank | None = None
        self._pending: dict[int, tuple[np.ndarray, np.ndarray] | np.ndarray] = {}

    def add_prompt(
        self,
        obj_id: Hashable,
        points: np.ndarray | None = None,
        labels: np.ndarray | None = None,
        box: np.ndarray | None = None,
        mask: np.ndarray | None = None,
    ) -> None:
        """Clicks / a box (video pixels) or a mask (H, W) for an object on the next frame;
        a new obj_id adds an object."""
        h, w = self.video_hw
        obj_id = validation.object_id(obj_id)
        context = f"object {obj_id!r}"
        if mask is not None:
            mask = validation.binary_mask(mask, [((h, w), "the video")], context=context)
            prompt: Any = mask_to_model(mask, self.size)
        else:
            c, lab = validation.video_prompt(points, labels, box, video_hw=(h, w), context=context)
            if len(c) > self.max_points:
                raise ValueError(f"{context}: {len(c)} points > max_points {self.max_points}")
            prompt = (c / np.array([w, h], np.float32) * np.float32(self.size), lab)
        if obj_id not in self.obj_ids:
            self.obj_ids.append(obj_id)
            cfg = self.model.config
            new = empty_bank(
                1,
                cfg.embedding_size**2,
                mem_dim=cfg.mem_dim,
                hidden_dim=cfg.d_model,
                cond_capacity=self.cond_capacity,
                num_recent=self.memory_policy.num_recent_slots,
                num_ptrs=self.memory_policy.num_ptr_slots,
                policy_state=self.memory_policy.init_state(1),
            )
            self._bank = (
                new
                if self._bank is None
                else jax.tree.map(lambda a, b: jnp.concatenate([a, b]), self._bank, new)
            )
        self._pending[self.obj_ids.index(obj_id)] = prompt

    def _prompts(self) -> FramePrompts:
        b = len(self.obj_ids)
        points: list = [None] * b
        masks: list = [None] * b
        for obj, prompt in self._pending.items():
            if isinstance(prompt, np.ndarray):
                masks[obj] = prompt
            else:
                points[obj] = prompt
        with_mask = any(m is not None for m in masks)
        return pack_frame_prompts(points, masks, self.max_points, self.size if with_mask else None)

    def track(self, frame: np.ndarray) -> tuple[int, list[Hashable], np.ndarray]:
        """One frame (H, W, 3) uint8 RGB -> (frame_idx, obj_ids, (N_obj, 1, H, W) logits).

        Raises:
          RuntimeError: no object has been prompted yet.
          ValueError: a frame of the wrong size, or more prompted frames than cond_capacity.
        """
        if self._bank is None:
            raise RuntimeError("no object to track: call add_prompt first")
        frame = np.asarray(frame)
        if frame.shape != (*self.video_hw, 3) or frame.dtype != np.uint8:
            raise ValueError(
                f"frame must be {(*self.video_hw, 3)} uint8, got {frame.shape} {frame.dtype}"
            )
        model_frame = normalize(_resize(frame, self.size))
        bank, low_res, scores, overflow = _stream_step(
            self.model.module,
            self.model.variables,
            self._bank,
            model_frame,
            np.int32(self.frame_idx),
            self._prompts(),
            self.memory_policy,
        )
        if np.asarray(overflow).any():
            obj = self.obj_ids[int(np.argmax(np.asarray(overflow)))]
            raise ValueError(
                f"object {obj!r} has more than cond_capacity={self.cond_capacity} prompted frames"
            )
        self._bank = bank
        self._pending.clear()
        low_res = np.asarray(low_res)
        if self.fill_hole_area > 0:
            low_res = fill_holes(low_res, self.fill_hole_area)
        masks = np.asarray(to_video_resolution(jnp.asarray(low_res), self.video_hw))[:, None]
        if self.non_overlap_masks:
            masks = non_overlapping(masks)
        self.scores = np.asarray(scores)
        frame_idx, self.frame_idx = self.frame_idx, self.frame_idx + 1
        return frame_idx, list(self.obj_ids), masks
