"""`ExportedVideoPredictor`: `SAM2VideoPredictor`'s session API on exported programs.

The same semantics as the live predictor (REFERENCE_NOTES §3), from four programs:

- a prompt is decoded by `video_prompt_step` (one object, no memory written) on the frame's
  `image_encoder` features, from a bank of that object's stored outputs;
- when propagation starts, the prompted outputs get their memories (`memory_encoder`);
- propagation runs `image_encoder` and `track_step` per frame (objects in groups of
  `layout.max_objects`), carrying each group's bank from step to step on the device.

Frames, prompts and outputs are handled as the live predictor does (`VideoFrames`,
`validation`, `video_io.to_video_resolution`, `video_postprocess`). Outputs are logits at
video resolution, (N_obj, 1, H, W), with the manifest's `no_obj_score` (-1024) for objects
without an output on the frame.
"""

from __future__ import annotations

import os
from collections.abc import Hashable, Iterator

import jax.numpy as jnp
import numpy as np

from sam2_jax import validation
from sam2_jax.serving.artifacts import CompiledModel
from sam2_jax.serving.manifest import BANK, exported_points
from sam2_jax.video_frames import VideoFrames
from sam2_jax.video_io import mask_to_model, to_video_resolution
from sam2_jax.video_postprocess import fill_holes, non_overlapping
from sam2_jax.video_state import FrameOutput, InferenceState, ObjectState, bank_arrays


