"""Device mesh, logical-axis rules and the shardings of the train state and the batch.

The mesh has two axes: `data` (replicas that split the batch) and `fsdp` (devices that split
the batch *and* every large param / optimizer-state leaf). Arrays are described with logical
axis names ("batch", "shard") that `MeshConfig.logical_axis_rules` maps to mesh axes, so the
placement is changed in the config, not in the code. The same code serves one CPU, fake CPU
devices, one GPU, and several hosts (the mesh spans `jax.devices()` of all processes).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from sam2_jax.train.config import MeshConfig


def make_mesh(cfg: MeshConfig, devices: list | None = None) -> Mesh:
    """A (data, fsdp) mesh over `devices` (default: every device of every process).

    Raises:
      ValueError: the axis sizes do not multiply to the number of devices.
    """
    devices = list(jax.devices() if devices is None else devices)
    n = len(devices)
    fsdp = cfg.fsdp
    data = n // fsdp if cfg.data == -1 else cfg.data
    if fsdp <= 0 or data <= 0 or data * fsdp != n:
        raise ValueError(
            f"mesh data={cfg.data} x fsdp={cfg.fsdp} does not fit {n} device(s); "
            "use data=-1 to take the rest"
        )
    return jax.make_mesh(
        (data, fsdp), ("data", "fsdp"), (AxisType.Auto, AxisType.Auto), devices=devices
    )


def logical_sharding(mesh: Mesh, names: tuple[str | None, ...], cfg: MeshConfig) -> NamedSharding:
    """NamedSharding of an array whose dimensions carry logical `names`."""
    spec = nn.logical_to_mesh_axes(names, cfg.logical_axis_rules)
    return NamedSharding(mesh, PartitionSpec(*spec))


def leaf_logical_names(shape: tuple[int, ...], fsdp: int, min_size: int) -> tuple:
    """("shard" on the largest dimension divisible by `fsdp`, None elsewhere) or all None."""
    names: list[str | None] = [None] * len(shape)
    if fsdp > 1 and int(np.prod(shape, dtype=np.int64)) >= min_size:
        order = sorted(range(len(shape)), key=lambda i: -shape[i])
        for i in order:
            if shape[i] % fsdp == 0:
                names[i] = "shard"
                break
    return tuple(names)


def state_shardings(abstract_state: Any, mesh: Mesh, cfg: MeshConfig) -> Any:
    """Shardings for every leaf of a params / optimizer / train-state pytree.

    The rule depends only on a leaf's shape, so an optimizer moment is placed exactly like
    the param it belongs to.
    """
    fsdp = mesh.shape["fsdp"]

    def one(leaf):
        names = leaf_logical_names(tuple(leaf.shape), fsdp, cfg.fsdp_min_size)
        return logical_sharding(mesh, names, cfg)

    return jax.tree.map(one, abstract_state)


def batch_shardings(batch: Mapping[str, Any], mesh: Mesh, cfg: MeshConfig) -> dict:
    """Every batch array split along its first (example) dimension."""
    return {
        key: logical_sharding(mesh, ("batch",) + (None,) * (np.ndim(value) - 1), cfg)
        for key, value in batch.items()
    }


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def batch_divisor(mesh: Mesh, cfg: MeshConfig) -> int:
    """How many ways the batch dimension is split (the global batch must be a multiple)."""
    sharding = logical_sharding(mesh, ("batch",), cfg)
    axes = sharding.spec[0] or ()
    axes = (axes,) if isinstance(axes, str) else axes
    return int(np.prod([mesh.shape[a] for a in axes], dtype=np.int64))


def global_batch(local: Mapping[str, np.ndarray], shardings: Mapping[str, NamedSharding]) -> dict:
    """This process's rows of the batch -> global jax.Arrays (one process: the whole batch)."""
    return {
        key: jax.make_array_from_process_local_data(shardings[key], np.asarray(value))
        for key, value in local.items()
    }
