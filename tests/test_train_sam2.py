"""The SAM 2 objective itself through the trainer (configs/train/smoke.py, CI-sized).

The loop's machinery is tested on a stand-in in test_train_loop.py; here the real thing runs:
`sam2.1_hiera_mini` from random weights on synthetic moving shapes, with the simulated
interaction and the multi-step loss, on one CPU device (sharding over a mesh is tested on the
stand-in: the SAM 2 step sharded two ways took ~4x longer to compile, too long for CI). The
loss must fall, also after the first step (whose random-init logits give a huge loss), and
the run must leave its metrics and a checkpoint that exports to a loadable model.
"""

from __future__ import annotations

import dataclasses
import json

import jax
import numpy as np
import pytest

from sam2_jax.train.config import MeshConfig, load_config
from sam2_jax.train.loop import train

# XLA has crashed writing compiled train steps to the disk cache (see conftest).
pytestmark = pytest.mark.usefixtures("no_compilation_cache_writes")


def test_smoke_config_trains_sam2(tmp_path):
    cfg = load_config("smoke")
    cfg = dataclasses.replace(cfg, workdir=str(tmp_path), mesh=MeshConfig(data=1), log_every=1)
    out = train(cfg, devices=jax.devices()[:1], log=print)

    curve = [m["loss"] for _, m in out["history"]]
    assert len(curve) == cfg.steps and np.isfinite(curve).all(), curve
    first, last = np.mean(curve[:3]), np.mean(curve[-3:])
    print(f"SAM 2 smoke loss: first 3 steps {first:.3f}, last 3 {last:.3f}; curve {curve}")
    assert last < 0.5 * first, curve
    early = np.mean(curve[1:4])  # steps 2-4, after the first update
    assert last < 0.85 * early, curve
    # every loss term is reported and finite
    for name in ("loss_mask", "loss_dice", "loss_iou", "loss_class"):
        assert np.isfinite(out["history"][-1][1][name]), name

    # the JSONL metrics and the final checkpoint are on disk
    records = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    assert [r["step"] for r in records] == list(range(1, cfg.steps + 1))
    steps = sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir() if p.name.isdigit())
    assert steps[-1] == cfg.steps

    # `sam2-jax train-export`: the run's params as a float16 converted model that loads
    # strictly and equals the trained params to float16 precision
    from sam2_jax.build import build_sam2
    from sam2_jax.train.export import export_run

    exported = export_run(
        str(tmp_path), str(tmp_path / "model"), cfg.model, cfg.image_size, dtype="float16"
    )
    model = build_sam2(None, exported)
    assert model.config.name == cfg.model and not model.random_weights
    trained = jax.tree.leaves(jax.device_get(out["state"].params))
    for a, b in zip(jax.tree.leaves(model.params), trained, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)


def test_bfloat16_compute_runs_the_clip_objective(tmp_path):
    """bfloat16 activations (the trainer's default `compute_dtype`) through the whole clip
    objective: the decoder's and the mask-prompt branch's outputs, and the frame with and
    without memory, must agree in dtype for the step's conds; params stay float32."""
    cfg = dataclasses.replace(
        load_config("default_model:video"),
        image_size=64,
        batch_size=1,
        steps=2,
        compute_dtype="bfloat16",
        init_checkpoint=None,
        data_options=(("video_frames", 4), ("num_workers", 0), ("num_threads", 0)),
        workdir=str(tmp_path),
        mesh=MeshConfig(data=1),
        log_every=1,
    )
    out = train(cfg, devices=jax.devices()[:1], log=print)
    curve = [m["loss"] for _, m in out["history"]]
    assert len(curve) == 2 and np.isfinite(curve).all(), curve
    dtypes = {x.dtype for x in jax.tree.leaves(out["state"].params)}
    assert dtypes == {np.dtype(np.float32)}, dtypes
