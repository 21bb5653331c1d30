"""DAM4SAM's distractor-aware memory as a memory policy (Videnovic, Lukezic, Kristan, CVPR 2025,
"A Distractor-Aware Memory for Visual Object Tracking with SAM2").

Two memories per object, `num_maskmem` spatial memories read in all:
- DRM, the distractor-resolving memory: the prompted frames plus the `drm_size` most recent
  frames where an alternative mask revealed a look-alike (the previous frame excluded: it is
  read as recent), all with the conditioning frames' temporal row. A tracked frame enters it
  when its predicted IoU > `iou_threshold`, the object's size is within `size_ratio` of the
  median of its last `size_history` non-empty sizes (within `size_window` frames; this frame
  included), more than `drm_gap` frames passed since the last entry, and one of the two other
  multimask candidates, cut to its largest 8-connected part outside the chosen mask and joined
  back to it, has a box whose IoU with the chosen mask's box is <= `box_iou_threshold`. Its
  memory is encoded from the binarized mask, as a prompted frame's is.
- RAM, the recent appearance memory, in the remaining slots: the most recent frame where the
  object is present, then the present multiples of `stride` before it (frame 0 never), with
  temporal rows by rank (gaps of absent frames closed up).
Object pointers: SAM 2's window, only from frames where the object is present, plus the read
DRM frames' (at their distance).

Deviations from the DAM4SAM code (`jovanavidenovic/DAM4SAM`), which tracks one object per
tracker and keeps every frame: the state is per object and the rings keep what later frames
can read (the 4 most recent DRM frames); sizes and boxes are measured on the model-input-size
mask (the code: at video resolution), boxes as pixel extents (the code: raster overlap of
rectangles); object pointers are normalised by the video length, as SAM 2's offline
predictor does (the code: by the frames seen so far); the code tracks forward only:
backward, the last frame takes frame 0's place (never in RAM) and the stride's multiples stay
absolute. DAM4SAM also switches hole filling off: that is the predictor's `fill_hole_area=0`,
not the policy's.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp

from sam2_jax.memory.bank import MemoryBank, write_conditioning, write_recent
from sam2_jax.memory.policies.components import largest_component
from sam2_jax.memory.policy import MemoryPolicy, StepScores
from sam2_jax.memory.selection import MemorySelection
from sam2_jax.modeling.interpolation import upsample_bilinear

_FAR = 2**30


@flax.struct.dataclass
class DistractorState:
    """Per object: memory-ring flags (B, R) present / DRM, pointer-ring flags (B, P) present /
    DRM, the last non-empty sizes (B, H) with their frames, the last DRM frame (B,)."""

    mem_present: jax.Array
    mem_drm: jax.Array
    ptr_present: jax.Array
    ptr_drm: jax.Array
    sizes: jax.Array
    size_frames: jax.Array
    tracked: jax.Array  # (B,) int32 frames tracked (the size rule needs 2)
    last_drm: jax.Array


def _boxes(masks: jax.Array) -> jax.Array:
    """(B, S, S, K) bool -> (B, K, 4) float32 pixel extents (x0, y0, x1 + 1, y1 + 1)."""
    rows, cols = masks.any(axis=2), masks.any(axis=1)
    n = masks.shape[1]
    idx = jnp.arange(n)[None, :, None]
    y0 = jnp.min(jnp.where(rows, idx, n), axis=1)
    y1 = jnp.max(jnp.where(rows, idx, -1), axis=1) + 1
    x0 = jnp.min(jnp.where(cols, idx, n), axis=1)
    x1 = jnp.max(jnp.where(cols, idx, -1), axis=1) + 1
    return jnp.stack([x0, y0, x1, y1], axis=-1).astype(jnp.float32)


def _box_iou(a: jax.Array, b: jax.Array) -> jax.Array:
    """IoU of (..., 4) boxes."""
    iw = jnp.maximum(0.0, jnp.minimum(a[..., 2], b[..., 2]) - jnp.maximum(a[..., 0], b[..., 0]))
    ih = jnp.maximum(0.0, jnp.minimum(a[..., 3], b[..., 3]) - jnp.maximum(a[..., 1], b[..., 1]))
    inter = iw * ih
    area = lambda x: (x[..., 2] - x[..., 0]) * (x[..., 3] - x[..., 1])
    union = area(a) + area(b) - inter
    return jnp.where(union > 0, inter / jnp.maximum(union, 1e-9), 0.0)


def _rank(frames: jax.Array, use: jax.Array, t: jax.Array, sign: jax.Array) -> jax.Array:
    """(B, S) 1-based rank by closeness to frame t among the `use` slots (0 elsewhere)."""
    dist = jnp.where(use, (t - frames) * sign, _FAR)
    closer = (use[:, None, :] & (dist[:, None, :] < dist[:, :, None])).sum(axis=2)
    return jnp.where(use, closer + 1, 0)


@dataclasses.dataclass(frozen=True)
class Dam4SamPolicy(MemoryPolicy):
    """DAM4SAM's defaults (its `sam21pp` configs and tracker)."""

    stride: int = 5
    drm_size: int = 3
    iou_threshold: float = 0.8
    size_ratio: tuple[float, float] = (0.8, 1.2)
    size_history: int = 10
    size_window: int = 300
    drm_gap: int = 5
    box_iou_threshold: float = 0.7

    def __post_init__(self):
        if self.stride < 1 or self.drm_size < 0 or self.num_maskmem < 2:
            raise ValueError(
                f"need stride >= 1, drm_size >= 0, num_maskmem >= 2; got {self.stride}, "
                f"{self.drm_size}, {self.num_maskmem}"
            )

    @property
    def num_recent_slots(self) -> int:
        # the newest frame, the last present one, num_maskmem - 2 present multiples of the
        # stride, and drm_size + 1 DRM frames (one more: the previous frame is not read as one)
        return 1 + 1 + (self.num_maskmem - 2) + self.drm_size + 1

    @property
    def num_ptr_slots(self) -> int:
        return self.max_obj_ptrs_in_encoder - 1 + self.drm_size + 1

    def init_state(self, num_objects: int) -> Any:
        b = num_objects
        r, p, h = self.num_recent_slots, self.num_ptr_slots, self.size_history
        return DistractorState(
            mem_present=jnp.zeros((b, r), bool),
            mem_drm=jnp.zeros((b, r), bool),
            ptr_present=jnp.zeros((b, p), bool),
            ptr_drm=jnp.zeros((b, p), bool),
            sizes=jnp.zeros((b, h), jnp.float32),
            size_frames=jnp.full((b, h), -_FAR, jnp.int32),
            tracked=jnp.zeros((b,), jnp.int32),
            last_drm=jnp.full((b,), -_FAR, jnp.int32),
        )

    # -- the DRM decision --------------------------------------------------------------------

    def _distractor(
        self, state: DistractorState, step: StepScores, frame_idx: jax.Array
    ) -> tuple[jax.Array, jax.Array]:
        """(B,) bool: this frame enters the DRM; (B,) float32 the chosen mask's size."""
        size = 4 * step.mask_logits.shape[1]  # the low-res logits are S / 4 wide
        chosen = self._chosen(step)
        n = chosen.sum(axis=(1, 2)).astype(jnp.float32)
        t = jnp.asarray(frame_idx, jnp.int32)
        sizes, frames = self._with_size(state, n, t)
        recent = frames > t - self.size_window
        valid = recent & (sizes >= 1)
        # the median of the valid sizes (NumPy's: the mean of the two middle ones if even)
        ordered = jnp.sort(jnp.where(valid, sizes, jnp.inf), axis=1)
        count = valid.sum(axis=1)
        lo = jnp.take_along_axis(ordered, jnp.maximum((count - 1) // 2, 0)[:, None], 1)[:, 0]
        hi = jnp.take_along_axis(ordered, jnp.maximum(count // 2, 0)[:, None], 1)[:, 0]
        median = (lo + hi) / 2
        ratio = jnp.where((state.tracked + 1 > 1) & (n >= 1), n / jnp.maximum(median, 1), -1.0)
        confident = (
            (step.iou > self.iou_threshold)
            & (ratio >= self.size_ratio[0])
            & (ratio <= self.size_ratio[1])
            & (n >= 1)
            & (t - state.last_drm > self.drm_gap)
        )
        # the two other candidates: their largest part outside the chosen mask, joined to it
        candidates = upsample_bilinear(step.candidates, (size, size)) > 0  # (B, S, S, 3)
        best = jnp.argmax(step.candidate_ious, axis=1)  # the chosen one (best predicted IoU)
        others = jnp.argsort(jnp.arange(3)[None, :] == best[:, None], axis=1, stable=True)[:, :2]
        alt = jnp.take_along_axis(candidates, others[:, None, None, :], axis=3)  # (B, S, S, 2)
        outside = alt & ~chosen[..., None]
        b = outside.shape[0]
        parts = largest_component(jnp.moveaxis(outside, 3, 1).reshape(b * 2, size, size))
        parts = jnp.moveaxis(parts.reshape(b, 2, size, size), 1, 3)
        joined = parts | chosen[..., None]
        box_iou = _box_iou(_boxes(chosen[..., None])[:, :1], _boxes(joined))  # (B, 2)
        present = outside.any(axis=(1, 2))  # alternatives left after the cut
        revealing = (present & (box_iou <= self.box_iou_threshold)).any(axis=1)
        return confident & revealing & step.multimask, n

    @staticmethod
    def _chosen(step: StepScores) -> jax.Array:
        """(B, S, S) bool: the output mask at the model input size."""
        size = 4 * step.mask_logits.shape[1]  # the low-res logits are S / 4 wide
        return upsample_bilinear(step.mask_logits[..., None], (size, size))[..., 0] > 0

    def _with_size(self, state: DistractorState, n: jax.Array, t: jax.Array):
        """The size history with this frame's size added where non-empty."""
        slot = jnp.argmin(state.size_frames, axis=1)  # the oldest entry
        add = n >= 1
        b = jnp.arange(n.shape[0])
        sizes = state.sizes.at[b, slot].set(jnp.where(add, n, state.sizes[b, slot]))
        frames = state.size_frames.at[b, slot].set(jnp.where(add, t, state.size_frames[b, slot]))
        return sizes, frames

    def binarize_memory(self, state, step, frame_idx):
        if step.candidates is None or step.multimask is None:
            return None
        return self._distractor(state, step, frame_idx)[0]

    # -- reads ------------------------------------------------------------------------------

    def select(
        self,
        bank: MemoryBank,
        frame_idx: jax.Array,
        *,
        reverse: bool | jax.Array,
        num_frames: int | jax.Array,
        signed_ptr_pos: bool = True,
        training: bool = False,
    ) -> MemorySelection:
        base = super().select(  # SAM 2's selection (stride 1, every conditioning frame)
            bank, frame_idx, reverse=reverse, num_frames=num_frames,
            signed_ptr_pos=signed_ptr_pos, training=training,
        )  # fmt: skip
        st: DistractorState = bank.policy_state
        sign = jnp.where(reverse, -1, 1).astype(jnp.int32)
        t = jnp.asarray(frame_idx, jnp.int32)
        prev = t - sign
        frames = bank.recent_frame
        behind = bank.recent_valid & ((t - frames) * sign >= 1)
        # DRM: the most recent entries but the previous frame, up to the free slots
        n_cond = base.cond_mem_valid.sum(axis=1, keepdims=True)
        drm_read = jnp.maximum(0, 1 + self.drm_size - n_cond)  # the prompted frame + drm_size
        drm = behind & st.mem_drm & (frames != prev)
        drm_use = drm & (_rank(frames, drm, t, sign) <= drm_read)
        n_ram = self.num_maskmem - n_cond - drm_use.sum(axis=1, keepdims=True)
        # RAM: the last present frame (a DRM frame only if it is the previous one), then the
        # present multiples of the stride before it; frame 0 never
        start = jnp.where(sign > 0, frames, num_frames - 1 - frames)
        ok = behind & st.mem_present & (start >= 1) & (~st.mem_drm | (frames == prev))
        first_rank = _rank(frames, ok, t, sign)
        first = ok & (first_rank == 1)
        first_frame = jnp.max(jnp.where(first, (t - frames) * sign, 0), axis=1, keepdims=True)
        dist = (t - frames) * sign
        later = ok & ~st.mem_drm & (dist > first_frame) & (frames % self.stride == 0)
        later_rank = _rank(frames, later, t, sign) + 1
        ram = first | (later & (later_rank <= n_ram))
        rank = jnp.where(first, 1, later_rank)
        ram = ram & (rank <= n_ram)
        tpos = jnp.where(drm_use, self.num_maskmem - 1, jnp.clip(rank - 1, 0, self.num_maskmem - 1))
        selection = base.replace(
            recent_mem_valid=ram | drm_use, recent_tpos_index=tpos.astype(jnp.int32)
        )
        # pointers: the window's frames where the object is present (read DRM frames apart),
        # plus the read DRM frames' at their distance
        pf = bank.ptr_frame
        drm_frames = jnp.where(drm_use, frames, -_FAR)  # (B, R)
        read_drm = (
            bank.ptr_valid & st.ptr_drm & (pf[:, :, None] == drm_frames[:, None, :]).any(axis=2)
        )
        window = base.recent_ptr_valid & st.ptr_present & ~read_drm
        return selection.replace(
            recent_ptr_valid=window | read_drm,
            recent_ptr_pos=jnp.where(read_drm, jnp.abs(t - pf), base.recent_ptr_pos).astype(
                jnp.float32
            ),
        )

    # -- writes ----------------------------------------------------------------------------

    def write(
        self,
        bank: MemoryBank,
        frame_idx: jax.Array,
        features: jax.Array,
        obj_ptr: jax.Array,
        is_conditioning: jax.Array,
        enable: jax.Array,
        step: StepScores | None = None,
        *,
        reverse: bool | jax.Array = False,
    ) -> tuple[MemoryBank, jax.Array]:
        st: DistractorState = bank.policy_state
        t = jnp.asarray(frame_idx, jnp.int32)
        sign = jnp.where(reverse, -1, 1).astype(jnp.int32)
        tracked = enable & ~is_conditioning
        if step is not None and step.candidates is not None and step.multimask is not None:
            if step.binarized is not None:  # decided before the memory was encoded
                into_drm = step.binarized
                n = self._chosen(step).sum(axis=(1, 2)).astype(jnp.float32)
            else:
                into_drm, n = self._distractor(st, step, t)
            sizes, size_frames = self._with_size(st, n, t)
            present = (step.mask_logits > 0).any(axis=(1, 2))  # the low-res mask's pixels
        else:
            into_drm = jnp.zeros_like(tracked)
            n = jnp.zeros(tracked.shape, jnp.float32)
            sizes, size_frames = st.sizes, st.size_frames
            present = jnp.ones_like(tracked)
        into_drm = into_drm & tracked
        keep_sizes = tracked[:, None]
        st = st.replace(
            sizes=jnp.where(keep_sizes, sizes, st.sizes),
            size_frames=jnp.where(keep_sizes, size_frames, st.size_frames),
            tracked=st.tracked + tracked.astype(jnp.int32),
            last_drm=jnp.where(into_drm, t, st.last_drm),
        )
        bank, overflow = write_conditioning(bank, t, features, obj_ptr, enable & is_conditioning)

        def kept(frames, valid, present_f, drm_f):
            dist = jnp.where(valid, (t - frames) * sign, _FAR)

            def top(use, k):
                closer = (use[:, None, :] & (dist[:, None, :] < dist[:, :, None])).sum(axis=2)
                return use & (closer < k)

            plain = valid & present_f & ~drm_f
            return (
                top(valid & drm_f, self.drm_size + 1)
                | top(plain, 1)
                | top(plain & (frames % self.stride == 0), self.num_maskmem - 2)
            )

        keep_mem = kept(bank.recent_frame, bank.recent_valid, st.mem_present, st.mem_drm)
        # the pointer ring: SAM 2's window (oldest out first) but the DRM frames stay
        keep_ptr = bank.ptr_valid & st.ptr_drm
        keep_ptr = keep_ptr & (_rank(bank.ptr_frame, keep_ptr, t, sign) <= self.drm_size + 1)
        bank = write_recent(bank, t, features, obj_ptr, tracked, keep_mem, keep_ptr)
        here_mem = bank.recent_valid & (bank.recent_frame == t) & tracked[:, None]
        here_ptr = bank.ptr_valid & (bank.ptr_frame == t) & tracked[:, None]
        st = st.replace(
            mem_present=jnp.where(here_mem, present[:, None], st.mem_present),
            mem_drm=jnp.where(here_mem, into_drm[:, None], st.mem_drm),
            ptr_present=jnp.where(here_ptr, present[:, None], st.ptr_present),
            ptr_drm=jnp.where(here_ptr, into_drm[:, None], st.ptr_drm),
        )
        return bank.replace(policy_state=st), overflow

    def history_frames(self, frame_idx: int, reverse: bool) -> list[tuple[int, bool, bool]]:
        """No stored history (which frames are DRM frames is known only inside the loop)."""
        del frame_idx, reverse
        return []
