"""Which of the mask decoder's outputs the SAM heads return (the selection half of the
reference's `_forward_sam_heads`), for every caller: the video step, the training objective
and `use_mask_as_output`'s pointer.

The decoder always predicts 4 mask tokens (token 0 the single-mask output, 1..3 the
multimask candidates). Per object, with multimask output the best candidate by predicted IoU
is the mask (and its token the pointer's); without, token 0 is, or the inference-only
stability fallback's choice. Objects whose score is <= 0 get NO_OBJ_SCORE masks.

Shapes: B objects, h = S / 16, C = d_model, K = 3 with multimask output, else 1.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

# Mask logit written where the object score says "not present" (reference NO_OBJ_SCORE).
NO_OBJ_SCORE = -1024.0


class SAMHeadsOutput(NamedTuple):
    """What `SAM2.forward_sam_heads` returns: the reference's tuple order, then the selected
    mask's IoU. Masks are logits.

    With a static multimask flag K is 3 (True) or 1 (False). With a per-object (B,) flag
    K = 3: an object's candidates where its flag is set, else its single mask followed by
    two all-zero slots (IoUs 0), the layout of the reference trainer's outputs.
    `candidate_obj_ptrs` are the pointers of the three multimask candidates (a search over
    candidates, e.g. SAM2Long's pathways, continues from any of them).
    """

    low_res_multimasks: jax.Array  # (B, 4h, 4w, K)
    high_res_multimasks: jax.Array  # (B, S, S, K)
    ious: jax.Array  # (B, K)
    low_res_masks: jax.Array  # (B, 4h, 4w, 1): the selected mask
    high_res_masks: jax.Array  # (B, S, S, 1)
    obj_ptr: jax.Array  # (B, C)
    object_score_logits: jax.Array  # (B, 1)
    iou: jax.Array  # (B, 1): predicted IoU of the selected mask
    # (B, 3, C) each multimask candidate's object pointer, when asked for (else None)
    candidate_obj_ptrs: jax.Array | None = None

    def in_float32(self) -> SAMHeadsOutput:
        """Every array in float32 whatever the compute dtype: what the heads hand on (outputs,
        scores, the bank's pointers, a step's cond branches) has one dtype."""
        return jax.tree.map(lambda x: x.astype(jnp.float32), self)


class HeadsSelection(NamedTuple):
    """`select_outputs`' result (masks gated by the object score, float32)."""

    low_res_multimasks: jax.Array  # (B, 4h, 4w, K)
    ious: jax.Array  # (B, K)
    low_res_mask: jax.Array  # (B, 4h, 4w, 1)
    iou: jax.Array  # (B, 1)
    token: jax.Array  # (B, C): the output token the object pointer is computed from
    appearing: jax.Array  # (B, 1) bool: object score > the appearance threshold


def _take(x: jax.Array, index: jax.Array, axis: int) -> jax.Array:
    """x[b, ..., index[b], ...] along `axis`, keeping that axis (size 1)."""
    shape = [1] * x.ndim
    shape[0] = index.shape[0]
    return jnp.take_along_axis(x, index.reshape(shape), axis=axis)


def select_outputs(
    masks: jax.Array,
    iou: jax.Array,
    tokens: jax.Array,
    object_score_logits: jax.Array,
    multimask: bool | jax.Array,
    *,
    stability: Callable[[jax.Array, jax.Array], tuple[jax.Array, jax.Array]] | None,
    use_multimask_token_for_obj_ptr: bool = True,
    appear_threshold: float = 0.0,
    choose: Callable[[jax.Array, jax.Array], jax.Array] | None = None,
) -> HeadsSelection:
    """Per-object mask, IoU and pointer token from all of the decoder's tokens.

    Args:
      masks: (B, 4h, 4w, 4) logits of the 4 mask tokens; iou: (B, 4); tokens: (B, 4, C);
        object_score_logits: (B, 1).
      multimask: a Python bool (static, K = 3 or 1) or a (B,) bool array (K = 3 slots).
      stability: the decoder's single-mask fallback (`MaskDecoder.select_via_stability`),
        or None where it does not apply (training, or switched off).
      use_multimask_token_for_obj_ptr: the pointer comes from the chosen candidate's token
        (released configs) rather than token 0.
      appear_threshold: the object counts as present where its score logit is above this
        (the reference: 0); absent objects get NO_OBJ_SCORE masks and the no-object pointer.
      choose: which multimask candidate an object takes, in place of the highest predicted
        IoU: (gated candidate logits (B, 4h, 4w, 3), their IoUs (B, 3)) -> (B,) int index
        in 0..2 (a memory policy's mask choice, e.g. a motion model's).
    """
    b = masks.shape[0]
    appearing = object_score_logits > appear_threshold  # (B, 1)

    def gate(x: jax.Array) -> jax.Array:  # (B, 4h, 4w, k)
        return jnp.where(appearing[:, :, None, None], x, NO_OBJ_SCORE).astype(jnp.float32)

    if choose is None:
        best = jnp.argmax(iou[:, 1:], axis=-1) + 1  # (B,)
    else:
        best = jnp.asarray(choose(gate(masks[..., 1:]), iou[:, 1:]), jnp.int32) + 1
    multi_mask, multi_iou = _take(masks, best, -1), _take(iou, best, -1)
    multi_token = _take(tokens, best, 1)[:, 0] if use_multimask_token_for_obj_ptr else tokens[:, 0]
    if multimask is True:
        return HeadsSelection(
            gate(masks[..., 1:]), iou[:, 1:], gate(multi_mask), multi_iou, multi_token, appearing
        )
    if stability is not None:
        single_mask, single_iou = stability(masks, iou)  # on the ungated logits
    else:
        single_mask, single_iou = masks[..., 0:1], iou[:, 0:1]
    if multimask is False:
        return HeadsSelection(
            gate(single_mask), single_iou, gate(single_mask), single_iou, tokens[:, 0], appearing
        )
    multi = jnp.broadcast_to(jnp.asarray(multimask, bool), (b,))
    mask = jnp.where(multi[:, None, None, None], multi_mask, single_mask)
    chosen_iou = jnp.where(multi[:, None], multi_iou, single_iou)  # (B, 1)
    token = jnp.where(multi[:, None], multi_token, tokens[:, 0])  # (B, C)
    single_gated = gate(single_mask)
    empty = jnp.zeros_like(single_gated)
    candidates = jnp.where(
        multi[:, None, None, None],
        gate(masks[..., 1:]),
        jnp.concatenate([single_gated, empty, empty], -1),
    )  # (B, 4h, 4w, 3)
    zeros = jnp.zeros_like(single_iou)
    ious = jnp.where(multi[:, None], iou[:, 1:], jnp.concatenate([single_iou, zeros, zeros], -1))
    return HeadsSelection(candidates, ious, gate(mask), chosen_iou, token, appearing)
