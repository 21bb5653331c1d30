"""Parity of SAM2AutomaticMaskGenerator with the reference's, on the real sample images.

Both generators hold the same re-randomized weights (tiny, 256 px input), with two shifts
applied to the reference before conversion, so that the default filters have something to
decide: the IoU head's output bias is raised by IOU_BIAS_SHIFT (random weights predict IoUs
of 0.2-0.6, all below pred_iou_thresh=0.8) and the hypernetworks' output layers are scaled by
MASK_LOGIT_SCALE (random logits are too flat for stability >= 0.95). Images are resized to
IMAGE_WIDTH px wide (aspect kept) to keep the per-pixel work small.

Random weights do not localise masks around their click: every mask's box spans most of the
image, so box NMS keeps few of them. Each case therefore compares two stages:

- candidates: every mask that passed the IoU / stability / crop-edge filters, before NMS
  (hundreds; recorded from both generators' per-batch step), one-to-one;
- records: `generate`'s output after NMS within and across crops (one per case here, as the
  boxes nearly coincide; candidates: 1545 of 3072 masks with the defaults, 22 with crops
  (every crop-layer mask touches an inner crop edge and is dropped), 22 with m2m, 123 with
  small-region removal).

Matching: masks are paired one-to-one by maximum IoU (linear_sum_assignment); each pair must
have IoU >= MIN_MASK_IOU, predicted IoU within SCORE_TOL and stability within SCORE_TOL.
Masks whose score lies within THRESHOLD_MARGIN of a filter threshold (a last-bit difference
may flip them) are left out of the matching, on either side; the rest must match in number.
One such pair (stability 0.95002 on both sides, from different clicks) was seen with the
defaults.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as mask_utils
from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator as ReferenceGenerator
from sam2.utils import amg as reference_amg
from scipy import ndimage
from scipy.optimize import linear_sum_assignment

from sam2_jax import SAM2AutomaticMaskGenerator, rle
from sam2_jax.amg import mask_scoring
from tests import reference as ref

NAME, SIZE = "sam2.1_hiera_t", 256
IMAGE_WIDTH = 320
IOU_BIAS_SHIFT = 1.3
MASK_LOGIT_SCALE = 8.0
MIN_MASK_IOU = 0.99
SCORE_TOL = 1e-4
THRESHOLD_MARGIN = 1e-4

CASES = {
    # name: (image, generator kwargs, minimum reference candidates, minimum records)
    "defaults": ("truck.jpg", {}, 100, 1),
    "crop_n_layers=1": ("groceries.jpg", dict(points_per_side=8, crop_n_layers=1), 20, 1),
    "use_m2m": ("cars.jpg", dict(points_per_side=8, use_m2m=True), 20, 1),
    "min_mask_region_area": ("truck.jpg", dict(points_per_side=8, min_mask_region_area=30), 20, 1),
}


def _shift_weights(model: torch.nn.Module) -> None:
    decoder = model.sam_mask_decoder
    with torch.no_grad():
        decoder.iou_prediction_head.layers[2].bias += IOU_BIAS_SHIFT
        for mlp in decoder.output_hypernetworks_mlps:
            mlp.layers[2].weight *= MASK_LOGIT_SCALE
            mlp.layers[2].bias *= MASK_LOGIT_SCALE


@functools.lru_cache(maxsize=1)
def models():
    torch_model = ref.build_reference(NAME, SIZE, seed=3)
    _shift_weights(torch_model)
    return torch_model, ref.converted_model(torch_model, NAME, SIZE)


@functools.lru_cache(maxsize=4)
def load_image(name: str) -> np.ndarray:
    path = ref.SHARED_DATA / "images" / name
    if not path.exists():
        pytest.skip(f"sample data not found at {path}")
    image = Image.open(path).convert("RGB")
    height = round(IMAGE_WIDTH * image.height / image.width)
    return np.asarray(image.resize((IMAGE_WIDTH, height), Image.BILINEAR))


def _cpu_connected_components(mask: torch.Tensor):
    """A CPU stand-in for the reference's CUDA kernel: 8-connected labels and areas."""
    labels_out = torch.zeros(mask.shape, dtype=torch.int32)
    areas_out = torch.zeros(mask.shape, dtype=torch.int32)
    for i in range(mask.shape[0]):
        labels, count = ndimage.label(mask[i, 0].numpy().astype(bool), np.ones((3, 3), bool))
        areas = np.bincount(labels.ravel(), minlength=count + 1)
        areas[0] = 0
        labels_out[i, 0] = torch.from_numpy(labels.astype(np.int32))
        areas_out[i, 0] = torch.from_numpy(areas[labels].astype(np.int32))
    return labels_out, areas_out


