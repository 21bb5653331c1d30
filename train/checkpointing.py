"""Orbax checkpoints of a training run: state, data position, and an integrity fingerprint.

Each checkpoint step holds three items:
- "state": the `TrainState` (step, params, optimizer state, RNG), sharded arrays;
- "data": the batch iterator's `get_state()` (JSON), so a resumed run reads the next batch;
- "meta": the step and a fingerprint of the state: per leaf, the sum of its bits as uint32
  (wrapping, so exact and independent of the sharding).

Orbax writes a step into a temporary directory and renames it only once complete, so a save
cut short by a crash is never listed. A listed checkpoint whose files were damaged later is
caught when the restored state's fingerprint differs (or Orbax cannot read it): restoring it
raises `CorruptCheckpointError` (one line: the step, the folder and why) instead of training
on from wrong values. `Checkpointer.restore_newest` names the previous step to resume from,
or (`fall_back=True`, `sam2-jax train --resume-previous`) sets the unreadable steps aside and
resumes from the newest readable one.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import sys
from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from sam2_jax.train.config import CheckpointConfig


class CorruptCheckpointError(RuntimeError):
    """A checkpoint exists but cannot be restored faithfully (a one-line message)."""


CLOSED_LOOP = "Event loop is closed"
# An Orbax / TensorStore error quoted in a one-line message: its start (the status) and end
# (the file and the root cause), without the TensorStore specs it appends.
REASON_HEAD, REASON_TAIL = 60, 180
TENSORSTORE_SPEC = re.compile(r"\s*\[tensorstore_spec.*$")


def _one_line(err: BaseException) -> str:
    """The error's type and the first line of its message, the middle of a long one cut."""
    lines = str(err).strip().splitlines()
    text = f"{type(err).__name__}: {TENSORSTORE_SPEC.sub('', lines[0])}" if lines else ""
    if len(text) > REASON_HEAD + REASON_TAIL:
        text = f"{text[:REASON_HEAD]} ... {text[-REASON_TAIL:]}"
    return text or type(err).__name__


def _dropping_closed_loop_callbacks(hook: Callable) -> Callable:
    """`hook` (a sys.unraisablehook) that ignores only RuntimeError('Event loop is closed')."""

    def filtered(unraisable) -> None:
        exc = unraisable.exc_value
        if not (isinstance(exc, RuntimeError) and str(exc) == CLOSED_LOOP):
            hook(unraisable)

    filtered.drops_closed_loop_callbacks = True
    return filtered


@contextlib.contextmanager
def quiet_restore() -> Iterator[None]:
    """Leaves a failing Orbax restore to its exception, so the user sees one message.

    - When a read fails, Orbax closes its event loop while other TensorStore reads are still
      in flight; each of those then prints a "RuntimeError: Event loop is closed" traceback
      through `sys.unraisablehook`, from other threads, also after the restore has returned.
      From the first restore on, those (and only those) are dropped.
    - Orbax's log records during the restore (the absl logger) are held back and emitted
      only when it succeeds.
    """
    if not getattr(sys.unraisablehook, "drops_closed_loop_callbacks", False):
        sys.unraisablehook = _dropping_closed_loop_callbacks(sys.unraisablehook)
    logger = logging.getLogger("absl")
    held: list[logging.LogRecord] = []

    def hold(record: logging.LogRecord) -> bool:
        held.append(record)
        return False

    logger.addFilter(hold)
    try:
        yield
    finally:
        logger.removeFilter(hold)
    for record in held:
        logger.handle(record)


def unreadable(directory: str | os.PathLike, step: int, reason: str) -> CorruptCheckpointError:
    """The one-line error for a checkpoint step that cannot be restored, and why."""
    return CorruptCheckpointError(
        f"checkpoint step {step} in {os.fspath(directory)} is unreadable ({reason})"
    )


@contextlib.contextmanager
def reading(directory: str | os.PathLike, step: int) -> Iterator[None]:
    """Restores in the block quietly (`quiet_restore`); any error becomes one line,
    `CorruptCheckpointError("checkpoint step N in DIR is unreadable (...)")`."""
    try:
        with quiet_restore():
            yield
    except Exception as e:  # Orbax / tensorstore raise many kinds
        raise unreadable(directory, step, _one_line(e)) from e


def _leaf_bits_sum(x: jax.Array) -> jax.Array:
    x = jnp.asarray(x)
    if jnp.issubdtype(x.dtype, jax.dtypes.prng_key):
        x = jax.random.key_data(x)
    size = x.dtype.itemsize
    if size == 4:
        bits = jax.lax.bitcast_convert_type(x, jnp.uint32)
    elif size == 2:
        bits = jax.lax.bitcast_convert_type(x, jnp.uint16).astype(jnp.uint32)
    elif size == 1:
        bits = x.astype(jnp.uint8).astype(jnp.uint32) if x.dtype != jnp.bool_ else x
    else:
        raise TypeError(f"no fingerprint for dtype {x.dtype}")
    # position-weighted too, so that swapped values also change the fingerprint
    index = jnp.arange(bits.size, dtype=jnp.uint32).reshape(bits.shape)
    bits = bits.astype(jnp.uint32)
    return jnp.stack(
        [jnp.sum(bits, dtype=jnp.uint32), jnp.sum(bits * (index | 1), dtype=jnp.uint32)]
    )


