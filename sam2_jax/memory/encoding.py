"""The memory of a frame: its mask and features through the memory encoder (reference
`_encode_new_memory`), for the video step and the training objective alike.

Shapes: B objects, S = image_size, h = w = S / 16, HW = h * w, C = d_model, M = mem_dim.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from sam2_jax.memory.per_object import call_per_object
from sam2_jax.modeling.sam2_base import SAM2


def encode_memory(
    m: SAM2,
    raw: jax.Array,
    high_res: jax.Array,
    score: jax.Array,
    binarize: jax.Array | None,
    dtype: jnp.dtype,
    per_object: bool = False,
) -> jax.Array:
    """New spatial memories from the frame's mask logits at the input size.

    The mask is binarized (`> 0`) where `binarize` (the video predictor's prompted frames),
    else a sigmoid (tracked frames; always in training), then scaled and shifted as the
    config says. SAM 2.1 adds `no_obj_embed_spatial` where the object is absent.

    Args:
      m: the bound SAM2 module.
      raw: (B, h, w, C) the frame's stride-16 features (not memory-conditioned).
      high_res: (B, S, S, 1) mask logits; score: (B,) object score logits.
      binarize: (B,) bool, or None for a sigmoid everywhere.
      per_object: static; True runs the encoder one object at a time on CPU
        (`per_object.call_per_object`; inference: the training step keeps the batch).

    Returns:
      (B, HW, M) in `dtype`.
    """
    cfg = m.config
    b, h, w, _ = raw.shape
    high = high_res.astype(jnp.float32)
    mask_for_mem = jax.nn.sigmoid(high)
    if binarize is not None:
        mask_for_mem = jnp.where(
            binarize[:, None, None, None], (high > 0).astype(high.dtype), mask_for_mem
        )
    mask_for_mem = mask_for_mem * cfg.sigmoid_scale_for_mem_enc + cfg.sigmoid_bias_for_mem_enc
    if per_object:
        mem, _ = call_per_object(m.memory_encoder, raw, mask_for_mem)  # (B, h, w, M)
    else:
        mem, _ = m.memory_encoder(raw, mask_for_mem)
    if m.no_obj_embed_spatial is not None:
        absent = (score <= 0).astype(mem.dtype)[:, None, None, None]
        mem = mem + absent * m.no_obj_embed_spatial.reshape(1, 1, 1, -1).astype(mem.dtype)
    return mem.reshape(b, h * w, -1).astype(dtype)  # (B, h, w, M) -> (B, HW, M)
