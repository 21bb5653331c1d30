"""The compiled frame loop: scan == Python loop over the step, one compile per shape, several
videos in one vmapped call == separate calls, and the starts where the reference crashes.

Runs on the sample video and the converted sam2.1_hiera_t of the parity tests, with their
shapes (3 objects, 4 padded points, 2 conditioning slots, chunks of 8), so the compiled scan
is shared with `test_tracking.py`.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sam2_jax.memory.bank import empty_bank
from sam2_jax.memory.step import encode_frame, track_step
from sam2_jax.video.chunks import stream
from sam2_jax.video.loop import StepInputs, propagate, propagate_videos
from sam2_jax.video.offline import ObjectPrompt, frame_prompts, track_video
from tests import tracking_harness as th

NAME = "sam2.1_hiera_t"
B = 3
BIAS = 2.0  # objects present (see test_tracking.py)


def prompts_on(frame: int) -> list[ObjectPrompt]:
    s = th.SIZE
    mask = np.zeros((s, s), bool)
    mask[150:220, 160:230] = True
    return [
        ObjectPrompt(frame, 0, points=np.array([[110.0, 150.0]]), labels=np.array([1])),
        ObjectPrompt(frame, 1, box=np.array([20.0, 30.0, 90.0, 120.0])),
        ObjectPrompt(frame, 2, mask=mask),
    ]


def conditioned_bank(module, variables, frames, first: int):
    """Bank after the prompts of `prompts_on(first)` (as track_video's first phase)."""
    cfg = module.config
    bank = empty_bank(B, cfg.embedding_size**2, cond_capacity=th.COND_CAPACITY)
    fp = frame_prompts(prompts_on(first), B, th.MAX_POINTS, th.SIZE)
    everyone = np.ones((1, B), bool)
    bank, _ = stream(
        module, variables, bank, [first], lambda idx: frames[idx], lambda f: fp, everyone,
        init_cond=everyone, num_frames=th.NUM_FRAMES, chunk_size=th.CHUNK,
    )  # fmt: skip
    return bank


def chunk_inputs(frames, order) -> StepInputs:
    empty = frame_prompts([], B, th.MAX_POINTS, th.SIZE)
    t = len(order)
    stack = jax.tree.map(lambda a: np.stack([a] * t), empty)
    return StepInputs(
        frames=frames[order],
        frame_idx=np.asarray(order, np.int32),
        prompts=stack,
        track=np.ones((t, B), bool),
        init_cond=np.zeros((t, B), bool),
    )


@pytest.mark.slow
def test_scan_equals_python_loop_and_compiles_once(tmp_path_factory):
    video = th.sample_video(tmp_path_factory)
    _, module, variables = th.model_pair(NAME, BIAS)
    bank0 = conditioned_bank(module, variables, video.frames, 0)
    order = list(range(1, 1 + th.CHUNK))
    inputs = chunk_inputs(video.frames, order)
    (bank_scan, _), out_scan = propagate(
        module, variables, bank0, inputs, False, num_frames=th.NUM_FRAMES
    )

    @jax.jit
    @chex.assert_max_traces(n=1)
    def one_step(bank, frame, frame_idx, prompts):
        features = encode_frame(module, variables, frame)
        return track_step(
            module, variables, bank, features, frame_idx, prompts, num_frames=th.NUM_FRAMES
        )

    bank = bank0
    for i, f in enumerate(order):
        prompts = jax.tree.map(lambda a, i=i: a[i], inputs.prompts)
        bank, out = one_step(bank, inputs.frames[i], f, prompts)
        scale = np.abs(out_scan.low_res_masks[i]).max()
        err = np.abs(np.asarray(out.low_res_masks) - np.asarray(out_scan.low_res_masks[i])).max()
        assert err / scale <= 1e-4, (f, err / scale)
        np.testing.assert_allclose(
            out.object_score_logits, out_scan.object_score_logits[i], rtol=1e-4, atol=1e-4
        )
    np.testing.assert_array_equal(bank.recent_frame, bank_scan.recent_frame)
    np.testing.assert_array_equal(bank.ptr_valid, bank_scan.ptr_valid)

    # The streaming driver: 20 frames in chunks of 8 (the last one padded), forward and
    # reverse, all through the one compiled scan.
    before = propagate._cache_size()
    for rev in (False, True):
        stream(
            module, variables, bank0, list(range(1, 21))[:: -1 if rev else 1],
            lambda idx: video.frames[idx], lambda f: jax.tree.map(lambda a: a[0], inputs.prompts),
            np.ones((20, B), bool), num_frames=th.NUM_FRAMES, reverse=rev, chunk_size=th.CHUNK,
        )  # fmt: skip
    assert propagate._cache_size() == before


@pytest.mark.slow
def test_two_videos_in_one_call_equal_separate_calls(tmp_path_factory):
    video = th.sample_video(tmp_path_factory)
    _, module, variables = th.model_pair(NAME, BIAS)
    # Two "videos": the sample, and the sample played backwards from its frame 29.
    videos = [video.frames, video.frames[::-1].copy()]
    banks = [conditioned_bank(module, variables, frames, 0) for frames in videos]
    order = list(range(1, 1 + th.CHUNK))
    inputs = [chunk_inputs(frames, order) for frames in videos]
    separate = [
        propagate(module, variables, bank, x, False, num_frames=th.NUM_FRAMES)
        for bank, x in zip(banks, inputs, strict=True)
    ]
    stacked_banks = jax.tree.map(lambda *a: jnp.stack(a), *banks)
    stacked_inputs = jax.tree.map(lambda *a: np.stack(a), *inputs)
    batched_banks, batched = propagate_videos(
        module, variables, stacked_banks, stacked_inputs, np.array([False, False]),
        num_frames=th.NUM_FRAMES,
    )  # fmt: skip
    for v, ((bank, _), out) in enumerate(separate):
        low, low_v = np.asarray(out.low_res_masks), np.asarray(batched.low_res_masks[v])
        err = np.abs(low - low_v).max() / np.abs(low).max()
        assert err <= 1e-4, (v, err)
        assert ((low > 0) == (low_v > 0)).mean() >= 0.9999
        np.testing.assert_array_equal(bank.ptr_frame, batched_banks.ptr_frame[v])


@pytest.mark.slow
def test_starts_the_reference_cannot_run(tmp_path_factory):
    """Reverse from a frame with nothing tracked after it, and an object whose only
    conditioning frame lies ahead in tracking order (so it has spatial memory but no
    pointer): the reference raises a bfloat16/float32 error in float32; ours tracks."""
    video = th.sample_video(tmp_path_factory)
    _, module, variables = th.model_pair(NAME, BIAS)
    later = prompts_on(12)
    later[1] = ObjectPrompt(6, 1, box=later[1].box)  # object 1 is prompted on frame 6 only
    result = track_video(
        module, variables, video.frames, th.NUM_FRAMES, later, start_frame=12, reverse=True,
        max_points=th.MAX_POINTS, cond_capacity=th.COND_CAPACITY, chunk_size=th.CHUNK,
    )  # fmt: skip
    low = result.low_res_masks
    assert np.isfinite(low).all() and np.isfinite(result.object_score_logits).all()
    expected = np.zeros_like(result.tracked)
    expected[:13] = True
    np.testing.assert_array_equal(result.tracked, expected)
    assert (low[:13] > 0).any(axis=(2, 3)).mean() > 0.5  # objects are found on most frames
