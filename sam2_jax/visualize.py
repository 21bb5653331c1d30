"""Drawing masks and prompts on images, and saving masks, with PIL only.

Shared by `sam2-jax segment-image`, the notebooks and (later) the video tools: colours are
picked by object index, so object `i` keeps its colour from frame to frame.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw

from sam2_jax import output_files

RGB = tuple[int, int, int]

# Matplotlib's tab10 (the reference notebooks' mask colours), its blue moved last: it is close
# to the box colour.
PALETTE: tuple[RGB, ...] = (
    (255, 127, 14),
    (44, 160, 44),
    (214, 39, 40),
    (148, 103, 189),
    (140, 86, 75),
    (227, 119, 194),
    (127, 127, 127),
    (188, 189, 34),
    (23, 190, 207),
    (31, 119, 180),
)
POSITIVE: RGB = (0, 200, 0)  # click label 1
NEGATIVE: RGB = (230, 0, 0)  # click label 0
BOX: RGB = (30, 144, 255)


def mask_color(index: int) -> RGB:
    """The colour of object / mask `index` (cycles through PALETTE)."""
    return PALETTE[index % len(PALETTE)]


def as_pil(image) -> Image.Image:
    """A PIL RGB image from a PIL image or an (H, W, 3) / (H, W) uint8 array."""
    if isinstance(image, Image.Image):
        return image.convert("RGB")
    array = np.asarray(image)
    if array.dtype != np.uint8:
        raise TypeError(f"expected a uint8 image array, got {array.dtype}")
    return Image.fromarray(array).convert("RGB")


def _boundary(mask: np.ndarray) -> np.ndarray:
    """Pixels of `mask` with a 4-neighbour outside it: (H, W) bool."""
    padded = np.pad(mask, 1, constant_values=False)
    interior = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:] & mask
    return mask & ~interior


def overlay_masks(
    image,
    masks: np.ndarray,
    *,
    colors: Sequence[RGB] | None = None,
    alpha: float = 0.5,
    outline: bool = True,
) -> Image.Image:
    """Blends each mask onto the image in its own colour, later masks on top.

    Args:
      image: PIL image or (H, W, 3) uint8 array.
      masks: (N, H, W) or (H, W), bool or logits (> 0 is foreground).
      colors: one RGB per mask (default: `mask_color(i)` for mask i).
      alpha: opacity of the mask fill.
      outline: draw each mask's boundary opaque, so nested masks stay readable.

    Returns:
      a new RGB PIL image of the image's size.
    """
    base = np.asarray(as_pil(image), np.float32)
    masks = np.asarray(masks)
    if masks.ndim == 2:
        masks = masks[None]
    if masks.ndim != 3 or masks.shape[1:] != base.shape[:2]:
        raise ValueError(f"masks must be (N, {base.shape[0]}, {base.shape[1]}), got {masks.shape}")
    masks = masks > 0 if masks.dtype != bool else masks
    colors = colors if colors is not None else [mask_color(i) for i in range(len(masks))]
    if len(colors) != len(masks):
        raise ValueError(f"{len(colors)} colours for {len(masks)} masks")
    for mask, color in zip(masks, colors, strict=True):
        rgb = np.asarray(color, np.float32)
        base[mask] = (1 - alpha) * base[mask] + alpha * rgb
        if outline:
            base[_boundary(mask)] = rgb
    return Image.fromarray(np.clip(base + 0.5, 0, 255).astype(np.uint8))


def _marker_size(image: Image.Image) -> int:
    return max(3, round(0.012 * min(image.size)))


def draw_points(
    image: Image.Image, coords: np.ndarray, labels: np.ndarray, *, radius: int | None = None
) -> Image.Image:
    """Draws clicks in place: green dots for label 1, red for label 0, white rims.

    Args:
      image: PIL RGB image, modified and returned.
      coords: (P, 2) x, y in image pixels; labels: (P,). Other labels (box corners 2/3,
        padding -1) are not drawn.
    """
    coords = np.asarray(coords, np.float32).reshape(-1, 2)
    labels = np.asarray(labels).reshape(-1)
    r = radius or _marker_size(image)
    draw = ImageDraw.Draw(image)
    for (x, y), label in zip(coords.tolist(), labels.tolist(), strict=True):
        if label not in (0, 1):
            continue
        fill = POSITIVE if label == 1 else NEGATIVE
        draw.ellipse([x - r, y - r, x + r, y + r], fill=fill, outline=(255, 255, 255), width=2)
    return image


def draw_boxes(
    image: Image.Image, boxes: np.ndarray, *, color: RGB = BOX, width: int | None = None
) -> Image.Image:
    """Draws box outlines in place. boxes: (4,) or (B, 4) x0, y0, x1, y1 in image pixels."""
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    w = width or max(2, _marker_size(image) // 2)
    draw = ImageDraw.Draw(image)
    for x0, y0, x1, y1 in boxes.tolist():
        draw.rectangle([x0, y0, x1, y1], outline=color, width=w)
    return image


def render(
    image,
    masks: np.ndarray | None = None,
    *,
    point_coords: np.ndarray | None = None,
    point_labels: np.ndarray | None = None,
    boxes: np.ndarray | None = None,
    colors: Sequence[RGB] | None = None,
    alpha: float = 0.5,
) -> Image.Image:
    """The image with translucent masks, then boxes, then clicks on top: a new PIL image."""
    out = (
        as_pil(image).copy()
        if masks is None
        else overlay_masks(image, masks, colors=colors, alpha=alpha)
    )
    if boxes is not None:
        draw_boxes(out, boxes)
    if point_coords is not None:
        if point_labels is None:
            raise ValueError("point_labels must be given with point_coords")
        draw_points(out, point_coords, point_labels)
    return out


def mask_to_image(mask: np.ndarray) -> Image.Image:
    """(H, W) bool or logits -> mode 'L' PIL image, 255 foreground, 0 background."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise ValueError(f"expected one (H, W) mask, got {mask.shape}")
    mask = mask > 0 if mask.dtype != bool else mask
    return Image.fromarray(mask.astype(np.uint8) * 255)  # 2-D uint8: mode "L"