@jax.jit
def fingerprint(state: Any) -> jax.Array:
    """(num_leaves, 2) uint32: per leaf, the wrapped sums of its bits (plain and weighted)."""
    return jnp.stack([_leaf_bits_sum(x) for x in jax.tree.leaves(state)])


class Checkpointer:
    """A `CheckpointManager` for one run directory (async saves, keep-N, verified restore)."""

    def __init__(self, directory: str, cfg: CheckpointConfig):
        self.directory = os.path.abspath(directory)
        options = ocp.CheckpointManagerOptions(
            max_to_keep=cfg.keep,
            enable_async_checkpointing=cfg.async_save,
            create=True,
        )
        self.manager = ocp.CheckpointManager(
            self.directory, options=options, item_names=("state", "data", "meta")
        )

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def save(self, step: int, state: Any, data_state: Any) -> None:
        """Starts saving (returns before the write ends when async)."""
        meta = {"step": int(step), "fingerprint": np.asarray(fingerprint(state)).tolist()}
        self.manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state),
                data=ocp.args.JsonSave(data_state),
                meta=ocp.args.JsonSave(meta),
            ),
            force=True,
        )

    def all_steps(self) -> list[int]:
        """The saved steps, oldest first."""
        return sorted(self.manager.all_steps())

    def restore(self, step: int, abstract_state: Any) -> tuple[Any, Any]:
        """(state placed as `abstract_state`'s shardings, data_state) of `step`, verified.

        Raises:
          CorruptCheckpointError: Orbax cannot read the step, or its fingerprint differs.
        """
        with reading(self.directory, step):
            restored = self.manager.restore(
                step,
                args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(abstract_state),
                    data=ocp.args.JsonRestore(),
                    meta=ocp.args.JsonRestore(),
                ),
            )
        state, meta = restored["state"], restored["meta"]
        got = np.asarray(fingerprint(state)).tolist()
        if meta.get("step") != step or got != meta.get("fingerprint"):
            saved = meta.get("fingerprint", [])
            bad = [i for i, (a, b) in enumerate(zip(got, saved, strict=False)) if a != b]
            raise unreadable(
                self.directory,
                step,
                f"restored values differ from those saved: leaves {bad[:10]} of {len(got)}",
            )
        return state, restored["data"]

    def restore_newest(
        self,
        abstract_state: Any,
        *,
        fall_back: bool = False,
        log: Callable[[str], None] = print,
    ) -> tuple[int, Any, Any]:
        """(step, state, data_state) of the newest checkpoint, verified.

        Args:
          fall_back: when the newest is unreadable, move every unreadable step newer than the
            newest readable one to `<directory>_unreadable/` and restore that one (what
            `sam2-jax train --resume-previous` asks for).

        Raises:
          CorruptCheckpointError: the newest is unreadable (the message names the previous
            step to resume from), or with `fall_back` none is readable (nothing is moved).
        """
        steps = self.all_steps()[::-1]
        for i, step in enumerate(steps):
            try:
                state, data_state = self.restore(step, abstract_state)
            except CorruptCheckpointError as err:
                if not fall_back:
                    earlier = steps[i + 1] if i + 1 < len(steps) else None
                    raise CorruptCheckpointError(f"{err}; {self._resume_hint(earlier)}") from err
                log(f"warning: {err}")
                continue
            self._set_aside(steps[:i], log)
            return step, state, data_state
        raise CorruptCheckpointError(
            f"no checkpoint in {self.directory} is readable (steps {steps}); move the folder "
            "away to train from the start"
        )

    def _resume_hint(self, earlier: int | None) -> str:
        """What to do about an unreadable newest step, given the step before it."""
        if earlier is None:
            return f"there is no earlier one: move {self.directory} away to train from the start"
        return f"rerun with --resume-previous to resume from the previous one (step {earlier})"

    def _set_aside(self, steps: list[int], log: Callable[[str], None]) -> None:
        """Moves the step folders to `<directory>_unreadable/` (kept for inspection; gone from
        the manager, so those steps are trained and saved again)."""
        if not steps:
            return
        aside = f"{self.directory}_unreadable"
        if jax.process_index() == 0:
            os.makedirs(aside, exist_ok=True)
            for step in steps:
                target, n = os.path.join(aside, str(step)), 1
                while os.path.exists(target):
                    target, n = os.path.join(aside, f"{step}.{n}"), n + 1
                os.replace(os.path.join(self.directory, str(step)), target)
                log(f"moved the unreadable checkpoint step {step} to {target}")
        if jax.process_count() > 1:
            from jax.experimental import multihost_utils

            multihost_utils.sync_global_devices("unreadable_checkpoints_set_aside")
        self.manager.reload()

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()
