"""Held-out stress videos for memory policies, one set per failure a memory method targets.

Each video is a pure function of (set, index) and has a target, object 0, fully visible on
frame 0; objects carry their texture with them; `masks` (T, O, H, W) are the visible masks
(O >= 1; the other objects are what makes the set hard). Textures and shapes come from the
moving-shapes generator (`sam2_jax.train.data.synthetic`), drawn from a seed of its own per
set, so no video here is a training video.

- `occlusion`: the target crosses behind a wide occluder in front of everything and stays
  fully hidden for many frames (8-14) before it comes out on the other side.
- `distractors`: two look-alikes (the target's shape, size and texture) cross its path, in
  front of it or behind it.
- `fast_motion`: the target moves 8-14% of the frame side per frame, bouncing off the
  borders, among two ordinary objects.
- `long`: 600 frames (by default): the target wanders (bouncing) while a bar sweeps across
  the frame every ~100 frames, hiding it for a few frames, and one other object moves about.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator

import numpy as np

from sam2_jax.train.data.synthetic import SHAPES, SyntheticVideo, shape_mask, texture

STRESS_SETS = ("occlusion", "distractors", "fast_motion", "long")
DEFAULT_FRAMES = {"occlusion": 40, "distractors": 32, "fast_motion": 32, "long": 600}


class _Object:
    """A textured shape whose centre follows `path(t) -> (cy, cx)`."""

    def __init__(self, rng, size, path, kind=None, radii=None, tex=None, angle=None):
        self.kind = kind or SHAPES[rng.integers(len(SHAPES))]
        self.radii = radii if radii is not None else tuple(rng.uniform(0.09, 0.15, 2) * size)
        self.texture = tex if tex is not None else texture(rng, size, size)
        self.angle = rng.uniform(0, np.pi) if angle is None else angle
        self.path = path

    def mask(self, t: int, size: int) -> np.ndarray:
        cy, cx = self.path(t)
        return shape_mask(self.kind, cy, cx, *self.radii, self.angle, size, size)

    def colors(self, t: int, mask: np.ndarray) -> np.ndarray:
        """(N, 3) the texture under the N pixels of `mask`, attached to the object (a
        look-alike with the same texture looks the same wherever it is)."""
        cy, cx = self.path(t)
        ys, xs = np.nonzero(mask)
        n = self.texture.shape[0]
        return self.texture[(ys - int(cy) + n // 2) % n, (xs - int(cx) + n // 2) % n]


def _bounce(start: np.ndarray, vel: np.ndarray, lo: np.ndarray, hi: np.ndarray):
    """A straight path reflected at the box [lo, hi] (per axis)."""

    def path(t: int) -> tuple[float, float]:
        span = hi - lo
        p = (start - lo + vel * t) % (2 * span)
        p = np.where(p > span, 2 * span - p, p) + lo
        return float(p[0]), float(p[1])

    return path


def _linear(at: np.ndarray, vel: np.ndarray, frame: int):
    """A straight path through `at` on `frame`."""
    return lambda t: tuple(at + vel * (t - frame))


def _render(rng, size: int, num_frames: int, layers: list[_Object]) -> SyntheticVideo:
    """Draws `layers` back to front over a panning textured background; masks per layer."""
    background = texture(rng, 2 * size, 2 * size)
    pan = rng.uniform(-1.0, 1.0, 2)
    n = len(layers)
    frames = np.empty((num_frames, size, size, 3), np.uint8)
    amodal = np.zeros((num_frames, n, size, size), bool)
    masks = np.zeros_like(amodal)
    for t in range(num_frames):
        oy, ox = (np.array([size, size]) / 2 + pan * t).astype(int) % size
        frame = background[oy : oy + size, ox : ox + size].copy()
        owner = np.full((size, size), -1, np.int32)
        for k, obj in enumerate(layers):
            m = obj.mask(t, size)
            amodal[t, k] = m
            frame[m] = obj.colors(t, m)
            owner[m] = k
        frames[t] = frame
        masks[t] = owner[None] == np.arange(n)[:, None, None]
    return SyntheticVideo(frames=frames, masks=masks, amodal=amodal)


def stress_video(kind: str, index: int, *, num_frames: int | None = None, size: int = 128):
    """One video of stress set `kind` (module docstring): a SyntheticVideo whose masks are
    ordered target first (the drawing order is kept in `amodal`'s layers internally)."""
    if kind not in STRESS_SETS:
        raise ValueError(f"unknown stress set {kind!r}; known: {', '.join(STRESS_SETS)}")
    t_max = num_frames if num_frames is not None else DEFAULT_FRAMES[kind]
    if t_max < 2 or size < 32:
        raise ValueError(f"need >= 2 frames and size >= 32, got {t_max} and {size}")
    rng = np.random.default_rng([zlib.crc32(f"stress/{kind}".encode()), index])
    s = float(size)
    lo, hi = np.array([0.18 * s, 0.18 * s]), np.array([0.82 * s, 0.82 * s])
    if kind == "occlusion":
        # left to right across the frame; the occluder covers the middle third
        y = rng.uniform(0.3, 0.7) * s
        x0, x1 = 0.16 * s, 0.84 * s
        target = _Object(rng, size, lambda t: (y, x0 + (x1 - x0) * t / max(t_max - 1, 1)))
        target.radii = tuple(rng.uniform(0.08, 0.1, 2) * s)
        width = rng.uniform(0.36, 0.44) * s
        occluder = _Object(
            rng, size, lambda t: (0.5 * s, 0.5 * s), kind="rectangle",
            radii=(0.7 * s, width / 2), angle=0.0,
        )  # fmt: skip
        layers, order = [target, occluder], [0, 1]
    elif kind == "distractors":
        start = rng.uniform(lo, hi)
        vel = rng.normal(0, 1, 2)
        vel = vel / np.linalg.norm(vel) * rng.uniform(0.015, 0.03) * s
        target = _Object(rng, size, _bounce(start, vel, lo, hi))
        twins = []
        first = target.mask(0, size)
        for _ in range(2):
            # a look-alike that passes the target's position at a random frame and leaves
            # the target whole on frame 0 (drawn again until it does)
            for _attempt in range(50):
                meet = rng.integers(t_max // 4, max(t_max // 4 + 1, 3 * t_max // 4))
                v = rng.normal(0, 1, 2)
                v = v / np.linalg.norm(v) * rng.uniform(0.02, 0.04) * s
                p_meet = np.array(target.path(int(meet)))
                path = _linear(p_meet, v, int(meet))
                at_start = shape_mask(target.kind, *path(0), *target.radii, target.angle, size,
                                      size)  # fmt: skip
                if not (at_start & first).any():
                    break
            twins.append(_Object(rng, size, path, target.kind, target.radii, target.texture,
                                 target.angle))  # fmt: skip
        layers = [twins[0], target, twins[1]]  # one behind, one in front
        order = [1, 0, 2]
    elif kind == "fast_motion":
        start = rng.uniform(lo, hi)
        vel = rng.normal(0, 1, 2)
        vel = vel / np.linalg.norm(vel) * rng.uniform(0.08, 0.14) * s
        target = _Object(rng, size, _bounce(start, vel, lo, hi))
        others = [_Object(rng, size, _bounce(rng.uniform(lo, hi), rng.normal(0, 0.01 * s, 2),
                                             lo, hi)) for _ in range(2)]  # fmt: skip
        layers, order = [others[0], target, others[1]], [1, 0, 2]
    else:  # long
        start = rng.uniform(lo, hi)
        vel = rng.normal(0, 1, 2)
        vel = vel / np.linalg.norm(vel) * rng.uniform(0.01, 0.025) * s
        target = _Object(rng, size, _bounce(start, vel, lo, hi))
        other = _Object(rng, size, _bounce(rng.uniform(lo, hi), rng.normal(0, 0.015 * s, 2),
                                           lo, hi))  # fmt: skip
        period, sweep = 100, 10  # a bar crosses the frame in `sweep` frames every `period`
        phase = int(rng.integers(20, 60))

        def bar(t: int) -> tuple[float, float]:
            k = (t - phase) % period
            x = -0.3 * s + 1.6 * s * k / sweep if k < sweep else -s
            return 0.5 * s, x

        occluder = _Object(rng, size, bar, kind="rectangle", radii=(0.7 * s, 0.22 * s), angle=0.0)
        layers, order = [other, target, occluder], [1, 0, 2]
    video = _render(rng, size, t_max, layers)
    return SyntheticVideo(
        frames=video.frames, masks=video.masks[:, order], amodal=video.amodal[:, order]
    )


def stress_videos(kind: str, num_videos: int, **kw) -> Iterator[tuple[str, SyntheticVideo]]:
    """(name, video) for videos 0 .. num_videos - 1 of set `kind`."""
    for i in range(num_videos):
        yield f"{kind}_{i:04d}", stress_video(kind, i, **kw)
