"""`sam2-jax segment-image`: outputs, sizes, and clear errors for bad prompts."""

import json

import numpy as np
import pytest
from PIL import Image

from sam2_jax import cli

W, H = 120, 80  # a small non-square image, so width / height mix-ups show


@pytest.fixture
def small_image(tmp_path) -> str:
    y, x = np.mgrid[0:H, 0:W]
    pixels = np.stack([x * 2, y * 3, (x + y) % 256], -1).astype(np.uint8)
    path = tmp_path / "small.png"
    Image.fromarray(pixels).save(path)
    return str(path)


def _errors(argv: list[str], capsys) -> str:
    """Runs the CLI expecting an error exit; returns the message (argparse's or ours)."""
    with pytest.raises(SystemExit) as exc:
        cli.main(["segment-image", *argv])
    assert exc.value.code != 0
    message = exc.value.code if isinstance(exc.value.code, str) else capsys.readouterr().err
    return message


@pytest.mark.slow
def test_segment_image_writes_masks_overlay_and_scores(small_image, tmp_path, capsys):
    out = tmp_path / "out"
    cli.main(
        ["segment-image", small_image, "--point", "60,40", "--point", "10,70,0"]
        + ["--box", "20,10,100,75", "--multimask", "--image-size", "256", "--out", str(out)]
        + ["--random-weights"]
    )
    captured = capsys.readouterr()
    assert "random" in captured.err.lower() and "RANDOM" in captured.out

    report = json.loads((out / "scores.json").read_text())
    assert report["random_weights"] is True and report["checkpoint"] is None
    assert report["model"] == "sam2.1_hiera_t" and report["input_size"] == 256
    assert report["image_hw"] == [H, W] and report["multimask_output"] is True
    assert report["prompts"]["points"] == [
        {"x": 60.0, "y": 40.0, "label": 1},
        {"x": 10.0, "y": 70.0, "label": 0},
    ]
    assert report["prompts"]["box"] == [20.0, 10.0, 100.0, 75.0]
    assert len(report["masks"]) == 3
    scores = [m["iou_prediction"] for m in report["masks"]]
    assert report["best"] == int(np.argmax(scores))

    for i, entry in enumerate(report["masks"]):
        assert entry["file"] == f"mask_{i}.png"
        mask = Image.open(out / entry["file"])
        assert mask.size == (W, H) and mask.mode == "L"
        values = np.asarray(mask)
        assert set(np.unique(values)) <= {0, 255}
        assert entry["area"] == int((values == 255).sum())
    overlay = Image.open(out / "overlay.png")
    assert overlay.size == (W, H) and overlay.mode == "RGB"
    assert not (out / "mask_3.png").exists()


@pytest.mark.parametrize(
    "argv, bad",
    [
        (["--point", "10,abc"], "'10,abc'"),
        (["--point", "10"], "'10'"),
        (["--point", "10,20,5"], "'10,20,5'"),
        (["--point", "10,20,1,1"], "'10,20,1,1'"),
        (["--point", "nan,20"], "'nan,20'"),
        (["--box", "1,2,3"], "'1,2,3'"),
        (["--box", "50,50,10,60"], "'50,50,10,60'"),
    ],
)
def test_bad_prompt_strings_name_the_value(argv, bad, small_image, tmp_path, capsys):
    message = _errors([small_image, *argv, "--out", str(tmp_path / "o")], capsys)
    assert bad in message
    assert "X,Y" in message or "X0" in message  # says what was expected
    assert not (tmp_path / "o").exists()


def test_prompt_outside_the_image(small_image, tmp_path, capsys):
    message = _errors([small_image, "--point", "130,10", "--out", str(tmp_path / "o")], capsys)
    assert "(130, 10)" in message and f"{W}x{H}" in message


def test_sample_is_the_bundled_image(tmp_path, capsys):
    # Fails on the prompt check, before any model is built; the size shows which image it read.
    message = _errors(["sample", "--point", "900,10", "--out", str(tmp_path / "o")], capsys)
    assert "800x534" in message


def test_needs_a_prompt_and_a_readable_image(small_image, tmp_path, capsys):
    assert "--point" in _errors([small_image, "--out", str(tmp_path)], capsys)
    missing = str(tmp_path / "missing.jpg")
    assert missing in _errors([missing, "--point", "1,1", "--out", str(tmp_path)], capsys)


def test_unknown_config_is_a_clear_error(small_image, tmp_path, capsys):
    argv = [small_image, "--point", "1,1", "--config", "sam9", "--out", str(tmp_path)]
    assert "unknown model config 'sam9'" in _errors(argv, capsys)
