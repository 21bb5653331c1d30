"""The training loop's machinery on a small stand-in task (tests/train_standin.py).

- 8 fake CPU devices (conftest), mesh data=4 x fsdp=2: the sharded run equals the
  single-device run, and params / optimizer moments really are split over `fsdp`.
- Resume: a run stopped after a checkpoint (or cut off by `stop_at_step`) and continued
  equals the uninterrupted run; a run with nothing left to train is refused up front.
- A damaged checkpoint is refused with CorruptCheckpointError; the CLI says so in one line
  naming the previous step, and `--resume-previous` sets it aside and resumes from there.
- The CLI killed with SIGKILL mid-run and started again reproduces the uninterrupted run's
  params and loss curve, on the stand-in and on the real SAM 2 objective (the smallest
  model, exactly); a 2-process run (jax.distributed on 127.0.0.1, gloo collectives) trains,
  checkpoints and equals it too.
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
from sam2_jax.train.config import ConfigError, TrainConfig
from sam2_jax.train.export import read_run_params
from sam2_jax.train.loop import train
from sam2_jax.train.task import Task, remat
from tests.train_standin import (
    STEPS,
    ArrayBatches,
    damage_checkpoint,
    standin_config,
    standin_task,
)

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
    with pytest.raises(ConfigError, match=r"stop_at_step=0: must be >= 1"):
        run(dataclasses.replace(cfg, stop_at_step=0), devices=jax.devices()[:1])


def test_a_run_recorded_before_a_field_existed_resumes_at_its_default(tmp_path):
    """config.json of an older run lacks fields added since; they count as their defaults
    (how that run behaved), so it resumes, and a non-default value is still refused."""
    cfg = dataclasses.replace(BASE, workdir=str(tmp_path), steps=2)
    run(cfg, devices=jax.devices()[:1])
    record = json.loads((tmp_path / "config.json").read_text())
    del record["optim"]["trainable"]
    (tmp_path / "config.json").write_text(json.dumps(record))
    longer = run(dataclasses.replace(cfg, steps=3), devices=jax.devices()[:1])
    assert longer["resumed_from"] == 2 and int(longer["state"].step) == 3
    (tmp_path / "config.json").write_text(json.dumps(record))
    head_only = dataclasses.replace(cfg.optim, trainable=("head/*",))
    frozen = dataclasses.replace(cfg, steps=4, optim=head_only)
    with pytest.raises(ValueError, match=r"optim.trainable: \['\*'\] -> \['head/\*'\]"):
        run(frozen, devices=jax.devices()[:1])


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
    # nothing left to train: refused before the task is built
    for short, message in (
        (dict(steps=3), "steps=3"),
        (dict(steps=5, stop_at_step=2), "stop_at_step=2"),
    ):
        with pytest.raises(ConfigError, match=rf"^{message}: the run in .* is already at step 3"):
            train(dataclasses.replace(cfg, **short), task=None, data=iter(()), log=print)


def _abstract(state):
    return jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state
    )


def test_damaged_checkpoint_is_refused(single, tmp_path):
    import shutil

    cfg, ref = single
    src = pathlib.Path(cfg.workdir) / "checkpoints"
    ckpt_dir = tmp_path / "checkpoints"
    shutil.copytree(src, ckpt_dir)
    manager = Checkpointer(str(ckpt_dir), cfg.checkpoint)
    assert manager.latest_step() == STEPS
    abstract = _abstract(ref["state"])
    state, data_state = manager.restore(STEPS, abstract)  # intact: restores, verified
    assert_trees_close(state, ref["state"], rtol=0, atol=0)
    assert data_state == {"index": STEPS}
    damage_checkpoint(ckpt_dir / str(STEPS))
    with pytest.raises(CorruptCheckpointError, match=f"step {STEPS} in {ckpt_dir} is unreadable"):
        Checkpointer(str(ckpt_dir), cfg.checkpoint).restore(STEPS, abstract)
    # an earlier step was untouched and still restores
    Checkpointer(str(ckpt_dir), cfg.checkpoint).restore(STEPS - 2, abstract)


def test_restore_newest_names_or_falls_back_to_the_previous_step(single, tmp_path):
    """The newest step unreadable: refused naming the step before it; with fall_back it is
    moved to checkpoints_unreadable/ and that one restores. None readable: refused, and
    nothing is moved."""
    import shutil

    cfg, ref = single
    ckpt_dir = tmp_path / "checkpoints"
    shutil.copytree(pathlib.Path(cfg.workdir) / "checkpoints", ckpt_dir)
    kept = sorted(int(p.name) for p in ckpt_dir.iterdir())  # keep=3: steps 4, 6, 8
    newest, previous = kept[-1], kept[-2]
    damage_checkpoint(ckpt_dir / str(newest))
    manager = Checkpointer(str(ckpt_dir), cfg.checkpoint)
    abstract = _abstract(ref["state"])
    with pytest.raises(CorruptCheckpointError) as caught:
        manager.restore_newest(abstract)
    message = str(caught.value)
    assert message.startswith(f"checkpoint step {newest} in {ckpt_dir} is unreadable (")
    assert message.endswith(f"rerun with --resume-previous to resume from the previous one "
                            f"(step {previous})") and "\n" not in message  # fmt: skip
    lines = []
    step, _, data_state = manager.restore_newest(abstract, fall_back=True, log=lines.append)
    assert (step, data_state) == (previous, {"index": previous})
    assert (tmp_path / "checkpoints_unreadable" / str(newest) / "state").is_dir()
    assert manager.all_steps() == kept[:-1] and lines[0].startswith("warning: checkpoint step")

    for step in kept[:-1]:
        damage_checkpoint(ckpt_dir / str(step))
    with pytest.raises(CorruptCheckpointError, match=r"no checkpoint in .* is readable"):
        manager.restore_newest(abstract, fall_back=True, log=lines.append)
    assert Checkpointer(str(ckpt_dir), cfg.checkpoint).all_steps() == kept[:-1]


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


def _cli(config: pathlib.Path | str, workdir: pathlib.Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "sam2_jax.cli", "train", "--config", str(config),
            "--workdir", str(workdir), *extra]  # fmt: skip


# Every training subprocess has a deadline, after which it is killed and the test fails.
DEADLINE_S = 600


def _finish(command: list[str]) -> subprocess.CompletedProcess:
    """Runs a training command to its end; it must succeed."""
    done = subprocess.run(command, env=_env(), cwd=REPO, capture_output=True, timeout=DEADLINE_S)
    assert done.returncode == 0, done.stderr.decode()[-3000:]
    return done


def _kill_after_checkpoint(command: list[str], workdir: pathlib.Path, step: int, last: int):
    """Starts a training command and SIGKILLs it as soon as checkpoint `step` is on disk,
    before it saved step `last` (else the test could not test resuming). Its stderr goes to a
    file: a pipe nobody reads while it runs could fill and stop it."""
    log = workdir.with_name(workdir.name + "_killed.stderr")
    with open(log, "wb") as stderr:
        proc = subprocess.Popen(command, env=_env(), cwd=REPO, stderr=stderr)
    try:
        deadline = time.time() + DEADLINE_S
        while not (workdir / "checkpoints" / str(step)).is_dir():
            assert proc.poll() is None, log.read_text()[-3000:]
            assert time.time() < deadline, f"no checkpoint at step {step}"
            time.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert not (workdir / "checkpoints" / str(last)).exists(), "killed too late to test resume"


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
    _kill_after_checkpoint(_cli(config, workdir), workdir, step=4, last=STEPS)
    done = _finish(_cli(config, workdir))
    assert b"resumed from step" in done.stdout
    np.testing.assert_allclose(_metrics(workdir), losses(ref["history"]), rtol=RTOL)
    assert_trees_close(_restore_final(workdir, ref["state"]), ref["state"])


# The real SAM 2 objective, as small as it gets: the default model's image phase
# (configs/train/default_model.py: single frames of synthetic shapes, a click or a box plus a
# correction click per object) on sam2.1_hiera_nano from random weights at 64 px.
REAL_STEPS = 8
REAL_RUN = (
    "image_size=64",
    "batch_size=2",
    f"steps={REAL_STEPS}",
    "init_checkpoint=None",
    "data_options=(('video_frames', 1), ('num_workers', 0), ('num_threads', 0))",
    "optim.warmup_steps=2",
    "log_every=1",
    "checkpoint.every_steps=2",
    "checkpoint.keep=3",
)


@pytest.mark.slow
def test_sigkill_and_resume_reproduces_a_real_sam2_run(tmp_path):
    """Killed with SIGKILL after its step-2 checkpoint (a later save may be cut short) and
    rerun, the real objective's run ends with exactly the params and losses of the
    uninterrupted run: the same program on the same device, so the same bits."""
    command = lambda workdir: _cli("default_model:image", workdir, *REAL_RUN)
    uninterrupted, workdir = tmp_path / "uninterrupted", tmp_path / "killed"
    _finish(command(uninterrupted))  # compiles the step into the cache the others read
    _kill_after_checkpoint(command(workdir), workdir, step=2, last=REAL_STEPS)
    done = _finish(command(workdir))
    assert b"resumed from step" in done.stdout
    assert _metrics(workdir) == _metrics(uninterrupted) and len(_metrics(workdir)) == REAL_STEPS
    (step, params), (ref_step, ref_params) = map(read_run_params, (workdir, uninterrupted))
    assert step == ref_step == REAL_STEPS
    for (path, a), b in zip(
        jax.tree_util.tree_leaves_with_path(params), jax.tree.leaves(ref_params), strict=True
    ):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b), jax.tree_util.keystr(path))


def test_unreadable_checkpoint_is_one_line_and_resume_previous_continues(single, tmp_path):
    """The CLI on a run whose newest checkpoint is damaged: one line on stderr naming it and
    the step before it, exit status 1; with --resume-previous it trains on from that step
    and ends as the uninterrupted run."""
    _, ref = single
    config = _config_file(tmp_path, delay_s=0.0)
    workdir = tmp_path / "run"
    _finish(_cli(config, workdir, "steps=4"))  # checkpoints 2 and 4 (warmup: as the 8-step run)
    damage_checkpoint(workdir / "checkpoints" / "4")
    refused = subprocess.run(
        _cli(config, workdir), env=_env(), cwd=REPO, capture_output=True, timeout=DEADLINE_S
    )
    assert refused.returncode == 1
    lines = refused.stderr.decode().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith(
        f"sam2-jax train: error: checkpoint step 4 in {workdir / 'checkpoints'} is unreadable ("
    )
    assert lines[0].endswith(
        "rerun with --resume-previous to resume from the previous one (step 2)"
    )
    done = _finish(_cli(config, workdir, "--resume-previous"))
    out = done.stdout.decode()
    assert f"moved the unreadable checkpoint step 4 to {workdir}/checkpoints_unreadable/4" in out
    assert "resumed from step 2" in out and "Traceback" not in done.stderr.decode()
    np.testing.assert_allclose(_metrics(workdir), losses(ref["history"]), rtol=RTOL)
    assert_trees_close(_restore_final(workdir, ref["state"]), ref["state"])


def test_two_process_run_trains_and_checkpoints(single, tmp_path):
    _, ref = single
    config = _config_file(tmp_path, delay_s=0.0)
    workdir = tmp_path / "run"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    # Outputs to files: with pipes, one process could block on a full pipe that is read
    # only after the other ends, while the other waits for it in a collective.
    logs = [(tmp_path / f"process_{i}.stdout", tmp_path / f"process_{i}.stderr") for i in (0, 1)]
    procs = []
    for i, (out, err) in enumerate(logs):
        with open(out, "wb") as stdout, open(err, "wb") as stderr:
            env = _env(
                JAX_COORDINATOR_ADDRESS=f"127.0.0.1:{port}",
                JAX_NUM_PROCESSES="2",
                JAX_PROCESS_ID=str(i),
            )
            procs.append(
                subprocess.Popen(
                    _cli(config, workdir), env=env, cwd=REPO, stdout=stdout, stderr=stderr
                )
            )
    try:
        deadline = time.time() + DEADLINE_S
        for p in procs:
            p.wait(timeout=max(deadline - time.time(), 1))
    finally:
        for p in procs:
            p.kill()
            p.wait()
    for p, (_, err) in zip(procs, logs, strict=True):
        assert p.returncode == 0, err.read_text()[-3000:]
    assert "mesh {'data': 2, 'fsdp': 1} on 2 cpu" in logs[0][0].read_text()
    np.testing.assert_allclose(_metrics(workdir), losses(ref["history"]), rtol=RTOL)
    assert_trees_close(_restore_final(workdir, ref["state"]), ref["state"])


def test_frozen_params_stay_and_the_rest_trains_as_if_they_were_constants(single, tmp_path):
    """`optim.trainable` freezes every other param: it keeps its initial value exactly (no
    weight decay either), and the trained ones follow the run of a task that holds the frozen
    params as constants (so the gradient clipping sees only the trained gradients)."""
    head_only = dataclasses.replace(BASE.optim, trainable=("head/*",))
    cfg = dataclasses.replace(BASE, workdir=str(tmp_path / "frozen"), optim=head_only)
    task = standin_task(cfg)
    out = train(cfg, task=task, data=ArrayBatches(cfg, seed=0), devices=jax.devices()[:1])
    params = out["state"].params
    encoder = task.params["image_encoder"]
    kept = jax.tree.leaves(params["image_encoder"])
    for got, start in zip(kept, jax.tree.leaves(encoder), strict=True):
        np.testing.assert_array_equal(np.asarray(got), start)
    assert not np.allclose(np.asarray(params["head"]["kernel"]), task.params["head"]["kernel"])

    def head_only_loss(head, batch, key):
        return task.loss_fn({"image_encoder": encoder, **head}, batch, key)

    constants = Task(params={"head": task.params["head"]}, loss_fn=head_only_loss)
    plain = dataclasses.replace(BASE, workdir=str(tmp_path / "constants"))
    ref = train(plain, task=constants, data=ArrayBatches(plain, seed=0), devices=jax.devices()[:1])
    assert_trees_close(params["head"], ref["state"].params["head"], rtol=0, atol=0)
    np.testing.assert_array_equal(losses(out["history"]), losses(ref["history"]))
