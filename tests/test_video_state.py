"""The session's tracked-frame store: outputs read back are the bytes written, records are
reused, and memory holds only a small index entry per frame and object."""

from __future__ import annotations

import tracemalloc

import jax.numpy as jnp
import numpy as np
import pytest

from sam2_jax.video.scratch_file import ScratchFile
from sam2_jax.video.state import FrameOutput, SpilledOutputs


def _output(rng: np.random.Generator, side: int = 64, c: int = 256, hw: int = 256, m: int = 64):
    return FrameOutput(
        rng.standard_normal((side, side)).astype(np.float32),
        float(rng.standard_normal()),
        rng.standard_normal(c).astype(np.float32),
        rng.standard_normal((hw, m)).astype(jnp.bfloat16),
    )


def test_outputs_read_back_exactly_and_records_are_reused():
    rng = np.random.default_rng(0)
    scratch = ScratchFile()
    store = SpilledOutputs(scratch)
    written = {f: _output(rng) for f in range(10)}
    for f, out in written.items():
        store[f] = out
    store[3] = written[3] = _output(rng)  # a re-tracked frame overwrites its record
    del store[4]
    del written[4]
    store[12] = written[12] = _output(rng)  # takes frame 4's freed record
    assert scratch.disk_bytes == 10 * (64 * 64 * 4 + 256 * 4 + 256 * 64 * 2)
    assert sorted(store) == sorted(written) and 4 not in store
    for f, out in written.items():
        got = store[f]
        assert got.score == out.score
        for name in ("low_res", "obj_ptr", "memory"):
            a, b = getattr(got, name), getattr(out, name)
            assert a.dtype == b.dtype and a.shape == b.shape
            assert a.tobytes() == b.tobytes()
    assert store.get(99) is None and store.pop(12).score == written[12].score


def test_memory_per_tracked_frame_is_an_index_entry():
    """README: about 0.2 KB per frame and object in memory (the 50 KB of arrays on disk)."""
    rng = np.random.default_rng(0)
    out = _output(rng)
    store = SpilledOutputs(ScratchFile())
    store[0] = out
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for f in range(1, 2001):
        store[f] = FrameOutput(out.low_res, float(f), out.obj_ptr, out.memory)
    per_frame = (tracemalloc.get_traced_memory()[0] - before) / 2000
    tracemalloc.stop()
    assert per_frame < 256, per_frame


def test_a_tracked_output_needs_its_memory():
    store = SpilledOutputs(ScratchFile())
    out = _output(np.random.default_rng(0))
    with pytest.raises(ValueError, match="frame 5: a tracked frame's output needs its memory"):
        store[5] = FrameOutput(out.low_res, out.score, out.obj_ptr, None)
