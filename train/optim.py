"""AdamW with the reference fine-tune recipe: per-parameter LR and weight decay, clipping.

The reference (training/optimizer.py with sam2.1_hiera_b+_MOSE_finetune.yaml) builds torch
param groups; here every params leaf gets its own LR multiplier and weight-decay flag, from
its Flax path:

- LR: `vision_lr` for `image_encoder/*`, `base_lr` elsewhere, times Hiera layer decay inside
  `image_encoder/trunk`: with D trunk blocks, block i gets `layer_decay ** (D - i)`,
  `patch_embed` gets `layer_decay ** (D + 1)`, and `pos_embed*` gets 1.0 (the config's override).
- LR 0 for the prompt encoder's random Fourier matrix, a buffer (not trained) in the reference,
  and for every param that matches none of `trainable` (fnmatch patterns on Flax paths).
  `frozen_tree` marks the latter; the train step stops their gradients, so their
  backward is not computed at all (`optim.trainable=sam_mask_decoder/*` trains the decoder
  for the cost of its own backward).
- Weight decay 0 for every bias and for the parameters of torch `nn.LayerNorm` modules (the
  Hiera block norms, memory-attention norms, two-way transformer norms); the channel-first
  `LayerNorm2d` scales of the reference (memory encoder, mask up/down-scaling) are not
  `nn.LayerNorm` there, so they keep weight decay, as in the reference.
- One schedule shape for all groups: cosine from 1 to `end_lr_ratio` over the run (fvcore's
  `CosineParamScheduler` on `where = step / steps`), optionally after a linear warmup.

The update equals torch AdamW on the reference's param groups after `clip_grad_norm_`:
`p <- p - lr_p * (adam(g) + wd_p * p)`.
"""

from __future__ import annotations

import fnmatch
import re
from collections.abc import Callable, Mapping
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

from sam2_jax.train.config import ConfigError, OptimConfig

TRUNK = "image_encoder/trunk/"
# Flax paths of params whose torch modules are `nn.LayerNorm` (no weight decay there).
LAYER_NORM_PATTERNS = (
    "image_encoder/trunk/blocks_*/norm*/*",
    "memory_attention/*norm*/*",
    "sam_mask_decoder/transformer/*norm*/*",
)
# Registered buffers of the reference, params here: never updated (LR 0, so no decay either).
FROZEN_NAMES = ("positional_encoding_gaussian_matrix",)
_BLOCK = re.compile(r"image_encoder/trunk/blocks_(\d+)/")


def flat_paths(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'a/b/c': leaf} for a nested dict of params."""
    out = {}
    for key, value in tree.items():
        path = f"{prefix}/{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            out.update(flat_paths(value, path))
        else:
            out[path] = value
    return out


def _map_paths(fn: Callable[[str], Any], tree: Mapping[str, Any], prefix: str = "") -> dict:
    return {
        key: _map_paths(fn, value, f"{prefix}{key}/")
        if isinstance(value, Mapping)
        else fn(f"{prefix}{key}")
        for key, value in tree.items()
    }


def trunk_depth(params: Mapping[str, Any]) -> int:
    """Number of Hiera blocks (0 when the params have no SAM 2 trunk)."""
    blocks = {int(m.group(1)) for p in flat_paths(params) if (m := _BLOCK.match(p))}
    return max(blocks) + 1 if blocks else 0


def is_trainable(path: str, cfg: OptimConfig) -> bool:
    """Whether a param's Flax path matches one of `cfg.trainable`."""
    return any(fnmatch.fnmatchcase(path, pattern) for pattern in cfg.trainable)


def check_trainable(params: Mapping[str, Any], cfg: OptimConfig) -> None:
    """Refuses a `trainable` pattern that matches no param (a misspelt path trains nothing).

    Raises:
      ConfigError: naming the pattern and the params' top-level groups.
    """
    paths = list(flat_paths(params))
    for pattern in cfg.trainable:
        if not any(fnmatch.fnmatchcase(path, pattern) for path in paths):
            groups = sorted({path.split("/")[0] for path in paths})
            raise ConfigError(
                f"optim.trainable pattern {pattern!r} matches no param; the params are under "
                f"{', '.join(groups)} (e.g. {paths[0]!r})"
            )


