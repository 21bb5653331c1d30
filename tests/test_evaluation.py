"""J and F against hand-computable cases and an independent per-pixel implementation; folder
evaluation in the DAVIS and SA-V layouts; the `sam2-jax eval` CLI."""

from __future__ import annotations

import json
import math
import os

import numpy as np
import pytest
from PIL import Image

from sam2_jax import cli
from sam2_jax.evaluation import (
    contour_accuracy,
    evaluate_folders,
    read_video_masks,
    region_similarity,
    seg_to_boundary,
)


def _square(shape, y0, x0, size):
    m = np.zeros(shape, bool)
    m[y0 : y0 + size, x0 : x0 + size] = True
    return m


# ---------------------------------------------------------------- independent implementation


def _loop_boundary(seg):
    """Boundary by the DAVIS definition, one pixel at a time."""
    h, w = seg.shape
    out = np.zeros((h, w), bool)
    for y in range(h):
        for x in range(w):
            v = bool(seg[y, x])
            r = bool(seg[y, x + 1]) if x + 1 < w else False
            d = bool(seg[y + 1, x]) if y + 1 < h else False
            rd = bool(seg[y + 1, x + 1]) if (x + 1 < w and y + 1 < h) else False
            if y == h - 1 and x == w - 1:
                out[y, x] = False
            elif y == h - 1:
                out[y, x] = v != r
            elif x == w - 1:
                out[y, x] = v != d
            else:
                out[y, x] = (v != r) or (v != d) or (v != rd)
    return out


def _loop_f(pred, gt, bound_th=0.008):
    """F with matching by explicit Euclidean distance between boundary pixels."""
    h, w = gt.shape
    r = math.ceil(bound_th * math.hypot(h, w))
    pb, gb = _loop_boundary(pred), _loop_boundary(gt)
    pp, gp = np.argwhere(pb), np.argwhere(gb)
    if len(pp) == 0 and len(gp) == 0:
        return 1.0
    if len(pp) == 0:
        prec, rec = 1.0, 0.0
    elif len(gp) == 0:
        prec, rec = 0.0, 1.0
    else:

        def matched(a, b):  # points of a within distance r of some point of b
            d2 = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)  # (len(a), len(b))
            return int(np.sum(d2.min(axis=1) <= r * r))

        prec, rec = matched(pp, gp) / len(pp), matched(gp, pp) / len(gp)
    return 0.0 if prec + rec == 0 else 2 * prec * rec / (prec + rec)


# ---------------------------------------------------------------- hand-computable cases


def test_j_hand_cases():
    a = _square((20, 20), 0, 0, 4)  # 16 px
    b = _square((20, 20), 2, 2, 4)  # overlaps a in 2x2 = 4 px
    assert region_similarity(a, b) == pytest.approx(4 / 28)
    assert region_similarity(a, a) == 1.0
    assert region_similarity(a, _square((20, 20), 10, 10, 4)) == 0.0
    empty = np.zeros((20, 20), bool)
    assert region_similarity(empty, empty) == 1.0  # DAVIS: nothing to find, nothing found
    assert region_similarity(empty, a) == 0.0
    # void pixels leave both masks: b's overlap with a hidden -> 0 / 24
    void = np.zeros((20, 20), bool)
    void[2:4, 2:4] = True
    assert region_similarity(a, b, void) == pytest.approx(0 / 24)
    # batched over frames
    np.testing.assert_allclose(
        region_similarity(np.stack([a, a, empty]), np.stack([b, a, empty])), [4 / 28, 1, 1]
    )


def test_f_hand_cases():
    shape = (60, 80)  # diagonal 100 -> radius ceil(0.8) = 1
    a = _square(shape, 10, 10, 20)
    assert contour_accuracy(a, a) == 1.0
    assert contour_accuracy(a, _square(shape, 10, 50, 20)) == 0.0  # far apart
    empty = np.zeros(shape, bool)
    assert contour_accuracy(empty, empty) == 1.0
    assert contour_accuracy(empty, a) == 0.0  # P = 1, R = 0
    assert contour_accuracy(a, empty) == 0.0  # P = 0, R = 1
    # shifted by one pixel: within the 1-pixel tolerance -> every boundary pixel matches
    assert contour_accuracy(_square(shape, 11, 10, 20), a) == 1.0
    # shifted by three: only the boundary segments along the shift axis still match
    f3 = contour_accuracy(_square(shape, 13, 10, 20), a)
    assert 0.0 < f3 < 1.0
    # the DAVIS map marks the pixel before each change (rightwards / downwards): for the
    # 20x20 square at rows/cols 10..29 that is the ring of rows/cols 9 and 29, 4 * 20 pixels
    b = seg_to_boundary(a)
    ring = np.zeros(shape, bool)
    ring[9:30, 9:30] = True
    ring[10:29, 10:29] = False
    np.testing.assert_array_equal(b, ring)


def test_against_independent_implementation():
    rng = np.random.default_rng(0)
    from scipy import ndimage

    for trial in range(6):
        shape = (24, 30) if trial % 2 else (40, 44)  # radius 1 and 1
        gt = ndimage.binary_opening(rng.random(shape) < 0.5, iterations=1)
        pred = gt.copy()
        pred[rng.integers(0, shape[0], 3), :] ^= True  # stray lines
        pred = ndimage.binary_dilation(pred, iterations=trial % 3)
        np.testing.assert_array_equal(seg_to_boundary(gt), _loop_boundary(gt))
        assert contour_accuracy(pred, gt) == pytest.approx(_loop_f(pred, gt), abs=1e-12)
        j_loop = (pred & gt).sum() / max((pred | gt).sum(), 1)
        assert region_similarity(pred, gt) == pytest.approx(j_loop)
    # a larger radius (bound_th as pixels)
    gt = _square((30, 30), 5, 5, 12)
    pred = _square((30, 30), 9, 7, 10)
    assert contour_accuracy(pred, gt, bound_th=0.1) == pytest.approx(_loop_f(pred, gt, 0.1))
    # masks at the image border, with a tolerance reaching past it
    gt = _square((30, 40), 0, 0, 9)
    pred = np.zeros((30, 40), bool)
    pred[3:30, 30:40] = True
    for th in (0.45, 0.5, 0.6):  # radius 23, 25, 30: partial matches
        assert contour_accuracy(pred, gt, bound_th=th) == pytest.approx(_loop_f(pred, gt, th))


