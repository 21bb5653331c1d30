"""The automatic mask generator's helpers against the reference's (sam2.utils.amg, torchvision).

NMS, RLE, point grids, crop boxes, the crop-edge filter and the bilinear upsampling are
compared exactly (integers, indices) or to float32 rounding (upsampled logits).
"""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from pycocotools import mask as mask_utils
from sam2.utils import amg as reference_amg
from torchvision.ops import batched_nms

from sam2_jax import rle
from sam2_jax.amg import mask_scoring
from sam2_jax.amg import utils as amg_utils


def random_boxes(rng, n: int, size: int = 200) -> np.ndarray:
    xy = rng.integers(0, size, (n, 2))
    wh = rng.integers(0, size // 2, (n, 2))  # some zero-size (empty-mask) boxes
    return np.concatenate([xy, xy + wh], 1).astype(np.float32)


@pytest.mark.parametrize("n", [0, 1, 50, 1200])  # 1200 boxes: torchvision's other code path
def test_nms_matches_torchvision(n):
    rng = np.random.default_rng(n)
    boxes = random_boxes(rng, n)
    boxes[: n // 10] = 0  # empty masks have the box (0, 0, 0, 0)
    scores = rng.random(n).astype(np.float32)
    for threshold in (0.3, 0.7):
        expected = batched_nms(
            torch.from_numpy(boxes), torch.from_numpy(scores), torch.zeros(n), threshold
        ).numpy()
        ours = amg_utils.nms(boxes, scores, threshold)
        np.testing.assert_array_equal(ours, expected)
    if n > 1:
        assert len(amg_utils.nms(boxes, scores, 0.3)) < n  # the case suppresses something


def test_nms_ties_keep_input_order():
    # Equal scores (e.g. masks of same-size crops): the earlier box wins, as with a stable sort.
    boxes = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [50, 50, 60, 60], [0, 0, 10, 9]])
    np.testing.assert_array_equal(amg_utils.nms(boxes, np.ones(4), 0.5), [0, 2])
    np.testing.assert_array_equal(amg_utils.nms(boxes[::-1], np.ones(4), 0.5), [0, 1])


def test_nms_rejects_mismatched_inputs():
    with pytest.raises(ValueError, match="3 boxes but 2 scores"):
        amg_utils.nms(np.zeros((3, 4)), np.zeros(2), 0.5)


def random_masks(rng, n: int, h: int, w: int) -> np.ndarray:
    masks = rng.random((n, h, w)) > 0.6
    masks[0] = False  # empty
    masks[1] = True  # full
    masks[2, 0, 0] = True  # starts with foreground
    return masks


def test_rle_matches_reference_and_round_trips():
    rng = np.random.default_rng(0)
    masks = random_masks(rng, 6, 23, 31)
    expected = reference_amg.mask_to_rle_pytorch(torch.from_numpy(masks))
    for mask, theirs in zip(masks, expected, strict=True):
        ours = rle.mask_to_rle(mask)
        assert ours == theirs
        np.testing.assert_array_equal(rle.rle_to_mask(ours), mask)
        assert rle.area_from_rle(ours) == mask.sum()


def test_coco_rle_matches_reference_and_loads_in_pycocotools():
    rng = np.random.default_rng(1)
    masks = random_masks(rng, 5, 40, 27)
    ours = rle.masks_to_coco_rle(masks)
    for mask, coco in zip(masks, ours, strict=True):
        theirs = reference_amg.coco_encode_rle(rle.mask_to_rle(mask))
        assert coco == theirs
        assert isinstance(coco["counts"], str)
        decoded = mask_utils.decode({"size": coco["size"], "counts": coco["counts"].encode()})
        np.testing.assert_array_equal(decoded.astype(bool), mask)
        assert mask_utils.area({"size": coco["size"], "counts": coco["counts"].encode()}) == (
            mask.sum()
        )
        np.testing.assert_array_equal(rle.coco_rle_to_mask(coco), mask)
    assert rle.masks_to_coco_rle(np.zeros((0, 4, 4), bool)) == []


