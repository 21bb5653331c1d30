"""Clips of a disk crossing behind a bar: the check that a tracker finds its target again
after the target was fully hidden, at frame sizes and aspect ratios other than the model's.

Not moving shapes: a flat-coloured disk moves at constant speed across a noisy flat background
and passes behind a bar (in front of it) that hides it completely for `hidden_frames` frames.
`BAR_CLIPS` varies size, aspect, direction, orientation and colours; the default model's
commit rule (its MODEL_CARD.md) and `tests/test_default_model.py` track each from one click
on frame 0 and score the frames after the disk has fully come out.
"""

from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class BarClip:
    """frames (T, H, W, 3) uint8; masks (T, H, W) bool visible disk; hidden (T,) bool frames
    where part of the disk is behind the bar; click (1, 2) float32 (x, y) on frame 0."""

    frames: np.ndarray
    masks: np.ndarray
    hidden: np.ndarray
    click: np.ndarray

    def frames_after(self) -> np.ndarray:
        """Indices of the frames after the last one with the disk (partly) behind the bar."""
        last = np.flatnonzero(self.hidden).max()
        return np.arange(last + 1, len(self.frames))


def bar_clip(
    height: int,
    width: int,
    *,
    num_frames: int = 30,
    seed: int = 0,
    reverse: bool = False,
    vertical: bool = False,
    disk_rgb: tuple[int, int, int] = (220, 60, 50),
    bar_rgb: tuple[int, int, int] = (200, 200, 210),
    background_rgb: tuple[int, int, int] = (40, 90, 60),
    radius: float = 0.12,
    hidden_frames: int = 3,
) -> BarClip:
    """A disk of `radius` x min(H, W) crossing the frame at constant speed (left to right, or
    top to bottom when `vertical`; the other way when `reverse`) behind a centred bar as wide
    as the disk plus `hidden_frames` + 0.5 frames of its motion, so that it is fully hidden on
    `hidden_frames` frames (or one more)."""
    if hidden_frames < 1 or num_frames < 8:
        raise ValueError(f"need hidden_frames >= 1 and num_frames >= 8, got {hidden_frames}, "
                         f"{num_frames}")  # fmt: skip
    length = height if vertical else width
    r = radius * min(height, width)
    step = (length - 2 * r - 4) / (num_frames - 1)  # pixels per frame
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:height, :width]
    along = yy if vertical else xx
    bar = np.abs(along - length / 2) < r + (hidden_frames + 0.5) * step / 2  # (H, W)
    frames = np.empty((num_frames, height, width, 3), np.uint8)
    masks = np.zeros((num_frames, height, width), bool)
    hidden = np.zeros(num_frames, bool)
    for t in range(num_frames):
        s = t / (num_frames - 1)
        c = r + 2 + (length - 2 * r - 4) * (1 - s if reverse else s)
        cy, cx = (c, width / 2) if vertical else (height / 2, c)
        disk = (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
        noise = rng.integers(-8, 9, (height, width, 1))
        frame = np.clip(np.asarray(background_rgb) + noise, 0, 255).astype(np.uint8)
        frame[disk] = disk_rgb
        frame[bar] = bar_rgb
        frames[t], masks[t], hidden[t] = frame, disk & ~bar, (disk & bar).any()
    ys, xs = np.nonzero(masks[0])
    click = np.array([[xs.mean(), ys.mean()]], np.float32)
    return BarClip(frames, masks, hidden, click)


# (height, width, options): squares, wide and tall frames, both directions, other colours.
BAR_CLIPS: tuple[tuple[int, int, dict], ...] = (
    (128, 128, dict(radius=0.08)),
    (270, 480, dict(hidden_frames=2)),
    (270, 480, dict(seed=1, reverse=True, disk_rgb=(50, 60, 220), bar_rgb=(90, 60, 30),
                    background_rgb=(180, 180, 160))),
    (240, 320, dict(seed=2, disk_rgb=(240, 220, 40), bar_rgb=(30, 30, 30),
                    background_rgb=(60, 60, 140), radius=0.10, hidden_frames=4)),
    (360, 360, dict(seed=3, reverse=True, vertical=True, radius=0.10)),
    (200, 400, dict(seed=4, disk_rgb=(250, 250, 250), bar_rgb=(120, 30, 120),
                    background_rgb=(20, 20, 20), radius=0.15, hidden_frames=2)),
    (256, 256, dict(seed=5, disk_rgb=(60, 200, 60), bar_rgb=(150, 150, 150),
                    background_rgb=(100, 70, 50), radius=0.10, hidden_frames=5)),
    (180, 320, dict(seed=6, reverse=True, bar_rgb=(40, 90, 60), background_rgb=(200, 200, 210),
                    radius=0.13)),
)  # fmt: skip


def bar_clips() -> list[BarClip]:
    return [bar_clip(h, w, **options) for h, w, options in BAR_CLIPS]


def j_after_occlusion(predictor, clip: BarClip) -> float:
    """Mean J (IoU with the visible disk) over the frames after the occlusion, tracking the
    disk from `clip.click` on frame 0 with a `SAM2VideoPredictor` (the reference's API)."""
    state = predictor.init_state(clip.frames)
    predictor.add_new_points_or_box(
        state, frame_idx=0, obj_id=1, points=clip.click, labels=np.array([1], np.int32)
    )
    after = set(clip.frames_after().tolist())
    scores = []
    for frame_idx, _, mask_logits in predictor.propagate_in_video(state):
        if frame_idx in after:
            pred = np.asarray(mask_logits[0]).reshape(clip.masks.shape[1:]) > 0
            truth = clip.masks[frame_idx]
            union = (pred | truth).sum()
            scores.append(1.0 if union == 0 else (pred & truth).sum() / union)
    return float(np.mean(scores))
