"""sam2_jax.visualize: colours land where the masks and prompts are; masks save as 0/255."""

import numpy as np
import pytest
from PIL import Image

from sam2_jax import visualize

H, W = 40, 60


def gray() -> np.ndarray:
    return np.full((H, W, 3), 100, np.uint8)


def test_overlay_blends_inside_masks_only_and_outlines_them():
    mask = np.zeros((H, W), bool)
    mask[10:30, 20:50] = True
    out = np.asarray(visualize.overlay_masks(gray(), mask, alpha=0.5))
    color = np.array(visualize.mask_color(0))
    np.testing.assert_array_equal(out[20, 35], np.round(50 + color / 2).astype(np.uint8))
    np.testing.assert_array_equal(out[10, 35], color)  # boundary: opaque
    np.testing.assert_array_equal(out[0, 0], [100, 100, 100])  # outside: untouched


def test_overlay_uses_one_colour_per_mask_later_on_top():
    masks = np.zeros((2, H, W), bool)
    masks[0, :, :30] = True
    masks[1, :, 20:] = True
    colors = [(255, 0, 0), (0, 0, 255)]
    out = np.asarray(visualize.overlay_masks(gray(), masks, colors=colors, outline=False))
    assert out[20, 5, 0] > out[20, 5, 2]  # mask 0 only: red
    assert out[20, 55, 2] > out[20, 55, 0]  # mask 1 only: blue
    assert out[20, 25, 2] > out[20, 25, 0]  # both: mask 1 drawn last
    with pytest.raises(ValueError, match="masks must be"):
        visualize.overlay_masks(gray(), masks[:, :10])


def test_points_and_boxes_are_drawn_in_their_colours():
    out = visualize.render(
        gray(),
        point_coords=np.array([[10, 10], [50, 30], [30, 20]]),
        point_labels=np.array([1, 0, 2]),  # label 2 (a box corner) is not drawn
        boxes=np.array([5, 5, 55, 35]),
    )
    pixels = np.asarray(out)
    np.testing.assert_array_equal(pixels[10, 10], visualize.POSITIVE)
    np.testing.assert_array_equal(pixels[30, 50], visualize.NEGATIVE)
    np.testing.assert_array_equal(pixels[20, 30], [100, 100, 100])
    np.testing.assert_array_equal(pixels[5, 30], visualize.BOX)


def test_save_masks_writes_0_255_pngs(tmp_path):
    masks = np.zeros((2, H, W), bool)
    masks[1, 5:9, 5:9] = True
    paths = visualize.save_masks(masks, tmp_path / "new")
    assert [p.name for p in paths] == ["mask_0.png", "mask_1.png"]
    second = Image.open(paths[1])
    assert second.mode == "L" and second.size == (W, H)
    assert np.asarray(second).sum() == 16 * 255


def test_hstack_scales_panels_to_one_height():
    panels = [Image.new("RGB", (60, 40)), Image.new("RGB", (30, 40))]
    out = visualize.hstack(panels, height=20, gap=2)
    assert out.size == (30 + 2 + 15, 20)
