"""The reference's SAM 2.1 training augmentations on NumPy video clips.

The reference fine-tune config (`sam2.1_hiera_b+_MOSE_finetune.yaml`) composes, in order:
horizontal flip (p 0.5, same for every frame), random affine (degrees 25, shear 20, bilinear
image / nearest mask, fill (123, 116, 103), same for every frame; undone when it would push a
first-frame object out of view), square resize to S, colour jitter for the whole clip
(brightness 0.1, contrast 0.03, saturation 0.03, random order), grayscale (p 0.05, whole clip),
then colour jitter per frame (brightness 0.1, contrast 0.05, saturation 0.05).
Normalization to ImageNet mean / std is left to the device.

Random draws come from one `np.random.Generator`, so a clip's augmentation is a pure function
of the generator's seed. Masks go through exactly the same geometry as their frames.
Shapes: frames (T, H, W, 3) uint8, masks (T, O, H, W) bool.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from PIL import Image, ImageEnhance


@dataclasses.dataclass(frozen=True)
class AugmentConfig:
    """The reference's SAM 2.1 training augmentation settings (module docstring)."""

    hflip_p: float = 0.5
    affine_degrees: float = 25.0  # rotation drawn from [-d, d]
    affine_shear: float = 20.0  # x shear drawn from [-s, s] degrees
    affine_fill: tuple[int, int, int] = (123, 116, 103)  # image fill outside the source
    clip_jitter: tuple[float, float, float] = (0.1, 0.03, 0.03)  # brightness, contrast, sat.
    grayscale_p: float = 0.05
    frame_jitter: tuple[float, float, float] = (0.1, 0.05, 0.05)


