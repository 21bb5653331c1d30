"""A small stand-in training task and in-memory data for the loop's tests (and a way to damage
a checkpoint).

The loop only sees `Task(params, loss_fn)` and a batch iterator, so its machinery (sharding,
optimizer, checkpoints, resume, several processes) is tested on a per-pixel two-layer network
that predicts the object masks from the colours: seconds to compile instead of minutes. Its
first layer sits under `image_encoder/trunk/blocks_0`, so it gets the vision LR with layer decay.
"""

from __future__ import annotations

import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np

from sam2_jax.train.config import CheckpointConfig, MeshConfig, OptimConfig, TrainConfig
from sam2_jax.train.task import Task

HIDDEN = 64
STEPS = 8
STANDIN = pathlib.Path(__file__).resolve()


def standin_config() -> TrainConfig:
    """8 steps, batch 8 of 2 frames at 16 px; checkpoints every 2 steps."""
    return TrainConfig(
        model="standin",
        image_size=16,
        num_frames=2,
        max_objects=3,
        batch_size=8,
        steps=STEPS,
        seed=0,
        compute_dtype="float32",
        task=f"{STANDIN}:standin_task",
        data=f"{STANDIN}:array_data",
        log_every=1,
        optim=OptimConfig(base_lr=3e-2, vision_lr=2e-2, warmup_steps=2, clip_norm=1.0),
        mesh=MeshConfig(data=-1, fsdp=1, fsdp_min_size=16),
        checkpoint=CheckpointConfig(every_steps=2, keep=3),
    )


def standin_task(cfg) -> Task:
    rng = np.random.default_rng(cfg.seed)
    params = {
        "image_encoder": {
            "trunk": {
                "blocks_0": {
                    "kernel": rng.normal(0, 0.5, (3, HIDDEN)).astype(np.float32),
                    "bias": np.zeros(HIDDEN, np.float32),
                }
            }
        },
        "head": {
            "kernel": rng.normal(0, HIDDEN**-0.5, (HIDDEN, cfg.max_objects)).astype(np.float32),
            "bias": np.zeros(cfg.max_objects, np.float32),
        },
    }
    dtype = jnp.dtype(cfg.compute_dtype)

    def loss_fn(params, batch, key):
        x = batch["frames"].astype(jnp.float32) / 255.0 - 0.5  # (B, T, S, S, 3)
        x = x + 0.01 * jax.random.normal(key, x.shape)  # the step's key is used
        layer = params["image_encoder"]["trunk"]["blocks_0"]
        h = jax.nn.relu(x.astype(dtype) @ layer["kernel"].astype(dtype) + layer["bias"])
        logits = (h @ params["head"]["kernel"].astype(dtype)).astype(jnp.float32)
        logits = logits + params["head"]["bias"]  # (B, T, S, S, O)
        target = jnp.moveaxis(batch["masks"], 2, -1).astype(jnp.float32)  # (B, T, S, S, O)
        per = optax_sigmoid_bce(logits, target).mean(axis=(1, 2, 3))  # (B, O)
        valid = batch["object_valid"].astype(jnp.float32)
        loss = (per * valid).sum() / jnp.maximum(valid.sum(), 1.0)
        return loss, {"valid_objects": valid.sum()}

    return Task(params=params, loss_fn=loss_fn)


def optax_sigmoid_bce(logits, target):
    return jnp.maximum(logits, 0) - logits * target + jnp.log1p(jnp.exp(-jnp.abs(logits)))


class ArrayBatches:
    """Deterministic random batches (the i-th batch depends only on seed and i); resumable."""

    def __init__(self, cfg, *, seed: int, shard_index=0, shard_count=1, delay_s: float = 0.0):
        self.cfg, self.seed, self.index = cfg, seed, 0
        self.shard_index, self.shard_count = shard_index, shard_count
        self.delay_s = delay_s  # a slow loader, so that a test can kill a run mid-way

    def __iter__(self):
        return self

    def __next__(self) -> dict:
        cfg = self.cfg
        time.sleep(self.delay_s)
        rng = np.random.default_rng([self.seed, self.index])
        self.index += 1
        b, t, o, s = cfg.batch_size, cfg.num_frames, cfg.max_objects, cfg.image_size
        frames = rng.integers(0, 256, (b, t, s, s, 3), dtype=np.uint8)
        # objects are pixels whose red / green / blue channel is bright: learnable from colour
        masks = np.moveaxis(frames[..., :o] > 160, -1, 2)  # (B, T, O, S, S)
        valid = np.ones((b, o), bool)
        valid[0, -1] = False
        per_host = b // self.shard_count
        rows = slice(self.shard_index * per_host, (self.shard_index + 1) * per_host)
        return {"frames": frames[rows], "masks": masks[rows], "object_valid": valid[rows]}

    def get_state(self) -> dict:
        return {"index": self.index}

    def set_state(self, state: dict) -> None:
        self.index = int(state["index"])


def damage_checkpoint(step_dir: pathlib.Path) -> None:
    """Flips bytes in the middle of every array data file of a checkpoint step's state."""
    files = [p for p in (step_dir / "state").rglob("*") if p.is_file()]
    for path in [p for p in files if "/d/" in str(p)] or files:
        raw = bytearray(path.read_bytes())
        for i in range(len(raw) // 2, min(len(raw), len(raw) // 2 + 8)):
            raw[i] ^= 0xFF
        path.write_bytes(bytes(raw))


def array_data(cfg, *, seed, shard_index, shard_count, delay_s=0.0):
    return ArrayBatches(
        cfg, seed=seed, shard_index=shard_index, shard_count=shard_count, delay_s=delay_s
    )