def lr_multiplier(path: str, cfg: OptimConfig, depth: int) -> float:
    """Peak LR of one param (before the schedule shape), from its Flax path."""
    if path.rsplit("/", 1)[-1] in FROZEN_NAMES or not is_trainable(path, cfg):
        return 0.0
    if not path.startswith("image_encoder/"):
        return cfg.base_lr
    scale = 1.0
    if path.startswith(TRUNK):
        name = path[len(TRUNK) :]
        if name.startswith("pos_embed"):
            scale = 1.0  # the reference's '*pos_embed*' override
        elif name.startswith("patch_embed"):
            scale = cfg.layer_decay ** (depth + 1)
        elif m := _BLOCK.match(path):
            scale = cfg.layer_decay ** (depth - int(m.group(1)))
    return cfg.vision_lr * scale


def has_weight_decay(path: str) -> bool:
    """False for biases and `nn.LayerNorm` params (the reference's exclusions)."""
    if path.rsplit("/", 1)[-1] == "bias":
        return False
    return not any(fnmatch.fnmatchcase(path, pattern) for pattern in LAYER_NORM_PATTERNS)


def lr_tree(params: Mapping[str, Any], cfg: OptimConfig) -> dict:
    depth = trunk_depth(params)
    return _map_paths(lambda p: lr_multiplier(p, cfg, depth), params)


def frozen_tree(params: Mapping[str, Any], cfg: OptimConfig) -> dict:
    """True for every param that `cfg.trainable` leaves out: the train step stops its
    gradient. (The reference's buffers keep theirs, as before `trainable` existed: with the
    default patterns the compiled step is the one it was.)"""
    return _map_paths(lambda path: not is_trainable(path, cfg), params)


def weight_decay_mask(params: Mapping[str, Any]) -> dict:
    return _map_paths(has_weight_decay, params)


def schedule_shape(cfg: OptimConfig, total_steps: int) -> optax.Schedule:
    """Multiplier of every group's peak LR at update `count` (0-based), in [0, 1]."""
    if total_steps <= 0:
        raise ValueError(f"total_steps must be positive, got {total_steps}")
    decay_steps = max(total_steps - cfg.warmup_steps, 1)
    if cfg.schedule == "cosine":
        # fvcore CosineParamScheduler(1, r) at where = step / steps (steps after warmup).
        def main(count):
            where = jnp.minimum(count / decay_steps, 1.0)
            r = cfg.end_lr_ratio
            return r + 0.5 * (1.0 - r) * (1.0 + jnp.cos(jnp.pi * where))
    elif cfg.schedule == "constant":

        def main(count):
            return jnp.ones_like(count, jnp.float32)
    else:
        raise ValueError(f"unknown LR schedule {cfg.schedule!r}; use 'cosine' or 'constant'")
    if cfg.warmup_steps <= 0:
        return lambda count: main(jnp.asarray(count, jnp.float32))

    def warmed(count):
        count = jnp.asarray(count, jnp.float32)
        warm = (count + 1.0) / cfg.warmup_steps  # reaches 1 at the last warmup update
        return jnp.where(count < cfg.warmup_steps, warm, main(count - cfg.warmup_steps))

    return warmed


class ScaleByParamLRState(NamedTuple):
    count: jax.Array  # int32 scalar: updates done


def scale_by_param_lr(lrs: Any, shape: optax.Schedule) -> optax.GradientTransformation:
    """updates -> -shape(count) * lr_leaf * updates (lrs: a tree of floats like params)."""

    def init(params):
        del params
        return ScaleByParamLRState(count=jnp.zeros([], jnp.int32))

    def update(updates, state, params=None):
        del params
        factor = shape(state.count)
        updates = jax.tree.map(lambda u, lr: (-lr * factor).astype(u.dtype) * u, updates, lrs)
        return updates, ScaleByParamLRState(count=optax.safe_increment(state.count))

    return optax.GradientTransformation(init, update)


def make_optimizer(
    params: Mapping[str, Any], cfg: OptimConfig, total_steps: int
) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """The optax transformation for `params` and the schedule shape (for logging the LR).

    Args:
      params: the params tree (arrays or ShapeDtypeStructs); only its paths are read.
      cfg: optimizer settings.
      total_steps: length of the run (the cosine reaches `end_lr_ratio` there).
    """
    check_trainable(params, cfg)
    shape = schedule_shape(cfg, total_steps)
    parts = []
    if cfg.clip_norm is not None:
        parts.append(optax.clip_by_global_norm(cfg.clip_norm))
    parts += [
        optax.scale_by_adam(b1=cfg.b1, b2=cfg.b2, eps=cfg.eps),
        optax.add_decayed_weights(cfg.weight_decay, mask=weight_decay_mask(params)),
        scale_by_param_lr(lr_tree(params, cfg), shape),
    ]
    return optax.chain(*parts), shape
