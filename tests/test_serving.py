"""`sam2-jax export-compiled` and `sam2_jax.serving`: the exported programs give the live
predictors' masks, without the model's code.

One export of the bundled default model (128 px) for cpu, cuda and tpu (and ONNX, where
jax2onnx is installed) is shared by the tests:

- every program deserializes, lowered for the three platforms, with the manifest's shapes;
- a subprocess runs scripted image and video sessions (tests/serving_sessions.py) on the
  exported predictors and imports neither Flax, Optax, Orbax, torch nor the model code;
  the masks equal the live predictors' on >= 99.9 % of the pixels (image) and >= 99 % of
  the pixels of every output (video);
- the ONNX image path gives the live masks on >= 99.9 % of the pixels;
- the CLI refuses a non-empty --out without --overwrite and unknown --platforms.
"""

from __future__ import annotations

import importlib.util
import json
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest
from jax import export

from sam2_jax import cli
from sam2_jax.build import build_sam2
from sam2_jax.image.predictor import SAM2ImagePredictor
from sam2_jax.serving import ExportedImagePredictor, read_manifest
from sam2_jax.video.predictor import SAM2VideoPredictor
from tests import serving_sessions

REPO = pathlib.Path(__file__).resolve().parents[1]
PROGRAMS = ("image_encoder", "prompt_decoder", "video_prompt_step", "memory_encoder", "track_step")
HAS_ONNX = all(importlib.util.find_spec(m) for m in ("jax2onnx", "onnxruntime"))


@pytest.fixture(scope="module")
def compiled(tmp_path_factory) -> pathlib.Path:
    """The bundled default model, exported for every platform (and ONNX when available)."""
    out = tmp_path_factory.mktemp("serving") / "compiled"
    cli.main(["export-compiled", "--out", str(out), *(["--onnx"] if HAS_ONNX else [])])
    return out


@pytest.fixture(scope="module")
def live():
    """The live session outputs, image and video."""
    model = build_sam2()
    return {
        "image": serving_sessions.image_session(SAM2ImagePredictor(model)),
        "video": serving_sessions.video_session(
            SAM2VideoPredictor(model, progress=False, memory_policy="reference")
        ),
    }


def _agreement(a: np.ndarray, b: np.ndarray, threshold: float = 0.0) -> float:
    """Fraction of pixels on which two masks (or logits, thresholded) agree."""
    if a.dtype != bool:
        a, b = a > threshold, b > threshold
    assert a.shape == b.shape
    return float((a == b).mean())


def _check_image(served: dict, live: dict) -> None:
    assert served.keys() == live.keys()
    for key in live:
        if key.endswith("/masks"):
            assert served[key].dtype == bool and _agreement(served[key], live[key]) >= 0.999, key
        else:  # scores and low-res logits, as close as two compilations get
            np.testing.assert_allclose(served[key], live[key], atol=1e-3, err_msg=key)


def test_programs_deserialize_for_cpu_cuda_and_tpu(compiled):
    manifest = read_manifest(compiled)
    assert manifest.platforms == ("cpu", "cuda", "tpu")
    assert manifest.image_size == 128 and manifest.model["name"] == "sam2.1_hiera_nano"
    assert manifest.model["random_weights"] is False
    assert manifest.preprocessing["image"]["mean"] == pytest.approx([0.485, 0.456, 0.406])
    assert manifest.preprocessing["image"]["std"] == pytest.approx([0.229, 0.224, 0.225])
    assert manifest.versions["sam2_jax"] == "0.1.0"
    assert tuple(manifest.functions) == PROGRAMS
    with np.load(compiled / "weights.npz") as weights:
        assert sorted(weights.files) == sorted(manifest.weight_names)
        assert {weights[n].dtype for n in weights.files} == {np.dtype(np.float16)}  # exact
    assert (compiled / "weights.npz").stat().st_size < 10 * 2**20  # float16 where exact
    programs = sum((compiled / spec.file).stat().st_size for spec in manifest.functions.values())
    assert programs < 1.4 * 2**20  # the weights are not baked in (1.22 MiB seen)
    for name, spec in manifest.functions.items():
        exported = export.deserialize(bytearray((compiled / spec.file).read_bytes()))
        assert exported.platforms == ("cpu", "cuda", "tpu"), name
        named = exported.in_avals[len(manifest.weight_names) :]  # after the weights
        by_name = sorted(spec.inputs, key=lambda s: s.name)  # dict inputs flatten sorted
        assert [(a.shape, str(a.dtype)) for a in named] == [(s.shape, s.dtype) for s in by_name]
        assert [tuple(a.shape) for a in exported.out_avals] == [s.shape for s in spec.outputs]


def test_served_predictors_give_the_live_masks_without_model_code(compiled, live, tmp_path):
    path = tmp_path / "served.npz"
    subprocess.run(
        [sys.executable, "-m", "tests.serving_sessions", str(compiled), str(path)],
        cwd=REPO,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        check=True,
        timeout=600,
    )
    with np.load(path) as stored:
        served = {k: stored[k] for k in stored.files}
    assert json.loads(str(served.pop("imported"))) == []  # no Flax, Optax, Orbax, torch, model
    _check_image({k[6:]: v for k, v in served.items() if k.startswith("image/")}, live["image"])
    video = {k[6:]: v for k, v in served.items() if k.startswith("video/")}
    assert video.keys() == live["video"].keys()
    assert len([k for k in video if k.startswith("forward/")]) == 24
    assert len([k for k in video if k.startswith("reverse/")]) == 5
    for key, masks in live["video"].items():
        assert video[key].shape == masks.shape and masks.shape[1:] == (1, 128, 128), key
        assert _agreement(video[key], masks) >= 0.99, key


@pytest.mark.skipif(not HAS_ONNX, reason="jax2onnx / onnxruntime not installed (onnx extra)")
def test_onnx_image_path_gives_the_live_masks(compiled, live):
    manifest = read_manifest(compiled)
    assert manifest.functions["image_encoder"].onnx_file == "image_encoder.onnx"
    assert (compiled / manifest.functions["prompt_decoder"].onnx_file).is_file()
    served = serving_sessions.image_session(ExportedImagePredictor(compiled, backend="onnx"))
    _check_image(served, live["image"])


def test_export_compiled_refuses_a_non_empty_out(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("an earlier run's")
    with pytest.raises(SystemExit) as exc:
        cli.main(["export-compiled", "--out", str(out)])
    message = str(exc.value.code)
    assert message.startswith("sam2-jax export-compiled: error:") and "\n" not in message
    assert "not empty" in message and "--overwrite" in message
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


def test_export_compiled_names_bad_platforms(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["export-compiled", "--out", str(tmp_path / "o"), "--platforms", "cpu,gpu"])
    assert exc.value.code == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("sam2-jax export-compiled: error: argument --platforms")
    assert "'gpu'" in error and "cpu, cuda, tpu" in error
    assert not (tmp_path / "o").exists()
