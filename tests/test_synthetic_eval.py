"""The held-out one-click evaluation, the bundled clip writer and the training-curve plot."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from sam2_jax.cli.common import bundled
from sam2_jax.evaluation import read_video_masks
from sam2_jax.evaluation.sample_clip import write_sample_clip
from sam2_jax.evaluation.synthetic import (
    center_click,
    clicked_objects,
    evaluate_one_click,
    held_out_videos,
)
from sam2_jax.train.data.synthetic import generate_video
from sam2_jax.train.plot_metrics import plot, running_mean


def _brute_force_depth(mask: np.ndarray) -> np.ndarray:
    """Per mask pixel, the Euclidean distance to the nearest pixel outside (the image border
    counts as outside)."""
    h, w = mask.shape
    padded = np.pad(mask, 1)
    outside = np.argwhere(~padded)  # (K, 2) in padded coordinates
    depth = np.zeros((h, w))
    for y, x in np.argwhere(mask):
        depth[y, x] = np.sqrt(((outside - (y + 1, x + 1)) ** 2).sum(1)).min()
    return depth


@pytest.mark.parametrize("seed", range(6))
def test_center_click_is_the_deepest_mask_pixel(seed):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:24, 0:30]
    cy, cx, ry, rx = rng.uniform(4, 20), rng.uniform(4, 26), rng.uniform(2, 9), rng.uniform(2, 9)
    mask = ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
    mask[rng.integers(0, 24), :] = False  # a cut, so the shape is not convex
    if not mask.any():
        mask[5, 5] = True
    x, y = center_click(mask).astype(int)
    depth = _brute_force_depth(mask)
    assert mask[y, x] and depth[y, x] == pytest.approx(depth.max())


def test_center_click_refuses_an_empty_mask():
    with pytest.raises(ValueError, match="empty mask"):
        center_click(np.zeros((4, 4), bool))


def test_held_out_videos_are_not_training_videos():
    """The train split's stream (MovingShapes, seed 0) and the test stream differ."""
    import zlib

    name, test = next(held_out_videos(1, num_frames=4, size=32))
    train = generate_video(zlib.crc32(b"train"), 0, num_frames=4, height=32, width=32)
    assert name == "test_000000" and not np.array_equal(test.frames, train.frames)


class _OracleVideoPredictor:
    """Returns the ground truth as logits: the evaluation of a perfect tracker."""

    def __init__(self, masks):
        self.masks = masks  # (T, O, H, W)

    def init_state(self, frames):
        return {"objects": []}

    def add_new_points_or_box(self, state, frame, obj_id, points, labels):
        x, y = points[0].astype(int)
        assert frame == 0 and self.masks[0, obj_id - 1, y, x], "the click lies on its object"
        state["objects"].append(obj_id)

    def propagate_in_video(self, state, start):
        for f in range(self.masks.shape[0]):
            ids = state["objects"]
            logits = np.where(self.masks[f, [i - 1 for i in ids]], 5.0, -5.0)[:, None]
            yield f, ids, logits


class _OracleImagePredictor:
    def __init__(self, masks):
        self.masks = masks

    def set_image(self, image):
        pass

    def predict(self, point_coords, point_labels, multimask_output):
        x, y = point_coords[0].astype(int)
        obj = int(np.argmax(self.masks[0, :, y, x]))
        wrong = np.zeros_like(self.masks[0, obj])
        return np.stack([wrong, self.masks[0, obj], wrong]), np.array([0.1, 0.9, 0.2]), None


def test_one_click_evaluation_of_a_perfect_model_scores_one():
    _, video = next(held_out_videos(1, num_frames=6, size=64))
    result = evaluate_one_click(
        _OracleVideoPredictor(video.masks),
        _OracleImagePredictor(video.masks),
        1,
        num_frames=6,
        size=64,
        min_area=16,
    )
    assert result["objects"] == len(clicked_objects(video.masks, 16)) > 0
    for key in ("J&F-Mean", "J-Mean", "F-Mean", "image-mIoU"):
        assert result[key] == pytest.approx(1.0), key


def test_bundled_clip_is_what_the_writer_makes(tmp_path):
    """sam2_jax/assets/shapes_clip is reproducible, its annotations are the generator's
    visible masks of the clicked objects, and every click lies on its object."""
    prompts = write_sample_clip(tmp_path)
    bundled_prompts = json.loads(open(bundled("shapes_clip/prompts.json")).read())
    assert prompts == bundled_prompts
    fresh = read_video_masks(str(tmp_path / "annotations"))
    shipped = read_video_masks(bundled("shapes_clip/annotations"))
    assert fresh.object_ids == shipped.object_ids and np.array_equal(fresh.masks, shipped.masks)
    video_index = int(prompts["source"].split("video ")[1].split(",")[0])
    from sam2_jax.evaluation.synthetic import TEST_SEED

    video = generate_video(TEST_SEED, video_index, num_frames=24, height=128, width=128)
    for k, oid in enumerate(shipped.object_ids):
        np.testing.assert_array_equal(shipped.masks[k], video.masks[:, oid - 1])
        entry = prompts["objects"][k]
        assert entry["id"] == oid
        ((x, y),) = entry["prompts"][0]["points"]
        assert video.masks[0, oid - 1, int(y), int(x)]
    frame = np.asarray(Image.open(bundled("shapes_clip/frames/00005.jpg")), np.float32)
    assert np.abs(frame - video.frames[5]).mean() < 4.0  # JPEG q95, 4:4:4, of per-pixel noise


def test_training_curve_plot(tmp_path):
    losses = np.linspace(10, 1, 30)
    with open(tmp_path / "metrics.jsonl", "w") as f:
        for i, loss in enumerate(losses):
            terms = {n: loss / 4 for n in ("loss_mask", "loss_dice", "loss_iou", "loss_class")}
            f.write(json.dumps({"step": i + 1, "loss": loss, "lr_scale": 1.0, **terms}) + "\n")
    plot(tmp_path, tmp_path / "curves.png")
    with Image.open(tmp_path / "curves.png") as image:
        assert image.format == "PNG" and image.width > 600
    x = np.arange(10.0)
    expected = [np.mean(x[max(0, i - 2) : i + 1]) for i in range(10)]
    np.testing.assert_allclose(running_mean(x, 3), expected)