# ---------------------------------------------------------------- folders and CLI


def _palette_png(path, labels):
    img = Image.fromarray(labels.astype(np.uint8), mode="P")
    img.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0, 0, 0, 255] + [128] * (256 * 3 - 12))
    img.save(path)


@pytest.fixture(scope="module")
def davis_folders(tmp_path_factory):
    """gt/pred roots, 2 videos x 5 frames of 40x48; object 1 exact, object 2 half-covered."""
    root = tmp_path_factory.mktemp("vos_eval")
    gt_root, pred_root = root / "gt", root / "pred"
    for v in ("vid_a", "vid_b"):
        os.makedirs(gt_root / v)
        os.makedirs(pred_root / v)
        for t in range(5):
            gt = np.zeros((40, 48), np.uint8)
            gt[5:15, 5 + t : 15 + t] = 1
            gt[20:36, 20:36] = 2
            gt[0, :] = 255  # void row
            pred = np.where(gt == 255, 0, gt)
            pred[28:36, 20:36] = 0  # object 2: predicted top half only
            _palette_png(gt_root / v / f"{t:05d}.png", gt)
            _palette_png(pred_root / v / f"{t:05d}.png", pred)
    return str(gt_root), str(pred_root)


def test_evaluate_davis_folders(davis_folders):
    gt_root, pred_root = davis_folders
    res = evaluate_folders(gt_root, pred_root)
    assert set(res["videos"]) == {"vid_a", "vid_b"}
    obj = res["videos"]["vid_a"]
    assert obj[1]["J"]["mean"] == 1.0 and obj[1]["F"]["mean"] == 1.0
    assert obj[2]["J"]["mean"] == pytest.approx(0.5)
    assert len(obj[2]["J_frames"]) == 3  # first and last frame left out
    f2 = contour_accuracy(
        np.pad(np.ones((8, 16), bool), ((20, 12), (20, 12))),
        np.pad(np.ones((16, 16), bool), ((20, 4), (20, 12))),
    )
    assert obj[2]["F"]["mean"] == pytest.approx(f2)
    assert res["J-Mean"] == pytest.approx(0.75)
    assert res["J&F-Mean"] == pytest.approx((0.75 + (1 + f2) / 2) / 2)
    full = evaluate_folders(gt_root, pred_root, skip_first_last=False)
    assert len(full["videos"]["vid_b"][2]["J_frames"]) == 5


def test_sav_layout_and_missing_objects(tmp_path):
    """SA-V per-object folders; an object absent from the prediction scores as empty."""
    for root in ("gt", "pred"):
        for oid in ("000", "001"):
            if root == "pred" and oid == "001":
                continue
            os.makedirs(tmp_path / root / "sav_1" / oid)
            for t in range(4):
                m = _square((32, 32), 4 + 10 * int(oid), 4, 8).astype(np.uint8) * 255
                Image.fromarray(m).save(tmp_path / root / "sav_1" / oid / f"{t:05d}.png")
    gt = read_video_masks(str(tmp_path / "gt" / "sav_1"))
    assert gt.object_ids == (0, 1) and gt.masks.shape == (2, 4, 32, 32)
    res = evaluate_folders(str(tmp_path / "gt"), str(tmp_path / "pred"))
    objs = res["videos"]["sav_1"]
    assert objs[0]["J&F"] == 1.0 and objs[1]["J"]["mean"] == 0.0 and objs[1]["F"]["mean"] == 0.0


def test_errors(davis_folders, tmp_path):
    gt_root, _ = davis_folders
    with pytest.raises(FileNotFoundError, match="no predictions for video"):
        evaluate_folders(gt_root, str(tmp_path))
    with pytest.raises(ValueError, match="shape"):
        region_similarity(np.zeros((4, 4), bool), np.zeros((4, 5), bool))
    # a prediction with an object id the ground truth lacks
    os.makedirs(tmp_path / "vid_a")
    for t in range(5):
        _palette_png(tmp_path / "vid_a" / f"{t:05d}.png", np.full((40, 48), 3, np.uint8))
    with pytest.raises(ValueError, match=r"object ids \[3\]"):
        evaluate_folders(gt_root, str(tmp_path), videos=["vid_a"])


def test_cli_eval(davis_folders, tmp_path, capsys):
    gt_root, pred_root = davis_folders
    out = tmp_path / "scores.json"
    cli.main(["eval", "--gt", gt_root, "--pred", pred_root, "--out", str(out)])
    printed = capsys.readouterr().out
    assert "J&F-Mean" in printed and "vid_b" in printed
    saved = json.loads(out.read_text())
    assert saved["J-Mean"] == pytest.approx(0.75)
    assert saved["videos"]["vid_a"]["2"]["J"]["mean"] == pytest.approx(0.5)
    csv = tmp_path / "scores.csv"
    cli.main(["eval", "--gt", gt_root, "--pred", pred_root, "--out", str(csv)])
    assert csv.read_text().count("\n") == 1 + 4
