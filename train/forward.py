"""The training-mode forward pass of SAM 2 on a clip (reference `SAM2Train.forward`).

1. The image encoder runs on every frame of every clip at once (drop path active in training).
2. Frames are processed in the reference's order: the initial conditioning frames first, then
   the others ascending, as one `lax.scan` whose carry is a float32 memory bank (gradients
   flow through the memories into earlier frames).
3. Per frame: a ground-truth mask prompt is taken as the output (`use_mask_as_output`); else
   the features are conditioned on memory (initial conditioning frames just add
   `no_mem_embed`; the others run memory attention once, dropout active in training, and see
   every conditioning frame's pointer, future ones included, as the reference does in
   training) and the SAM heads decode the frame's initial points (step 0).
4. On correction frames, `num_correction_pt_per_frame` more decoder steps follow on the same
   memory-conditioned features: a click sampled from the errors of the current mask (or from
   the ground truth with probability `prob_to_sample_from_gt`) is appended to the points,
   and the previous step's low-res logits are the dense prompt. 3 candidate masks while a
   frame has at most one point, else 1.
5. The final mask (sigmoid, x20 - 10) is encoded into a memory: conditioning memory on
   initial and corrected frames, else a recent one.

Fixed shapes: every frame has K = 1 + C step slots (`step_valid` says which ran) and 3
candidate slots (`num_masks` says how many are real); correction steps run under `lax.cond`
only on correction frames. All prompt decisions are arrays (`PromptPlan`), so one compiled
function serves sampled and given prompts.

Shapes: B clips, T frames, O objects per clip, N = B * O objects (object n = b * O + o),
S image size, h = S / 16, C = correction clicks per frame, P = 2 + C point slots.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from sam2_jax.memory.bank import MemoryBank, empty_bank
from sam2_jax.memory.encoding import encode_memory
from sam2_jax.memory.policy import REFERENCE, MemoryPolicy, StepScores
from sam2_jax.memory.tokens import condition_on_memory
from sam2_jax.modeling.sam2_base import SAM2
from sam2_jax.train.prompting import (
    PromptPlan,
    TrainPromptConfig,
    sample_plan,
    sample_points_from_errors,
)

Variables = dict[str, Any]
NUM_CANDIDATES = 3  # multimask outputs of the mask decoder


class ForwardOutputs(NamedTuple):
    """Per frame (in frame order) and per interaction step.

    Attributes:
      multimask_logits: (N, T, K, 4h, 4w, 3) low-res candidate mask logits (NO_OBJ_SCORE
        where the object score is <= 0); slots >= num_masks are zeros. Upsampled bilinearly to
        S x S they are the reference's `multistep_pred_multimasks_high_res`, except on
        `mask_input` frames, whose high-res logits are the mask prompt x20 - 10 itself.
      ious: (N, T, K, 3) predicted IoUs (zeros in unused slots).
      object_score_logits: (N, T, K, 1).
      num_masks: (T, K) int32, 3 (multimask step) or 1.
      step_valid: (T, K) bool, the step ran (step 0 always; 1..C on correction frames).
      mask_input: (T,) bool, frames whose output is the ground-truth mask prompt.
      pred_masks: (N, T, 4h, 4w) the frame's final low-res mask logits.
      point_coords: (N, T, P, 2) the frame's final points; point_labels (N, T, P) int32;
      num_points: (T,) int32 valid points per frame (the first num_points slots).
      plan: the PromptPlan that was used (with the sampled correction clicks filled in).
    """

    multimask_logits: jax.Array
    ious: jax.Array
    object_score_logits: jax.Array
    num_masks: jax.Array
    step_valid: jax.Array
    mask_input: jax.Array
    pred_masks: jax.Array
    point_coords: jax.Array
    point_labels: jax.Array
    num_points: jax.Array
    plan: PromptPlan


class _Heads(NamedTuple):
    """One decoder step for N objects."""

    multimasks: jax.Array  # (N, 4h, 4w, 3)
    ious: jax.Array  # (N, 3)
    low_res: jax.Array  # (N, 4h, 4w, 1) selected mask
    high_res: jax.Array  # (N, S, S, 1)
    obj_ptr: jax.Array  # (N, C)
    score: jax.Array  # (N, 1)
    iou: jax.Array  # (N,) predicted IoU of the selected mask
    num_masks: jax.Array  # () int32


def _decode(
    m: SAM2,
    pix_feat: jax.Array,
    high_res_features: tuple[jax.Array, jax.Array],
    coords: jax.Array,
    labels: jax.Array,
    point_valid: jax.Array,
    mask_input: jax.Array | None,
    multimask: jax.Array,
) -> _Heads:
    """SAM heads in training mode (no stability fallback) with a traced multimask flag.

    Args:
      pix_feat: (N, h, w, C); coords (N, P, 2); labels (N, P); point_valid (N, P) bool.
      mask_input: (N, 4h, 4w, 1) logits of the previous step, or None.
      multimask: () bool.
    """
    n = pix_feat.shape[0]
    out = m.forward_sam_heads(
        pix_feat,
        coords,
        labels,
        mask_input,
        high_res_features,
        multimask_output=jnp.broadcast_to(multimask, (n,)),
        training=True,
        point_valid=point_valid,
    )
    num_masks = jnp.where(multimask, NUM_CANDIDATES, 1).astype(jnp.int32)
    return _Heads(
        out.low_res_multimasks,
        out.ious,
        out.low_res_masks,
        out.high_res_masks,
        out.obj_ptr,
        out.object_score_logits,
        out.iou[:, 0],
        num_masks,
    )


def _mask_as_output(
    m: SAM2, raw: jax.Array, high_res_features: tuple[jax.Array, jax.Array], gt: jax.Array
) -> _Heads:
    """A ground-truth mask prompt as the output (reference `_use_mask_as_output`); gt (N, S, S)."""
    out = m.use_mask_as_output(raw, high_res_features, gt[..., None])
    pad = jnp.zeros_like(out.low_res_masks[..., :1])
    multimasks = jnp.concatenate([out.low_res_masks, pad, pad], axis=-1)
    ious = jnp.concatenate([out.ious, jnp.zeros_like(out.ious), jnp.zeros_like(out.ious)], -1)
    return _Heads(
        multimasks,
        ious,
        out.low_res_masks,
        out.high_res_masks,
        out.obj_ptr,
        out.object_score_logits,
        out.iou[:, 0],
        jnp.asarray(1, jnp.int32),
    )


def _features_in_order(features: dict, order: jax.Array) -> tuple[jax.Array, ...]:
    """The FPN maps of each clip in processing order, frames leading: (B, T, ...) ->
    (T, B, ...), to be the frame scan's inputs: their gradients are then stacked per step,
    where a map indexed inside the scan gets a whole (B, T, ...) gradient update per step."""
    return tuple(jnp.moveaxis(jnp.take(x, order, axis=1), 1, 0) for x in features["backbone_fpn"])


def _validate(frames: jax.Array, masks: jax.Array, object_valid: jax.Array, size: int) -> None:
    if frames.ndim != 5 or frames.shape[2:] != (size, size, 3):
        raise ValueError(f"frames must be (B, T, {size}, {size}, 3), got {frames.shape}")
    b, t = frames.shape[:2]
    if masks.ndim != 5 or masks.shape[:2] != (b, t) or masks.shape[3:] != (size, size):
        raise ValueError(f"masks must be (B, T, O, {size}, {size}) = ({b}, {t}, ...), got "
                         f"{masks.shape}")  # fmt: skip
    if object_valid.shape != (b, masks.shape[2]):
        raise ValueError(f"object_valid must be (B, O) = {(b, masks.shape[2])}, got "
                         f"{object_valid.shape}")  # fmt: skip


def training_forward(
    module: SAM2,
    variables: Variables,
    frames: jax.Array,
    masks: jax.Array,
    object_valid: jax.Array,
    key: jax.Array,
    cfg: TrainPromptConfig,
    *,
    train: bool = True,
    prompts: PromptPlan | None = None,
    freeze_image_encoder: bool = False,
    memory_policy: MemoryPolicy = REFERENCE,
) -> ForwardOutputs:
    """Runs clips through SAM 2 as the reference trainer does, simulating the interaction.

    Args:
      module, variables: the SAM2 module and `{"params": ...}`.
      frames: (B, T, S, S, 3) float32 ImageNet-normalized frames.
      masks: (B, T, O, S, S) bool ground truth (all False where an object is absent).
      object_valid: (B, O) bool; padding objects run along but their outputs mean nothing.
      key: PRNG key for the prompts, the correction clicks, dropout and drop path.
      cfg: prompt-simulation settings.
      train: static; False turns dropout / drop path off (prompt sampling is unaffected).
      prompts: a given PromptPlan (leading axis N = B * O) instead of sampling one; with
        `correction_coords` the correction clicks are given too, else sampled.
      freeze_image_encoder: static; no gradient reaches the image encoder's params, as the
        reference's `freeze_image_encoder` (the decoder's conv_s0 / conv_s1 still train).
      memory_policy: static; what each frame reads from the memory (in training mode) and
        writes into it (`sam2_jax.memory`).

    Returns:
      ForwardOutputs (objects flattened, n = b * O + o).
    """
    config = module.config
    size = config.image_size
    _validate(frames, masks, object_valid, size)
    b, t, o = masks.shape[:3]
    n = b * o
    num_corr = cfg.num_correction_pt_per_frame
    gt_all = jnp.swapaxes(masks.astype(bool), 1, 2).reshape(n, t, size, size)  # (N, T, S, S)
    k_plan, k_click, k_drop = jax.random.split(key, 3)
    plan = sample_plan(k_plan, gt_all, cfg) if prompts is None else prompts
    given_clicks = plan.correction_coords is not None
    deterministic = not train
    if freeze_image_encoder:
        params = dict(variables["params"])
        params["image_encoder"] = jax.lax.stop_gradient(params["image_encoder"])
        variables = {**variables, "params": params}

    def apply(fn, *args, rng=None):
        rngs = None if deterministic or rng is None else {"dropout": rng}
        return module.apply(variables, *args, method=fn, rngs=rngs)

    images = frames.reshape(b * t, size, size, 3)  # (B*T, S, S, 3), clip-major
    features = apply(SAM2.forward_image, images, deterministic, rng=jax.random.fold_in(k_drop, t))
    features = {
        "backbone_fpn": [x.reshape(b, t, *x.shape[1:]) for x in features["backbone_fpn"]],
        "pos": features["vision_pos_enc"][-1][:1],  # (1, h, w, C), the same for every image
    }
    emb = config.embedding_size
    bank = empty_bank(
        n,
        emb * emb,
        mem_dim=config.mem_dim,
        hidden_dim=config.d_model,
        cond_capacity=min(cfg.max_cond_frames, t),
        # a clip of t frames, one of them at least conditioning, writes <= t - 1 recent
        # memories: a larger ring would only add masked keys to every frame's attention
        num_recent=max(min(config.num_maskmem - 1, t - 1), 1),
        num_ptrs=max(min(t, config.max_obj_ptrs_in_encoder) - 1, 1),
        dtype=jnp.float32,
        policy_state=memory_policy.init_state(n),
    )
    p_slots = cfg.max_points

    def frame_step(bank: MemoryBank, inputs: tuple[jax.Array, ...]):
        frame, *fpn = inputs  # (), then the frame's FPN maps of the B clips
        s0, s1, raw = (jnp.repeat(x, o, axis=0) for x in fpn)  # per object: (N, ...)
        high_res_features = (s0, s1)
        is_init = plan.init_cond[frame]
        mask_prompt = plan.use_mask & is_init
        corrected = plan.correct[frame]
        gt = gt_all[:, frame]  # (N, S, S)
        fkey = jax.random.fold_in(k_click, frame)

        def with_memory(_):
            # the training-mode selection: every conditioning frame's pointer, also those
            # ahead of the current frame (at eval only past ones)
            def attend(m: SAM2):
                return condition_on_memory(
                    m, bank, raw, features["pos"], frame, False, t, memory_policy,
                    training=True, deterministic=deterministic,
                )  # fmt: skip

            return apply(attend, rng=jax.random.fold_in(k_drop, frame))

        def without_memory(_):
            no_mem = variables["params"]["no_mem_embed"].reshape(1, 1, 1, -1)
            return (raw + no_mem).astype(raw.dtype)  # float32 params: keep the compute dtype

        pix_feat = jax.lax.cond(is_init, without_memory, with_memory, None)

        num_init = plan.init_num_points[frame]
        coords = jnp.zeros((n, p_slots, 2), jnp.float32).at[:, :2].set(plan.init_coords[:, frame])
        labels = jnp.full((n, p_slots), -1, jnp.int32).at[:, :2].set(plan.init_labels[:, frame])
        slots = jnp.arange(p_slots)[None]

        def heads(coords, labels, num_points, mask_input):
            multimask = num_points <= 1  # released configs: multimask for 0..1 points
            valid = jnp.broadcast_to(slots < num_points, (n, p_slots))
            return apply(_decode, pix_feat, high_res_features, coords, labels, valid,
                         mask_input, multimask)  # fmt: skip

        step0 = jax.lax.cond(
            mask_prompt,
            lambda _: apply(_mask_as_output, raw, high_res_features, gt),
            lambda _: heads(coords, labels, num_init, None),
            None,
        )

        def correction(state, k):
            coords, labels, num_points, prev = state
            if given_clicks:
                click = plan.correction_coords[:, frame, k]
                click_label = plan.correction_labels[:, frame, k]
            else:
                skey = jax.random.fold_in(fkey, k)
                from_gt = (
                    jax.random.uniform(jax.random.fold_in(skey, 1)) < cfg.prob_to_sample_from_gt
                )
                if not train:
                    from_gt = jnp.asarray(False)
                pred = (prev.high_res[..., 0] > 0) & ~from_gt
                click, click_label = sample_points_from_errors(skey, gt, pred)
            coords = jax.lax.dynamic_update_slice_in_dim(coords, click[:, None], num_points, 1)
            labels = jax.lax.dynamic_update_slice_in_dim(
                labels, click_label[:, None], num_points, 1
            )
            out = heads(coords, labels, num_points + 1, prev.low_res)
            return (coords, labels, num_points + 1, out), (out, click, click_label)

        def run_corrections(_):
            init = (coords, labels, num_init, step0)
            final, per_step = jax.lax.scan(correction, init, jnp.arange(num_corr))
            return final, per_step

        def skip_corrections(_):
            zeros = jax.tree.map(
                lambda x: jnp.zeros((num_corr, *x.shape), x.dtype),
                (step0, coords[:, 0], labels[:, 0]),
            )
            return (coords, labels, num_init, step0), zeros

        final, (steps, clicks, click_labels) = jax.lax.cond(
            corrected, run_corrections, skip_corrections, None
        )
        f_coords, f_labels, f_num, last = final

        if t > 1:  # a single frame's memory would never be read

            def encode(m: SAM2):  # always a sigmoid of the mask in training
                return encode_memory(m, raw, last.high_res, last.score[:, 0], None, jnp.float32)

            mem = apply(encode)
            as_cond = is_init | (corrected & cfg.add_all_frames_to_correct_as_cond)
            everyone = jnp.ones((n,), bool)
            scores = StepScores(iou=last.iou, object_score=last.score[:, 0])
            bank, _ = memory_policy.write(bank, frame, mem, last.obj_ptr, as_cond, everyone, scores)

        def stack(first, rest):  # (N, ...), (C, N, ...) -> (N, K, ...)
            return jnp.concatenate([first[None], rest], axis=0).swapaxes(0, 1)

        out = {
            "multimask_logits": stack(step0.multimasks, steps.multimasks),
            "ious": stack(step0.ious, steps.ious),
            "object_score_logits": stack(step0.score, steps.score),
            "num_masks": jnp.concatenate([step0.num_masks[None], steps.num_masks]),
            "step_valid": jnp.concatenate([jnp.ones((1,), bool), jnp.full((num_corr,), corrected)]),
            "pred_masks": last.low_res[..., 0],
            "point_coords": f_coords,
            "point_labels": f_labels,
            "num_points": f_num,
            "clicks": clicks.swapaxes(0, 1),  # (N, C, 2)
            "click_labels": click_labels.swapaxes(0, 1),  # (N, C)
        }
        return bank, out

    order = plan.processing_order()
    # Rematerialized per frame: the backward pass recomputes a frame's step from its carry and
    # inputs instead of stacking every intermediate of every frame (and of both branches of
    # its conds) across the scan; a 2 x 4-frame step of sam2.1_hiera_t at 256 px on CPU:
    # 8.5 -> 7.2 s, and memory that no longer grows with the clip's intermediates.
    inputs = (order, *_features_in_order(features, order))
    _, outs = jax.lax.scan(jax.checkpoint(frame_step), bank, inputs)
    # Back from processing order to frame order.
    inverse = jnp.argsort(order)
    outs = jax.tree.map(lambda x: jnp.take(x, inverse, axis=0), outs)

    def objects_first(x):  # (T, N, ...) -> (N, T, ...)
        return jnp.swapaxes(x, 0, 1)

    used_plan = plan._replace(
        correction_coords=objects_first(outs["clicks"]),
        correction_labels=objects_first(outs["click_labels"]),
    )
    return ForwardOutputs(
        multimask_logits=objects_first(outs["multimask_logits"]),
        ious=objects_first(outs["ious"]),
        object_score_logits=objects_first(outs["object_score_logits"]),
        num_masks=outs["num_masks"],
        step_valid=outs["step_valid"],
        mask_input=plan.use_mask & plan.init_cond,
        pred_masks=objects_first(outs["pred_masks"]),
        point_coords=objects_first(outs["point_coords"]),
        point_labels=objects_first(outs["point_labels"]),
        num_points=outs["num_points"],
        plan=used_plan,
    )
