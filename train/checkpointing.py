"""Orbax checkpoints of a training run: state, data position, and an integrity fingerprint.

Each checkpoint step holds three items:
- "state": the `TrainState` (step, params, optimizer state, RNG), sharded arrays;
- "data": the batch iterator's `get_state()` (JSON), so a resumed run reads the next batch;
- "meta": the step and a fingerprint of the state: per leaf, the sum of its bits as uint32
  (wrapping, so exact and independent of the sharding).

Orbax writes a step into a temporary directory and renames it only once complete, so a save
cut short by a crash is never listed. A listed checkpoint whose files were damaged later is
caught when the restored state's fingerprint differs (or Orbax cannot read it): restoring it
raises `CorruptCheckpointError` instead of training on from wrong values.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp

from sam2_jax.train.config import CheckpointConfig


class CorruptCheckpointError(RuntimeError):
    """A checkpoint exists but cannot be restored faithfully."""


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

    def restore(self, step: int, abstract_state: Any) -> tuple[Any, Any]:
        """(state placed as `abstract_state`'s shardings, data_state) of `step`, verified.

        Raises:
          CorruptCheckpointError: Orbax cannot read the step, or its fingerprint differs.
        """
        where = os.path.join(self.directory, str(step))
        try:
            restored = self.manager.restore(
                step,
                args=ocp.args.Composite(
                    state=ocp.args.StandardRestore(abstract_state),
                    data=ocp.args.JsonRestore(),
                    meta=ocp.args.JsonRestore(),
                ),
            )
        except Exception as e:  # Orbax / tensorstore raise many kinds
            raise CorruptCheckpointError(
                f"checkpoint {where} cannot be read ({type(e).__name__}: {e}); "
                "delete it to resume from an earlier step"
            ) from e
        state, meta = restored["state"], restored["meta"]
        got = np.asarray(fingerprint(state)).tolist()
        if meta.get("step") != step or got != meta.get("fingerprint"):
            saved = meta.get("fingerprint", [])
            bad = [i for i, (a, b) in enumerate(zip(got, saved, strict=False)) if a != b]
            raise CorruptCheckpointError(
                f"checkpoint {where} is damaged: restored values differ from those saved "
                f"(leaves {bad[:10]} of {len(got)}); delete it to resume from an earlier step"
            )
        return state, restored["data"]

    def wait(self) -> None:
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        self.manager.close()
