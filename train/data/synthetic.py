"""Synthetic moving-shapes videos: textured shapes on textured backgrounds that move, occlude
one another, leave the frame and enter it. For tests and from-scratch runs.

Every video is a pure function of (seed, index). Objects are drawn back to front; an object's
ground-truth mask is its visible part (occluded pixels belong to the object in front).
The first object always starts fully inside the first frame, so every clip starting at frame 0
has a target; the others start anywhere, some outside the frame, and all move in straight lines
(with a little acceleration) without bouncing, so they can leave.

With `occluder_prob` > 0 a video may also get an occluder: a textured bar in front of
everything, across the first object's path, as wide as 1-1.8 times that object's extent along
its motion, so the object goes fully behind it for some frames and comes out on the other side
(the case where a tracker must find its target again). Its draws come from a stream of their
own, so the videos without one are the same as with `occluder_prob=0`.
"""

from __future__ import annotations

import dataclasses

import numpy as np

SHAPES = ("ellipse", "rectangle", "triangle", "ring")


@dataclasses.dataclass(frozen=True)
class SyntheticVideo:
    """frames (T, H, W, 3) uint8; masks (T, O, H, W) bool visible masks; amodal (T, O, H, W)
    bool full shapes (before occlusion); object depth order is the object index (0 at back)."""

    frames: np.ndarray
    masks: np.ndarray
    amodal: np.ndarray