def save_masks(
    masks: np.ndarray, out_dir: str | os.PathLike, *, prefix: str = "mask"
) -> list[pathlib.Path]:
    """Writes masks (N, H, W) as `{prefix}_0.png`, ... (8-bit, 0 / 255); returns the paths."""
    masks = np.asarray(masks)
    if masks.ndim == 2:
        masks = masks[None]
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, mask in enumerate(masks):
        path = out / f"{prefix}_{i}.png"
        output_files.save_image(mask_to_image(mask), path)
        paths.append(path)
    return paths


def caption(image: Image.Image, text: str) -> Image.Image:
    """Writes `text` in place at the top-left corner, white on a dark strip."""
    draw = ImageDraw.Draw(image)
    *_, right, bottom = draw.textbbox((4, 2), text)
    draw.rectangle([0, 0, right + 4, bottom + 2], fill=(0, 0, 0))
    draw.text((4, 2), text, fill=(255, 255, 255))
    return image


def hstack(
    images: Sequence[Image.Image], *, height: int | None = None, gap: int = 4
) -> Image.Image:
    """Side-by-side panels (e.g. one per mask or per frame), all scaled to `height` pixels."""
    if not images:
        raise ValueError("hstack needs at least one image")
    height = height or images[0].height
    panels = [im.resize((max(1, round(im.width * height / im.height)), height)) for im in images]
    width = sum(p.width for p in panels) + gap * (len(panels) - 1)
    out = Image.new("RGB", (width, height), (255, 255, 255))
    x = 0
    for panel in panels:
        out.paste(panel, (x, 0))
        x += panel.width + gap
    return out
