"""Image predictor pre- and post-processing (the reference's `SAM2Transforms`), NHWC.

Pre-processing: uint8 RGB -> [0, 1] float -> square resize to the model resolution with
antialiased bilinear (torchvision `Resize` on tensors) -> ImageNet normalization. The aspect
ratio is not preserved. Post-processing: low-resolution mask logits -> optional small-hole
filling / sprinkle removal (8-connected components, on the host) -> bilinear upsampling to
the original image size.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from scipy import ndimage

from sam2_jax.image.io import to_rgb8
from sam2_jax.modeling.interpolation import resize_bilinear_banded

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)


def as_rgb_uint8(image) -> np.ndarray:
    """Validates an input image and returns it as (H, W, 3) uint8.

    Accepts a PIL image (any mode, converted to RGB; 16-bit images scaled to 8 bits, see
    `image.io.to_rgb8`) or an ndarray of dtype uint8 shaped
    (H, W, 3) RGB, (H, W) or (H, W, 1) grayscale (replicated to 3 channels) or (H, W, 4) RGBA
    (alpha dropped). Float arrays are rejected: their value range is ambiguous.
    """
    if hasattr(image, "convert") and hasattr(image, "size"):  # PIL.Image
        return np.asarray(to_rgb8(image))
    if not isinstance(image, np.ndarray):
        raise TypeError(f"image must be a numpy array or PIL image, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise ValueError(
            f"image must be uint8 with values in [0, 255], got dtype {image.dtype}; "
            "convert float images with (image * 255).round().astype(np.uint8)"
        )
    if image.ndim == 2:
        image = image[:, :, None]
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise ValueError(
            f"image must be (H, W, 3) RGB, (H, W) / (H, W, 1) grayscale or (H, W, 4) RGBA; "
            f"got shape {image.shape}"
        )
    if image.shape[0] < 1 or image.shape[1] < 1:
        raise ValueError(f"image is empty: shape {image.shape}")
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    elif image.shape[2] == 4:
        image = image[:, :, :3]
    return np.ascontiguousarray(image)


@functools.partial(jax.jit, static_argnames="resolution")
def preprocess(image: jax.Array, resolution: int) -> jax.Array:
    """(H, W, 3) uint8 -> (resolution, resolution, 3) float32, normalized. Compiles per size."""
    x = image.astype(jnp.float32) / 255.0
    x = jax.image.resize(x, (resolution, resolution, 3), method="linear", antialias=True)
    return (x - IMAGENET_MEAN) / IMAGENET_STD


def transform_coords(
    coords: np.ndarray, resolution: int, orig_hw: tuple[int, int], normalize: bool = True
) -> np.ndarray:
    """(..., 2) x,y coordinates -> model-input pixel units.

    With normalize=True the coords are in original-image pixels; otherwise already in [0, 1].
    """
    coords = np.asarray(coords, np.float32).copy()
    if normalize:
        h, w = orig_hw
        coords[..., 0] /= w
        coords[..., 1] /= h
    return coords * resolution


def _component_areas(binary: np.ndarray) -> np.ndarray:
    """(H, W) bool -> (H, W) int: area of each pixel's 8-connected component (0 off-mask)."""
    labels, count = ndimage.label(binary, structure=np.ones((3, 3), bool))
    if count == 0:
        return np.zeros(binary.shape, np.int64)
    areas = np.bincount(labels.ravel(), minlength=count + 1)
    areas[0] = 0
    return areas[labels]


def fill_holes_and_remove_sprinkles(
    logits: np.ndarray, threshold: float, max_hole_area: float, max_sprinkle_area: float
) -> np.ndarray:
    """The reference's post-processing on low-res logits (..., H, W), done on the host.

    Background components (logit <= threshold) of area <= max_hole_area become
    threshold + 10; then foreground components (logit > threshold, judged on the *input*
    logits as the reference does) of area <= max_sprinkle_area become threshold - 10.
    """
    logits = np.asarray(logits, np.float32)
    original = logits
    out = logits.copy()
    flat_in = original.reshape(-1, *original.shape[-2:])
    flat_out = out.reshape(-1, *out.shape[-2:])
    for i in range(flat_in.shape[0]):
        if max_hole_area > 0:
            areas = _component_areas(flat_in[i] <= threshold)
            flat_out[i] = np.where(
                (areas > 0) & (areas <= max_hole_area), threshold + 10.0, flat_out[i]
            )
        if max_sprinkle_area > 0:
            areas = _component_areas(flat_in[i] > threshold)
            flat_out[i] = np.where(
                (areas > 0) & (areas <= max_sprinkle_area), threshold - 10.0, flat_out[i]
            )
    return flat_out.reshape(out.shape)


@functools.partial(jax.jit, static_argnames=("orig_hw", "threshold"))
def upsample_masks(
    low_res: jax.Array, orig_hw: tuple[int, int], threshold: float | None = None
) -> jax.Array:
    """(B, C, h, w) logits -> (B, C, H, W) with bilinear (align_corners=False, no antialias),
    as logits, or as bool masks (> threshold) when a threshold is given (the float image
    never leaves the program)."""
    b, c, h, w = low_res.shape
    up = resize_bilinear_banded(low_res.reshape(b * c, h, w, 1), orig_hw)  # (B C, H, W, 1)
    up = up.reshape(b, c, *orig_hw)
    return up if threshold is None else up > threshold


def postprocess_low_res(
    low_res: np.ndarray,
    orig_hw: tuple[int, int],
    *,
    threshold: float = 0.0,
    max_hole_area: float = 0.0,
    max_sprinkle_area: float = 0.0,
    return_logits: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """The image predictor's outputs from the decoder's low-res logits.

    Args:
      low_res: (B, C, h, w) float32 logits.
      orig_hw: the image's (height, width).

    Returns:
      masks (B, C, H, W) (bool, or logits with return_logits) after the optional hole
      filling / sprinkle removal, and the low-res logits clamped to [-32, 32].
    """
    low_res = np.asarray(low_res, np.float32)
    processed = low_res
    if max_hole_area > 0 or max_sprinkle_area > 0:
        processed = fill_holes_and_remove_sprinkles(
            low_res, threshold, max_hole_area, max_sprinkle_area
        )
    cut = None if return_logits else float(threshold)
    masks = np.asarray(upsample_masks(processed, tuple(orig_hw), cut))
    return masks, np.clip(low_res, -32.0, 32.0)