def _record_batches(generator, store: list) -> None:
    """Records the output of every `_process_batch` call (one dict per batch)."""
    original = generator._process_batch

    def recorded(*args, **kwargs):
        out = original(*args, **kwargs)
        store.append((args, out))
        return out

    generator._process_batch = recorded


@functools.cache
def run_case(case: str):
    """Runs both generators on one case; returns their records and recorded candidates."""
    image_name, kwargs, _, _ = CASES[case]
    torch_model, our_model = models()
    image = load_image(image_name)
    h, w = image.shape[:2]

    theirs = ReferenceGenerator(torch_model, **kwargs)
    theirs.predictor._bb_feat_sizes = [(SIZE // d,) * 2 for d in (4, 8, 16)]
    their_batches: list = []
    _record_batches(theirs, their_batches)
    with pytest.MonkeyPatch.context() as patch:
        import sam2.utils.misc

        patch.setattr(sam2.utils.misc, "get_connected_components", _cpu_connected_components)
        with torch.no_grad():
            their_records = theirs.generate(image)

    ours = SAM2AutomaticMaskGenerator(our_model, **kwargs)
    our_batches: list = []
    _record_batches(ours, our_batches)
    our_records = ours.generate(image)

    # Candidates as (masks (N, H, W) image-size, iou (N,), stability (N,), points (N, 2)).
    def their_candidates():
        parts = [
            (
                np.stack([reference_amg.rle_to_mask(r) for r in d["rles"]]).reshape(-1, h, w),
                d["iou_preds"].numpy(),
                d["stability_score"].numpy(),
                d["points"].numpy() + np.asarray(args[2][:2], np.float32),
            )
            for args, d in their_batches
            if len(d["rles"])
        ]
        return [np.concatenate(p) for p in zip(*parts, strict=True)]

    def our_candidates():
        parts = []
        for args, d in our_batches:
            if not len(d["iou_preds"]):
                continue
            crop_hw, (x0, y0, x1, y1) = args[1], args[2]
            masks = np.zeros((len(d["iou_preds"]), h, w), bool)
            masks[:, y0:y1, x0:x1] = np.asarray(
                mask_scoring.binary_masks(d["low_res"], tuple(crop_hw), 0.0)
            )
            points = d["points"] + np.asarray([x0, y0], np.float32)
            parts.append((masks, d["iou_preds"], d["stability_score"], points))
        return [np.concatenate(p) for p in zip(*parts, strict=True)]

    return {
        "theirs": their_records,
        "ours": our_records,
        "their_candidates": their_candidates(),
        "our_candidates": our_candidates(),
        "their_batches": their_batches,
    }


def mask_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N, H, W), (M, H, W) bool -> (N, M) IoU."""
    a = a.reshape(len(a), -1).astype(np.float32)
    b = b.reshape(len(b), -1).astype(np.float32)
    inter = a @ b.T
    union = a.sum(1)[:, None] + b.sum(1)[None] - inter
    return inter / np.maximum(union, 1)


def match(
    their_masks,
    our_masks,
    their_scores,
    our_scores,
    label: str,
    thresholds,
    stability_flips=0,
    points=None,
) -> dict:
    """One-to-one matching; asserts counts, IoU and score tolerances. Returns worst values.

    stability_flips: pixels whose logit may land on the other side of a stability threshold
    (the mask threshold +- its offset) between the two libraries. The stability score is a
    ratio of pixel counts, so each such pixel moves it by at most 1 / (the mask's area): a
    trained model has smooth logits, and a pixel within float error of a threshold is then
    likely (random weights scaled as here have none). The predicted IoU keeps SCORE_TOL.
    points: optional (theirs, ours) clicks of the masks; matched masks must share theirs."""

    # Masks whose predicted IoU or stability lies within THRESHOLD_MARGIN of a filter threshold
    # may pass on one side only (a last-bit difference flips them; one pixel moves a stability
    # score by 1 / area, ~3e-5 here): they are left out of the one-to-one matching, so that
    # one such mask in and another out cannot pair two unrelated masks. Few may be (16 of
    # 2 x 1545 with the defaults: stability scores come in steps of ~3e-5 there).
    def off_threshold(scores) -> np.ndarray:
        distance = [
            np.abs(np.asarray(s, np.float64)[:, None] - np.asarray(thresholds)[None]).min(1)
            for s in scores
        ]
        return (distance[0] > THRESHOLD_MARGIN) & (distance[1] > THRESHOLD_MARGIN)

    keep_theirs, keep_ours = off_threshold(their_scores), off_threshold(our_scores)
    left_out = int((~keep_theirs).sum() + (~keep_ours).sum())
    assert left_out <= max(2, len(their_masks) // 50), f"{label}: {left_out} masks at a threshold"
    their_masks, our_masks = np.asarray(their_masks)[keep_theirs], np.asarray(our_masks)[keep_ours]
    their_scores = [np.asarray(s)[keep_theirs] for s in their_scores]
    our_scores = [np.asarray(s)[keep_ours] for s in our_scores]
    n_theirs, n_ours = len(their_masks), len(our_masks)
    assert n_theirs == n_ours, f"{label}: {n_theirs} reference masks, {n_ours} ours"
    iou = mask_iou(their_masks, our_masks)
    rows, cols = linear_sum_assignment(-iou)
    worst_iou = float(iou[rows, cols].min()) if len(rows) else 1.0
    assert worst_iou >= MIN_MASK_IOU, f"{label}: matched mask IoU {worst_iou}"
    errors = [
        float(np.abs(np.asarray(t)[rows] - np.asarray(o)[cols]).max()) if len(rows) else 0.0
        for t, o in zip(their_scores, our_scores, strict=True)
    ]
    assert errors[0] <= SCORE_TOL, f"{label}: predicted IoU errors {errors[0]}"
    area = np.asarray(their_masks).reshape(n_theirs, -1).sum(axis=1)[rows]
    stability_err = np.abs(np.asarray(their_scores[1])[rows] - np.asarray(our_scores[1])[cols])
    allowed = SCORE_TOL + stability_flips / np.maximum(area, 1)
    assert (stability_err <= allowed).all(), f"{label}: stability errors {stability_err}"
    if points is not None:
        their_points = np.asarray(points[0])[keep_theirs][rows]
        our_points = np.asarray(points[1])[keep_ours][cols]
        np.testing.assert_allclose(our_points, their_points, atol=1e-4)
    return {"count": n_theirs, "ours": n_ours, "min_iou": worst_iou, "score_err": max(errors)}


@pytest.mark.parametrize("case", list(CASES))
def test_candidates_match_reference(case):
    run = run_case(case)
    _, kwargs, min_candidates, _ = CASES[case]
    t_masks, t_iou, t_stab, t_pts = run["their_candidates"]
    o_masks, o_iou, o_stab, o_pts = run["our_candidates"]
    assert len(t_masks) >= min_candidates, f"{case}: only {len(t_masks)} reference candidates"
    # The filters must have decided something: some masks kept, some dropped.
    points = sum(len(args[0]) for args, _ in run["their_batches"])
    assert len(t_masks) < 3 * points, f"{case}: the filters dropped nothing"
    thresholds = [0.8, 0.95]
    stats = match(
        t_masks, o_masks, (t_iou, t_stab), (o_iou, o_stab), case, thresholds,
        points=(t_pts, o_pts),
    )  # fmt: skip
    print(f"{case} candidates: {stats}")


@pytest.mark.parametrize("case", list(CASES))
def test_records_match_reference(case):
    run = run_case(case)
    _, _, _, min_records = CASES[case]
    theirs, ours = run["theirs"], run["ours"]
    assert len(theirs) >= min_records, f"{case}: only {len(theirs)} reference masks"
    t_masks = np.stack([r["segmentation"] for r in theirs])
    o_masks = (
        np.stack([r["segmentation"] for r in ours])
        if ours
        else np.zeros((0,) + t_masks.shape[1:], bool)
    )
    scores = lambda records: (
        np.array([r["predicted_iou"] for r in records]),
        np.array([r["stability_score"] for r in records]),
    )
    stats = match(t_masks, o_masks, scores(theirs), scores(ours), case, [0.8, 0.95])
    iou = mask_iou(t_masks, o_masks)
    rows, cols = linear_sum_assignment(-iou)
    for i, j in zip(rows, cols, strict=True):
        t, o = theirs[i], ours[j]
        assert o["point_coords"][0] == pytest.approx(t["point_coords"][0], abs=1e-4), case
        assert o["crop_box"] == t["crop_box"], case
        assert o["bbox"] == pytest.approx(t["bbox"], abs=1), case
        assert abs(o["area"] - t["area"]) <= (1 - MIN_MASK_IOU) * t["area"] + 1, case
        assert type(o["area"]) is int and isinstance(o["bbox"][0], float), case
    print(f"{case} records: {stats}")


@pytest.mark.parametrize("mode", ["uncompressed_rle", "coco_rle"])
def test_rle_output_modes_decode_to_the_binary_masks(mode):
    case = "min_mask_region_area"
    image_name, kwargs, _, _ = CASES[case]
    _, our_model = models()
    kwargs = dict(kwargs, pred_iou_thresh=0.0, stability_score_thresh=0.0, box_nms_thresh=1.0)
    binary = SAM2AutomaticMaskGenerator(our_model, **kwargs).generate(load_image(image_name))
    encoded = SAM2AutomaticMaskGenerator(our_model, output_mode=mode, **kwargs).generate(
        load_image(image_name)
    )
    assert len(encoded) == len(binary) >= 20
    for b, e in zip(binary, encoded, strict=True):
        seg = e["segmentation"]
        if mode == "coco_rle":
            assert isinstance(seg["counts"], str)  # JSON-serialisable, as the reference's
            coco = {"size": seg["size"], "counts": seg["counts"].encode()}
            mask = mask_utils.decode(coco).astype(bool)
            assert mask_utils.area(coco) == e["area"]
        else:
            mask = rle.rle_to_mask(seg)
            assert rle.area_from_rle(seg) == e["area"]
        np.testing.assert_array_equal(mask, b["segmentation"])
        assert {k: v for k, v in e.items() if k != "segmentation"} == {
            k: v for k, v in b.items() if k != "segmentation"
        }


class TestBadInput:
    def test_grid_and_points_per_side_are_exclusive(self):
        _, our_model = models()
        with pytest.raises(ValueError, match="Exactly one of points_per_side or point_grids"):
            SAM2AutomaticMaskGenerator(our_model, point_grids=[np.zeros((4, 2))])

    def test_unknown_output_mode(self):
        _, our_model = models()
        with pytest.raises(ValueError, match="Unknown output_mode 'png'"):
            SAM2AutomaticMaskGenerator(our_model, output_mode="png")

    def test_grid_outside_unit_square(self):
        _, our_model = models()
        with pytest.raises(ValueError, match=r"point_grids\[0\] has coordinates outside"):
            SAM2AutomaticMaskGenerator(
                our_model, points_per_side=None, point_grids=[np.full((3, 2), 1.5)]
            )

    def test_too_few_grids_for_the_crop_layers(self):
        _, our_model = models()
        with pytest.raises(ValueError, match="needs one per layer"):
            SAM2AutomaticMaskGenerator(
                our_model, points_per_side=None, point_grids=[np.ones((3, 2)) / 2], crop_n_layers=1
            )

    def test_float_image_rejected(self):
        _, our_model = models()
        with pytest.raises(ValueError, match="uint8"):
            SAM2AutomaticMaskGenerator(our_model).generate(np.zeros((8, 8, 3), np.float32))
