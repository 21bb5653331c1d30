"""The stress sets have the property each is named for, and `sam2-jax eval-memory` writes
its table, JSON and PNG (a tiny run of the bundled default model)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from sam2_jax import cli
from sam2_jax.evaluation.stress import DEFAULT_FRAMES, STRESS_SETS, stress_video


def _centres(masks: np.ndarray) -> np.ndarray:
    """(T, H, W) bool -> (T, 2) centroids (NaN where empty)."""
    out = np.full((masks.shape[0], 2), np.nan)
    for t, m in enumerate(masks):
        if m.any():
            out[t] = np.argwhere(m).mean(axis=0)
    return out


@pytest.mark.parametrize("kind", STRESS_SETS)
def test_stress_videos_are_pure_and_start_with_a_visible_target(kind):
    frames = 12 if kind == "long" else None
    a, b = stress_video(kind, 3, num_frames=frames), stress_video(kind, 3, num_frames=frames)
    np.testing.assert_array_equal(a.frames, b.frames)
    np.testing.assert_array_equal(a.masks, b.masks)
    assert a.masks[0, 0].sum() > 100 and (a.masks[0, 0] == a.amodal[0, 0]).all()
    assert not (a.frames == stress_video(kind, 4, num_frames=frames).frames).all()


def test_each_stress_set_has_its_difficulty():
    for i in range(3):
        # occlusion: hidden for >= 8 consecutive frames, visible again at the end
        area = stress_video("occlusion", i).masks[:, 0].sum(axis=(1, 2))
        hidden = np.flatnonzero(area == 0)
        assert len(hidden) >= 8 and np.all(np.diff(hidden) == 1) and area[-1] > 0
        # distractors: two look-alikes (the target's shape and size) that come close to it
        v = stress_video("distractors", i)
        target = v.amodal[:, 0].sum(axis=(1, 2))
        for k in (1, 2):
            dist = np.linalg.norm(_centres(v.amodal[:, k]) - _centres(v.amodal[:, 0]), axis=1)
            meet = int(np.nanargmin(dist))
            assert dist[meet] < 0.1 * v.frames.shape[1]
            assert abs(int(v.amodal[meet, k].sum()) - int(target[meet])) <= 0.1 * target[meet]
        # fast motion: >= 8% of the side per frame on average
        c = _centres(stress_video("fast_motion", i).masks[:, 0])
        assert np.nanmean(np.linalg.norm(np.diff(c, axis=0), axis=1)) >= 0.08 * 128 * 0.8
    # long videos: 500+ frames by default, the target hidden now and then by the bar
    assert DEFAULT_FRAMES["long"] >= 500
    long = stress_video("long", 0)
    assert long.frames.shape[0] == DEFAULT_FRAMES["long"]
    assert (long.masks[:, 0].sum(axis=(1, 2)) < 0.5 * long.amodal[:, 0].sum(axis=(1, 2))).any()


@pytest.mark.slow
def test_eval_memory_writes_its_table(tmp_path, capsys):
    out = tmp_path / "eval"
    cli.main(["eval-memory", "--out", str(out), "--videos", "1", "--frames", "6",
              "--long-frames", "6", "--policies", "reference,sam3",
              "--sets", "occlusion,long"])  # fmt: skip
    result = json.loads((out / "memory_eval.json").read_text())
    assert set(result["sets"]) == {"occlusion", "long"}
    for scores in result["sets"].values():
        assert set(scores) == {"reference", "sam3"}
        for s in scores.values():
            assert 0.0 <= s["J&F"] <= 1.0 and s["frames_per_s"] > 0
    # SAM 3's selection keeps a larger ring (gated frames + the previous one)
    assert result["bank_bytes"]["sam3"] > result["bank_bytes"]["reference"]
    table = (out / "memory_eval.md").read_text()
    assert table in capsys.readouterr().out and table.count("\n") == 4
    assert (out / "memory_eval.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(SystemExit, match="unknown memory policy 'samurei'"):
        cli.main(["eval-memory", "--out", str(tmp_path / "x"), "--policies", "samurei"])
    with pytest.raises(SystemExit, match="--videos must be >= 1"):
        cli.main(["eval-memory", "--out", str(tmp_path / "x"), "--videos", "0"])
