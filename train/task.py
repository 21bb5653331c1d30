"""What the loop trains: a `Task` (initial params + loss) and the batch iterator.

`TrainConfig.task` and `TrainConfig.data` name factories as "module:function" (or
"path/to/file.py:function"), so the loop itself knows nothing about SAM 2:

- `sam2_task(cfg) -> Task`: SAM 2 (`cfg.model` at `cfg.image_size`, compute in
  `cfg.compute_dtype`, float32 params), initialised from `cfg.init_checkpoint` (reference
  `.pt`, Hugging Face or converted weights) or randomly, with the iterative-prompt objective
  `sam2_jax.train.objective.loss_fn`.
- `tfds_data(cfg, *, seed, shard_index, shard_count, dataset_dir, **options)`: the prepared
  ArrayRecord dataset through `sam2_jax.train.data.make_loader`.
- `synthetic_data(cfg, ...)`: prepares the synthetic moving-shapes dataset under
  `<workdir>/tfds` once, then reads it like any other.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import importlib.util
import os
import pathlib
from collections.abc import Callable, Iterator
from typing import Any

import jax
import jax.numpy as jnp

from sam2_jax.train.config import ConfigError, TrainConfig, unknown_name

# loss_fn(params, batch, key) -> (scalar loss, {name: scalar metric})
LossFn = Callable[[Any, dict, jax.Array], tuple[jax.Array, dict[str, jax.Array]]]


@dataclasses.dataclass(frozen=True, eq=False)
class Task:
    """params: host (numpy) or device params tree; loss_fn: differentiated w.r.t. params."""

    params: Any
    loss_fn: LossFn


def import_function(spec: str) -> Callable:
    """ "package.module:function" or "path/to/file.py:function" -> the function."""
    module_name, sep, attr = spec.rpartition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"{spec!r} is not 'module:function'")
    if module_name.endswith(".py"):
        path = pathlib.Path(module_name)
        if not path.is_file():
            raise FileNotFoundError(f"{module_name} (from {spec!r}) not found")
        loader_spec = importlib.util.spec_from_file_location(f"_train_{path.stem}", path)
        module = importlib.util.module_from_spec(loader_spec)
        loader_spec.loader.exec_module(module)
    else:
        module = importlib.import_module(module_name)
    if not hasattr(module, attr):
        raise ValueError(f"{module_name} has no {attr!r} (from {spec!r})")
    return getattr(module, attr)


def options(cls: type, pairs: tuple[tuple[str, Any], ...], key: str) -> Any:
    """`cls(**dict(pairs))`; a name that is no field of `cls` is a ConfigError naming `key`
    and the close field names."""
    names = [field.name for field in dataclasses.fields(cls)]
    for name, _ in pairs:
        if name not in names:
            message = unknown_name(f"{cls.__name__} field", name, names, owner=cls.__name__)
            raise ConfigError(f"{key}: {message}")
    return cls(**dict(pairs))


def remat(loss_fn: LossFn) -> LossFn:
    """Keeps only matmul outputs for the backward pass; everything else is recomputed."""
    return jax.checkpoint(loss_fn, policy=jax.checkpoint_policies.dots_with_no_batch_dims_saveable)


def sam2_task(cfg: TrainConfig) -> Task:
    """SAM 2 with the iterative-prompt objective (see module docstring)."""
    from sam2_jax.config import get_config
    from sam2_jax.modeling.sam2_base import SAM2, quick_random_params
    from sam2_jax.train.losses import LossConfig
    from sam2_jax.train.objective import ObjectiveConfig, loss_fn
    from sam2_jax.train.prompting import TrainPromptConfig

    objective = ObjectiveConfig(  # first: a misspelt option fails before the params are made
        prompt=options(TrainPromptConfig, cfg.prompt_options, "prompt_options"),
        loss=options(LossConfig, cfg.loss_options, "loss_options"),
    )
    if cfg.init_checkpoint:
        from sam2_jax.convert.checkpoint_io import load_checkpoint

        config, params = load_checkpoint(cfg.init_checkpoint, cfg.model, image_size=cfg.image_size)
    else:
        config = get_config(cfg.model, image_size=cfg.image_size)
        params = jax.device_get(quick_random_params(SAM2(config), cfg.seed))
    trunk = dataclasses.replace(config.trunk, drop_path_rate=cfg.drop_path_rate)
    config = dataclasses.replace(config, trunk=trunk)
    module = SAM2(config, dtype=jnp.dtype(cfg.compute_dtype))
    loss = functools.partial(loss_fn, module=module, cfg=objective)
    return Task(params=params, loss_fn=remat(loss) if cfg.remat else loss)


def tfds_data(
    cfg: TrainConfig,
    *,
    seed: int,
    shard_index: int,
    shard_count: int,
    dataset_dir: str,
    source=None,
    **options: Any,
) -> Iterator[dict]:
    """This host's batches of a prepared dataset, or of `source` when given (a random-access
    record source: see `make_loader`); `batch_size / shard_count` per host."""
    from sam2_jax.train.data import DataConfig, make_loader

    data_cfg = DataConfig(
        dataset_dir=dataset_dir,
        image_size=cfg.image_size,
        num_frames=cfg.num_frames,
        max_objects=cfg.max_objects,
        batch_size=cfg.batch_size // shard_count,
        **options,
    )
    return make_loader(
        data_cfg,
        split="train",
        seed=seed,
        shard_index=shard_index,
        shard_count=shard_count,
        source=source,
    )


def synthetic_data(
    cfg: TrainConfig,
    *,
    seed: int,
    shard_index: int,
    shard_count: int,
    num_videos: int = 64,
    video_frames: int = 12,
    **options: Any,
) -> Iterator[dict]:
    """Moving shapes at `cfg.image_size`, prepared once under `<workdir>/tfds`."""
    from sam2_jax.train.data.builders import MovingShapes, prepare

    data_dir = os.path.join(cfg.workdir, "tfds")
    if shard_index == 0:
        prepare(
            MovingShapes(
                splits={"train": num_videos},
                num_frames=video_frames,
                height=cfg.image_size,
                width=cfg.image_size,
                num_objects=cfg.max_objects,
                min_frames=cfg.num_frames,
                data_dir=data_dir,
            )
        )
    if shard_count > 1:  # the other hosts wait until host 0 has written the records
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices("synthetic_data_prepared")
    dataset_dir = os.path.join(data_dir, "moving_shapes")
    return tfds_data(
        cfg,
        seed=seed,
        shard_index=shard_index,
        shard_count=shard_count,
        dataset_dir=dataset_dir,
        **options,
    )


def synthetic_stream_data(
    cfg: TrainConfig,
    *,
    seed: int,
    shard_index: int,
    shard_count: int,
    num_videos: int = 1_000_000,
    video_frames: int = 12,
    occluder_prob: float = 0.0,
    **options: Any,
) -> Iterator[dict]:
    """Moving shapes at `cfg.image_size` made as they are read: `num_videos` videos of the
    train stream (the first ones are those `synthetic_data` prepares), nothing stored. Pass
    `num_workers` (a DataConfig field, through `data_options`) to make them on several cores,
    `occluder_prob` for bars the first object goes fully behind (`generate_video`).
    """
    from sam2_jax.train.data.shapes_source import MovingShapesSource

    if video_frames < cfg.num_frames:
        raise ValueError(f"video_frames {video_frames} < the clips' num_frames {cfg.num_frames}")
    source = MovingShapesSource(
        num_videos,
        num_frames=video_frames,
        height=cfg.image_size,
        width=cfg.image_size,
        num_objects=cfg.max_objects,
        occluder_prob=occluder_prob,
    )
    return tfds_data(
        cfg,
        seed=seed,
        shard_index=shard_index,
        shard_count=shard_count,
        dataset_dir="",
        source=source,
        **options,
    )
