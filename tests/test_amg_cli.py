"""`sam2-jax generate-masks`: COCO-RLE JSON and overlay outputs, clear errors."""

import json

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from sam2_jax import cli

W, H = 120, 80  # a small non-square image, so width / height mix-ups show


@pytest.fixture
def small_image(tmp_path) -> str:
    y, x = np.mgrid[0:H, 0:W]
    pixels = np.stack([x * 2, y * 3, (x + y) % 256], -1).astype(np.uint8)
    path = tmp_path / "small.png"
    Image.fromarray(pixels).save(path)
    return str(path)


@pytest.mark.slow
def test_generate_masks_writes_coco_rle_json_and_overlay(small_image, tmp_path, capsys):
    out = tmp_path / "out"
    cli.main(
        [
            "generate-masks",
            small_image,
            "--out",
            str(out),
            "--image-size",
            "256",
            "--random-weights",
        ]
        + ["--points-per-side", "4", "--pred-iou-thresh", "0", "--stability-score-thresh", "0"]
        + ["--box-nms-thresh", "1"]  # random weights: keep every mask
    )
    captured = capsys.readouterr()
    assert "random" in captured.err.lower() and "RANDOM" in captured.out
    report = json.loads((out / "masks.json").read_text())
    assert report["random_weights"] is True and report["image_hw"] == [H, W]
    assert report["settings"]["points_per_side"] == 4
    records = report["annotations"]
    assert len(records) == 4 * 4 * 3  # every click's three masks
    for record in records:
        rle = dict(record["segmentation"], counts=record["segmentation"]["counts"].encode())
        mask = mask_utils.decode(rle)
        assert mask.shape == (H, W) and mask.sum() == record["area"]
        assert set(record) == {
            "segmentation", "area", "bbox", "predicted_iou", "point_coords",
            "stability_score", "crop_box",
        }  # fmt: skip
    overlay = Image.open(out / "overlay.png")
    assert overlay.size == (W, H) and overlay.mode == "RGB"


def test_unreadable_image_is_a_clear_error(tmp_path):
    with pytest.raises(SystemExit, match="cannot read image"):
        cli.main(["generate-masks", str(tmp_path / "missing.jpg"), "--out", str(tmp_path)])


def test_bad_points_per_side_is_a_clear_error(small_image, tmp_path):
    with pytest.raises(SystemExit, match="--points-per-side must be >= 1, got 0"):
        cli.main(["generate-masks", small_image, "--out", str(tmp_path), "--points-per-side", "0"])
