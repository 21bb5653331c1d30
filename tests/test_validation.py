"""The shared validation layer, through the image and video predictors' entry points.

No model is built: every bad input must be refused before anything runs, so the predictors
here hold a stand-in model (only the sizes the checks read). Each case asserts the message.
"""

from __future__ import annotations

import types

import numpy as np
import pytest
from PIL import Image

from sam2_jax import transforms, validation
from sam2_jax.image.io import read_rgb, to_rgb8
from sam2_jax.image.predictor import SAM2ImagePredictor
from sam2_jax.video.frames import VideoFrames
from sam2_jax.video.predictor import InferenceState, SAM2VideoPredictor

H, W, S = 20, 30, 64  # video / image size, model input size
STAND_IN = types.SimpleNamespace(
    module=None,
    variables=None,
    config=types.SimpleNamespace(image_size=S, embedding_size=4),
    memory_policy=None,
)


@pytest.fixture
def video():
    """A video predictor on a 3-frame 30x20 video, and its session."""
    predictor = SAM2VideoPredictor(STAND_IN, progress=False)
    state = InferenceState(VideoFrames(np.zeros((3, H, W, 3), np.uint8), S))
    return predictor, state


@pytest.fixture
def image():
    predictor = SAM2ImagePredictor(STAND_IN)
    predictor._orig_hw, predictor._is_image_set = [(H, W)], True  # as set_image leaves it
    return predictor


NAN, INF = float("nan"), float("inf")
VIDEO_CASES = [
    (
        dict(points=[[NAN, 5]], labels=[1]),
        r"object 1, frame 0: points must be finite numbers, got nan at index \[0, 0\]",
    ),
    (
        dict(points=[[5, INF]], labels=[1]),
        r"points must be finite numbers, got inf at index \[0, 1\]",
    ),
    (
        dict(box=[1, NAN, 9, 9]),
        r"object 1, frame 0: box must be finite numbers, got nan at index \[1\]",
    ),
    (
        dict(box=[25, 15, 5, 5]),
        r"box \[25.0, 15.0, 5.0, 5.0\] is reversed: corners must satisfy x0 <= x1 and y0 <= y1",
    ),
    (dict(box=[0, 0, 40, 10]), r"box corner \(40, 10\) lies outside the 30x20 video"),
    (dict(box=[0, 0, 5]), r"box must be \(4,\) as x0, y0, x1, y1; got shape \(3,\)"),
    (
        dict(points=[[1, 1], [2, 2]], labels=[1]),
        r"labels shape \(1,\) does not match points \(2, 2\): one label per point",
    ),
    (
        dict(points=[[1, 1]], labels=[2]),
        r"labels must be 1 \(positive\) or 0 \(negative\); got \[2\]",
    ),
    (
        dict(points=[[1, 1]], labels=[0.5]),
        r"labels must be 1 \(positive\) or 0 \(negative\); got \[0.5\]",
    ),
    (
        dict(points=[[1, 1]], labels=["a"]),
        r"labels must be 1 \(positive\) or 0 \(negative\); got \['a'\]",
    ),
    (dict(points=[["a", 1]], labels=[1]), r"points must be numbers"),
    (
        dict(points=[[1, 1, 1]], labels=[1]),
        r"points must be \(N, 2\) \(x, y\) pairs, got shape \(1, 3\)",
    ),
    (dict(points=[[1, 1]]), r"labels must be supplied together with points"),
    (dict(labels=[1]), r"labels given without points"),
    (dict(points=[[31, 1]], labels=[1]), r"point \(31, 1\) lies outside the 30x20 video"),
    (
        dict(points=[[0.5, 1.5]], labels=[1], normalize_coords=False),
        r"lies outside the \[0, 1\] square",
    ),
]


@pytest.mark.parametrize("prompt, message", VIDEO_CASES)
def test_video_prompt_is_refused_with_its_message(video, prompt, message):
    predictor, state = video
    with pytest.raises(ValueError, match=message):
        predictor.add_new_points_or_box(state, 0, 1, **prompt)
    assert state.obj_ids == []  # nothing half-added


