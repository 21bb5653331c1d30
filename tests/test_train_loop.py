"""The training loop's machinery on a small stand-in task (tests/train_standin.py).

- 8 fake CPU devices (conftest), mesh data=4 x fsdp=2: the sharded run equals the
  single-device run, and params / optimizer moments really are split over `fsdp`.
- Resume: a run stopped after a checkpoint (or cut off by `stop_at_step`) and continued
  equals the uninterrupted run.
- A damaged checkpoint is refused with CorruptCheckpointError.
- The CLI killed with SIGKILL mid-run and started again reproduces the uninterrupted run's
  params and loss curve; a 2-process run (jax.distributed on 127.0.0.1, gloo collectives)
  trains, checkpoints and equals it too.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from sam2_jax.train.checkpointing import Checkpointer, CorruptCheckpointError
from sam2_jax.train.config import TrainConfig
from sam2_jax.train.loop import train
from sam2_jax.train.task import remat
from tests.train_standin import STEPS, ArrayBatches, standin_config, standin_task

REPO = pathlib.Path(__file__).resolve().parents[1]
RTOL, ATOL = 1e-5, 1e-6  # float32 reductions in another order (sharded, other processes)

BASE = standin_config()


def run(cfg: TrainConfig, devices=None) -> dict:
    return train(
        cfg,
        task=standin_task(cfg),
        data=ArrayBatches(cfg, seed=cfg.seed),
        devices=devices,
        log=lambda _: None,
    )


def assert_trees_close(a, b, rtol=RTOL, atol=ATOL):
    for (path, x), y in zip(
        jax.tree_util.tree_leaves_with_path(a), jax.tree.leaves(b), strict=True
    ):
        np.testing.assert_allclose(
            np.asarray(x), np.asarray(y), rtol=rtol, atol=atol, err_msg=jax.tree_util.keystr(path)
        )


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    """The uninterrupted reference run, on one device."""
    cfg = dataclasses.replace(BASE, workdir=str(tmp_path_factory.mktemp("single")))
    return cfg, run(cfg, devices=jax.devices()[:1])


def losses(history):
    return [m["loss"] for _, m in history]


def test_single_device_run_learns(single):
    cfg, result = single
    curve = losses(result["history"])
    assert len(curve) == STEPS and curve[-1] < 0.8 * curve[0], curve
    assert int(result["state"].step) == STEPS


@pytest.mark.skipif(jax.device_count() < 8, reason="needs 8 (fake) devices, see conftest")
def test_sharded_run_equals_single_device(single, tmp_path):
    cfg_single, ref = single
    cfg = dataclasses.replace(
        BASE, workdir=str(tmp_path), mesh=dataclasses.replace(BASE.mesh, data=4, fsdp=2)
    )
    out = run(cfg)
    assert_trees_close(out["state"], ref["state"])
    np.testing.assert_allclose(losses(out["history"]), losses(ref["history"]), rtol=RTOL)
    # params and their Adam moments are split over fsdp: each device holds half a kernel
    kernel = out["state"].params["head"]["kernel"]  # (64, 3): the 64 rows split in 2
    assert kernel.sharding.spec[0] == "fsdp" and len(kernel.sharding.device_set) == 8
    assert kernel.addressable_shards[0].data.shape == (32, 3)
    mu = out["state"].opt_state[1].mu["head"]["kernel"]  # the Adam moment
    assert mu.sharding == kernel.sharding
    # small leaves stay replicated
    assert out["state"].params["head"]["bias"].sharding.is_fully_replicated


def test_remat_run_equals_plain(single, tmp_path):
    """The rematerialized loss (TrainConfig.remat) trains exactly as the plain one."""
    _, ref = single
    cfg = dataclasses.replace(BASE, workdir=str(tmp_path))
    task = standin_task(cfg)
    task = dataclasses.replace(task, loss_fn=remat(task.loss_fn))
    out = train(cfg, task=task, data=ArrayBatches(cfg, seed=0), devices=jax.devices()[:1])
    assert_trees_close(out["state"], ref["state"])


def test_step_time_counts_every_step_and_the_data(tmp_path):
    """step_s is the wall time per step over each log window, loading included: with a loader
    that sleeps 100 ms per batch, a 3-step window holds at least 2 of those sleeps (the first
    batch is loaded before the clock starts), so every logged value is >= 2/3 x 100 ms.
    Timing only the logged step's dispatch and sync would count neither the loader nor the
    window's other steps."""
    delay_s = 0.1
    cfg = dataclasses.replace(BASE, workdir=str(tmp_path), steps=6, log_every=3)
    out = train(
        cfg,
        task=standin_task(cfg),
        data=ArrayBatches(cfg, seed=0, delay_s=delay_s),
        devices=jax.devices()[:1],
        log=lambda _: None,
    )
    logged = [m["step_s"] for _, m in out["history"]]
    assert [s for s, _ in out["history"]] == [3, 6]
    assert all(s >= 2 / 3 * delay_s for s in logged), logged


