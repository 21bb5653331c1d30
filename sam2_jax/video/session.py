"""The reference `SAM2VideoPredictor`'s session API and semantics, over any backend.

`VideoSessionAPI` holds everything a video predictor does on the host: prompt validation and
coordinate scaling, which store a prompt's output goes to, consolidating every object's
latest output on a frame, the preflight that encodes prompted memories, the propagation
order and the storing of tracked outputs. A backend only computes
(`sam2_jax.video.backend.SessionBackend`).

`SAM2VideoPredictor` (the live model) and `sam2_jax.serving.ExportedVideoPredictor`
(exported programs) are the two backends. This module imports no model code.

Semantics (REFERENCE_NOTES §3): a prompt on a frame the object was never tracked on makes a
conditioning frame; a prompt on an already tracked frame is a correction that only changes
that frame's output and memory until a later propagation re-tracks the frame
(`add_all_frames_to_correct_as_cond=True` makes corrections conditioning frames instead);
re-prompting a frame feeds its previous low-res logits back in as a dense prompt. Outputs
are logits at video resolution, (N_obj, 1, H, W), with `no_obj_score` (-1024) for objects
without an output on the frame.

Shapes: S = image_size, low-res masks (L, L) with L = 4 * S / 16, b objects, n frames in a
chunk, C = the pointer width, HW x M = one spatial memory.
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Iterator
from typing import Any

import jax.numpy as jnp
import numpy as np

from sam2_jax import validation
from sam2_jax.video.backend import SessionBackend
from sam2_jax.video.frames import VideoFrames
from sam2_jax.video.io import mask_to_model, to_video_resolution
from sam2_jax.video.postprocess import fill_holes, non_overlapping
from sam2_jax.video.state import FrameOutput, InferenceState


class VideoSessionAPI(SessionBackend):
    """The reference video predictor's methods; subclasses implement `SessionBackend`."""

    def __init__(
        self,
        *,
        fill_hole_area: int = 8,
        non_overlap_masks: bool = False,
        add_all_frames_to_correct_as_cond: bool = False,
        progress: bool = True,
    ):
        """Args:
        fill_hole_area: background holes of at most this many low-res pixels are filled in
          the outputs (0: off); the reference's builder default is 8.
        non_overlap_masks: at each pixel only the highest-scoring object keeps a positive
          logit (the others are clamped to -10).
        add_all_frames_to_correct_as_cond: corrections on tracked frames become
          conditioning frames (kept through later propagation).
        progress: show progress bars while propagating.
        """
        self.fill_hole_area = fill_hole_area
        self.non_overlap_masks = non_overlap_masks
        self.add_all_frames_to_correct_as_cond = add_all_frames_to_correct_as_cond
        self.progress = progress

    def _check_points(self, coords: np.ndarray, labels: np.ndarray) -> None:
        """Raises ValueError for clicks the backend cannot take (before anything is stored)."""

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

    def _object(self, state: InferenceState, obj_id: Hashable, create: bool) -> int:
        if obj_id in state.obj_ids:
            return state.obj_ids.index(obj_id)
        if not create:
            raise KeyError(f"unknown object id {obj_id!r}; existing ids: {state.obj_ids}")
        return state.new_object(obj_id)

    def _features(self, state: InferenceState, frame_idx: int) -> Any:
        """A prompted frame's features (the last one is cached: prompts come frame by frame)."""
        if state.cached_features is None or state.cached_features[0] != frame_idx:
            state.cached_features = (frame_idx, self._encode_frame(state, frame_idx))
        return state.cached_features[1]

    # --- prompts --------------------------------------------------------------------------

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
        frame_idx = validation.frame_index(frame_idx, state.num_frames)
        obj_id = validation.object_id(obj_id)
        if box is not None and not clear_old_points:
            raise ValueError("a box needs clear_old_points=True (it goes before any click)")
        coords, labs = validation.video_prompt(
            points,
            labels,
            box,
            video_hw=state.video_hw,
            pixels=normalize_coords,
            context=f"object {obj_id!r}, frame {frame_idx}",
        )
        if normalize_coords:
            height, width = state.video_hw
            coords = coords / np.array([width, height], np.float32)
        coords = coords * np.float32(self.image_size)
        known = obj_id in state.obj_ids
        old = state.objects[state.obj_ids.index(obj_id)].points.get(frame_idx) if known else None
        if not clear_old_points and old is not None:
            coords = np.concatenate([old[0], coords])
            labs = np.concatenate([old[1], labs])
        self._check_points(coords, labs)  # fail before anything is stored
        obj = self._object(state, obj_id, create=True)
        o = state.objects[obj]
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
        frame_idx = validation.frame_index(frame_idx, state.num_frames)
        obj_id = validation.object_id(obj_id)
        mask = validation.binary_mask(
            mask,
            [(state.video_hw, "the video"), ((self.image_size,) * 2, "the model input")],
            context=f"object {obj_id!r}, frame {frame_idx}",
        )
        model_mask = mask_to_model(mask, self.image_size)
        obj = self._object(state, obj_id, create=True)
        o = state.objects[obj]
        o.masks[frame_idx] = model_mask
        o.points.pop(frame_idx, None)
        return self._decode(state, obj, frame_idx, mask=model_mask)

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
        previous = o.output(frame_idx, is_cond)
        refine = points is not None and previous is not None  # clicked again: feed logits back
        low_res, score, ptr = self._decode_prompt(
            state,
            o,
            frame_idx,
            self._features(state, frame_idx),
            points=points,
            mask=mask,
            is_init=is_init,
            reverse=reverse,
            prev_logits=previous.low_res[None] if refine else None,
        )
        if self.fill_hole_area > 0:
            low_res = fill_holes(low_res, self.fill_hole_area)
        out = FrameOutput(low_res, float(score), np.asarray(ptr))
        (o.temp_cond if is_cond else o.temp_non_cond)[frame_idx] = out
        return frame_idx, list(state.obj_ids), self._consolidate(state, frame_idx, is_cond)

    # --- outputs ----------------------------------------------------------------------------

    def _video_res(self, state: InferenceState, low_res: np.ndarray) -> np.ndarray:
        """(N, L, L) -> (N, 1, H, W) logits, non-overlapping if configured."""
        masks = np.asarray(to_video_resolution(jnp.asarray(low_res), state.video_hw))[:, None]
        return non_overlapping(masks) if self.non_overlap_masks else masks

    def _consolidate(self, state: InferenceState, frame_idx: int, is_cond: bool) -> np.ndarray:
        """Every object's latest output on a frame at video resolution (no_obj_score where
        none)."""
        side = self.low_res_side
        low_res = np.full((len(state.objects), side, side), self.no_obj_score, np.float32)
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
        frame_idx = validation.frame_index(frame_idx, state.num_frames)
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

    def _preflight(self, state: InferenceState) -> None:
        """Encodes the memories of newly prompted frames and moves them to the stores
        (reference `propagate_in_video_preflight`)."""
        if not state.objects:
            raise RuntimeError("no prompts: add points, a box or a mask for an object first")
        for obj_id, o in zip(state.obj_ids, state.objects, strict=True):
            for temp, store in ((o.temp_non_cond, o.non_cond), (o.temp_cond, o.cond)):
                for f, out in temp.items():
                    if out.memory is None:
                        out.memory = np.asarray(self._encode_memory(self._features(state, f), out))
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
        start = validation.frame_index(start_frame_idx, num_frames)
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
        objects, obj_ids = list(state.objects), list(state.obj_ids)
        b = len(objects)
        track = np.array([[f not in o.cond for o in objects] for f in order], bool)
        progress = _progress(len(order), "propagate in video", self.progress)
        try:
            for chunk in self._track(state, objects, order, track, start, reverse):
                low_res = np.asarray(chunk.low_res, np.float32)[:, :b]
                if self.fill_hole_area > 0:
                    low_res = fill_holes(low_res, self.fill_hole_area)
                for i, f in enumerate(chunk.frames):
                    f = int(f)
                    frame_low = np.empty((b, *low_res.shape[2:]), np.float32)
                    for j, o in enumerate(objects):
                        if f in o.cond:
                            frame_low[j] = o.cond[f].low_res
                        else:
                            o.non_cond[f] = FrameOutput(
                                low_res[i, j],
                                float(chunk.scores[i, j]),
                                np.asarray(chunk.obj_ptr[i, j]),
                                np.asarray(chunk.memory[i, j]),
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
