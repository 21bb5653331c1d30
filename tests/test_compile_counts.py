"""A session compiles a bounded set of programs (`sam2_jax.buckets`): nothing depends on the
video length, and click counts are padded, so a second video of another length with other
click counts compiles nothing new.

Compiles are observed through jax.monitoring's backend-compile event; the issue's bar is no
new program over 0.5 s, and the predictor's jitted functions must not gain a cache entry.
"""

from __future__ import annotations

import contextlib
import pathlib
import shutil

import jax
import numpy as np
import pytest

from sam2_jax import build_sam2_video_predictor
from sam2_jax.cli.common import bundled
from sam2_jax.video import loop as propagation
from sam2_jax.video import predictor as video_predictor

COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"


@contextlib.contextmanager
def compiles():
    """Collects the duration (s) of every backend compile inside the block."""
    seen: list[float] = []

    def listener(event: str, duration: float, **_) -> None:
        if event == COMPILE_EVENT:
            seen.append(duration)

    jax.monitoring.register_event_duration_secs_listener(listener)
    try:
        yield seen
    finally:
        jax.monitoring.unregister_event_duration_listener(listener)


def _video(folder, num_frames: int) -> str:
    """A JPEG folder of `num_frames` frames: the bundled shapes clip, looped."""
    source = sorted(pathlib.Path(bundled("shapes_clip/frames")).glob("*.jpg"))
    folder.mkdir()
    for i in range(num_frames):
        shutil.copy(source[i % len(source)], folder / f"{i:05d}.jpg")
    return str(folder)


def _cache_sizes() -> dict[str, int]:
    jitted = {
        "propagate": propagation.propagate,
        "decode_prompted": video_predictor._decode_prompted,
        "frame_features": video_predictor._frame_features,
        "encode_memory": video_predictor._encode_memory,
    }
    return {name: fn._cache_size() for name, fn in jitted.items()}


def _session(predictor, path: str, clicks: int, refine_frame: int) -> int:
    """One object: `clicks` clicks on frame 0, propagate, one more click on `refine_frame`
    (a tracked frame: its logits feed the prompt encoder), propagate again."""
    state = predictor.init_state(path)
    points = np.array([[40.0 + 8 * i, 60.0] for i in range(clicks)], np.float32)  # 128x128
    predictor.add_new_points_or_box(state, 0, 1, points=points, labels=np.ones(clicks))
    frames = sum(1 for _ in predictor.propagate_in_video(state))
    predictor.add_new_points_or_box(state, refine_frame, 1, points=points[:1], labels=[0])
    frames += sum(1 for _ in predictor.propagate_in_video(state))
    return frames


@pytest.mark.slow
def test_a_second_video_of_another_length_compiles_nothing(tmp_path):
    predictor = build_sam2_video_predictor(progress=False)
    assert _session(predictor, _video(tmp_path / "a", 30), clicks=1, refine_frame=7) == 60
    before = _cache_sizes()
    assert all(n > 0 for n in before.values())  # the session's programs are cached
    with compiles() as seen:
        got = _session(predictor, _video(tmp_path / "b", 45), clicks=5, refine_frame=31)
    assert got == 90
    assert _cache_sizes() == before
    assert max(seen, default=0.0) < 0.5, sorted(seen)[-5:]


def test_image_predictor_click_counts_share_one_program():
    """1, then 5, then 16 clicks (one bucket) compile nothing after the first predict, and
    the padded decode equals the unpadded one (its padding tokens are masked out; 1e-4 on
    logits: the softmax sums run over 17 instead of n + 1 tokens, in another order)."""
    from PIL import Image

    from sam2_jax import SAM2ImagePredictor, build_sam2
    from sam2_jax.image import predictor as image_predictor

    frame = sorted(pathlib.Path(bundled("shapes_clip/frames")).glob("*.jpg"))[0]
    predictor = SAM2ImagePredictor(build_sam2())
    predictor.set_image(np.asarray(Image.open(frame).convert("RGB")))
    clicks = np.array([[20.0 + 6 * i, 30.0 + 5 * (i % 3)] for i in range(16)], np.float32)
    labels = (np.arange(16) % 2 == 0).astype(np.int32)
    predictor.predict(point_coords=clicks[:1], point_labels=labels[:1], multimask_output=False)
    before = image_predictor._decode._cache_size()
    with compiles() as seen:
        for n in (5, 16):
            predictor.predict(
                point_coords=clicks[:n], point_labels=labels[:n], multimask_output=False
            )
    assert image_predictor._decode._cache_size() == before
    assert max(seen, default=0.0) < 0.5, sorted(seen)[-5:]

    _, _, padded = predictor.predict(point_coords=clicks[:5], point_labels=labels[:5])
    coords, point_labels, _ = predictor._prep_prompts(clicks[:5], labels[:5], None, None, True, 0)
    feats = predictor._features
    unpadded, _ = image_predictor._decode(
        predictor.model.module, predictor.model.variables, feats["image_embed"][:1],
        tuple(f[:1] for f in feats["high_res_feats"]), coords, point_labels, None, True,
    )  # fmt: skip
    np.testing.assert_allclose(padded, np.clip(np.asarray(unpadded)[0], -32, 32), atol=1e-4)