def test_resume_in_process_equals_uninterrupted(single, tmp_path):
    _, ref = single
    cfg = dataclasses.replace(BASE, workdir=str(tmp_path), steps=3)
    first = run(cfg, devices=jax.devices()[:1])
    assert first["resumed_from"] is None
    # The schedule spans `steps`, but its 2 warmup steps do not depend on it: the first two
    # updates equal those of the 8-step run, so resuming at step 2 must reproduce that run.
    for step in Checkpointer(str(tmp_path / "checkpoints"), BASE.checkpoint).manager.all_steps():
        assert step in (2, 3)
    import shutil

    shutil.rmtree(tmp_path / "checkpoints" / "3")
    second = run(dataclasses.replace(cfg, steps=STEPS), devices=jax.devices()[:1])
    assert second["resumed_from"] == 2
    assert_trees_close(second["state"], ref["state"])
    np.testing.assert_allclose(losses(second["history"]), losses(ref["history"])[2:], rtol=RTOL)


def test_stop_at_step_then_rerun_equals_uninterrupted(single, tmp_path):
    """A run cut off with `stop_at_step` checkpoints there, keeps the schedule of `steps`, and
    a rerun without it finishes exactly as the uninterrupted run."""
    _, ref = single
    cfg = dataclasses.replace(BASE, workdir=str(tmp_path), stop_at_step=3)
    first = run(cfg, devices=jax.devices()[:1])
    assert [s for s, _ in first["history"]][-1] == 3
    assert int(first["state"].step) == 3
    steps = Checkpointer(str(tmp_path / "checkpoints"), BASE.checkpoint).manager.all_steps()
    assert max(steps) == 3
    second = run(dataclasses.replace(cfg, stop_at_step=None), devices=jax.devices()[:1])
    assert second["resumed_from"] == 3
    assert_trees_close(second["state"], ref["state"])
    np.testing.assert_allclose(losses(second["history"]), losses(ref["history"])[3:], rtol=RTOL)
    with pytest.raises(ValueError, match="stop_at_step must be >= 1"):
        run(dataclasses.replace(cfg, stop_at_step=0), devices=jax.devices()[:1])


def test_resuming_under_another_recipe_is_refused(tmp_path):
    """A workdir's run resumes only under its recorded recipe; how far it goes may change."""
    cfg = dataclasses.replace(BASE, workdir=str(tmp_path), steps=2)
    run(cfg, devices=jax.devices()[:1])
    changed_lr = dataclasses.replace(cfg, optim=dataclasses.replace(cfg.optim, base_lr=0.5))
    for other, field in ((changed_lr, "optim.base_lr"), (dataclasses.replace(cfg, seed=7), "seed")):
        with pytest.raises(ValueError, match=rf"another config.*{field}: "):
            run(other, devices=jax.devices()[:1])
    assert json.loads((tmp_path / "config.json").read_text())["seed"] == cfg.seed  # unchanged
    longer = run(dataclasses.replace(cfg, steps=3), devices=jax.devices()[:1])
    assert longer["resumed_from"] == 2 and int(longer["state"].step) == 3
    assert json.loads((tmp_path / "config.json").read_text())["steps"] == 3