def texture(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """(H, W, 3) uint8: a few oriented sinusoids, a random tint and pixel noise."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    out = np.zeros((h, w, 3), np.float32)
    for _ in range(3):
        theta = rng.uniform(0, np.pi)
        freq = rng.uniform(0.02, 0.25)
        phase = rng.uniform(0, 2 * np.pi)
        wave = np.sin(freq * (np.cos(theta) * xx + np.sin(theta) * yy) + phase)  # (H, W)
        out += wave[..., None] * rng.uniform(-60, 60, size=3).astype(np.float32)
    out += rng.uniform(40, 215, size=3).astype(np.float32)
    out += rng.normal(0, 6, size=(h, w, 3)).astype(np.float32)
    return np.clip(out, 0, 255).astype(np.uint8)


def shape_mask(kind: str, cy: float, cx: float, ry: float, rx: float, angle: float, h: int, w: int):
    """(H, W) bool mask of one shape centred at (cy, cx) with half-sizes (ry, rx), rotated."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    dy, dx = yy - cy, xx - cx
    c, s = np.cos(angle), np.sin(angle)
    u, v = (c * dx + s * dy) / rx, (-s * dx + c * dy) / ry  # shape-frame coordinates
    if kind == "ellipse":
        return u * u + v * v <= 1.0
    if kind == "rectangle":
        return (np.abs(u) <= 1.0) & (np.abs(v) <= 1.0)
    if kind == "triangle":
        return (v <= 1.0) & (v >= 2.0 * np.abs(u) - 1.0)
    if kind == "ring":
        r2 = u * u + v * v
        return (r2 <= 1.0) & (r2 >= 0.3)
    raise ValueError(f"unknown shape {kind!r}")


def generate_video(
    seed: int,
    index: int,
    *,
    num_frames: int = 24,
    height: int = 128,
    width: int = 128,
    num_objects: int = 3,
    occluder_prob: float = 0.0,
) -> SyntheticVideo:
    """One synthetic video, a pure function of (seed, index) and the settings.

    occluder_prob: the chance of a bar in front of everything across the first object's path
      (see the module docstring); 0 gives the videos of the generator without the option.
    """
    if not 0.0 <= occluder_prob <= 1.0:
        raise ValueError(f"occluder_prob must be in [0, 1], got {occluder_prob}")
    if num_objects < 1 or num_frames < 1 or min(height, width) < 16:
        raise ValueError(
            f"need num_objects >= 1, num_frames >= 1, size >= 16; got {num_objects}, "
            f"{num_frames}, {height}x{width}"
        )
    rng = np.random.default_rng([seed, index])
    size = min(height, width)
    background = texture(rng, height + size, width + size)
    bg_vel = rng.uniform(-1.5, 1.5, size=2)  # the background pans
    objects = []
    for k in range(num_objects):
        ry, rx = rng.uniform(0.08, 0.2, size=2) * size
        speed = rng.uniform(0.01, 0.04) * size * (24 / max(num_frames, 8))
        heading = rng.uniform(0, 2 * np.pi)
        vel = np.array([np.sin(heading), np.cos(heading)]) * speed
        if k == 0:  # fully inside at frame 0
            pos = np.array([rng.uniform(ry, height - ry), rng.uniform(rx, width - rx)])
        elif k % 3 == 2:  # starts outside and heads into the frame
            pos = np.array([rng.uniform(0, height), -1.5 * rx])
            vel = np.array([rng.uniform(-0.3, 0.3), 1.0]) * speed * 1.5
        else:
            pos = np.array([rng.uniform(0, height), rng.uniform(0, width)])
        objects.append(
            {
                "kind": SHAPES[rng.integers(len(SHAPES))],
                "radii": (ry, rx),
                "pos": pos,
                "vel": vel,
                "acc": rng.normal(0, 0.02, size=2) * speed,
                "angle": rng.uniform(0, np.pi),
                "spin": rng.uniform(-0.08, 0.08),
                "texture": texture(rng, height, width),
            }
        )
    occluder_rng = np.random.default_rng([seed, index, 1])  # a stream of its own
    occluder = _occluder(occluder_rng, objects[0], occluder_prob, num_frames, height, width)
    frames = np.empty((num_frames, height, width, 3), np.uint8)
    amodal = np.zeros((num_frames, num_objects, height, width), bool)
    masks = np.zeros_like(amodal)
    for t in range(num_frames):
        oy, ox = (np.array([size, size]) / 2 + bg_vel * t).astype(int) % size
        frame = background[oy : oy + height, ox : ox + width].copy()
        owner = np.full((height, width), -1, np.int32)
        for k, obj in enumerate(objects):
            cy, cx = obj["pos"] + obj["vel"] * t + 0.5 * obj["acc"] * t * t
            ry, rx = obj["radii"]
            m = shape_mask(
                obj["kind"], cy, cx, ry, rx, obj["angle"] + obj["spin"] * t, height, width
            )
            amodal[t, k] = m
            frame[m] = obj["texture"][m]
            owner[m] = k  # later objects are in front
        if occluder is not None:
            bar, bar_texture = occluder
            frame[bar] = bar_texture[bar]
            owner[bar] = -1
        frames[t] = frame
        masks[t] = owner[None] == np.arange(num_objects)[:, None, None]
    return SyntheticVideo(frames=frames, masks=masks, amodal=amodal)


def _occluder(
    rng: np.random.Generator,
    target: dict,
    prob: float,
    num_frames: int,
    height: int,
    width: int,
) -> tuple[np.ndarray, np.ndarray] | None:
    """A static bar (mask (H, W) bool, texture (H, W, 3)) across `target`'s path, or None.

    The bar is perpendicular to the target's main direction of motion, centred where the
    target is at a frame in the middle half of the video, 1-1.8 times the target's extent
    along that direction wide: the target is fully hidden while it crosses.
    """
    if rng.uniform() >= prob or num_frames < 4:
        return None
    t_mid = rng.uniform(num_frames / 4, 3 * num_frames / 4)
    centre = target["pos"] + target["vel"] * t_mid + 0.5 * target["acc"] * t_mid * t_mid
    axis = int(abs(target["vel"][1]) > abs(target["vel"][0]))  # 0: moves along y, 1: along x
    extent = 2.0 * max(target["radii"])  # the shape's longest side, whatever its angle
    half = 0.5 * rng.uniform(1.0, 1.8) * extent
    yy, xx = np.mgrid[:height, :width]
    coord = (yy, xx)[axis]
    bar = np.abs(coord - centre[axis]) <= half  # (H, W)
    return bar, texture(rng, height, width)
