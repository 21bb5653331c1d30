"""Image-predictor prompts -> model-input arrays, without the model (numpy only).

`prepare_image_prompts` is `SAM2ImagePredictor`'s prompt rule as a free function: clicks and
boxes in image pixels (or [0, 1]) are validated and scaled to model-input pixels, boxes
become two points labelled 2 / 3 placed before the clicks (as the reference concatenates
them), and low-res mask logits move to NHWC.
"""

from __future__ import annotations

import numpy as np

from sam2_jax import transforms, validation

VALID_LABELS = (-1, 0, 1, 2, 3)  # -1 padding, 0 negative, 1 positive, 2/3 box corners


def prepare_image_prompts(
    point_coords,
    point_labels,
    box,
    mask_input,
    *,
    orig_hw: tuple[int, int],
    resolution: int,
    mask_side: int,
    normalize_coords: bool = True,
) -> tuple[np.ndarray | None, np.ndarray | None, np.ndarray | None]:
    """Validates one image's prompts and converts them to model-input units.

    Args:
      point_coords: (N, 2) or (B, N, 2) x, y; point_labels: (N,) or (B, N).
      box: (4,) or (B, 4) x0, y0, x1, y1.
      mask_input: (1, m, m) or (B, 1, m, m) low-res logits, m = `mask_side`.
      orig_hw: the image's (height, width); resolution: the model input side S.
      normalize_coords: coordinates are image pixels (True) or already in [0, 1].

    Returns:
      coords (B, P, 2) float32 in model-input pixels | None, labels (B, P) int32 | None,
      mask (B, m, m, 1) float32 | None.

    Raises:
      ValueError, TypeError: from `sam2_jax.validation`, or prompt sets that do not pair up.
    """
    coords = labels = None
    if point_coords is not None:
        coords, labels = validation.points(
            point_coords,
            point_labels,
            image_hw=orig_hw,
            pixels=normalize_coords,
            allowed=VALID_LABELS,
            batched=True,
            names=("point_coords", "point_labels"),
        )
        if coords.ndim == 2:
            coords, labels = coords[None], labels[None]
        coords = transforms.transform_coords(coords, resolution, orig_hw, normalize_coords)
    if box is not None:
        boxes = validation.boxes(box, image_hw=orig_hw, pixels=normalize_coords, batched=True)
        corners = transforms.transform_coords(
            boxes.reshape(-1, 2, 2), resolution, orig_hw, normalize_coords
        )
        corner_labels = np.broadcast_to(np.array([[2, 3]], np.int32), corners.shape[:2])
        if coords is None:
            coords, labels = corners, corner_labels
        else:
            if coords.shape[0] != corners.shape[0]:
                if corners.shape[0] != 1:
                    raise ValueError(f"{corners.shape[0]} boxes but {coords.shape[0]} point sets")
                corners = np.repeat(corners, coords.shape[0], 0)
                corner_labels = np.repeat(corner_labels, coords.shape[0], 0)
            # boxes come first, as the reference concatenates them
            coords = np.concatenate([corners, coords], axis=1)
            labels = np.concatenate([corner_labels, labels], axis=1)
    mask = None
    if mask_input is not None:
        mask = validation.mask_logits(mask_input, side=mask_side)
        mask = np.moveaxis(mask, 1, -1)  # (B, 1, m, m) -> (B, m, m, 1)
        if coords is not None and mask.shape[0] != coords.shape[0]:
            raise ValueError(f"{mask.shape[0]} masks but {coords.shape[0]} point sets")
    return coords, labels, mask
