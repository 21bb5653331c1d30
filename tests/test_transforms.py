"""Image predictor pre/post-processing against the reference's SAM2Transforms."""

import numpy as np
import pytest
import torch
from sam2.utils.transforms import SAM2Transforms

from sam2_jax import transforms
from tests import reference as ref


@pytest.mark.parametrize("resolution", [256, 1024])
def test_preprocess_matches_reference(resolution):
    from PIL import Image

    path = ref.SHARED_DATA / "images" / "groceries.jpg"
    if not path.exists():
        pytest.skip(f"sample data not found at {path}")
    image = np.asarray(Image.open(path).convert("RGB"))  # 534 x 800: down- and upsampling
    expected = SAM2Transforms(resolution, 0.0)(image).permute(1, 2, 0).numpy()
    ours = np.asarray(transforms.preprocess(image, resolution))
    np.testing.assert_allclose(ours, expected, atol=2e-5)


def test_input_validation():
    rgb = np.zeros((5, 7, 3), np.uint8)
    assert transforms.as_rgb_uint8(np.zeros((5, 7), np.uint8)).shape == (5, 7, 3)
    assert transforms.as_rgb_uint8(np.zeros((5, 7, 4), np.uint8)).shape == (5, 7, 3)
    assert transforms.as_rgb_uint8(rgb) is not None
    with pytest.raises(ValueError, match="uint8"):
        transforms.as_rgb_uint8(rgb.astype(np.float32))
    with pytest.raises(ValueError, match="got shape"):
        transforms.as_rgb_uint8(np.zeros((5, 7, 2), np.uint8))
    with pytest.raises(TypeError, match="numpy array or PIL"):
        transforms.as_rgb_uint8([[1, 2]])


def _flood_fill_areas(binary: np.ndarray) -> np.ndarray:
    """Independent 8-connected component areas by breadth-first search."""
    h, w = binary.shape
    areas = np.zeros((h, w), np.int64)
    seen = np.zeros((h, w), bool)
    for y0 in range(h):
        for x0 in range(w):
            if not binary[y0, x0] or seen[y0, x0]:
                continue
            queue, component = [(y0, x0)], []
            seen[y0, x0] = True
            while queue:
                y, x = queue.pop()
                component.append((y, x))
                for dy in (-1, 0, 1):
                    for dx in (-1, 0, 1):
                        ny, nx = y + dy, x + dx
                        if 0 <= ny < h and 0 <= nx < w and binary[ny, nx] and not seen[ny, nx]:
                            seen[ny, nx] = True
                            queue.append((ny, nx))
            for y, x in component:
                areas[y, x] = len(component)
    return areas


def test_component_areas_match_flood_fill():
    binary = np.random.default_rng(0).random((40, 50)) > 0.55
    np.testing.assert_array_equal(transforms._component_areas(binary), _flood_fill_areas(binary))


def _torch_connected_components(mask: torch.Tensor):
    """A CPU stand-in for the reference's CUDA kernel (same outputs: labels, areas)."""
    from scipy import ndimage

    labels_out = torch.zeros(mask.shape, dtype=torch.int32)
    areas_out = torch.zeros(mask.shape, dtype=torch.int32)
    for i in range(mask.shape[0]):
        binary = mask[i, 0].numpy().astype(bool)
        labels, _ = ndimage.label(binary, structure=np.ones((3, 3), bool))
        areas = _flood_fill_areas(binary)
        labels_out[i, 0] = torch.from_numpy(labels.astype(np.int32))
        areas_out[i, 0] = torch.from_numpy(areas.astype(np.int32))
    return labels_out, areas_out


def test_hole_filling_and_sprinkles_match_reference(monkeypatch):
    import sam2.utils.misc

    monkeypatch.setattr(sam2.utils.misc, "get_connected_components", _torch_connected_components)
    rng = np.random.default_rng(1)
    logits = rng.standard_normal((2, 3, 32, 32)).astype(np.float32) * 4
    reference_transforms = SAM2Transforms(64, 0.0, max_hole_area=6, max_sprinkle_area=4)
    expected = reference_transforms.postprocess_masks(torch.from_numpy(logits), (50, 70)).numpy()
    filled = transforms.fill_holes_and_remove_sprinkles(logits, 0.0, 6, 4)
    assert not np.array_equal(filled, logits)  # the case exercises both rules
    ours = np.asarray(transforms.upsample_masks(filled, (50, 70)))
    np.testing.assert_allclose(ours, expected, atol=1e-4)


@pytest.mark.parametrize("orig_hw", [(1200, 1800), (100, 150)])
def test_mask_upsampling_matches_reference(orig_hw):
    logits = np.random.default_rng(2).standard_normal((1, 3, 256, 256)).astype(np.float32)
    expected = SAM2Transforms(1024, 0.0).postprocess_masks(torch.from_numpy(logits), orig_hw)
    ours = np.asarray(transforms.upsample_masks(logits, orig_hw))
    np.testing.assert_allclose(ours, expected.numpy(), atol=1e-4)
