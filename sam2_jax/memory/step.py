"""One video-tracking step as a pure function of a fixed-size memory bank.

`track_step` is the reference's `SAM2Base.track_step` (with `_prepare_memory_conditioned_features`
and `_encode_new_memory`) for B objects that share one frame's image features:

1. Objects with a mask prompt take the mask as their output (`SAM2.use_mask_as_output`), no
   memory involved.
2. Otherwise the frame's stride-16 features are conditioned on the memory bank: initial
   conditioning frames (a prompted frame of an object without a conditioning memory yet) just
   add `no_mem_embed`; every other frame attends to the spatial memories and object pointers
   that the memory policy selects, assembled here as one padded token sequence with a key mask.
3. SAM heads on the padded prompts; multimask output iff the object has at most one click.
4. Memory encoding of the predicted mask (binarized on prompted frames, else sigmoid) and a
   write into the bank, as the memory policy decides.

Everything is computed in the model's dtype (float32 by default); the bank stores spatial
memories in bfloat16, as the reference's video predictor does, and they are promoted back to
the compute dtype before attention (the reference would crash in float32 when a frame has
spatial memories but no pointer; this does not).

Shapes: B objects, S = image_size, h = w = S / 16, HW = h * w, C = 256, M = mem_dim = 64,
P = padded number of points.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from sam2_jax.memory.bank import MemoryBank, has_conditioning
from sam2_jax.memory.encoding import encode_memory
from sam2_jax.memory.policy import REFERENCE, MemoryPolicy, StepScores
from sam2_jax.memory.tokens import condition_on_memory
from sam2_jax.modeling.interpolation import upsample_bilinear
from sam2_jax.modeling.sam2_base import SAM2
from sam2_jax.modeling.sam_heads import NO_OBJ_SCORE
from sam2_jax.prompts import FramePrompts

Variables = dict[str, Any]


class StepOutput(NamedTuple):
    """Per-object results of one step.

    Attributes:
      low_res_masks: (B, 4h, 4w) float32 mask logits (NO_OBJ_SCORE where the object is absent,
        and for objects that are not tracked yet).
      object_score_logits: (B,) float32; the object is present iff > 0.
      obj_ptr: (B, C) float32.
      iou: (B,) float32 predicted IoU of the returned mask (1 for mask prompts).
      memory_features: (B, HW, M) the new spatial memory, in the bank's dtype.
      is_init_cond: (B,) bool, decoded without memory (initial conditioning frame).
      active: (B,) bool, the object was tracked on this frame (and written to the bank).
      overflow: (B,) bool, a conditioning memory was dropped because the object's
        conditioning slots were all taken by other frames.
    """

    low_res_masks: jax.Array
    object_score_logits: jax.Array
    obj_ptr: jax.Array
    iou: jax.Array
    memory_features: jax.Array
    is_init_cond: jax.Array
    active: jax.Array
    overflow: jax.Array


def _memory_from_low_res(
    m: SAM2, raw: jax.Array, low_res: jax.Array, score: jax.Array, binarize: jax.Array, dtype
) -> jax.Array:
    """`encode_memory` of (B, 4h, 4w) low-res logits upsampled to the input size, as the
    video predictor does: (B, HW, M)."""
    size = m.config.image_size
    high = upsample_bilinear(low_res[..., None].astype(jnp.float32), (size, size))
    return encode_memory(m, raw, high, score, binarize, dtype, per_object=True)


def _step(
    m: SAM2,
    bank: MemoryBank,
    features: dict,
    frame_idx: jax.Array,
    prompts: FramePrompts,
    track: jax.Array,
    is_init_cond: jax.Array | None,
    num_frames: int | jax.Array,
    reverse,
    policy: MemoryPolicy,
    prev_logits: jax.Array | None = None,
    encode_memory: bool = True,
) -> tuple[MemoryBank, StepOutput]:
    """`track_step` on a bound module.

    prev_logits: optional (B, 4h, 4w) low-res logits fed to the prompt encoder as a dense
      prompt (clamped to [-32, 32]), as the reference does when a frame is clicked again.
    encode_memory: static; False skips the memory encoder and leaves the bank unchanged
      (memory_features are zeros), as the reference's interactive decoding does.
    """
    cfg = m.config
    paths, objects = policy.num_pathways, bank
    if policy.has_pathways:  # each object's pathways as consecutive rows: B -> B * paths
        bank = policy.expand(bank)
        prompts, track, is_init_cond, prev_logits = jax.tree.map(
            lambda x: jnp.repeat(x, paths, axis=0), (prompts, track, is_init_cond, prev_logits)
        )
    b = prompts.num_points.shape[0]
    feat = features["vision_features"]  # (1, h, w, C)
    _, h, w, c = feat.shape
    high_res = tuple(jnp.broadcast_to(x, (b, *x.shape[1:])) for x in features["backbone_fpn"][:2])
    raw = jnp.broadcast_to(feat, (b, h, w, c))

    has_prompt = prompts.has_prompt
    has_cond = has_conditioning(bank)
    if is_init_cond is None:
        is_init_cond = has_prompt & ~has_cond
    active = track & (has_prompt | has_cond)

    # Memory-conditioned features (reference `_prepare_memory_conditioned_features`).
    def attend(_):
        pos = features["vision_pos_enc"][-1]
        return condition_on_memory(m, bank, raw, pos, frame_idx, reverse, num_frames, policy)

    needs_memory = active & ~is_init_cond & ~prompts.has_mask
    with_memory = jax.lax.cond(needs_memory.any(), attend, lambda _: raw, None)
    no_mem = raw + m.no_mem_embed.reshape(1, 1, 1, c).astype(raw.dtype)
    pix_feat = jnp.where(is_init_cond[:, None, None, None], no_mem, with_memory)

    # SAM heads on the padded points; multimask iff at most one click (0 on tracking frames).
    p = prompts.point_coords.shape[1]
    point_valid = jnp.arange(p)[None, :] < prompts.num_points[:, None]  # (B, P)
    dense = None if prev_logits is None else jnp.clip(prev_logits, -32.0, 32.0)[..., None]
    multimask = prompts.num_points <= 1
    heads = m.forward_sam_heads(
        pix_feat,
        prompts.point_coords,
        prompts.point_labels,
        dense,
        high_res,
        multimask_output=multimask,
        point_valid=point_valid,
        appear_threshold=policy.object_score_threshold,
        choose=policy.mask_chooser(bank.policy_state, cfg.image_size),
        candidate_pointers=policy.has_pathways,
    )
    low_res = heads.low_res_masks[..., 0]  # (B, 4h, 4w)
    score = heads.object_score_logits[:, 0]
    obj_ptr = heads.obj_ptr
    iou = heads.iou[:, 0]

    if prompts.mask is not None:  # mask prompts: the mask is the output (no memory)

        def from_mask(_):
            out = m.use_mask_as_output(
                raw, high_res, prompts.mask[..., None], policy.object_score_threshold
            )
            return out.low_res_masks[..., 0], out.object_score_logits[:, 0], out.obj_ptr

        mask_out = jax.lax.cond(
            prompts.has_mask.any(),
            from_mask,
            lambda _: (low_res, score, obj_ptr),
            None,
        )
        use = prompts.has_mask
        low_res = jnp.where(use[:, None, None], mask_out[0], low_res)
        score = jnp.where(use, mask_out[1], score)
        obj_ptr = jnp.where(use[:, None], mask_out[2], obj_ptr)
        iou = jnp.where(use, 1.0, iou)
        multimask = multimask & ~use

    candidates, candidate_ious = heads.low_res_multimasks, heads.ious
    if policy.has_pathways:
        eligible = active & ~has_prompt & multimask
        parent, pick, state = policy.choose_pathways(
            bank.policy_state, candidate_ious, score, eligible
        )
        bank = jax.tree.map(lambda x: x[parent], bank.replace(policy_state=None))
        bank = bank.replace(policy_state=state)
        low_res, score, obj_ptr, iou = low_res[parent], score[parent], obj_ptr[parent], iou[parent]
        candidates, candidate_ious = candidates[parent], candidate_ious[parent]
        take, j = pick >= 0, jnp.maximum(pick, 0)
        rows = jnp.arange(b)
        low_res = jnp.where(take[:, None, None], candidates[rows, :, :, j], low_res)
        iou = jnp.where(take, candidate_ious[rows, j], iou)
        obj_ptr = jnp.where(take[:, None], heads.candidate_obj_ptrs[parent, j], obj_ptr)

    if encode_memory:
        scores = StepScores(
            iou=iou.astype(jnp.float32),
            object_score=score.astype(jnp.float32),
            mask_logits=low_res.astype(jnp.float32),
            multimask=multimask,
            candidates=candidates,
            candidate_ious=candidate_ious,
        )
        chosen = policy.binarize_memory(bank.policy_state, scores, frame_idx)
        scores = scores._replace(binarized=chosen)  # the write reads the decision back
        binarize = has_prompt if chosen is None else has_prompt | chosen
        mem = _memory_from_low_res(m, raw, low_res, score, binarize, bank.recent_features.dtype)
        bank, overflow = policy.write(
            bank, frame_idx, mem, obj_ptr, has_prompt, active, scores, reverse=reverse
        )
    else:
        mem = jnp.zeros((b, h * w, cfg.mem_dim), bank.recent_features.dtype)
        overflow = jnp.zeros((b,), bool)
    low_res = jnp.where(active[:, None, None], low_res, NO_OBJ_SCORE)
    outputs = StepOutput(
        low_res_masks=low_res.astype(jnp.float32),
        object_score_logits=score.astype(jnp.float32),
        obj_ptr=obj_ptr.astype(jnp.float32),
        iou=iou.astype(jnp.float32),
        memory_features=mem,
        is_init_cond=is_init_cond & active,
        active=active,
        overflow=overflow,
    )
    if policy.has_pathways:  # back to B objects; each object's first row leads
        bank = policy.collapse(bank, objects) if encode_memory else objects
        outputs = jax.tree.map(lambda x: x[::paths], outputs)
    return bank, outputs


def track_step(
    module: SAM2,
    variables: Variables,
    bank: MemoryBank,
    features: dict,
    frame_idx: jax.Array,
    prompts: FramePrompts,
    *,
    num_frames: int | jax.Array,
    reverse: bool | jax.Array = False,
    memory_policy: MemoryPolicy = REFERENCE,
    track: jax.Array | None = None,
    is_init_cond: jax.Array | None = None,
    prev_logits: jax.Array | None = None,
    encode_memory: bool = True,
) -> tuple[MemoryBank, StepOutput]:
    """Tracks B objects on one frame and writes their new memories into the bank.

    Args:
      module, variables: the SAM2 module and `{"params": ...}`.
      bank: the memory state of the B objects.
      features: `SAM2.forward_image` of this frame with batch 1 (shared by the objects).
      frame_idx: () int32.
      prompts: this frame's prompts (`FramePrompts`, leading axis B).
      num_frames: video length (traced, never static); bounds and normalizes the pointer
        window.
      reverse: tracking direction.
      memory_policy: what the frame reads from the bank and writes into it
        (`sam2_jax.memory.reference_policy()` by default).
      track: (B,) bool, objects to process (default all); the others are not written and
        get NO_OBJ_SCORE outputs. Objects without any prompt so far are never processed.
      is_init_cond: (B,) bool override of "decode without memory" (default: prompted and no
        conditioning memory yet). The video predictor's prompts given before propagation are
        all initial conditioning frames, even for an object prompted on several frames.
      prev_logits: (B, 4h, 4w) previous low-res logits of a frame clicked again, fed to the
        prompt encoder as a dense prompt (clamped to [-32, 32]); None for no dense prompt.
      encode_memory: False skips the memory encoder and returns the bank unchanged (the
        reference decodes interactive clicks so; `encode_prompted_memory` encodes later).

    Returns:
      the new bank and the per-object `StepOutput`.
    """
    b = prompts.num_points.shape[0]
    track = jnp.ones((b,), bool) if track is None else jnp.asarray(track, bool)

    def run(m: SAM2):
        return _step(
            m, bank, features, frame_idx, prompts, track, is_init_cond, num_frames, reverse,
            memory_policy, prev_logits, encode_memory,
        )  # fmt: skip

    return module.apply(variables, method=run)


def encode_prompted_memory(
    module: SAM2,
    variables: Variables,
    features: dict,
    low_res: jax.Array,
    object_score_logits: jax.Array,
    dtype: jnp.dtype = jnp.bfloat16,
) -> jax.Array:
    """The memory of an interactively prompted frame, from its (post-processed) output.

    The reference's `propagate_in_video_preflight`: the low-res logits upsampled to the input
    size and binarized, through the memory encoder.

    Args:
      features: `SAM2.forward_image` of the frame with batch 1.
      low_res: (B, 4h, 4w) logits; object_score_logits: (B,).

    Returns:
      (B, HW, M) memory features in `dtype`.
    """
    b = low_res.shape[0]
    feat = features["vision_features"]  # (1, h, w, C)
    raw = jnp.broadcast_to(feat, (b, *feat.shape[1:]))

    def run(m: SAM2):
        binarize = jnp.ones((b,), bool)
        return _memory_from_low_res(m, raw, low_res, object_score_logits, binarize, dtype)

    return module.apply(variables, method=run)


def encode_frame(module: SAM2, variables: Variables, frame: jax.Array) -> dict:
    """(S, S, 3) normalized frame -> `SAM2.forward_image` output with batch 1."""
    return module.apply(variables, frame[None], method=SAM2.forward_image)
