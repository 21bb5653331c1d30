"""`sam2-jax track-video shapes` (J&F against the bundled annotations) with the bundled default
model, and `sam2-jax eval-synthetic`'s checks."""

from __future__ import annotations

import json
import os

import pytest

from sam2_jax import cli
from sam2_jax.cli.common import bundled
from sam2_jax.evaluation import evaluate_folders


@pytest.mark.slow
def test_track_video_scores_the_shapes_clip(tmp_path, capsys):
    out = tmp_path / "shapes"
    cli.main(["track-video", "shapes", "--out", str(out)])  # the README's first command
    printed = capsys.readouterr().out
    assert "the bundled default model" in printed
    scores = json.loads((out / "scores.json").read_text())
    assert f"J&F {scores['J&F']:.4f}" in printed
    assert set(scores["objects"]) == {"1", "2"} and 0.0 <= scores["J&F"] <= 1.0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["scores"] == scores and summary["random_weights"] is False
    assert summary["memory_policy"] == "dam4sam" and "memory policy dam4sam" in printed

    # the same masks scored by `sam2-jax eval`'s folder evaluation (the SA-V layout written
    # by track-video against the DAVIS-layout annotations)
    gt_root, pred_root = tmp_path / "gt", tmp_path / "pred"
    gt_root.mkdir()
    pred_root.mkdir()
    os.symlink(bundled("shapes_clip/annotations"), gt_root / "clip")
    os.symlink(out / "masks", pred_root / "clip")
    folder = evaluate_folders(str(gt_root), str(pred_root))
    assert folder["J&F-Mean"] == pytest.approx(scores["J&F"], abs=1e-9)


def test_track_video_refuses_annotations_of_another_length(tmp_path):
    frames = tmp_path / "frames"
    frames.mkdir()
    for name in sorted(os.listdir(bundled("shapes_clip/frames")))[:5]:
        os.symlink(os.path.join(bundled("shapes_clip/frames"), name), frames / name)
    argv = ["track-video", str(frames), "--prompts", bundled("shapes_clip/prompts.json")]
    argv += ["--gt", bundled("shapes_clip/annotations"), "--out", str(tmp_path / "out")]
    with pytest.raises(SystemExit, match="24 annotated frames, the video 5"):
        cli.main(argv)


def test_eval_synthetic_cli_checks_its_arguments(capsys):
    """(The evaluation itself is tested with a perfect stand-in predictor in
    test_synthetic_eval.py; a full CLI run costs two compilations, ~50 s in CI.)"""
    with pytest.raises(SystemExit, match="--videos must be >= 1"):
        cli.main(["eval-synthetic", "--videos", "0"])
    with pytest.raises(SystemExit):
        cli.main(["eval-synthetic", "--memory-policy", "samurei"])
    assert "invalid choice: 'samurei'" in capsys.readouterr().err


@pytest.mark.slow
def test_track_video_takes_a_memory_policy_by_name(tmp_path, capsys):
    out = tmp_path / "shapes"
    cli.main(["track-video", "shapes", "--out", str(out), "--memory-policy", "sam3", "--no-pngs"])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["memory_policy"] == "sam3" and summary["complete"] is True
    assert 0.0 <= summary["scores"]["J&F"] <= 1.0
    with pytest.raises(SystemExit):
        cli.main(["track-video", "shapes", "--out", str(out), "--memory-policy", "samurei"])
    assert "invalid choice: 'samurei'" in capsys.readouterr().err
