"""The bundled default model: what loads without arguments, and how the CLIs choose weights."""

import argparse
import json

import jax
import numpy as np
import pytest

from sam2_jax import build_sam2, build_sam2_video_predictor
from sam2_jax.build import DEFAULT_MODEL_DIR
from sam2_jax.cli.common import add_model_arguments, choose_model


def _args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_model_arguments(parser)
    return parser.parse_args(list(argv))


def test_default_model_is_small_float16_and_has_a_model_card():
    size = sum(p.stat().st_size for p in DEFAULT_MODEL_DIR.rglob("*") if p.is_file())
    assert size <= 10 * 2**20, f"the default model takes {size / 2**20:.1f} MiB (limit 10)"
    meta = json.loads((DEFAULT_MODEL_DIR / "config.json").read_text())
    assert meta["name"] == "sam2.1_hiera_nano" and "float16" in meta["source"]
    card = (DEFAULT_MODEL_DIR / "MODEL_CARD.md").read_text()
    assert "sam2-jax train --config default_model:" in card and "eval-synthetic" in card


def test_builders_without_arguments_load_the_default_model():
    model = build_sam2()
    assert not model.random_weights and model.checkpoint == str(DEFAULT_MODEL_DIR)
    assert model.config.name == "sam2.1_hiera_nano" and model.config.image_size == 128
    leaves = [np.asarray(x) for x in jax.tree.leaves(model.params)]
    assert all(x.dtype == np.float32 for x in leaves)  # stored float16, computed float32
    predictor = build_sam2_video_predictor()
    assert predictor.model.checkpoint == str(DEFAULT_MODEL_DIR)
    assert build_sam2("sam2.1_hiera_nano").random_weights  # a name alone: random init


def test_the_default_model_tracks_with_the_memory_policy_it_names(tmp_path):
    """The bundled config.json names DAM4SAM's memory (model card: "Memory policy"); the
    predictors use it unless given another, and a checkpoint naming none gets SAM 2's rule."""
    import shutil

    from sam2_jax.convert.checkpoint_io import CheckpointFormatError
    from sam2_jax.memory.policies import Dam4SamPolicy
    from sam2_jax.memory.policy import ReferencePolicy
    from sam2_jax.video.stream import StreamTracker

    model = build_sam2()
    assert model.memory_policy == "dam4sam"
    assert isinstance(build_sam2_video_predictor(progress=False).memory_policy, Dam4SamPolicy)
    assert isinstance(StreamTracker(model, (64, 64)).memory_policy, Dam4SamPolicy)
    chosen = build_sam2_video_predictor(memory_policy="reference", progress=False)
    assert isinstance(chosen.memory_policy, ReferencePolicy)
    assert build_sam2("sam2.1_hiera_nano").memory_policy is None  # random weights

    copy = shutil.copytree(DEFAULT_MODEL_DIR, tmp_path / "model")
    meta = json.loads((copy / "config.json").read_text())
    del meta["memory_policy"]
    (copy / "config.json").write_text(json.dumps(meta))
    assert build_sam2(checkpoint=copy).memory_policy is None
    plain = build_sam2_video_predictor(None, copy, progress=False)
    assert isinstance(plain.memory_policy, ReferencePolicy)
    for value, error in (("dam5sam", "unknown memory policy 'dam5sam'"),
                         (["dam4sam"], "memory_policy must be a policy name")):  # fmt: skip
        (copy / "config.json").write_text(json.dumps({**meta, "memory_policy": value}))
        with pytest.raises(CheckpointFormatError, match=error):
            build_sam2(checkpoint=copy)


def test_cli_weights_are_the_default_unless_asked_otherwise(capsys):
    assert choose_model(_args()) == (None, str(DEFAULT_MODEL_DIR))
    assert choose_model(_args("--config", "sam2.1_hiera_nano"))[1] == str(DEFAULT_MODEL_DIR)
    assert capsys.readouterr().err == ""  # no warning: trained weights
    assert choose_model(_args("--random-weights")) == ("sam2.1_hiera_t", None)
    assert "RANDOM" in capsys.readouterr().err
    assert choose_model(_args("--checkpoint", "x.pt")) == (None, "x.pt")
    with pytest.raises(ValueError, match="no weights for it without --checkpoint.*--random"):
        choose_model(_args("--config", "sam2.1_hiera_t"))
    with pytest.raises(ValueError, match="not both"):
        choose_model(_args("--checkpoint", "x.pt", "--random-weights"))
    with pytest.raises(ValueError, match="unknown model config 'sam9'"):
        choose_model(_args("--config", "sam9"))


def test_init_state_takes_the_reference_memory_options():
    from sam2_jax.cli.common import bundled

    predictor = build_sam2_video_predictor(progress=False)
    state = predictor.init_state(
        bundled("shapes_clip/frames"),
        offload_video_to_cpu=True,
        offload_state_to_cpu=True,
        async_loading_frames=True,
    )
    assert state.num_frames == 24


