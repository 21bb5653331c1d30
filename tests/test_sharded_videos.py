"""Videos split over a device mesh: `propagate_videos(mesh=...)` on 8 (fake, see conftest) CPU
devices equals the unsharded calls.

Runs the bundled default model (128 px) on clips cut from the bundled shapes clip, 2 objects
clicked on each clip's first frame. 5 videos on 8 devices: the call pads the video axis.
"""

from __future__ import annotations

import jax
import numpy as np
import pytest
from jax.sharding import Mesh

from sam2_jax import build_sam2
from sam2_jax.cli.common import bundled
from sam2_jax.memory.bank import empty_bank
from sam2_jax.video.frames import VideoFrames
from sam2_jax.video.loop import StepInputs, propagate_videos
from sam2_jax.video.offline import ObjectPrompt, frame_prompts

NUM_VIDEOS, NUM_FRAMES, B, MAX_POINTS = 5, 4, 2, 2


def _inputs(frames: np.ndarray, start: int, size: int) -> StepInputs:
    """A clip of NUM_FRAMES frames from `start`, both objects clicked on its first frame."""
    clicks = [(0.3 + 0.1 * start / 24, 0.4), (0.7, 0.6)]  # fractions of the side, per object
    prompted = frame_prompts(
        [ObjectPrompt(0, k, np.array([[x * size, y * size]]), np.array([1])) for k, (x, y) in
         enumerate(clicks)],
        B, MAX_POINTS, None,
    )  # fmt: skip
    empty = frame_prompts([], B, MAX_POINTS, None)
    prompts = jax.tree.map(lambda p, e: np.stack([p] + [e] * (NUM_FRAMES - 1)), prompted, empty)
    return StepInputs(
        frames=frames[start : start + NUM_FRAMES],
        frame_idx=np.arange(NUM_FRAMES, dtype=np.int32),
        prompts=prompts,
        track=np.ones((NUM_FRAMES, B), bool),
        init_cond=np.zeros((NUM_FRAMES, B), bool),
    )


@pytest.mark.skipif(jax.device_count() < 8, reason="needs 8 (fake) devices, see conftest")
def test_videos_sharded_over_a_mesh_equal_one_device():
    model = build_sam2()
    size, cfg = model.config.image_size, model.config
    frames = VideoFrames(bundled("shapes_clip/frames"), size).load(np.arange(24))
    starts = [0, 3, 7, 12, 18][:NUM_VIDEOS]
    inputs = jax.tree.map(lambda *a: np.stack(a), *[_inputs(frames, s, size) for s in starts])
    bank = empty_bank(
        B, cfg.embedding_size**2, mem_dim=cfg.mem_dim, hidden_dim=cfg.d_model, cond_capacity=2
    )
    banks = jax.tree.map(lambda a: np.stack([a] * NUM_VIDEOS), bank)
    reverse = np.zeros(NUM_VIDEOS, bool)
    call = dict(num_frames=NUM_FRAMES)
    mesh = Mesh(np.array(jax.devices()[:8]), ("videos",))
    sharded = propagate_videos(
        model.module, model.variables, banks, inputs, reverse, mesh=mesh, **call
    )
    # the same computation, compiled as another program (per-device shapes, the partitioner),
    # so float32 results differ in the last bits and a bfloat16 memory by up to one unit in
    # its last place; through 4 frames that stays below 1e-4 of the logits' range (worst seen
    # 2.9e-6) and flips no more than 0.1% of the pixels of a frame
    one = propagate_videos(model.module, model.variables, banks, inputs, reverse, **call)
    for a, b in zip(jax.tree.leaves(one), jax.tree.leaves(sharded), strict=True):
        assert a.shape == b.shape and a.dtype == b.dtype
    low, low_one = (np.asarray(r[1].low_res_masks) for r in (sharded, one))
    assert low.shape == (NUM_VIDEOS, NUM_FRAMES, B, *low.shape[3:])
    assert np.abs(low - low_one).max() <= 1e-4 * np.abs(low_one).max()
    assert sharded[1].low_res_masks.sharding.device_set == set(mesh.devices.flat)
    assert ((low > 0) == (low_one > 0)).mean(axis=(3, 4)).min() >= 0.999
    np.testing.assert_array_equal(sharded[0].recent_frame, one[0].recent_frame)
    np.testing.assert_array_equal(sharded[1].active, one[1].active)
    assert (low > 0).any(axis=(3, 4)).mean() > 0.5  # the objects are found
