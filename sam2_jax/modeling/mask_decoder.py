"""SAM mask decoder (reference `modeling/sam/mask_decoder.py`), NHWC.

Output tokens [obj_score, iou, mask_0..mask_3] and the prompt tokens run through the two-way
transformer with the image embedding; the mask tokens then become per-mask hypernetwork
weights applied to the upscaled image embedding. Masks are channels-last: (B, H, W, M).

Also holds the two 1x1 projections (`conv_s0`, `conv_s1`) that turn the stride-4 and stride-8
FPN levels into the decoder's high-resolution features; `SAM2.forward_image` applies them once
per frame, as the reference does.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from sam2_jax.modeling.common import MLP, gelu
from sam2_jax.modeling.conv import Conv
from sam2_jax.modeling.matmul import Dense, einsum
from sam2_jax.modeling.transformer import TwoWayTransformer

_LN2D_EPS = 1e-6  # the reference's LayerNorm2d default


class ConvTranspose2x2(nn.Module):
    """ConvTranspose2d(kernel 2, stride 2): each input pixel paints its own 2x2 output block.

    Non-overlapping, so it is one product plus a reshape:
    `out[2i+a, 2j+b, o] = bias[o] + sum_c x[i, j, c] * kernel[c, a, b, o]`.
    The kernel layout (in, kh, kw, out) is the reference's (in, out, kh, kw) with `out` moved
    last (the converter's CONV_TRANSPOSE transform); no kernel flip is involved.
    """

    features: int
    dtype: jnp.dtype | None = None
    param_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """(B, h, w, C_in) -> (B, 2h, 2w, features)."""
        b, h, w, c = x.shape
        kernel = self.param(
            "kernel",
            nn.initializers.lecun_normal(in_axis=0, out_axis=(1, 2, 3)),
            (c, 2, 2, self.features),
            self.param_dtype,
        )
        bias = self.param("bias", nn.initializers.zeros, (self.features,), self.param_dtype)
        x, kernel, bias = nn.dtypes.promote_dtype(x, kernel, bias, dtype=self.dtype)
        # A plain product, then the 2 x 2 blocks moved into place: written as one einsum into
        # (B, h, 2, w, 2, out), XLA on CPU transposed the whole input to channels-first for
        # it (the same values, 1.2-1.8x slower: 370 -> 288 ms for 64 prompts at 1024 px).
        y = einsum("bhwc,cd->bhwd", x, kernel.reshape(c, 4 * self.features))  # (B, h, w, 4 out)
        y = y.reshape(b, h, w, 2, 2, self.features).transpose(0, 1, 3, 2, 4, 5)  # (B,h,2,w,2,o)
        return y.reshape(b, 2 * h, 2 * w, self.features) + bias


class OutputUpscaling(nn.Module):
    """Stride-16 -> stride-4 upscaling; `layers_{i}` mirror the reference's Sequential indices
    (0 ConvT, 1 LayerNorm2d, 2 GELU, 3 ConvT, 4 GELU)."""

    transformer_dim: int = 256
    dtype: jnp.dtype | None = None

    def setup(self):
        self.layers_0 = ConvTranspose2x2(self.transformer_dim // 4, dtype=self.dtype)
        self.layers_1 = nn.LayerNorm(epsilon=_LN2D_EPS, dtype=self.dtype)
        self.layers_3 = ConvTranspose2x2(self.transformer_dim // 8, dtype=self.dtype)

    def __call__(
        self, src: jax.Array, high_res_features: tuple[jax.Array, jax.Array] | None = None
    ) -> jax.Array:
        """(B, h, w, C) [+ feat_s0 (B, 4h, 4w, C/8), feat_s1 (B, 2h, 2w, C/4)] -> (B, 4h, 4w, C/8).

        With high-res features: the stride-8 map is added before the LayerNorm, the stride-4
        map before the last GELU.
        """
        if high_res_features is None:
            x = gelu(self.layers_1(self.layers_0(src)))
            return gelu(self.layers_3(x))
        feat_s0, feat_s1 = high_res_features
        x = gelu(self.layers_1(self.layers_0(src) + feat_s1))
        return gelu(self.layers_3(x) + feat_s0)


class MaskDecoder(nn.Module):
    """Predicts mask logits, IoU estimates and an object score from image + prompt embeddings.

    Defaults are the values every released SAM 2 / 2.1 config uses. The dynamic multimask
    fallback is what the reference's builders switch on for inference (image and video
    predictors); like the reference it never applies in training mode.
    """

    transformer_dim: int = 256
    num_multimask_outputs: int = 3
    iou_head_depth: int = 3
    iou_head_hidden_dim: int = 256
    use_high_res_features: bool = True
    iou_prediction_use_sigmoid: bool = True
    pred_obj_scores: bool = True
    pred_obj_scores_mlp: bool = True
    use_multimask_token_for_obj_ptr: bool = True
    dynamic_multimask_via_stability: bool = True
    dynamic_multimask_stability_delta: float = 0.05
    dynamic_multimask_stability_thresh: float = 0.98
    dtype: jnp.dtype | None = None

    @property
    def num_mask_tokens(self) -> int:
        return self.num_multimask_outputs + 1

    def setup(self):
        dim, dtype = self.transformer_dim, self.dtype
        if self.use_high_res_features:
            self.conv_s0 = Conv(dim // 8, (1, 1), dtype=dtype)
            self.conv_s1 = Conv(dim // 4, (1, 1), dtype=dtype)
        self.transformer = TwoWayTransformer(
            depth=2, embedding_dim=dim, num_heads=8, mlp_dim=2048, dtype=dtype
        )
        token_init = nn.initializers.normal(1.0)  # torch nn.Embedding's N(0, 1)
        self.iou_token = nn.Embed(1, dim, embedding_init=token_init)
        self.mask_tokens = nn.Embed(self.num_mask_tokens, dim, embedding_init=token_init)
        if self.pred_obj_scores:
            self.obj_score_token = nn.Embed(1, dim, embedding_init=token_init)
        self.output_upscaling = OutputUpscaling(dim, dtype=dtype)
        self.output_hypernetworks_mlps = [
            MLP(dim, dim // 8, 3, dtype=dtype) for _ in range(self.num_mask_tokens)
        ]
        self.iou_prediction_head = MLP(
            self.iou_head_hidden_dim,
            self.num_mask_tokens,
            self.iou_head_depth,
            sigmoid_output=self.iou_prediction_use_sigmoid,
            dtype=dtype,
        )
        if self.pred_obj_scores:
            if self.pred_obj_scores_mlp:
                self.pred_obj_score_head = MLP(dim, 1, 3, dtype=dtype)
            else:
                self.pred_obj_score_head = Dense(1, dtype=dtype)

    def project_high_res_features(
        self, feat_s0: jax.Array, feat_s1: jax.Array
    ) -> tuple[jax.Array, jax.Array]:
        """(B, S/4, S/4, 256), (B, S/8, S/8, 256) -> (B, S/4, S/4, 32), (B, S/8, S/8, 64)."""
        return self.conv_s0(feat_s0), self.conv_s1(feat_s1)

    def predict_masks(
        self,
        image_embeddings: jax.Array,
        image_pe: jax.Array,
        sparse_prompt_embeddings: jax.Array,
        dense_prompt_embeddings: jax.Array,
        repeat_image: bool = False,
        high_res_features: tuple[jax.Array, jax.Array] | None = None,
        sparse_mask: jax.Array | None = None,
    ) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
        """All mask tokens' outputs, before any selection.

        Args:
          image_embeddings: (B, h, w, C), or (B_img, h, w, C) with repeat_image.
          image_pe: (1, h, w, C) from `PromptEncoder.get_dense_pe`.
          sparse_prompt_embeddings: (B, N, C).
          dense_prompt_embeddings: (B, h, w, C).
          repeat_image: repeat every image B times (torch repeat_interleave) to pair one image
            with several prompt sets.
          high_res_features: (feat_s0 (B, 4h, 4w, C/8), feat_s1 (B, 2h, 2w, C/4)), already
            projected by conv_s0 / conv_s1.
          sparse_mask: optional (B, N) bool, False for padding prompt tokens: the two-way
            transformer hides them as keys, so the outputs equal those without them.

        Returns:
          masks (B, 4h, 4w, num_mask_tokens) logits, iou_pred (B, num_mask_tokens),
          mask_tokens_out (B, num_mask_tokens, C), object_score_logits (B, 1).
        """
        b = sparse_prompt_embeddings.shape[0]
        tables = [self.iou_token.embedding, self.mask_tokens.embedding]
        if self.pred_obj_scores:
            tables.insert(0, self.obj_score_token.embedding)
        output_tokens = jnp.concatenate(tables, axis=0)  # (T, C), T = 6 with obj score
        output_tokens = jnp.broadcast_to(output_tokens, (b, *output_tokens.shape))
        tokens = jnp.concatenate(
            [output_tokens, sparse_prompt_embeddings.astype(output_tokens.dtype)], axis=1
        )  # (B, T + N, C)

        if repeat_image:
            src = jnp.repeat(image_embeddings, b, axis=0)
        else:
            if image_embeddings.shape[0] != b:
                raise ValueError(f"{image_embeddings.shape[0]} images for {b} prompt sets")
            src = image_embeddings
        src = src + dense_prompt_embeddings
        _, h, w, c = src.shape

        token_mask = None
        if sparse_mask is not None:
            token_mask = jnp.concatenate(
                [jnp.ones(output_tokens.shape[:2], bool), sparse_mask.astype(bool)], axis=1
            )  # (B, T + N)
        hs, src = self.transformer(src, image_pe, tokens, token_mask)  # (B, T+N, C), (B, h*w, C)
        s = 1 if self.pred_obj_scores else 0
        iou_token_out = hs[:, s]
        mask_tokens_out = hs[:, s + 1 : s + 1 + self.num_mask_tokens]  # (B, M, C)

        if self.use_high_res_features != (high_res_features is not None):
            raise ValueError("high_res_features must be given iff use_high_res_features")
        upscaled = self.output_upscaling(src.reshape(b, h, w, c), high_res_features)
        hyper_in = jnp.stack(
            [mlp(mask_tokens_out[:, i]) for i, mlp in enumerate(self.output_hypernetworks_mlps)],
            axis=1,
        )  # (B, M, C/8)
        masks = einsum("bmc,bhwc->bhwm", hyper_in, upscaled)  # (B, 4h, 4w, M)

        iou_pred = self.iou_prediction_head(iou_token_out)
        if self.pred_obj_scores:
            object_score_logits = self.pred_obj_score_head(hs[:, 0])
        else:  # "object present" with probability sigmoid(10) ~ 1
            object_score_logits = jnp.full((b, 1), 10.0, iou_pred.dtype)
        return masks, iou_pred, mask_tokens_out, object_score_logits

    def stability_scores(self, mask_logits: jax.Array) -> jax.Array:
        """IoU of the masks thresholded at +delta and -delta: (B, H, W) -> (B,), 1 if empty."""
        delta = self.dynamic_multimask_stability_delta
        area_i = jnp.sum(mask_logits > delta, axis=(-2, -1)).astype(jnp.float32)
        area_u = jnp.sum(mask_logits > -delta, axis=(-2, -1)).astype(jnp.float32)
        return jnp.where(area_u > 0, area_i / jnp.maximum(area_u, 1.0), 1.0)

    def select_via_stability(
        self, masks: jax.Array, iou_pred: jax.Array
    ) -> tuple[jax.Array, jax.Array]:
        """The single-mask output, or the best multimask output where it is unstable.

        Args:
          masks: (B, H, W, M) all mask tokens' logits; iou_pred: (B, M).

        Returns:
          (B, H, W, 1) and (B, 1): token 0 where its stability >= thresh, else the token among
          1..M-1 with the highest predicted IoU (first on ties, as torch.argmax).
        """
        best = jnp.argmax(iou_pred[:, 1:], axis=-1) + 1  # (B,)
        best_masks = jnp.take_along_axis(masks, best[:, None, None, None], axis=-1)
        best_iou = jnp.take_along_axis(iou_pred, best[:, None], axis=-1)
        is_stable = self.stability_scores(masks[..., 0]) >= self.dynamic_multimask_stability_thresh
        out_masks = jnp.where(is_stable[:, None, None, None], masks[..., 0:1], best_masks)
        out_iou = jnp.where(is_stable[:, None], iou_pred[:, 0:1], best_iou)
        return out_masks, out_iou

    def __call__(
        self,
        image_embeddings: jax.Array,
        image_pe: jax.Array,
        sparse_prompt_embeddings: jax.Array,
        dense_prompt_embeddings: jax.Array,
        multimask_output: bool,
        repeat_image: bool = False,
        high_res_features: tuple[jax.Array, jax.Array] | None = None,
        training: bool = False,
        sparse_mask: jax.Array | None = None,
    ) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
        """Predicts masks (reference `MaskDecoder.forward`); inputs as in `predict_masks`.

        Args:
          multimask_output: static; 3 candidate masks (tokens 1..3) instead of one.
          training: static; disables the dynamic stability fallback, as the reference's
            `self.training` does.

        Returns:
          masks (B, 4h, 4w, K), iou_pred (B, K) with K = 3 if multimask_output else 1;
          sam_tokens_out (B, 3, C) with multimask_output (and use_multimask_token_for_obj_ptr),
          else (B, 1, C) = mask token 0 (even when the stability fallback picked another mask);
          object_score_logits (B, 1).
        """
        masks, iou_pred, mask_tokens_out, object_score_logits = self.predict_masks(
            image_embeddings,
            image_pe,
            sparse_prompt_embeddings,
            dense_prompt_embeddings,
            repeat_image,
            high_res_features,
            sparse_mask,
        )
        if multimask_output:
            masks, iou_pred = masks[..., 1:], iou_pred[:, 1:]
        elif self.dynamic_multimask_via_stability and not training:
            masks, iou_pred = self.select_via_stability(masks, iou_pred)
        else:
            masks, iou_pred = masks[..., 0:1], iou_pred[:, 0:1]
        if multimask_output and self.use_multimask_token_for_obj_ptr:
            sam_tokens_out = mask_tokens_out[:, 1:]
        else:
            sam_tokens_out = mask_tokens_out[:, 0:1]
        return masks, iou_pred, sam_tokens_out, object_score_logits
