"""A video session's host-side state (numpy only, no Flax): what the reference keeps in its
`inference_state`, shared by `SAM2VideoPredictor` and the exported `ExportedVideoPredictor`.

Per object and frame the reference keeps every output (mask logits, object pointer, spatial
memory) in memory, so a long video runs out of it. Here the outputs of tracked frames go to
fixed-size records in an unnamed scratch file (`ScratchFile`, deleted when the session is
dropped); memory holds only an index entry per frame and object (about 0.2 KB: frame number,
record number, score) and the few prompted frames' outputs. The file grows by
4 (4h)^2 + 4 C + 2 HW M bytes per tracked frame and object (low-res logits, pointer,
bfloat16 memory): 50 KB at 256 px, 0.8 MB at 1024 px for the released models. Reading a
record back is exact (the same bytes).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable, Iterator, MutableMapping, Sequence

import numpy as np

from sam2_jax.video.frames import VideoFrames
from sam2_jax.video.scratch_file import ScratchFile


@dataclasses.dataclass
class FrameOutput:
    """One object's stored output on one frame (the reference's "compact" output).

    Attributes:
      low_res: (4h, 4w) float32 mask logits, after hole filling.
      score: object score logit (present iff > 0).
      obj_ptr: (C,) float32 object pointer.
      memory: (HW, M) bfloat16 spatial memory, or None until encoded (prompted frames get it
        when propagation starts).
    """

    low_res: np.ndarray
    score: float
    obj_ptr: np.ndarray
    memory: np.ndarray | None = None


@dataclasses.dataclass(frozen=True)
class _Layout:
    """Shapes and dtypes of a FrameOutput's arrays, in record order."""

    fields: tuple[tuple[str, tuple[int, ...], np.dtype], ...]

    @classmethod
    def of(cls, out: FrameOutput) -> _Layout:
        arrays = [("low_res", out.low_res), ("obj_ptr", out.obj_ptr), ("memory", out.memory)]
        return cls(tuple((n, np.shape(a), np.asarray(a).dtype) for n, a in arrays))

    def pack(self, out: FrameOutput) -> bytes:
        parts = []
        for name, shape, dtype in self.fields:
            array = np.ascontiguousarray(getattr(out, name), dtype)
            if array.shape != shape:
                raise ValueError(f"{name} is {array.shape}, the session stores {shape}")
            parts.append(array.tobytes())
        return b"".join(parts)

    def unpack(self, data: bytes, score: float) -> FrameOutput:
        arrays, offset = {}, 0
        for name, shape, dtype in self.fields:
            size = int(np.prod(shape)) * dtype.itemsize
            arrays[name] = np.frombuffer(data, dtype, offset=offset, count=size // dtype.itemsize)
            arrays[name] = arrays[name].reshape(shape).copy()
            offset += size
        return FrameOutput(arrays["low_res"], score, arrays["obj_ptr"], arrays["memory"])


class SpilledOutputs(MutableMapping):
    """frame -> FrameOutput, the arrays in a `ScratchFile`, the index in memory. Outputs
    must have their memory encoded (tracked frames always do)."""

    def __init__(self, scratch: ScratchFile):
        self._scratch = scratch
        self._index: dict[int, tuple[int, float]] = {}  # frame -> (record, score)
        self._layout: _Layout | None = None

    def __setitem__(self, frame: int, out: FrameOutput) -> None:
        if out.memory is None:
            raise ValueError(f"frame {frame}: a tracked frame's output needs its memory")
        if self._layout is None:
            self._layout = _Layout.of(out)
        data = self._layout.pack(out)
        record = self._index[frame][0] if frame in self._index else self._scratch.allocate()
        self._scratch.write(record, data)
        self._index[int(frame)] = (record, float(out.score))

    def __getitem__(self, frame: int) -> FrameOutput:
        record, score = self._index[frame]
        return self._layout.unpack(self._scratch.read(record), score)

    def __delitem__(self, frame: int) -> None:
        record, _ = self._index.pop(frame)
        self._scratch.release(record)

    def __iter__(self) -> Iterator[int]:
        return iter(self._index)

    def __len__(self) -> int:
        return len(self._index)

    def __contains__(self, frame: object) -> bool:
        return frame in self._index


@dataclasses.dataclass
class ObjectState:
    """Inputs and outputs of one object, keyed by frame index.

    `cond` / `non_cond`: outputs of conditioning (prompted) and tracked frames (`non_cond`
    may be a `SpilledOutputs`); `temp_cond` / `temp_non_cond`: outputs of new prompts, moved
    into those at the next propagation; `tracked`: frame -> whether it was last tracked in
    reverse.
    """

    points: dict[int, tuple[np.ndarray, np.ndarray]] = dataclasses.field(default_factory=dict)
    masks: dict[int, np.ndarray] = dataclasses.field(default_factory=dict)
    cond: dict[int, FrameOutput] = dataclasses.field(default_factory=dict)
    non_cond: MutableMapping[int, FrameOutput] = dataclasses.field(default_factory=dict)
    temp_cond: dict[int, FrameOutput] = dataclasses.field(default_factory=dict)
    temp_non_cond: dict[int, FrameOutput] = dataclasses.field(default_factory=dict)
    tracked: dict[int, bool] = dataclasses.field(default_factory=dict)

    def output(self, frame: int, is_cond: bool | None = None) -> FrameOutput | None:
        """The latest output on a frame: temporary (of the given kind, or either), then
        conditioning, then tracked."""
        temps = [self.temp_cond, self.temp_non_cond]
        if is_cond is not None:
            temps = [self.temp_cond if is_cond else self.temp_non_cond]
        for store in (*temps, self.cond, self.non_cond):
            if frame in store:
                return store[frame]
        return None


@dataclasses.dataclass
class InferenceState:
    """One video's session (what the reference keeps in its `inference_state` dict).

    Attributes:
      frames: the video frames (`VideoFrames`), decoded on demand for JPEG folders.
      obj_ids: client object ids, in order of first use (object index = position).
      objects: one `ObjectState` per object id.
      cached_features: (frame index, features) of the last frame decoded interactively.
      scratch: where the tracked frames' outputs are kept.
    """

    frames: VideoFrames
    obj_ids: list[Hashable] = dataclasses.field(default_factory=list)
    objects: list[ObjectState] = dataclasses.field(default_factory=list)
    cached_features: tuple[int, dict] | None = None
    scratch: ScratchFile = dataclasses.field(default_factory=ScratchFile)

    def new_object(self, obj_id: Hashable) -> int:
        """Appends an object whose tracked outputs spill to the scratch file; its index."""
        self.obj_ids.append(obj_id)
        self.objects.append(ObjectState(non_cond=SpilledOutputs(self.scratch)))
        return len(self.objects) - 1

    @property
    def num_frames(self) -> int:
        return self.frames.num_frames

    @property
    def video_height(self) -> int:
        return self.frames.height

    @property
    def video_width(self) -> int:
        return self.frames.width

    @property
    def video_hw(self) -> tuple[int, int]:
        return self.frames.height, self.frames.width


def bank_arrays(
    objects: Sequence[ObjectState],
    history: Sequence[tuple[int, bool, bool]],
    fields: dict[str, tuple[tuple[int, ...], np.dtype]],
    no_frame: int,
) -> dict[str, np.ndarray]:
    """The fixed-size memory bank of `objects` (row i = object i; more rows stay empty) for
    tracking from a frame: every conditioning memory, and the stored memories and pointers
    of the frames behind it that the memory rule reads, as the reference looks them up.

    Args:
      history: (frame, reads its memory, reads its pointer) in order of distance
        (`MemoryPolicy.history_frames`).
      fields: bank field -> (shape, dtype) (`MemoryBank`'s fields: cond_features (B, K, HW,
        M), cond_obj_ptr, cond_frame, cond_valid, recent_features (B, R, HW, M),
        recent_frame, recent_valid, ptr (B, P, C), ptr_frame, ptr_valid).
      no_frame: frame index of empty slots.

    Raises:
      ValueError: an object with more conditioning frames than the bank has slots.
    """
    arrays = {
        name: np.full(shape, no_frame, dtype) if name.endswith("frame") else np.zeros(shape, dtype)
        for name, (shape, dtype) in fields.items()
    }
    slots = fields["cond_valid"][0][1]
    for i, o in enumerate(objects):
        if len(o.cond) > slots:
            raise ValueError(
                f"an object has {len(o.cond)} prompted frames but the bank holds {slots}"
            )
        for slot, (f, out) in enumerate(o.cond.items()):
            if out.memory is not None:
                arrays["cond_features"][i, slot] = out.memory
            arrays["cond_obj_ptr"][i, slot] = out.obj_ptr
            arrays["cond_frame"][i, slot] = f
            arrays["cond_valid"][i, slot] = True
        mem_slot = ptr_slot = 0
        for f, read_memory, read_pointer in history:
            out = o.non_cond.get(f)
            if out is None or out.memory is None:
                continue
            if read_memory:
                arrays["recent_features"][i, mem_slot] = out.memory
                arrays["recent_frame"][i, mem_slot] = f
                arrays["recent_valid"][i, mem_slot] = True
                mem_slot += 1
            if read_pointer:
                arrays["ptr"][i, ptr_slot] = out.obj_ptr
                arrays["ptr_frame"][i, ptr_slot] = f
                arrays["ptr_valid"][i, ptr_slot] = True
                ptr_slot += 1
    return arrays
