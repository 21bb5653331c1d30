"""The training loop: sharded jitted step, periodic Orbax checkpoints, resume, metrics.

Phases of `train(cfg)`:
1. devices: `jax.distributed` (when launched on several processes) and the (data, fsdp) mesh;
2. task: initial params and the loss (`TrainConfig.task`), the optimizer;
3. state: `TrainState` placed with its shardings, or restored from the newest checkpoint
   (params, optimizer state, step, RNG and the data iterator's position; an unreadable one
   stops the run, or with `resume_previous` is set aside for the newest readable one);
4. the step: `jax.jit(train_step, in_shardings, out_shardings, donate_argnums=0)`, compiled
   ahead of time so its memory use is reported;
5. the loop: one batch per step, metrics to `<workdir>/metrics.jsonl` (and TensorBoard when
   installed), a checkpoint every `checkpoint.every_steps` and at the end.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from sam2_jax.train import sharding as shd
from sam2_jax.train.checkpointing import Checkpointer
from sam2_jax.train.config import ConfigError, TrainConfig, check_resume, to_dict, validate
from sam2_jax.train.optim import frozen_tree, make_optimizer
from sam2_jax.train.task import LossFn, Task, import_function


@flax.struct.dataclass
class TrainState:
    step: jax.Array  # () int32: updates done
    params: Any
    opt_state: Any
    rng: jax.Array  # (2,) uint32 base key; step k uses fold_in(rng, k)


def make_train_step(
    loss_fn: LossFn,
    tx: optax.GradientTransformation,
    lr_shape: Callable,
    frozen: Any = None,
):
    """(state, batch) -> (new state, metrics); pure, for jax.jit.

    `frozen`: a tree of bools like the params (`optim.frozen_tree`); the gradient of every
    True leaf is stopped before the loss, so its backward is never built (its gradient is 0).
    """

    if frozen is not None and not any(jax.tree.leaves(frozen)):
        frozen = None  # nothing frozen: the plain step

    def frozen_loss(params: Any, batch: dict, key: jax.Array):
        params = jax.tree.map(lambda p, f: jax.lax.stop_gradient(p) if f else p, params, frozen)
        return loss_fn(params, batch, key)

    def train_step(state: TrainState, batch: dict) -> tuple[TrainState, dict]:
        key = jax.random.fold_in(state.rng, state.step)
        objective = loss_fn if frozen is None else frozen_loss
        (loss, metrics), grads = jax.value_and_grad(objective, has_aux=True)(
            state.params, batch, key
        )
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = dict(metrics)
        metrics.update(loss=loss, grad_norm=optax.global_norm(grads), lr_scale=lr_shape(state.step))
        new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state)
        return new_state, metrics

    return train_step


def host_params_to_global(params: Any, shardings: Any) -> Any:
    """Host arrays (the same on every process) -> global arrays with the given shardings."""

    def one(x, sharding):
        x = np.asarray(x, np.float32) if np.issubdtype(np.asarray(x).dtype, np.floating) else x
        x = np.asarray(x)
        return jax.make_array_from_callback(x.shape, sharding, lambda idx: x[idx])

    return jax.tree.map(one, params, shardings)


class MetricsWriter:
    """JSON lines (and TensorBoard scalars when `tensorboard` is installed); process 0 only."""

    def __init__(self, workdir: str, resume_step: int, enabled: bool):
        self.enabled = enabled
        self.path = os.path.join(workdir, "metrics.jsonl")
        self.tb = None
        if not enabled:
            return
        os.makedirs(workdir, exist_ok=True)
        if os.path.exists(self.path):  # drop records of steps that will be trained again
            with open(self.path) as f:
                keep = [line for line in f if json.loads(line)["step"] <= resume_step]
            with open(self.path, "w") as f:
                f.writelines(keep)
        try:
            from tensorboard.summary import Writer

            self.tb = Writer(os.path.join(workdir, "tensorboard"))
        except Exception:  # not installed, or an incompatible version: JSONL only
            self.tb = None

    def write(self, step: int, metrics: dict[str, float]) -> None:
        if not self.enabled:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps({"step": step, **metrics}) + "\n")
        if self.tb is not None:
            for name, value in metrics.items():
                self.tb.add_scalar(f"train/{name}", value, step=step)
            self.tb.flush()

    def close(self) -> None:
        if self.tb is not None:
            self.tb.close()


def initialize_distributed() -> None:
    """`jax.distributed.initialize()` when the environment describes a multi-process job.

    Set JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES and JAX_PROCESS_ID (or run under a
    cluster JAX auto-detects); a single process needs nothing.
    """
    if int(os.environ.get("JAX_NUM_PROCESSES", "1")) > 1 and not jax.distributed.is_initialized():
        # CPU processes exchange collectives over gloo (no effect on GPU / TPU backends)
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
        jax.distributed.initialize(
            coordinator_address=os.environ["JAX_COORDINATOR_ADDRESS"],
            num_processes=int(os.environ["JAX_NUM_PROCESSES"]),
            process_id=int(os.environ["JAX_PROCESS_ID"]),
        )


def check_run_length(cfg: TrainConfig, resume_step: int | None) -> None:
    """Raises ConfigError when a run resumed at `resume_step` would have nothing to train."""
    if resume_step is None:
        return
    key, end = ("steps", cfg.steps)
    if cfg.stop_at_step is not None and cfg.stop_at_step < cfg.steps:
        key, end = ("stop_at_step", cfg.stop_at_step)
    if end <= resume_step:
        raise ConfigError(
            f"{key}={end}: the run in {cfg.workdir} is already at step {resume_step}, so there "
            f"is nothing to train; give {key} > {resume_step} to train on, or a new workdir"
        )


def train(
    cfg: TrainConfig,
    *,
    task: Task | None = None,
    data: Iterator[dict] | None = None,
    devices: list | None = None,
    log: Callable[[str], None] = print,
    resume_previous: bool = False,
) -> dict[str, Any]:
    """Trains `cfg.steps` steps, or up to `cfg.stop_at_step` (resuming from
    `<workdir>/checkpoints` when there are any).

    Args:
      cfg: the run.
      task: overrides `cfg.task` (tests pass a small stand-in).
      data: overrides `cfg.data` (an iterator with `get_state` / `set_state` to resume).
      devices: the mesh's devices (default: all).
      log: progress lines (process 0).
      resume_previous: when the newest checkpoint is unreadable, set it aside and resume from
        the newest readable one (`sam2-jax train --resume-previous`); else it stops the run.

    Returns:
      {"state": final TrainState, "history": [(step, metrics)] of this call,
       "resumed_from": step or None, "compile_s", "step_s" (median over log windows of the
       wall time per step, data loading included), "memory": bytes}.

    Raises:
      ConfigError: `cfg` is invalid (`validate`), does not fit the devices, would change the
        recipe of the run in its workdir, or leaves it nothing to train; all before the task
        is built.
      CorruptCheckpointError: the newest checkpoint is unreadable (see `resume_previous`).
    """
    validate(cfg)
    # ---------------------------------------------------------------- devices
    initialize_distributed()
    mesh = shd.make_mesh(cfg.mesh, devices)
    lead = jax.process_index() == 0
    say = log if lead else (lambda _msg: None)
    divisor = shd.batch_divisor(mesh, cfg.mesh)
    if cfg.batch_size % divisor or cfg.batch_size % jax.process_count():
        raise ConfigError(
            f"batch_size={cfg.batch_size}: must be a multiple of the {divisor} batch shards "
            f"and of the {jax.process_count()} processes"
        )
    say(f"mesh {dict(mesh.shape)} on {jax.device_count()} {jax.default_backend()} device(s)")

    # A run found in the workdir is resumed: first make sure it is the same recipe.
    ckpt = Checkpointer(os.path.join(cfg.workdir, "checkpoints"), cfg.checkpoint)
    resumed_from = ckpt.latest_step()
    recorded_config = os.path.join(cfg.workdir, "config.json")
    if resumed_from is not None and os.path.exists(recorded_config):
        with open(recorded_config) as f:
            for change in check_resume(json.load(f), cfg):
                say(f"resuming with {change}")
    check_run_length(cfg, resumed_from)

    # ---------------------------------------------------------------- task and optimizer
    task = task if task is not None else import_function(cfg.task)(cfg)
    tx, lr_shape = make_optimizer(task.params, cfg.optim, cfg.steps)
    params_abstract = jax.eval_shape(lambda p: p, task.params)
    param_shardings = shd.state_shardings(params_abstract, mesh, cfg.mesh)
    abstract_state = jax.eval_shape(
        lambda p: TrainState(
            step=jnp.zeros([], jnp.int32),
            params=p,
            opt_state=tx.init(p),
            rng=jax.random.PRNGKey(0),
        ),
        params_abstract,
    )
    state_sh = shd.state_shardings(abstract_state, mesh, cfg.mesh)
    abstract_state = jax.tree.map(
        lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract_state, state_sh
    )

    # ---------------------------------------------------------------- state (new or restored)
    if data is None:
        data = import_function(cfg.data)(
            cfg,
            seed=cfg.seed,
            shard_index=jax.process_index(),
            shard_count=jax.process_count(),
            **dict(cfg.data_options),
        )
    if resumed_from is not None:
        resumed_from, state, data_state = ckpt.restore_newest(
            abstract_state, fall_back=resume_previous, log=say
        )
        data.set_state(data_state)
        say(f"resumed from step {resumed_from} ({ckpt.directory})")
    else:
        params = host_params_to_global(task.params, param_shardings)
        init = jax.jit(
            lambda p: TrainState(
                step=jnp.zeros([], jnp.int32),
                params=p,
                opt_state=tx.init(p),
                rng=jax.random.PRNGKey(cfg.seed),
            ),
            in_shardings=(param_shardings,),
            out_shardings=state_sh,
        )
        state = init(params)
        del params
    if lead:
        os.makedirs(cfg.workdir, exist_ok=True)
        # Atomic: the other processes of a resumed run may be reading the old one.
        with open(recorded_config + ".tmp", "w") as f:
            json.dump(to_dict(cfg), f, indent=1, default=str)
        os.replace(recorded_config + ".tmp", recorded_config)

    # ---------------------------------------------------------------- the compiled step
    first = next(data)
    batch_sh = shd.batch_shardings(first, mesh, cfg.mesh)
    step_fn = jax.jit(
        make_train_step(task.loss_fn, tx, lr_shape, frozen_tree(task.params, cfg.optim)),
        in_shardings=(state_sh, batch_sh),
        out_shardings=(state_sh, shd.replicated(mesh)),
        donate_argnums=0,
    )
    start = time.perf_counter()
    with jax.set_mesh(mesh):
        compiled = step_fn.lower(state, shd.global_batch(first, batch_sh)).compile()
    compile_s = time.perf_counter() - start
    memory = _memory_bytes(compiled)
    say(f"compiled the train step in {compile_s:.1f} s; memory per device: {memory}")

    # ---------------------------------------------------------------- the loop
    writer = MetricsWriter(cfg.workdir, resumed_from or 0, enabled=lead)
    history, times = [], []
    step = int(jax.device_get(state.step))
    batch = first
    end = cfg.steps if cfg.stop_at_step is None else min(cfg.steps, cfg.stop_at_step)
    # Steps run asynchronously, so one step's own time is not observable without a sync per
    # step; step_s is the wall time per step since the previous log line (data included).
    window_start, window_step = time.perf_counter(), step
    while step < end:
        state, metrics = compiled(state, shd.global_batch(batch, batch_sh))
        step += 1
        if step % cfg.log_every == 0 or step == end:
            values = {k: float(v) for k, v in jax.device_get(metrics).items()}
            now = time.perf_counter()
            times.append((now - window_start) / (step - window_step))
            window_start, window_step = now, step
            values["step_s"] = times[-1]
            history.append((step, values))
            writer.write(step, values)
            say(f"step {step}/{cfg.steps} loss {values['loss']:.4f} ({times[-1]:.2f} s)")
        if step % cfg.checkpoint.every_steps == 0 or step == end:
            ckpt.save(step, state, data.get_state())
        if step < end:
            batch = next(data)
    ckpt.close()
    writer.close()
    return {
        "state": state,
        "history": history,
        "resumed_from": resumed_from,
        "compile_s": compile_s,
        "step_s": float(np.median(times)) if times else None,
        "memory": memory,
    }


def _memory_bytes(compiled) -> dict[str, int] | None:
    try:
        m = compiled.memory_analysis()
    except Exception:  # not every backend reports it
        return None
    if m is None:
        return None
    return {
        "arguments": int(m.argument_size_in_bytes),
        "outputs": int(m.output_size_in_bytes),
        "temporaries": int(m.temp_size_in_bytes),
        "generated_code": int(m.generated_code_size_in_bytes),
    }