@pytest.mark.parametrize(
    "frame, obj_id, error, message",
    [
        (1.0, 1, TypeError, r"frame_idx must be an int, got 1.0 \(float\)"),
        (True, 1, TypeError, r"frame_idx must be an int, got True \(bool\)"),
        ("0", 1, TypeError, r"frame_idx must be an int, got '0' \(str\)"),
        (3, 1, IndexError, r"frame_idx 3 out of range: the video has 3 frames \(0 to 2\)"),
        (0, "../../x", ValueError, r"obj_id must be an int or a name of letters, .*'\.\./\.\./x'"),
        (0, 1.5, TypeError, r"obj_id must be an int or a name"),
        (0, None, TypeError, r"obj_id must be an int or a name"),
    ],
)
def test_frame_and_object_id_types(video, frame, obj_id, error, message):
    predictor, state = video
    with pytest.raises(error, match=message):
        predictor.add_new_points_or_box(state, frame, obj_id, points=[[1, 1]], labels=[1])
    with pytest.raises(error, match=message):
        predictor.add_new_mask(state, frame, obj_id, np.ones((H, W), bool))
    assert state.obj_ids == []


@pytest.mark.parametrize("bad", [NAN, INF, -INF])
def test_video_mask_must_be_finite(video, bad):
    predictor, state = video
    mask = np.zeros((H, W), np.float32)
    mask[3, 4] = bad
    with pytest.raises(ValueError, match=r"object 2, frame 1: mask must be finite numbers, got"):
        predictor.add_new_mask(state, 1, 2, mask)
    with pytest.raises(ValueError, match=r"mask must be \(H, W\) = \(20, 30\) \(the video\) or"):
        predictor.add_new_mask(state, 1, 2, np.ones((H, W + 1), bool))
    assert state.obj_ids == []


IMAGE_CASES = [
    (
        dict(point_coords=[[NAN, 5]], point_labels=[1]),
        r"point_coords must be finite numbers, got nan",
    ),
    (
        dict(point_coords=[[[1, 1], [2, INF]]], point_labels=[[1, 1]]),
        r"point_coords must be finite numbers, got inf at index \[0, 1, 1\]",
    ),
    (
        dict(point_coords=[[1, 1]], point_labels=[7]),
        r"point_labels must be 1 \(positive\), 0 \(negative\), 2/3 \(box corners\) or "
        r"-1 \(padding\); got \[7\]",
    ),
    (dict(box=[NAN, 1, 5, 5]), r"box must be finite numbers, got nan at index \[0\]"),
    (dict(box=[[1, 1, 5, 5], [9, 9, 2, 2]]), r"box \[9.0, 9.0, 2.0, 2.0\] is reversed"),
    (
        dict(mask_input=np.full((1, 16, 16), NAN, np.float32)),
        r"mask_input must be finite numbers, got nan at index \[0, 0, 0\]",
    ),
    (
        dict(mask_input=np.full((1, 16, 16), INF, np.float32)),
        r"mask_input must be finite numbers, got inf",
    ),
    (
        dict(mask_input=np.zeros((1, 8, 8), np.float32)),
        r"mask_input must be \(1, 16, 16\) or \(B, 1, 16, 16\)",
    ),
]


@pytest.mark.parametrize("prompt, message", IMAGE_CASES)
def test_image_prompt_is_refused_with_its_message(image, prompt, message):
    with pytest.raises(ValueError, match=message):
        image.predict(**prompt)


def test_sixteen_bit_images_are_scaled_not_clipped(tmp_path):
    """A 16-bit grey PNG reads as its 8-bit picture (x * 255 / 65535), not as white."""
    ramp = (np.arange(32 * 40, dtype=np.uint32).reshape(32, 40) * 51).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I;16")
    expected = np.round(ramp / 65535 * 255).astype(np.uint8)
    rgb = np.asarray(read_rgb(tmp_path / "deep.png"))
    assert rgb.shape == (32, 40, 3) and (rgb == expected[..., None]).all()
    with Image.open(tmp_path / "deep.png") as opened:  # the predictor's PIL input path
        np.testing.assert_array_equal(transforms.as_rgb_uint8(opened), rgb)
    with pytest.raises(ValueError, match=r"floating-point image \(mode F\) has no known value"):
        to_rgb8(Image.fromarray(np.ones((4, 4), np.float32)))
    with pytest.raises(ValueError, match=r"must be uint8 .* got dtype uint16"):
        transforms.as_rgb_uint8(ramp)
    (tmp_path / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(ValueError, match=r"cannot read image '.*broken.png'"):
        read_rgb(tmp_path / "broken.png")


def test_object_ids_and_numbers():
    assert validation.object_id(np.int64(4)) == 4 and validation.object_id("car_2-b") == "car_2-b"
    for bad in ("", "a b", "x/y", "..", "é"):
        with pytest.raises(ValueError, match="it names the output folder"):
            validation.object_id(bad, name="'id'", context="f.json: objects[0]")
    with pytest.raises(ValueError, match=r"must be an array of numbers"):
        validation.numbers([[1, 2], [3]], "points")
    with pytest.raises(ValueError, match=r"must be numbers, got \[True\]"):
        validation.numbers([True], "box")