class ExportedVideoPredictor:
    """Interactive video object segmentation on an export-compiled folder.

    Example:
      predictor = ExportedVideoPredictor("out/compiled")
      state = predictor.init_state("video_frames/")
      predictor.add_new_points_or_box(state, 0, obj_id=1, points=[[210, 350]], labels=[1])
      for frame_idx, obj_ids, masks in predictor.propagate_in_video(state):
          ...  # masks: (N_obj, 1, H, W) logits; masks > 0 is the segmentation
    """

    def __init__(
        self,
        folder: str | os.PathLike,
        *,
        fill_hole_area: int = 8,
        non_overlap_masks: bool = False,
        add_all_frames_to_correct_as_cond: bool = False,
    ):
        """Args:
        folder: written by `sam2-jax export-compiled`.
        fill_hole_area, non_overlap_masks, add_all_frames_to_correct_as_cond: as
          `SAM2VideoPredictor`'s (hole filling of area 8 on, as its builder sets it).
        """
        self.programs = CompiledModel(folder)
        self.manifest = self.programs.manifest
        self.image_size = self.manifest.image_size
        self.fill_hole_area = fill_hole_area
        self.non_overlap_masks = non_overlap_masks
        self.add_all_frames_to_correct_as_cond = add_all_frames_to_correct_as_cond
        memory = self.manifest.memory
        self._history = memory["history"]
        self._no_frame = int(memory["no_frame"])
        self._no_obj_score = float(memory["no_obj_score"])

    # --- session --------------------------------------------------------------------------

    def init_state(
        self, video_path: str | os.PathLike | np.ndarray, *, max_frames: int | None = None
    ) -> InferenceState:
        """A session on a JPEG folder, a video file or a (T, H, W, 3) uint8 array.

        Raises:
          FileNotFoundError, ValueError: missing, empty or unreadable video.
        """
        return InferenceState(VideoFrames(video_path, self.image_size, max_frames=max_frames))

    def reset_state(self, state: InferenceState) -> None:
        """Removes every prompt, output and object id (the frames stay loaded)."""
        state.obj_ids.clear()
        state.objects.clear()

    def _object(self, state: InferenceState, obj_id: Hashable) -> int:
        if obj_id not in state.obj_ids:
            return state.new_object(obj_id)
        return state.obj_ids.index(obj_id)

    def _features(self, state: InferenceState, frame_idx: int) -> dict:
        if state.cached_features is None or state.cached_features[0] != frame_idx:
            frame = state.frames.load(np.array([frame_idx]))
            state.cached_features = (frame_idx, self.programs("image_encoder", image=frame))
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
        exported_points((coords, labs), self.manifest.layout)  # too many: fail before storing
        o = state.objects[self._object(state, obj_id)]
        o.points[frame_idx] = (coords, labs)
        return self._decode(state, o, frame_idx, points=(coords, labs))

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
        o = state.objects[self._object(state, obj_id)]
        o.points.pop(frame_idx, None)
        return self._decode(state, o, frame_idx, mask=mask_to_model(mask, self.image_size))

    def _decode(
        self,
        state: InferenceState,
        o: ObjectState,
        frame_idx: int,
        *,
        points: tuple[np.ndarray, np.ndarray] | None = None,
        mask: np.ndarray | None = None,
    ) -> tuple[int, list[Hashable], np.ndarray]:
        """Decodes one object's prompts on a frame; the output goes to the temporary store."""
        is_init = frame_idx not in o.tracked
        reverse = False if is_init else o.tracked[frame_idx]
        is_cond = is_init or self.add_all_frames_to_correct_as_cond
        s, side = self.image_size, 4 * self.manifest.embedding_size
        coords, labels, count = exported_points(points, self.manifest.layout)
        previous = o.output(frame_idx, is_cond)
        refine = points is not None and previous is not None  # clicked again: feed logits back
        out = self.programs(
            "video_prompt_step",
            **self._bank([o], frame_idx, reverse, "video_prompt_step"),
            **self._features(state, frame_idx),
            frame_idx=frame_idx,
            num_frames=state.num_frames,
            reverse=reverse,
            point_coords=coords,
            point_labels=labels,
            num_points=count,
            mask=np.zeros((1, s, s), bool) if mask is None else mask[None],
            has_mask=np.array([mask is not None]),
            is_init_cond=np.array([is_init]),
            prev_logits=previous.low_res[None] if refine else np.zeros((1, side, side)),
            has_prev_logits=refine,
        )
        low_res = np.asarray(out["low_res"][0])
        if self.fill_hole_area > 0:
            low_res = fill_holes(low_res, self.fill_hole_area)
        output = FrameOutput(low_res, float(out["object_score"][0]), np.asarray(out["obj_ptr"][0]))
        (o.temp_cond if is_cond else o.temp_non_cond)[frame_idx] = output
        return frame_idx, list(state.obj_ids), self._consolidate(state, frame_idx, is_cond)

    # --- outputs ----------------------------------------------------------------------------

    def _video_res(self, state: InferenceState, low_res: np.ndarray) -> np.ndarray:
        """(N, 4h, 4w) -> (N, 1, H, W) logits, non-overlapping if configured."""
        masks = np.asarray(to_video_resolution(jnp.asarray(low_res), state.video_hw))[:, None]
        return non_overlapping(masks) if self.non_overlap_masks else masks

    def _consolidate(self, state: InferenceState, frame_idx: int, is_cond: bool) -> np.ndarray:
        """Every object's latest output on a frame at video resolution (no_obj_score where
        none)."""
        side = 4 * self.manifest.embedding_size
        low_res = np.full((len(state.objects), side, side), self._no_obj_score, np.float32)
        for i, o in enumerate(state.objects):
            out = o.output(frame_idx, is_cond)
            if out is not None:
                low_res[i] = out.low_res
        return self._video_res(state, low_res)

    # --- propagation ------------------------------------------------------------------------

    def _bank(self, objects: list[ObjectState], frame_idx: int, reverse: bool, program: str):
        """{"bank.<field>": array} of `objects` for tracking from `frame_idx` (the program's
        B rows; the rest stay empty)."""
        spec = self.programs.spec(program)
        fields = {
            s.name[len(BANK) :]: (s.shape, jnp.dtype(s.dtype))
            for s in spec.inputs
            if s.name.startswith(BANK)
        }
        slots = fields["cond_valid"][0][1]
        if any(len(o.cond) > slots for o in objects):
            raise ValueError(
                f"an object has more prompted frames than these programs hold ({slots}, "
                "cond_slots); export them again with more"
            )
        sign = -1 if reverse else 1
        history = [(frame_idx - sign * int(d), mem, ptr) for d, mem, ptr in self._history]
        arrays = bank_arrays(objects, history, fields, self._no_frame)
        return {BANK + name: array for name, array in arrays.items()}

    def _preflight(self, state: InferenceState) -> None:
        """Encodes the memories of newly prompted frames and moves them to the stores."""
        if not state.objects:
            raise RuntimeError("no prompts: add points, a box or a mask for an object first")
        for obj_id, o in zip(state.obj_ids, state.objects, strict=True):
            for temp, store in ((o.temp_non_cond, o.non_cond), (o.temp_cond, o.cond)):
                for f, out in temp.items():
                    if out.memory is None:
                        memory = self.programs(
                            "memory_encoder",
                            vision_features=self._features(state, f)["vision_features"],
                            low_res=out.low_res[None],
                            object_score=np.array([out.score], np.float32),
                        )["memory"]
                        out.memory = np.asarray(memory[0])
                    store[f] = out
                temp.clear()
            if not o.cond:
                raise RuntimeError(
                    f"object id {obj_id!r} has no prompt on any frame: add points, a box or a "
                    "mask for it"
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

        Yields:
          (frame_idx, obj_ids, (N_obj, 1, H, W) logits at video resolution).
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
        objects, obj_ids = list(state.objects), list(state.obj_ids)
        size = self.manifest.layout.max_objects
        groups = [list(range(i, min(i + size, len(objects)))) for i in range(0, len(objects), size)]
        banks = [self._bank([objects[j] for j in g], start, reverse, "track_step") for g in groups]
        side = 4 * self.manifest.embedding_size
        for f in order:
            track = [f not in o.cond for o in objects]
            frame_low = np.empty((len(objects), side, side), np.float32)
            features = self._frame_features(state, f) if any(track) else None
            for gi, group in enumerate(groups):
                group_track = np.zeros(size, bool)
                group_track[: len(group)] = [track[j] for j in group]
                if not group_track.any():
                    continue  # nothing to track: the bank stays as it is
                out = self.programs(
                    "track_step",
                    **banks[gi],
                    **features,
                    frame_idx=f,
                    num_frames=num_frames,
                    reverse=reverse,
                    track=group_track,
                )
                banks[gi] = {name: out[name] for name in banks[gi]}
                low_res = np.asarray(out["low_res"])[: len(group)]
                if self.fill_hole_area > 0:
                    low_res = fill_holes(low_res, self.fill_hole_area)
                scores, ptrs = np.asarray(out["object_score"]), np.asarray(out["obj_ptr"])
                memory = np.asarray(out["memory"])
                for local, j in enumerate(group):
                    if track[j]:
                        objects[j].non_cond[f] = FrameOutput(
                            low_res[local], float(scores[local]), ptrs[local], memory[local]
                        )
                        frame_low[j] = low_res[local]
            for j, o in enumerate(objects):
                if f in o.cond:
                    frame_low[j] = o.cond[f].low_res
                o.tracked[f] = reverse
            yield f, obj_ids, self._video_res(state, frame_low)

    def _frame_features(self, state: InferenceState, frame_idx: int) -> dict:
        """A tracked frame's features (not cached: each frame is encoded once)."""
        return self.programs("image_encoder", image=state.frames.load(np.array([frame_idx])))