def test_rle_rejects_bad_input():
    with pytest.raises(ValueError, match=r"mask must be \(H, W\)"):
        rle.mask_to_rle(np.zeros((2, 3, 4), bool))
    with pytest.raises(ValueError, match="counts sum to 5"):
        rle.rle_to_mask({"size": [2, 3], "counts": [2, 3]})


@pytest.mark.parametrize("n,layers,scale", [(32, 0, 1), (16, 2, 2), (7, 1, 1)])
def test_point_grids_match_reference(n, layers, scale):
    expected = reference_amg.build_all_layer_point_grids(n, layers, scale)
    ours = amg_utils.build_all_layer_point_grids(n, layers, scale)
    assert len(ours) == len(expected)
    for a, b in zip(ours, expected, strict=True):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("hw", [(213, 320), (1200, 1800), (500, 333)])
@pytest.mark.parametrize("layers", [1, 2])
def test_crop_boxes_match_reference(hw, layers):
    assert amg_utils.generate_crop_boxes(hw, layers, 512 / 1500) == (
        reference_amg.generate_crop_boxes(hw, layers, 512 / 1500)
    )


def test_box_near_crop_edge_matches_reference():
    rng = np.random.default_rng(2)
    boxes = random_boxes(rng, 300, 120)
    crop, orig = [60, 0, 180, 120], [0, 0, 200, 120]
    expected = reference_amg.is_box_near_crop_edge(torch.from_numpy(boxes), crop, orig).numpy()
    ours = amg_utils.is_box_near_crop_edge(boxes, crop, orig)
    np.testing.assert_array_equal(ours, expected)
    assert expected.any() and not expected.all()


def _box_within(box: np.ndarray, outer: np.ndarray) -> np.ndarray:
    """(N, 4), (N, 4) XYXY -> (N,) bool: box lies within outer."""
    return (outer[:, :2] <= box[:, :2]).all(1) & (box[:, 2:] <= outer[:, 2:]).all(1)


@pytest.mark.parametrize("in_hw,out_hw", [((64, 64), (213, 320)), ((16, 16), (50, 37))])
def test_upsampling_scores_and_boxes_match_reference(in_hw, out_hw):
    rng = np.random.default_rng(3)
    logits = (rng.standard_normal((20, *in_hw)) * 3).astype(np.float32)
    logits[0] = -5  # an empty mask
    expected = F.interpolate(
        torch.from_numpy(logits)[None], out_hw, mode="bilinear", align_corners=False
    )[0]
    ours = np.asarray(mask_scoring.upsample_bilinear(logits, out_hw))
    np.testing.assert_allclose(ours, expected.numpy(), atol=1e-4)  # float32 rounding
    # A pixel within rounding of a threshold may flip: one pixel moves a score by < 1e-3.
    stability, boxes = mask_scoring.score_masks(logits, out_hw, 0.0, 1.0)
    stab_ref = reference_amg.calculate_stability_score(expected, 0.0, 1.0).numpy()
    assert np.isnan(stability[0]) and np.isnan(stab_ref[0])
    np.testing.assert_allclose(stability[1:], stab_ref[1:], atol=1e-3)
    # Boxes of the masks thresholded at 0 on each side: a pixel within the upsampling tolerance
    # (1e-4) of 0 may flip, so our box must contain the reference's box of the pixels surely on
    # (> 1e-4) and lie within that of the pixels possibly on (> -1e-4): exact where they agree.
    sure, maybe = (reference_amg.batched_mask_to_box(expected > t).numpy() for t in (1e-4, -1e-4))
    has_sure = (expected > 1e-4).flatten(1).any(1).numpy()
    inside = _box_within(boxes, maybe) | (~has_sure & (boxes == 0).all(1))  # (0, 0, 0, 0): empty
    assert np.all(inside & (_box_within(sure, boxes) | ~has_sure)), np.flatnonzero(~inside)
    binary = np.asarray(mask_scoring.binary_masks(logits, out_hw, 0.0))
    assert (binary == (expected.numpy() > 0)).mean() >= 0.9999