def hflip(frames: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mirrors every frame and mask left-right."""
    return np.ascontiguousarray(frames[:, :, ::-1]), np.ascontiguousarray(masks[..., ::-1])


def affine_matrix(angle: float, shear_x: float, center: tuple[float, float]) -> np.ndarray:
    """(3, 3) forward map of (x, y, 1): rotate by `angle` degrees (counter-clockwise on
    screen) and shear along x by `shear_x` degrees, about `center` (x, y)."""
    a, s = math.radians(angle), math.radians(shear_x)
    rot = np.array([[math.cos(a), math.sin(a)], [-math.sin(a), math.cos(a)]])  # y points down
    shear = np.array([[1.0, -math.tan(s)], [0.0, 1.0]])
    lin = rot @ shear
    cx, cy = center
    out = np.eye(3)
    out[:2, :2] = lin
    out[:2, 2] = np.array([cx, cy]) - lin @ np.array([cx, cy])
    return out


def warp(image: np.ndarray, matrix: np.ndarray, *, nearest: bool, fill) -> np.ndarray:
    """Applies a (3, 3) forward affine map to an (H, W) or (H, W, C) uint8 image with PIL."""
    inv = np.linalg.inv(matrix)  # PIL wants output -> input coordinates
    h, w = image.shape[:2]
    out = Image.fromarray(np.ascontiguousarray(image)).transform(
        (w, h),
        Image.Transform.AFFINE,
        data=tuple(inv[:2].reshape(-1)),
        resample=Image.Resampling.NEAREST if nearest else Image.Resampling.BILINEAR,
        fillcolor=fill,
    )
    return np.asarray(out)


def random_affine(
    frames: np.ndarray, masks: np.ndarray, rng: np.random.Generator, cfg: AugmentConfig
) -> tuple[np.ndarray, np.ndarray]:
    """One random rotation + shear for the whole clip; the clip is returned unchanged when an
    object visible in the first frame would leave the view (the reference's single try)."""
    angle = rng.uniform(-cfg.affine_degrees, cfg.affine_degrees)
    shear = rng.uniform(-cfg.affine_shear, cfg.affine_shear)
    t, h, w = frames.shape[:3]
    matrix = affine_matrix(angle, shear, ((w - 1) * 0.5, (h - 1) * 0.5))
    new_masks = np.zeros_like(masks)
    for i in range(t):
        for o in range(masks.shape[1]):
            if masks[i, o].any():
                m = warp(masks[i, o].astype(np.uint8), matrix, nearest=True, fill=0)
                new_masks[i, o] = m > 0
            if i == 0 and masks[0, o].any() and not new_masks[0, o].any():
                return frames, masks
    new_frames = np.stack(
        [warp(f, matrix, nearest=False, fill=tuple(cfg.affine_fill)) for f in frames]
    )
    return new_frames, new_masks


def resize_square(
    frames: np.ndarray, masks: np.ndarray, size: int
) -> tuple[np.ndarray, np.ndarray]:
    """(T, H, W, 3), (T, O, H, W) -> (T, S, S, 3), (T, O, S, S): bilinear (PIL, antialiased)
    for frames; bilinear on 0/1 masks thresholded at 0.5 (the reference's uint8 resize)."""
    t, h, w = frames.shape[:3]
    if (h, w) == (size, size):
        return frames, masks
    out_f = np.stack(
        [
            np.asarray(Image.fromarray(f).resize((size, size), Image.Resampling.BILINEAR))
            for f in frames
        ]
    )
    out_m = np.zeros(masks.shape[:2] + (size, size), bool)
    for i in range(t):
        for o in range(masks.shape[1]):
            if masks[i, o].any():
                m = Image.fromarray(masks[i, o].astype(np.uint8) * 255)
                out_m[i, o] = np.asarray(m.resize((size, size), Image.Resampling.BILINEAR)) >= 128
    return out_f, out_m


# torchvision's adjust_brightness / adjust_contrast / adjust_saturation on PIL images
_ENHANCERS = (ImageEnhance.Brightness, ImageEnhance.Contrast, ImageEnhance.Color)


def jitter_params(rng: np.random.Generator, strengths: tuple[float, float, float]):
    """Random order of (brightness, contrast, saturation) and factors in [1 - s, 1 + s]."""
    order = rng.permutation(3)
    factors = [rng.uniform(max(0.0, 1 - s), 1 + s) for s in strengths]
    return order, factors


def apply_jitter(frame: np.ndarray, order, factors) -> np.ndarray:
    """Colour jitter of one (H, W, 3) uint8 frame with PIL's enhancers, as the reference
    (brightness blends towards black, contrast towards the mean luma, saturation towards the
    frame's luma; uint8 after each step)."""
    img = Image.fromarray(frame)
    for op in order:
        if factors[op] != 1.0:
            img = _ENHANCERS[op](img).enhance(float(factors[op]))
    return np.asarray(img)


def grayscale(frame: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 -> its luma (PIL "L", ITU-R 601-2) in all three channels."""
    return np.asarray(Image.fromarray(frame).convert("L").convert("RGB"))


def augment_clip(
    frames: np.ndarray,
    masks: np.ndarray,
    rng: np.random.Generator,
    cfg: AugmentConfig,
    size: int,
) -> tuple[np.ndarray, np.ndarray]:
    """The full training augmentation -> (T, S, S, 3) uint8 frames, (T, O, S, S) bool masks."""
    if rng.random() < cfg.hflip_p:
        frames, masks = hflip(frames, masks)
    if cfg.affine_degrees or cfg.affine_shear:
        frames, masks = random_affine(frames, masks, rng, cfg)
    frames, masks = resize_square(frames, masks, size)
    clip_order, clip_factors = jitter_params(rng, cfg.clip_jitter)
    gray = rng.random() < cfg.grayscale_p
    out = np.empty_like(frames)
    for i, frame in enumerate(frames):
        frame = apply_jitter(frame, clip_order, clip_factors)
        if gray:
            frame = grayscale(frame)
        out[i] = apply_jitter(frame, *jitter_params(rng, cfg.frame_jitter))
    return out, np.ascontiguousarray(masks)
