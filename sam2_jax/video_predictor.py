"""Interactive video segmentation with the reference `SAM2VideoPredictor`'s API and semantics.

A thin stateful object over the compiled video core:

- clicks, boxes and masks are decoded one object at a time by the compiled `track_step`
  (`encode_memory=False`: memories of prompted frames are encoded when propagation starts,
  from the post-processed output, as the reference's preflight does);
- propagation is the compiled `lax.scan` of `propagation.iter_chunks` over the frames, all
  objects at once, on a fixed-size `MemoryBank` built from the stored outputs at the start
  frame (conditioning frames, and the memories and pointers of the frames just behind it).

Per-frame results live on the host, per object, as the reference keeps them: low-res mask
logits (after hole filling), object score, object pointer and the bfloat16 spatial memory.
The device holds the weights, one frame's features and the fixed-size bank of one chunk.

Semantics (REFERENCE_NOTES §3): a prompt on a frame the object was never tracked on makes a
conditioning frame; a prompt on an already tracked frame is a correction that only changes
that frame's output and memory until a later propagation re-tracks the frame
(`add_all_frames_to_correct_as_cond=True` makes corrections conditioning frames instead);
re-prompting a frame feeds its previous low-res logits back in as a dense prompt. Outputs
are logits at video resolution, (N_obj, 1, H, W), with -1024 for objects without an output.

Shapes: S = image_size, h = S / 16, low-res masks (4h, 4h), HW = h * h, M = mem_dim.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Hashable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from sam2_jax import validation
from sam2_jax.buckets import click_bucket, cond_slot_bucket, object_bucket
from sam2_jax.build import SAM2Model, build_sam2
from sam2_jax.memory.bank import NO_FRAME, MemoryBank
from sam2_jax.memory.policy import REFERENCE, MemoryPolicy
from sam2_jax.memory.step import encode_prompted_memory, track_step
from sam2_jax.modeling.sam2_base import SAM2
from sam2_jax.modeling.sam_heads import NO_OBJ_SCORE
from sam2_jax.prompts import FramePrompts, no_prompts, pack_frame_prompts
from sam2_jax.propagation import iter_chunks
from sam2_jax.video_frames import VideoFrames
from sam2_jax.video_io import mask_to_model, to_video_resolution
from sam2_jax.video_postprocess import fill_holes, non_overlapping
from sam2_jax.video_state import FrameOutput, InferenceState, ObjectState, bank_arrays

Variables = dict[str, Any]


# ---------------------------------------------------------------------------------------------
# Compiled pieces (shared by every predictor of the same model)


@functools.partial(jax.jit, static_argnames="module")
def _frame_features(module: SAM2, variables: Variables, frame: jax.Array) -> dict:
    """(S, S, 3) normalized frame -> `forward_image` output with batch 1."""
    return module.apply(variables, frame[None], method=SAM2.forward_image)


@functools.partial(jax.jit, static_argnames=("module", "memory_policy"))
def _decode_prompted(
    module: SAM2,
    variables: Variables,
    bank: MemoryBank,
    features: dict,
    frame_idx: jax.Array,
    prompts: FramePrompts,
    is_init_cond: jax.Array,
    reverse: jax.Array,
    prev_logits: jax.Array | None,
    *,
    num_frames: int | jax.Array,
    memory_policy: MemoryPolicy,
):
    """One object's output on a prompted frame, without a memory (reference
    `_run_single_frame_inference(run_mem_encoder=False)`)."""
    _, out = track_step(
        module,
        variables,
        bank,
        features,
        frame_idx,
        prompts,
        num_frames=num_frames,
        reverse=reverse,
        is_init_cond=is_init_cond,
        prev_logits=prev_logits,
        encode_memory=False,
        memory_policy=memory_policy,
    )
    return out.low_res_masks, out.object_score_logits, out.obj_ptr


_encode_memory = jax.jit(encode_prompted_memory, static_argnames=("module", "dtype"))


# ---------------------------------------------------------------------------------------------


class SAM2VideoPredictor:
    """Interactive video object segmentation (reference `SAM2VideoPredictor`).

    Example:
      predictor = build_sam2_video_predictor("sam2.1_hiera_t", "sam2.1_hiera_tiny.pt")
      state = predictor.init_state("video.mp4")
      predictor.add_new_points_or_box(state, 0, obj_id=1, points=[[210, 350]], labels=[1])
      for frame_idx, obj_ids, masks in predictor.propagate_in_video(state):
          ...  # masks: (N_obj, 1, H, W) logits; masks > 0 is the segmentation
    """

    def __init__(
        self,
        model: SAM2Model,
        *,
        fill_hole_area: int = 8,
        non_overlap_masks: bool = False,
        add_all_frames_to_correct_as_cond: bool = False,
        chunk_size: int = 8,
        progress: bool = True,
        memory_policy: MemoryPolicy = REFERENCE,
    ):
        """Args:
        model: from `build_sam2`.
        fill_hole_area: background holes of at most this many low-res pixels are filled in
          the outputs (0: off); the reference's builder default is 8.
        non_overlap_masks: at each pixel only the highest-scoring object keeps a positive
          logit (the others are clamped to -10).
        add_all_frames_to_correct_as_cond: corrections on tracked frames become
          conditioning frames (kept through later propagation).
        chunk_size: frames per compiled propagation call.
        progress: show progress bars while propagating.
        memory_policy: what each frame reads from the memory and writes into it
          (`sam2_jax.memory`; default SAM 2's rule, `reference_policy()`).
        """
        self.model = model
        self.module = model.module
        self.variables = model.variables
        self.config = model.config
        self.image_size = model.config.image_size
        self.fill_hole_area = fill_hole_area
        self.non_overlap_masks = non_overlap_masks
        self.add_all_frames_to_correct_as_cond = add_all_frames_to_correct_as_cond
        self.chunk_size = chunk_size
        self.progress = progress
        self.memory_policy = memory_policy

    # --- session --------------------------------------------------------------------------

    def init_state(
        self,
        video_path: str | os.PathLike | np.ndarray,
        *,
        offload_video_to_cpu: bool = False,
        offload_state_to_cpu: bool = False,
        async_loading_frames: bool = False,
        max_frames: int | None = None,
    ) -> InferenceState:
        """A session on a JPEG folder, a video file or a (T, H, W, 3) uint8 array.

        The reference's three memory options are accepted and are what this predictor always
        does: frames stay on the host (`offload_video_to_cpu`), JPEG folders are read on
        demand a chunk at a time (`async_loading_frames`), and per-frame outputs are kept on
        the host (`offload_state_to_cpu`); only the fixed-size memory bank of the frames
        being tracked is on the device.

        Raises:
          FileNotFoundError, ValueError: missing, empty or unreadable video.
        """
        del offload_video_to_cpu, offload_state_to_cpu, async_loading_frames  # see above
        return InferenceState(VideoFrames(video_path, self.image_size, max_frames=max_frames))

    def reset_state(self, state: InferenceState) -> None:
        """Removes every prompt, output and object id (the frames stay loaded)."""
        state.obj_ids.clear()
        state.objects.clear()

    # --- prompts --------------------------------------------------------------------------

    def _check_frame(self, state: InferenceState, frame_idx: int) -> int:
        return validation.frame_index(frame_idx, state.num_frames)

    def _object(self, state: InferenceState, obj_id: Hashable, create: bool) -> int:
        if obj_id in state.obj_ids:
            return state.obj_ids.index(obj_id)
        if not create:
            raise KeyError(f"unknown object id {obj_id!r}; existing ids: {state.obj_ids}")
        return state.new_object(obj_id)

    def add_new_points_or_box(
        self,
        state: InferenceState,
        frame_idx: int,
        obj_id: Hashable,
        points: np.ndarray | None = None,
        labels: np.ndarray | None = None,
        clear_old_points: bool = True,
        normalize_coords: bool = True,
        box: np.ndarray | None = None,
    ) -> tuple[int, list[Hashable], np.ndarray]:
        """Clicks and / or a box for one object on one frame.

        Args:
          points: (N, 2) (x, y) in video pixels (in [0, 1] with normalize_coords=False).
          labels: (N,) 1 positive, 0 negative.
          clear_old_points: False appends to the frame's previous clicks (not with a box).
          box: (4,) x0, y0, x1, y1, placed before the clicks as two points.

        Returns:
          (frame_idx, obj_ids, (N_obj, 1, H, W) logits of every object on the frame).
        """
        frame_idx = self._check_frame(state, frame_idx)
        obj_id = validation.object_id(obj_id)
        if box is not None and not clear_old_points:
            raise ValueError("a box needs clear_old_points=True (it goes before any click)")
        coords, labs = validation.video_prompt(
            points,
            labels,
            box,
            video_hw=(state.video_height, state.video_width),
            pixels=normalize_coords,
            context=f"object {obj_id!r}, frame {frame_idx}",
        )
        if normalize_coords:
            coords = coords / np.array([state.video_width, state.video_height], np.float32)
        coords = coords * np.float32(self.image_size)

        obj = self._object(state, obj_id, create=True)
        o = state.objects[obj]
        if not clear_old_points and frame_idx in o.points:
            old_coords, old_labels = o.points[frame_idx]
            coords = np.concatenate([old_coords, coords])
            labs = np.concatenate([old_labels, labs])
        o.points[frame_idx] = (coords, labs)
        o.masks.pop(frame_idx, None)
        return self._decode(state, obj, frame_idx, points=(coords, labs))

    def add_new_mask(
        self, state: InferenceState, frame_idx: int, obj_id: Hashable, mask: np.ndarray
    ) -> tuple[int, list[Hashable], np.ndarray]:
        """A mask prompt (H, W) bool at video resolution (or S x S) for one object on a frame.

        Returns:
          (frame_idx, obj_ids, (N_obj, 1, H, W) logits of every object on the frame).
        """
        frame_idx = self._check_frame(state, frame_idx)
        obj_id = validation.object_id(obj_id)
        video_hw = (state.video_height, state.video_width)
        mask = validation.binary_mask(
            mask,
            [(video_hw, "the video"), ((self.image_size,) * 2, "the model input")],
            context=f"object {obj_id!r}, frame {frame_idx}",
        )
        model_mask = mask_to_model(mask, self.image_size)
        obj = self._object(state, obj_id, create=True)
        o = state.objects[obj]
        o.masks[frame_idx] = model_mask
        o.points.pop(frame_idx, None)
        return self._decode(state, obj, frame_idx, mask=model_mask)

    def _features(self, state: InferenceState, frame_idx: int) -> dict:
        if state.cached_features is None or state.cached_features[0] != frame_idx:
            frame = state.frames.load(np.array([frame_idx]))[0]
            state.cached_features = (frame_idx, _frame_features(self.module, self.variables, frame))
        return state.cached_features[1]

    def _decode(
        self,
        state: InferenceState,
        obj: int,
        frame_idx: int,
        *,
        points: tuple[np.ndarray, np.ndarray] | None = None,
        mask: np.ndarray | None = None,
    ) -> tuple[int, list[Hashable], np.ndarray]:
        """Decodes one object's prompts on a frame; the output goes to the temporary store."""
        o = state.objects[obj]
        is_init = frame_idx not in o.tracked
        reverse = False if is_init else o.tracked[frame_idx]
        is_cond = is_init or self.add_all_frames_to_correct_as_cond
        s = self.image_size
        n = 0 if points is None else len(points[0])
        masks = None if mask is None else [mask]
        prompts = pack_frame_prompts([points], masks, click_bucket(n), s)
        prev_logits = None
        previous = o.output(frame_idx, is_cond)
        if points is not None and previous is not None:
            prev_logits = previous.low_res[None]
        bank = self._bank([o], frame_idx, reverse, state.num_frames)
        low_res, score, ptr = _decode_prompted(
            self.module,
            self.variables,
            bank,
            self._features(state, frame_idx),
            np.int32(frame_idx),
            prompts,
            np.array([is_init]),
            np.bool_(reverse),
            prev_logits,
            num_frames=state.num_frames,
            memory_policy=self.memory_policy,
        )
        low_res = np.asarray(low_res[0])
        if self.fill_hole_area > 0:
            low_res = fill_holes(low_res, self.fill_hole_area)
        out = FrameOutput(low_res, float(score[0]), np.asarray(ptr[0]))
        (o.temp_cond if is_cond else o.temp_non_cond)[frame_idx] = out
        return frame_idx, list(state.obj_ids), self._consolidate(state, frame_idx, is_cond)

    # --- outputs ----------------------------------------------------------------------------

    def _video_res(self, state: InferenceState, low_res: np.ndarray) -> np.ndarray:
        """(N, 4h, 4w) -> (N, 1, H, W) logits, non-overlapping if configured."""
        hw = (state.video_height, state.video_width)
        masks = np.asarray(to_video_resolution(jnp.asarray(low_res), hw))[:, None]
        return non_overlapping(masks) if self.non_overlap_masks else masks

    def _consolidate(self, state: InferenceState, frame_idx: int, is_cond: bool) -> np.ndarray:
        """Every object's latest output on a frame at video resolution (-1024 where none)."""
        side = 4 * self.config.embedding_size
        low_res = np.full((len(state.objects), side, side), NO_OBJ_SCORE, np.float32)
        for i, o in enumerate(state.objects):
            out = o.output(frame_idx, is_cond)
            if out is not None:
                low_res[i] = out.low_res
        return self._video_res(state, low_res)

    def clear_all_prompts_in_frame(
        self, state: InferenceState, frame_idx: int, obj_id: Hashable, need_output: bool = True
    ) -> tuple[int, list[Hashable], np.ndarray] | None:
        """Removes one object's prompts on a frame. Its conditioning output there (if any)
        becomes a plain tracked output, and the frame counts as never tracked, so a new
        prompt there makes it a conditioning frame again.

        Raises:
          KeyError: unknown object id.
        """
        frame_idx = self._check_frame(state, frame_idx)
        o = state.objects[self._object(state, obj_id, create=False)]
        o.points.pop(frame_idx, None)
        o.masks.pop(frame_idx, None)
        o.temp_cond.pop(frame_idx, None)
        o.temp_non_cond.pop(frame_idx, None)
        out = o.cond.pop(frame_idx, None)
        if out is not None:
            o.non_cond[frame_idx] = out
            o.tracked.pop(frame_idx, None)
        if not need_output:
            return None
        is_cond = any(frame_idx in x.temp_cond for x in state.objects)
        return frame_idx, list(state.obj_ids), self._consolidate(state, frame_idx, is_cond)

    def remove_object(
        self,
        state: InferenceState,
        obj_id: Hashable,
        strict: bool = False,
        need_output: bool = True,
    ) -> tuple[list[Hashable], list[tuple[int, np.ndarray]]]:
        """Drops an object (the last one: the whole session is reset).

        Returns:
          (remaining obj_ids, [(frame_idx, (N_obj, 1, H, W) logits)] for the frames the
          object had prompts on).

        Raises:
          KeyError: unknown object id with strict=True.
        """
        if obj_id not in state.obj_ids:
            if strict:
                raise KeyError(f"unknown object id {obj_id!r}; existing ids: {state.obj_ids}")
            return list(state.obj_ids), []
        if len(state.obj_ids) == 1:
            self.reset_state(state)
            return [], []
        obj = state.obj_ids.index(obj_id)
        # a set, iterated in its own order, as the reference does
        frames = set(state.objects[obj].points) | set(state.objects[obj].masks)
        del state.obj_ids[obj], state.objects[obj]
        updated = []
        if need_output:
            for f in frames:
                is_cond = any(f in x.temp_cond for x in state.objects)
                updated.append((f, self._consolidate(state, f, is_cond)))
        return list(state.obj_ids), updated

    # --- propagation ------------------------------------------------------------------------

    def _bank(
        self,
        objects: list[ObjectState],
        frame_idx: int,
        reverse: bool,
        num_frames: int,
        rows: int | None = None,
    ) -> MemoryBank:
        """The fixed-size bank of `objects` for tracking from `frame_idx` in a direction:
        all their conditioning memories, and the stored memories and pointers of the frames
        behind it that the memory policy reads (`history_frames`), as the reference looks
        them up in its dicts. `rows` >= len(objects) pads the object axis with empty rows."""
        cfg = self.config
        b, hw = rows or len(objects), cfg.embedding_size**2
        k = cond_slot_bucket(max([len(o.cond) for o in objects] + [1]))
        r, p = cfg.num_maskmem - 1, cfg.max_obj_ptrs_in_encoder - 1
        m, c, mem = cfg.mem_dim, cfg.d_model, jnp.bfloat16
        fields = dict(
            cond_features=((b, k, hw, m), mem),
            cond_obj_ptr=((b, k, c), np.float32),
            cond_frame=((b, k), np.int32),
            cond_valid=((b, k), bool),
            recent_features=((b, r, hw, m), mem),
            recent_frame=((b, r), np.int32),
            recent_valid=((b, r), bool),
            ptr=((b, p, c), np.float32),
            ptr_frame=((b, p), np.int32),
            ptr_valid=((b, p), bool),
        )
        history = self.memory_policy.history_frames(frame_idx, reverse)
        arrays = bank_arrays(objects, history, fields, NO_FRAME)
        bank = MemoryBank(**{name: jnp.asarray(a) for name, a in arrays.items()})
        return bank.replace(policy_state=self.memory_policy.init_state(b))

    def _preflight(self, state: InferenceState) -> None:
        """Encodes the memories of newly prompted frames and moves them to the stores
        (reference `propagate_in_video_preflight`)."""
        if not state.objects:
            raise RuntimeError("no prompts: add points, a box or a mask for an object first")
        for obj_id, o in zip(state.obj_ids, state.objects, strict=True):
            for temp, store in ((o.temp_non_cond, o.non_cond), (o.temp_cond, o.cond)):
                for f, out in temp.items():
                    if out.memory is None:
                        mem = _encode_memory(
                            self.module,
                            self.variables,
                            self._features(state, f),
                            jnp.asarray(out.low_res)[None],
                            jnp.asarray([out.score], jnp.float32),
                        )
                        out.memory = np.asarray(mem[0])
                    store[f] = out
                temp.clear()
            if not o.cond:
                raise RuntimeError(
                    f"object id {obj_id!r} has no prompt on any frame: add points, a box or a "
                    "mask for it (or remove it)"
                )
            for f in o.cond:
                o.non_cond.pop(f, None)

    def propagate_in_video(
        self,
        state: InferenceState,
        start_frame_idx: int | None = None,
        max_frame_num_to_track: int | None = None,
        reverse: bool = False,
    ) -> Iterator[tuple[int, list[Hashable], np.ndarray]]:
        """Tracks every object from `start_frame_idx` (default: the earliest prompted frame)
        over `max_frame_num_to_track` frames (default all) forward, or backward with reverse.

        Prompted frames keep their prompt outputs; every other frame is (re-)tracked. Frames
        are computed a chunk at a time; a frame's results are stored when it is yielded.

        Yields:
          (frame_idx, obj_ids, (N_obj, 1, H, W) logits at video resolution).

        Raises:
          RuntimeError: no object, or an object without any prompt.
          IndexError: start_frame_idx out of range.
        """
        self._preflight(state)
        num_frames = state.num_frames
        if start_frame_idx is None:
            start_frame_idx = min(f for o in state.objects for f in o.cond)
        start = self._check_frame(state, start_frame_idx)
        count = num_frames if max_frame_num_to_track is None else max_frame_num_to_track
        if count < 0:
            raise ValueError(f"max_frame_num_to_track must be >= 0, got {count}")
        if reverse:
            end = max(start - count, 0)
            order = list(range(start, end - 1, -1)) if start > 0 else []
        else:
            end = min(start + count, num_frames - 1)
            order = list(range(start, end + 1))
        if not order:
            return
        objects = list(state.objects)
        obj_ids = list(state.obj_ids)
        b = len(objects)
        rows = object_bucket(b)  # padded rows: untracked, their outputs dropped
        track = np.zeros((len(order), rows), bool)
        track[:, :b] = [[f not in o.cond for o in objects] for f in order]
        bank = self._bank(objects, start, reverse, num_frames, rows)
        empty = no_prompts(rows, 1)
        chunks = iter_chunks(
            self.module,
            self.variables,
            bank,
            order,
            state.frames.load,
            lambda f: empty,
            track,
            num_frames=num_frames,
            reverse=reverse,
            chunk_size=self.chunk_size,
            memory_policy=self.memory_policy,
        )
        progress = _progress(len(order), "propagate in video", self.progress)
        try:
            for idx, out in chunks:
                low_res = np.asarray(out.low_res_masks)[:, :b]
                if self.fill_hole_area > 0:
                    low_res = fill_holes(low_res, self.fill_hole_area)
                for i, f in enumerate(idx):
                    f = int(f)
                    frame_low = np.empty((b, *low_res.shape[2:]), np.float32)
                    for j, o in enumerate(objects):
                        if f in o.cond:
                            frame_low[j] = o.cond[f].low_res
                        else:
                            o.non_cond[f] = FrameOutput(
                                low_res[i, j],
                                float(out.object_score_logits[i, j]),
                                np.asarray(out.obj_ptr[i, j]),
                                np.asarray(out.memory_features[i, j]),
                            )
                            frame_low[j] = low_res[i, j]
                        o.tracked[f] = reverse
                    progress.update(1)
                    yield f, obj_ids, self._video_res(state, frame_low)
        finally:
            progress.close()


def _progress(total: int, desc: str, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=desc, disable=not enabled, unit="frame")


def build_sam2_video_predictor(
    config_name: str | None = None,
    checkpoint: str | os.PathLike | None = None,
    *,
    image_size: int | None = None,
    seed: int = 0,
    **kwargs,
) -> SAM2VideoPredictor:
    """`build_sam2` + `SAM2VideoPredictor` (hole filling of area 8 on, as the reference's
    builder sets it).

    Args:
      config_name: a variant name, or None with a checkpoint that records / implies it.
        Neither: the bundled default model (see `build_sam2`).
      checkpoint: reference `.pt`, Hugging Face checkpoint or converted directory; None with
        a config name draws random weights (`predictor.model.random_weights` is then True).
      image_size: model input side (default: the checkpoint's, else 1024).
      **kwargs: `SAM2VideoPredictor` options (fill_hole_area, non_overlap_masks,
        memory_policy, ...).
    """
    model = build_sam2(config_name, checkpoint, image_size=image_size, seed=seed)
    return SAM2VideoPredictor(model, **kwargs)
