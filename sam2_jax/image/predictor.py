"""`SAM2ImagePredictor`: the reference's image predictor API on compiled JAX functions.

Numpy in, numpy out, with the reference's method names, arguments and return shapes. The
image is encoded once (`set_image`); each `predict` runs only the prompt encoder and mask
decoder, compiled once per prompt layout: number of objects, click bucket
(`sam2_jax.buckets`: 1 to 16 clicks share one program), mask or not, multimask or not.
Many prompts (objects) for one image run in one call, as the reference's "batched mode"
does.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from sam2_jax import transforms
from sam2_jax.buckets import click_bucket
from sam2_jax.build import SAM2Model
from sam2_jax.image.prompts import prepare_image_prompts
from sam2_jax.modeling.prompt_encoder import padded_points_mask
from sam2_jax.modeling.sam2_base import SAM2
from sam2_jax.prompts import pad_points


@functools.partial(jax.jit, static_argnames="module")
def _encode_images(module: SAM2, variables, images: jax.Array):
    """(B, S, S, 3) normalized -> image_embed (B, h, w, C) (+ no_mem_embed), high-res feats."""

    def encode(m: SAM2, x):
        out = m.forward_image(x)
        embed = out["backbone_fpn"][-1] + m.no_mem_embed.reshape(1, 1, 1, -1)
        return embed, tuple(out["backbone_fpn"][:2])

    return module.apply(variables, images, method=encode)


@functools.partial(jax.jit, static_argnames=("module", "multimask_output"))
def _decode(
    module: SAM2,
    variables,
    image_embed: jax.Array,
    high_res: tuple[jax.Array, jax.Array],
    coords: jax.Array | None,
    labels: jax.Array | None,
    mask_input: jax.Array | None,
    multimask_output: bool,
    num_points: jax.Array | None = None,
):
    """Prompt encoder + mask decoder for N prompt sets on one image.

    Args:
      image_embed: (1, h, w, C); high_res: (1, 4h, 4w, 32), (1, 2h, 2w, 64).
      coords: (N, P, 2) model-input pixels or None; labels: (N, P) or None.
      mask_input: (N, 4h, 4w, 1) low-res logits or None.
      num_points: optional (N,) int32: only the first num_points of the P are points, the
        rest padding (`sam2_jax.buckets`), hidden from the decoder's attention, so the result
        equals the call with the unpadded points.

    Returns:
      low-res mask logits (N, K, 4h, 4w) and IoU predictions (N, K).
    """

    def decode(m: SAM2):
        point_labels, token_mask = labels, None
        if num_points is not None:  # every set has >= 1 point: no dummy point is needed
            valid = jnp.arange(coords.shape[1])[None] < num_points[:, None]  # (N, P)
            point_labels, token_mask = padded_points_mask(valid, labels)
        sparse, dense = m.sam_prompt_encoder(coords, point_labels, mask_input)
        n = sparse.shape[0]
        low_res, iou, _, _ = m.sam_mask_decoder(
            image_embeddings=image_embed,
            image_pe=m.sam_prompt_encoder.get_dense_pe(),
            sparse_prompt_embeddings=sparse,
            dense_prompt_embeddings=dense,
            multimask_output=multimask_output,
            repeat_image=n > 1,
            high_res_features=high_res,
            sparse_mask=token_mask,
        )
        low_res = jnp.moveaxis(low_res, -1, 1)  # (N, 4h, 4w, K) -> (N, K, 4h, 4w)
        return low_res.astype(jnp.float32), iou.astype(jnp.float32)  # whatever the compute dtype

    return module.apply(variables, method=decode)


class SAM2ImagePredictor:
    """Encode an image once, then predict masks from clicks, boxes and masks interactively."""

    def __init__(
        self,
        sam_model: SAM2Model,
        mask_threshold: float = 0.0,
        max_hole_area: float = 0.0,
        max_sprinkle_area: float = 0.0,
    ) -> None:
        """
        Args:
          sam_model: from `sam2_jax.build_sam2`.
          mask_threshold: logits above it are foreground.
          max_hole_area: fill background holes up to this area (low-res pixels) in the masks.
          max_sprinkle_area: remove foreground specks up to this area.
        """
        self.model = sam_model
        self.mask_threshold = mask_threshold
        self.max_hole_area = max_hole_area
        self.max_sprinkle_area = max_sprinkle_area
        self.reset_predictor()

    # ---------------------------------------------------------------- image encoding

    @property
    def resolution(self) -> int:
        return self.model.config.image_size

    def _encode(self, images: Sequence) -> None:
        self.reset_predictor()
        pixels = [transforms.as_rgb_uint8(image) for image in images]
        self._orig_hw = [tuple(p.shape[:2]) for p in pixels]
        batch = jnp.stack([transforms.preprocess(p, self.resolution) for p in pixels])
        embed, high_res = _encode_images(self.model.module, self.model.variables, batch)
        self._features = {"image_embed": embed, "high_res_feats": high_res}
        self._is_image_set = True

    def set_image(self, image) -> None:
        """Encodes one image: (H, W, 3) uint8 RGB array or a PIL image (see
        `transforms.as_rgb_uint8` for grayscale / RGBA handling)."""
        self._encode([image])

    def set_image_batch(self, image_list: list) -> None:
        """Encodes several images (each (H, W, 3) uint8; sizes may differ) in one call."""
        if not isinstance(image_list, list | tuple) or not image_list:
            raise TypeError("set_image_batch expects a non-empty list of images")
        self._encode(image_list)
        self._is_batch = True

    def get_image_embedding(self) -> np.ndarray:
        """The image embedding (with the no-memory embedding added): (B, h, w, C), NHWC."""
        self._require_image("to get an embedding")
        return np.asarray(self._features["image_embed"])

    def reset_predictor(self) -> None:
        self._is_image_set = False
        self._is_batch = False
        self._features = None
        self._orig_hw = None

    def _require_image(self, what: str) -> None:
        if not self._is_image_set:
            raise RuntimeError(f"An image must be set with .set_image(...) {what}.")

    # ---------------------------------------------------------------- prompts

    def _prep_prompts(self, point_coords, point_labels, box, mask_input, normalize_coords, img):
        """Validated prompts in model-input units (`image.prompts.prepare_image_prompts`)."""
        return prepare_image_prompts(
            point_coords,
            point_labels,
            box,
            mask_input,
            orig_hw=self._orig_hw[img],
            resolution=self.resolution,
            mask_side=4 * self.model.config.embedding_size,
            normalize_coords=normalize_coords,
        )

    def _predict(self, coords, labels, mask, multimask_output, return_logits, img):
        feats = self._features
        embed = feats["image_embed"][img : img + 1]
        high_res = tuple(f[img : img + 1] for f in feats["high_res_feats"])
        num_points = None
        if coords is not None:  # clicks padded to a bucket: one program for 1 to 16 clicks
            point_sets = list(zip(coords, labels, strict=True))
            coords, labels, num_points = pad_points(point_sets, click_bucket(coords.shape[1]))
        low_res, iou = _decode(
            self.model.module,
            self.model.variables,
            embed,
            high_res,
            coords,
            labels,
            mask,
            bool(multimask_output),
            num_points,
        )
        masks, low_res = transforms.postprocess_low_res(
            np.asarray(low_res),
            self._orig_hw[img],
            threshold=self.mask_threshold,
            max_hole_area=self.max_hole_area,
            max_sprinkle_area=self.max_sprinkle_area,
            return_logits=return_logits,
        )
        return masks, np.asarray(iou), low_res

    def predict(
        self,
        point_coords: np.ndarray | None = None,
        point_labels: np.ndarray | None = None,
        box: np.ndarray | None = None,
        mask_input: np.ndarray | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
        normalize_coords: bool = True,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Predicts masks for the image set with `set_image`.

        Args:
          point_coords: (N, 2) or (B, N, 2) x, y in image pixels (or [0, 1] with
            normalize_coords=False); B prompt sets (objects) run in one call.
          point_labels: (N,) or (B, N): 1 positive, 0 negative (2/3 box corners, -1 padding).
          box: (4,) or (B, 4) x0, y0, x1, y1.
          mask_input: (1, 256, 256) or (B, 1, 256, 256) low-res logits from a previous call.
          multimask_output: three candidate masks instead of one.
          return_logits: return mask logits instead of booleans.
          normalize_coords: coordinates are in image pixels (True) or already in [0, 1].

        Returns:
          masks (C, H, W) (or (B, C, H, W)), IoU predictions (C,) (or (B, C)) and low-res
          logits (C, 256, 256) (or (B, C, 256, 256)) clamped to [-32, 32]; C = 3 or 1.
        """
        self._require_image("before mask prediction")
        if self._is_batch and len(self._orig_hw) > 1:
            raise RuntimeError("several images are set: use predict_batch(...)")
        return self._predict_one(
            0, point_coords, point_labels, box, mask_input, multimask_output, return_logits,
            normalize_coords,
        )  # fmt: skip

    def _predict_one(
        self, img, point_coords, point_labels, box, mask_input, multimask, logits, normalize
    ):
        coords, labels, mask = self._prep_prompts(
            point_coords, point_labels, box, mask_input, normalize, img
        )
        masks, iou, low_res = self._predict(coords, labels, mask, multimask, logits, img)
        squeeze = lambda a: a[0] if a.shape[0] == 1 else a  # as the reference's squeeze(0)
        return squeeze(masks), squeeze(iou), squeeze(low_res)

    def predict_batch(
        self,
        point_coords_batch: list | None = None,
        point_labels_batch: list | None = None,
        box_batch: list | None = None,
        mask_input_batch: list | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
        normalize_coords: bool = True,
    ) -> tuple[list[np.ndarray], list[np.ndarray], list[np.ndarray]]:
        """`predict` for every image of `set_image_batch`; per-image prompt lists."""
        self._require_image("before mask prediction")
        if not self._is_batch:
            raise RuntimeError("predict_batch needs images set with set_image_batch(...)")
        results = ([], [], [])
        for img in range(len(self._orig_hw)):
            pick = lambda batch, i=img: None if batch is None else batch[i]
            outputs = self._predict_one(
                img,
                pick(point_coords_batch),
                pick(point_labels_batch),
                pick(box_batch),
                pick(mask_input_batch),
                multimask_output,
                return_logits,
                normalize_coords,
            )
            for store, value in zip(results, outputs, strict=True):
                store.append(value)
        return results