def test_bfloat16_compute_tracks_like_float32():
    """`compute_dtype="bfloat16"` runs the whole session (the step's branches agree in dtype,
    outputs stay float32) and tracks the bundled clip's objects as float32 does: bfloat16
    rounds every product's operands (8 bits of mantissa), so masks may differ along edges;
    at least 99% of each frame's pixels agree (worst frame seen at 128 px: 99.81%)."""
    from sam2_jax.cli.common import bundled

    prompts = json.loads(open(bundled("shapes_clip/prompts.json")).read())["objects"]
    masks = {}
    for dtype in ("float32", "bfloat16"):
        predictor = build_sam2_video_predictor(compute_dtype=dtype, progress=False)
        state = predictor.init_state(bundled("shapes_clip/frames"))
        for obj in prompts:
            first = obj["prompts"][0]
            predictor.add_new_points_or_box(
                state, first["frame"], obj["id"], points=first["points"], labels=first["labels"]
            )
        masks[dtype] = {f: np.asarray(m) > 0 for f, _, m in predictor.propagate_in_video(state)}
        logits = next(iter(predictor.propagate_in_video(state)))[2]
        assert np.asarray(logits).dtype == np.float32, dtype
    assert masks["float32"].keys() == masks["bfloat16"].keys()
    agreement = [(masks["float32"][f] == masks["bfloat16"][f]).mean() for f in masks["float32"]]
    assert min(agreement) >= 0.99, agreement
    assert any(m.any() for m in masks["bfloat16"].values())  # it tracks something


def test_bfloat16_compute_segments_images_like_float32():
    """The image predictor with `compute_dtype="bfloat16"`: float32 outputs, and the masks of
    a click on the bundled clip's first frame agree with float32's on >= 99% of the pixels (worst
    of the three seen at 128 px: 99.988%)."""
    from PIL import Image

    from sam2_jax import SAM2ImagePredictor
    from sam2_jax.cli.common import bundled

    image = np.asarray(Image.open(bundled("shapes_clip/frames/00000.jpg")).convert("RGB"))
    out = {}
    for dtype in ("float32", "bfloat16"):
        predictor = SAM2ImagePredictor(build_sam2(compute_dtype=dtype))
        predictor.set_image(image)
        out[dtype] = predictor.predict(point_coords=np.array([[55.0, 96.0]]), point_labels=[1])
        assert out[dtype][1].dtype == out[dtype][2].dtype == np.float32, dtype
    for a, b in zip(out["float32"][0], out["bfloat16"][0], strict=True):
        assert a.any() and (a == b).mean() >= 0.99


def test_bar_clips_hide_the_disk_fully_for_a_few_frames():
    """The occlusion check's clips: the disk is whole in view on frame 0, fully behind the bar
    on 2-6 frames (never visible through it) and out again for at least 5 frames."""
    from sam2_jax.evaluation.occlusion_clips import BarClip, bar_clip, bar_clips

    for clip in bar_clips():
        empty = ~clip.masks.any(axis=(1, 2))
        assert 2 <= empty.sum() <= 6 and not empty[0] and len(clip.frames_after()) >= 5
        area = clip.masks[clip.frames_after()].sum(axis=(1, 2))  # whole: the frame-0 area up
        np.testing.assert_allclose(area, clip.masks[0].sum(), rtol=0.03)  # to rasterization
    clip = bar_clip(96, 160, hidden_frames=3, vertical=True)
    assert isinstance(clip, BarClip) and clip.frames.shape == (30, 96, 160, 3)
    with pytest.raises(ValueError, match="hidden_frames >= 1"):
        bar_clip(96, 160, hidden_frames=0)


def test_default_model_finds_the_disk_again_after_a_bar_no_worse_than_committed():
    """The commit rule's occlusion check (`occlusion_clips.py`), tracked from one click with
    the default predictor: J over the frames after the disk has come out from behind the bar.
    The committed (session 13) model, with the DAM4SAM memory its config names, finds it again
    in 8 of the 8 clips (J 0.91-0.96, and 0.57 in the fifth, near the threshold: the test holds
    7); with SAM 2's rule in 1 (J 0.96 there, 0.00 in the others: it keeps predicting the disk
    absent; likely because the frames where it is hidden fill SAM 2's recent memory, which
    DAM4SAM's skips). A new default model must find it in at least as many clips with the
    policy it ships with (model card, "Memory policy")."""
    from sam2_jax.evaluation.occlusion_clips import bar_clips, j_after_occlusion

    predictor = build_sam2_video_predictor(progress=False)
    scores = np.array([j_after_occlusion(predictor, clip) for clip in bar_clips()])
    assert (scores > 0.5).sum() >= 7 and scores.max() > 0.9, np.round(scores, 2)
    predictor = build_sam2_video_predictor(memory_policy="reference", progress=False)
    scores = np.array([j_after_occlusion(predictor, clip) for clip in bar_clips()])
    assert 1 <= (scores > 0.5).sum() < 7, np.round(scores, 2)  # what the policy changes
