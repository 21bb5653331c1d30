"""The training batch iterator: a grain pipeline over a prepared ArrayRecord dataset.

    records (tfds data source, random access, no TensorFlow)
      -> this host's shard (every shard_count-th record from shard_index)
      -> shuffle (a new order each epoch) -> repeat (num_epochs, None = forever)
      -> per-record random clip + augmentation (`sampler.make_example`, seeded by the
         pipeline seed, the shard and the element's position: deterministic)
      -> batch (drop_remainder)

The iterator is grain's `DatasetIterator`: `next(it)` gives the batch dict
{"frames": (B, T, S, S, 3) uint8, "masks": (B, T, O, S, S) bool, "object_valid": (B, O) bool};
`it.get_state()` returns a small JSON-able dict and `it.set_state(state)` resumes exactly after
the last batch returned (save it beside the model, e.g. with Orbax through
`grain.checkpoint.CheckpointSave(it)` / `CheckpointRestore(it)`).
"""

from __future__ import annotations

import dataclasses
import os
import zlib

import grain
import numpy as np
import tensorflow_datasets as tfds

from sam2_jax.train.data import sampler
from sam2_jax.train.data.augment import AugmentConfig


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Where the prepared dataset is and what the batches look like.

    dataset_dir: a prepared tfds dataset: `<data_dir>/<builder name>/<version>` (the folder
      holding dataset_info.json), or `<data_dir>/<builder name>` (its newest version).
    batch_size: examples per batch on this host (the global batch is batch_size x shards).
    augment: the reference augmentations; None only resizes (evaluation).
    num_epochs: passes over this shard; None repeats forever.
    num_threads / prefetch: grain read threads and prefetched elements (0 threads: inline).
    num_workers: > 0 runs the pipeline in that many worker processes (grain mp_prefetch;
      the same batches as inline, but a saved state resumes only with the same num_workers).
    """

    dataset_dir: str
    image_size: int = 1024
    num_frames: int = 8
    max_objects: int = 3
    batch_size: int = 1
    reverse_time_prob: float = 0.0
    augment: AugmentConfig | None = AugmentConfig()
    shuffle: bool = True
    num_epochs: int | None = None
    num_threads: int = 4
    prefetch: int = 8
    num_workers: int = 0


def resolve_dataset_dir(path: str) -> str:
    """`<data_dir>/<name>/<version>` as is; `<data_dir>/<name>` -> its newest version folder.

    Raises:
      FileNotFoundError: no prepared dataset there.
    """
    if os.path.exists(os.path.join(path, "dataset_info.json")):
        return path
    if os.path.isdir(path):
        versions = [
            d
            for d in os.listdir(path)
            if os.path.exists(os.path.join(path, d, "dataset_info.json"))
        ]
        if versions:
            newest = max(versions, key=lambda v: tuple(int(p) for p in v.split(".") if p.isdigit()))
            return os.path.join(path, newest)
    raise FileNotFoundError(
        f"no prepared tfds dataset at {path!r} (expected dataset_info.json there or in a "
        "version folder below it; prepare one with the builders in sam2_jax.train.data.builders)"
    )


def data_source(dataset_dir: str, split: str):
    """The random-access record source of one split (`len`, `source[i]` -> record dict)."""
    builder = tfds.builder_from_directory(resolve_dataset_dir(dataset_dir))
    if split not in builder.info.splits:
        raise ValueError(
            f"split {split!r} not in {dataset_dir} (has {sorted(builder.info.splits)})"
        )
    return builder.as_data_source(split=split)


def _derived_seed(seed: int, shard_index: int) -> int:
    return zlib.crc32(np.array([seed, shard_index], np.int64).tobytes())


def make_loader(
    cfg: DataConfig,
    *,
    split: str = "train",
    seed: int = 0,
    shard_index: int = 0,
    shard_count: int = 1,
    source=None,
) -> grain.DatasetIterator:
    """The batch iterator of one host's shard (module docstring).

    `source`: a random-access record source (`len`, `source[i]`, picklable for workers) to
    read instead of the prepared dataset (`cfg.dataset_dir` and `split` are then unused), e.g.
    `shapes_source.MovingShapesSource`.

    Raises:
      ValueError: a bad shard or split, or a shard with fewer records than one batch.
    """
    if not 0 <= shard_index < shard_count:
        raise ValueError(f"shard_index {shard_index} not in [0, shard_count={shard_count})")
    if cfg.batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {cfg.batch_size}")
    if source is None:
        source = data_source(cfg.dataset_dir, split)
    ds = grain.MapDataset.source(source)[shard_index::shard_count]
    if len(ds) == 0:
        raise ValueError(
            f"shard {shard_index} of {shard_count} of {split!r} is empty ({len(source)} videos)"
        )
    if cfg.num_epochs is not None and len(ds) * cfg.num_epochs < cfg.batch_size:
        raise ValueError(f"{len(ds)} videos x {cfg.num_epochs} epochs < one batch")
    ds = ds.seed(_derived_seed(seed, shard_index))
    if cfg.shuffle:
        ds = ds.shuffle()
    ds = ds.repeat(cfg.num_epochs)

    def make(record, rng):
        return sampler.make_example(
            record,
            rng,
            image_size=cfg.image_size,
            num_frames=cfg.num_frames,
            max_objects=cfg.max_objects,
            reverse_time_prob=cfg.reverse_time_prob,
            augment_cfg=cfg.augment,
        )

    ds = ds.random_map(make).batch(cfg.batch_size, drop_remainder=True)
    it_ds = ds.to_iter_dataset(
        grain.ReadOptions(num_threads=cfg.num_threads, prefetch_buffer_size=cfg.prefetch)
    )
    if cfg.num_workers > 0:
        from absl import flags

        # grain <= 0.2.18 reads an Abseil flag when starting workers and fails unless flags
        # were parsed (google/grain#1355); outside an absl app, keep every flag's default.
        if not flags.FLAGS.is_parsed():
            flags.FLAGS.mark_as_parsed()
        it_ds = it_ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=cfg.num_workers))
    return iter(it_ds)
