"""What a video predictor's backend computes: the four operations `VideoSessionAPI` needs.

- `_encode_frame(state, frame_idx)`: one frame's image features;
- `_decode_prompt(...)`: one object's output on a prompted frame (no memory written);
- `_encode_memory(features, out)`: the memory of a stored prompt output;
- `_track(state, objects, order, track, start, reverse)`: the tracked outputs of a frame
  order, a chunk at a time (`TrackedChunk`).

Shapes: S = image_size, low-res masks (L, L), b objects, n frames in a chunk, C = the
pointer width, HW x M = one spatial memory.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator, Sequence
from typing import Any, NamedTuple

import numpy as np

from sam2_jax.video.state import FrameOutput, InferenceState, ObjectState


class TrackedChunk(NamedTuple):
    """A backend's outputs for n consecutive frames of a propagation order; rows of objects
    that were not tracked on a frame are ignored.

    Attributes:
      frames: (n,) frame indices.
      low_res: (n, b, L, L) float32 logits (before hole filling).
      scores: (n, b) object score logits.
      obj_ptr: (n, b, C).
      memory: (n, b, HW, M) spatial memories.
    """

    frames: np.ndarray
    low_res: np.ndarray
    scores: np.ndarray
    obj_ptr: np.ndarray
    memory: np.ndarray


class SessionBackend(abc.ABC):
    """The computation behind a video session; sets `image_size` (S), `low_res_side` (L)
    and `no_obj_score` (the logit of objects without an output)."""

    image_size: int
    low_res_side: int
    no_obj_score: float

    @abc.abstractmethod
    def _encode_frame(self, state: InferenceState, frame_idx: int) -> Any:
        """One frame's image features (whatever `_decode_prompt` and `_encode_memory` take)."""
        raise NotImplementedError

    @abc.abstractmethod
    def _decode_prompt(
        self,
        state: InferenceState,
        o: ObjectState,
        frame_idx: int,
        features: Any,
        *,
        points: tuple[np.ndarray, np.ndarray] | None,
        mask: np.ndarray | None,
        is_init: bool,
        reverse: bool,
        prev_logits: np.ndarray | None,
    ) -> tuple[np.ndarray, float, np.ndarray]:
        """One object's (L, L) low-res logits, object score and (C,) pointer on a prompted
        frame, decoded from a bank of its stored outputs (points in model-input pixels, mask
        (S, S) bool, prev_logits (1, L, L) or None)."""
        raise NotImplementedError

    @abc.abstractmethod
    def _encode_memory(self, features: Any, out: FrameOutput) -> np.ndarray:
        """The (HW, M) spatial memory of a stored prompt output."""
        raise NotImplementedError

    @abc.abstractmethod
    def _track(
        self,
        state: InferenceState,
        objects: Sequence[ObjectState],
        order: Sequence[int],
        track: np.ndarray,
        start: int,
        reverse: bool,
    ) -> Iterator[TrackedChunk]:
        """Tracks `objects` over `order` ((len(order), b) bool `track`: which are tracked on
        each frame), from a bank of their stored outputs at `start`; chunks in order."""
        raise NotImplementedError
