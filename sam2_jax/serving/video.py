"""`ExportedVideoPredictor`: `SAM2VideoPredictor`'s session API on exported programs.

The same semantics as the live predictor (REFERENCE_NOTES §3), from four programs:

- a prompt is decoded by `video_prompt_step` (one object, no memory written) on the frame's
  `image_encoder` features, from a bank of that object's stored outputs;
- when propagation starts, the prompted outputs get their memories (`memory_encoder`);
- propagation runs `image_encoder` and `track_step` per frame (objects in groups of
  `layout.max_objects`), carrying each group's bank from step to step on the device.

Frames, prompts, outputs and the session's semantics are the live predictor's: both are
backends of `sam2_jax.video.session.VideoSessionAPI`. Outputs are logits at video
resolution, (N_obj, 1, H, W), with the manifest's `no_obj_score` (-1024) for objects
without an output on the frame.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence

import jax.numpy as jnp
import numpy as np

from sam2_jax.serving.artifacts import CompiledModel
from sam2_jax.serving.manifest import BANK, exported_points
from sam2_jax.video.backend import TrackedChunk
from sam2_jax.video.session import VideoSessionAPI
from sam2_jax.video.state import FrameOutput, InferenceState, ObjectState, bank_arrays


class ExportedVideoPredictor(VideoSessionAPI):
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
        progress: bool = False,
    ):
        """Args:
        folder: written by `sam2-jax export-compiled`.
        fill_hole_area, non_overlap_masks, add_all_frames_to_correct_as_cond, progress: as
          `SAM2VideoPredictor`'s (hole filling of area 8 on, as its builder sets it).
        """
        super().__init__(
            fill_hole_area=fill_hole_area,
            non_overlap_masks=non_overlap_masks,
            add_all_frames_to_correct_as_cond=add_all_frames_to_correct_as_cond,
            progress=progress,
        )
        self.programs = CompiledModel(folder)
        self.manifest = self.programs.manifest
        self.image_size = self.manifest.image_size
        self.low_res_side = 4 * self.manifest.embedding_size
        memory = self.manifest.memory
        self._history = memory["history"]
        self._no_frame = int(memory["no_frame"])
        self.no_obj_score = float(memory["no_obj_score"])

    def _encode_frame(self, state: InferenceState, frame_idx: int) -> dict:
        return self.programs("image_encoder", image=state.frames.load(np.array([frame_idx])))

    def _check_points(self, coords: np.ndarray, labels: np.ndarray) -> None:
        exported_points((coords, labels), self.manifest.layout)

    def _decode_prompt(
        self,
        state: InferenceState,
        o: ObjectState,
        frame_idx: int,
        features: dict,
        *,
        points: tuple[np.ndarray, np.ndarray] | None,
        mask: np.ndarray | None,
        is_init: bool,
        reverse: bool,
        prev_logits: np.ndarray | None,
    ) -> tuple[np.ndarray, float, np.ndarray]:
        s, side = self.image_size, self.low_res_side
        coords, labels, count = exported_points(points, self.manifest.layout)
        out = self.programs(
            "video_prompt_step",
            **self._bank([o], frame_idx, reverse, "video_prompt_step"),
            **features,
            frame_idx=frame_idx,
            num_frames=state.num_frames,
            reverse=reverse,
            point_coords=coords,
            point_labels=labels,
            num_points=count,
            mask=np.zeros((1, s, s), bool) if mask is None else mask[None],
            has_mask=np.array([mask is not None]),
            is_init_cond=np.array([is_init]),
            prev_logits=np.zeros((1, side, side)) if prev_logits is None else prev_logits,
            has_prev_logits=prev_logits is not None,
        )
        low_res = np.asarray(out["low_res"][0])
        return low_res, float(out["object_score"][0]), np.asarray(out["obj_ptr"][0])

    def _encode_memory(self, features: dict, out: FrameOutput) -> np.ndarray:
        memory = self.programs(
            "memory_encoder",
            vision_features=features["vision_features"],
            low_res=out.low_res[None],
            object_score=np.array([out.score], np.float32),
        )["memory"]
        return np.asarray(memory[0])

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

    def _track(
        self,
        state: InferenceState,
        objects: Sequence[ObjectState],
        order: Sequence[int],
        track: np.ndarray,
        start: int,
        reverse: bool,
    ) -> Iterator[TrackedChunk]:
        """One frame at a time: `image_encoder`, then `track_step` for each group of
        `layout.max_objects` objects with one to track, carrying each group's bank."""
        size = self.manifest.layout.max_objects
        b = len(objects)
        groups = [list(range(i, min(i + size, b))) for i in range(0, b, size)]
        banks = [self._bank([objects[j] for j in g], start, reverse, "track_step") for g in groups]
        outputs = {s.name: s for s in self.programs.spec("track_step").outputs}
        for step, f in enumerate(order):
            chunk = {
                name: np.zeros((1, b, *outputs[name].shape[1:]), jnp.dtype(outputs[name].dtype))
                for name in ("low_res", "object_score", "obj_ptr", "memory")
            }
            features = self._encode_frame(state, f) if track[step].any() else None
            for gi, group in enumerate(groups):
                group_track = np.zeros(size, bool)
                group_track[: len(group)] = track[step, group]
                if not group_track.any():
                    continue  # nothing to track: the bank stays as it is
                out = self.programs(
                    "track_step",
                    **banks[gi],
                    **features,
                    frame_idx=f,
                    num_frames=state.num_frames,
                    reverse=reverse,
                    track=group_track,
                )
                banks[gi] = {name: out[name] for name in banks[gi]}
                for name, rows in chunk.items():
                    rows[0, group] = np.asarray(out[name])[: len(group)]
            yield TrackedChunk(
                np.array([f]),
                chunk["low_res"],
                chunk["object_score"],
                chunk["obj_ptr"],
                chunk["memory"],
            )
