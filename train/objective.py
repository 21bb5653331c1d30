"""The training objective: simulated interaction on a clip, then the multi-step loss.

`loss_fn` is what the trainer differentiates. It normalizes the frames (uint8 in, ImageNet
mean / std on device), runs `training_forward` (prompts sampled with the step's key) and sums
`train.losses` over frames and interaction steps, divided by the number of valid objects,
as the reference's `MultiStepMultiMasksAndIous` does.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np

from sam2_jax.memory.policy import REFERENCE, MemoryPolicy
from sam2_jax.modeling.interpolation import upsample_bilinear
from sam2_jax.modeling.sam2_base import SAM2
from sam2_jax.train.forward import ForwardOutputs, training_forward
from sam2_jax.train.losses import LossConfig, frame_losses, weighted_total
from sam2_jax.train.prompting import PromptPlan, TrainPromptConfig

IMAGENET_MEAN = np.array([0.485, 0.456, 0.406], np.float32)
IMAGENET_STD = np.array([0.229, 0.224, 0.225], np.float32)
LOSS_NAMES = ("loss_mask", "loss_dice", "loss_iou", "loss_class")


@dataclasses.dataclass(frozen=True)
class ObjectiveConfig:
    """Prompt simulation and loss settings (released SAM 2.1 training defaults)."""

    prompt: TrainPromptConfig = dataclasses.field(default_factory=TrainPromptConfig)
    loss: LossConfig = dataclasses.field(default_factory=LossConfig)
    freeze_image_encoder: bool = False  # no gradient into the image encoder
    memory_policy: MemoryPolicy = REFERENCE  # what each frame reads from / writes to memory


def normalize_frames(frames: jax.Array) -> jax.Array:
    """(..., 3) uint8 RGB -> float32 ImageNet-normalized; float input is returned as is."""
    if frames.dtype != jnp.uint8:
        return frames.astype(jnp.float32)
    x = frames.astype(jnp.float32) / 255.0
    return (x - IMAGENET_MEAN) / IMAGENET_STD


def clip_losses(
    outputs: ForwardOutputs,
    masks: jax.Array,
    object_valid: jax.Array,
    cfg: LossConfig,
) -> dict[str, jax.Array]:
    """The loss terms of a forward pass, summed over frames and steps.

    Args:
      outputs: `training_forward` outputs (N = B * O objects).
      masks: (B, T, O, S, S) bool ground truth.
      object_valid: (B, O) bool.

    Returns:
      dict of () float32: loss_mask, loss_dice, loss_iou, loss_class (each already divided by
      the number of valid objects) and core_loss (their weighted sum).
    """
    b, t, o, size = masks.shape[0], masks.shape[1], masks.shape[2], masks.shape[3]
    n = b * o
    gt = jnp.swapaxes(masks.astype(bool), 1, 2).reshape(n, t, size, size)  # (N, T, S, S)
    valid = object_valid.reshape(n)
    num_objects = jnp.maximum(valid.sum().astype(jnp.float32), 1.0)

    @jax.checkpoint  # keep only low-res logits for the backward pass, not S x S maps
    def one_frame(args):
        low, ious, scores, num_masks, step_valid, mask_input, target = args
        k = low.shape[1]
        high = upsample_bilinear(low.reshape(n * k, *low.shape[2:]), (size, size)).reshape(
            n, k, size, size, low.shape[-1]
        )  # (N*K, 4h, 4w, 3) -> (N, K, S, S, 3)
        # A mask prompt's high-res output is the prompt itself (x20 - 10), not an upsampling.
        from_prompt = (target.astype(jnp.float32) * 20.0 - 10.0)[:, None, :, :, None]
        high = jnp.where(mask_input, jnp.broadcast_to(from_prompt, high.shape), high)
        return frame_losses(
            high, ious, scores, target, num_masks, step_valid, valid, num_objects, cfg
        )

    per_frame = jax.lax.map(
        one_frame,
        (
            jnp.swapaxes(outputs.multimask_logits, 0, 1),  # (T, N, K, 4h, 4w, 3)
            jnp.swapaxes(outputs.ious, 0, 1),
            jnp.swapaxes(outputs.object_score_logits, 0, 1),
            outputs.num_masks,
            outputs.step_valid,
            outputs.mask_input,
            jnp.swapaxes(gt, 0, 1),  # (T, N, S, S)
        ),
    )
    losses = {name: per_frame[name].sum() for name in LOSS_NAMES}
    losses["core_loss"] = weighted_total(losses, cfg)
    return losses


def loss_fn(
    params: dict,
    batch: dict,
    key: jax.Array,
    *,
    module: SAM2,
    cfg: ObjectiveConfig,
    train: bool = True,
    prompts: PromptPlan | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The scalar training loss of one batch and its metrics.

    Args:
      params: the SAM2 params tree (differentiated).
      batch: {"frames": (B, T, S, S, 3) uint8 (normalized here) or float32 (already
        normalized), "masks": (B, T, O, S, S) bool, "object_valid": (B, O) bool}.
      key: PRNG key of this step (prompts, correction clicks, dropout, drop path).
      module: the SAM2 module (static). Its config's `trunk.drop_path_rate` sets drop path.
      cfg: ObjectiveConfig (static).
      train: static; False disables dropout and drop path.
      prompts: optional given PromptPlan (see `training_forward`).

    Returns:
      (core_loss, metrics) with metrics = the four loss terms, core_loss and
      `mask_prompt` (1.0 when this step's initial prompts were ground-truth masks).
    """
    frames = normalize_frames(batch["frames"])
    masks = jnp.asarray(batch["masks"]).astype(bool)
    object_valid = jnp.asarray(batch["object_valid"]).astype(bool)
    outputs = training_forward(
        module,
        {"params": params},
        frames,
        masks,
        object_valid,
        key,
        cfg.prompt,
        train=train,
        prompts=prompts,
        freeze_image_encoder=cfg.freeze_image_encoder,
        memory_policy=cfg.memory_policy,
    )
    losses = clip_losses(outputs, masks, object_valid, cfg.loss)
    metrics = dict(losses)
    metrics["mask_prompt"] = outputs.plan.use_mask.astype(jnp.float32)
    return losses["core_loss"], metrics