def test_damaged_checkpoint_is_refused(single, tmp_path):
    import shutil

    cfg, ref = single
    src = pathlib.Path(cfg.workdir) / "checkpoints"
    ckpt_dir = tmp_path / "checkpoints"
    shutil.copytree(src, ckpt_dir)
    manager = Checkpointer(str(ckpt_dir), cfg.checkpoint)
    assert manager.latest_step() == STEPS
    abstract = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), ref["state"]
    )
    state, data_state = manager.restore(STEPS, abstract)  # intact: restores, verified
    assert_trees_close(state, ref["state"], rtol=0, atol=0)
    assert data_state == {"index": STEPS}
    # flip bytes in the middle of every array data file of the newest step
    files = [p for p in (ckpt_dir / str(STEPS) / "state").rglob("*") if p.is_file()]
    data_files = [p for p in files if "/d/" in str(p)] or files
    for path in data_files:
        raw = bytearray(path.read_bytes())
        for i in range(len(raw) // 2, min(len(raw), len(raw) // 2 + 8)):
            raw[i] ^= 0xFF
        path.write_bytes(bytes(raw))
    with pytest.raises(CorruptCheckpointError, match=f"{STEPS}"):
        Checkpointer(str(ckpt_dir), cfg.checkpoint).restore(STEPS, abstract)
    # an earlier step was untouched and still restores
    Checkpointer(str(ckpt_dir), cfg.checkpoint).restore(STEPS - 2, abstract)


# ------------------------------------------------------------------ subprocesses (CLI)


def _config_file(tmp_path: pathlib.Path, delay_s: float) -> pathlib.Path:
    """A config file for the CLI: BASE with a slow loader."""
    path = tmp_path / "standin_config.py"
    path.write_text(
        "import dataclasses, sys\n"
        f"sys.path.insert(0, {str(REPO)!r})\n"
        "from tests.train_standin import standin_config\n"
        "def get_config():\n"
        f"    options = (('delay_s', {delay_s}),)\n"
        "    return dataclasses.replace(standin_config(), data_options=options)\n"
    )
    return path


def _env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}  # one CPU device each
    env.update(extra)
    return env


def _cli(config: pathlib.Path, workdir: pathlib.Path) -> list[str]:
    return [sys.executable, "-m", "sam2_jax.cli", "train", "--config", str(config),
            "--workdir", str(workdir)]  # fmt: skip


def _metrics(workdir: pathlib.Path) -> list[float]:
    lines = (workdir / "metrics.jsonl").read_text().splitlines()
    return [json.loads(line)["loss"] for line in lines]


def _restore_final(workdir: pathlib.Path, like):
    abstract = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), like
    )
    state, _ = Checkpointer(str(workdir / "checkpoints"), BASE.checkpoint).restore(STEPS, abstract)
    return state


def test_sigkill_and_resume_reproduces_the_run(single, tmp_path):
    _, ref = single
    config = _config_file(tmp_path, delay_s=0.4)
    workdir = tmp_path / "run"
    proc = subprocess.Popen(_cli(config, workdir), env=_env(), cwd=REPO, stderr=subprocess.PIPE)
    deadline = time.time() + 300
    while not (workdir / "checkpoints" / "4").is_dir():
        assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
        assert time.time() < deadline, "no checkpoint at step 4"
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    assert not (workdir / "checkpoints" / str(STEPS)).exists(), "killed too late to test resume"
    done = subprocess.run(_cli(config, workdir), env=_env(), cwd=REPO, capture_output=True)
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    assert b"resumed from step" in done.stdout
    np.testing.assert_allclose(_metrics(workdir), losses(ref["history"]), rtol=RTOL)
    assert_trees_close(_restore_final(workdir, ref["state"]), ref["state"])


def test_two_process_run_trains_and_checkpoints(single, tmp_path):
    _, ref = single
    config = _config_file(tmp_path, delay_s=0.0)
    workdir = tmp_path / "run"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = [
        subprocess.Popen(
            _cli(config, workdir),
            env=_env(
                JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}",
                JAX_NUM_PROCESSES="2",
                JAX_PROCESS_ID=str(i),
            ),
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for i in range(2)
    ]
    outs = [p.communicate(timeout=300) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err.decode()[-3000:]
    assert b"mesh {'data': 2, 'fsdp': 1} on 2 cpu" in outs[0][0]
    np.testing.assert_allclose(_metrics(workdir), losses(ref["history"]), rtol=RTOL)
    assert_trees_close(_restore_final(workdir, ref["state"]), ref["state"])
