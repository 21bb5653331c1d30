"""SAM prompt encoder (reference `modeling/sam/prompt_encoder.py`), NHWC / (B, N, C).

Points become sparse tokens (random-Fourier position encoding plus a learned embedding per
label); a mask prompt becomes a dense (h, w, C) map added to the image embedding.

Labels: 1 positive click, 0 negative click, 2 / 3 box top-left / bottom-right, -1 "not a
point" (its position encoding is discarded and replaced by `not_a_point_embed`). Any other
value keeps the bare position encoding, as in the reference.

Fixed shapes under `jit`: point arrays may be padded with label -1 entries. They turn into
`not_a_point_embed` tokens exactly as the reference treats -1 labels, but they are *not*
ignored: every token takes part in the decoder's attention. So a padded call equals the
reference only when the reference is given the same padded arrays (SAM 2 itself appends one
such token whenever it embeds points without boxes, which is always). Passing `None` for the
points gives 0 sparse tokens (the image predictor's mask-only prompt).
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from sam2_jax.modeling.common import gelu
from sam2_jax.modeling.conv import Conv

_LN2D_EPS = 1e-6  # the reference's LayerNorm2d default
NUM_POINT_EMBEDDINGS = 4  # negative, positive, box top-left, box bottom-right


class PositionEmbeddingRandom(nn.Module):
    """Random Fourier features of 2D coordinates (reference `PositionEmbeddingRandom`).

    The Gaussian matrix is a buffer in the reference (stored in checkpoints, never trained);
    here it is a param so the converter fills it. Training should keep it frozen.
    """

    num_pos_feats: int = 128

    @nn.compact
    def __call__(self, coords: jax.Array) -> jax.Array:
        """coords (..., 2) normalized to [0, 1], x first -> (..., 2 * num_pos_feats) float32."""
        gaussian = self.param(
            "positional_encoding_gaussian_matrix",
            nn.initializers.normal(1.0),
            (2, self.num_pos_feats),
            jnp.float32,
        )
        coords = 2.0 * coords.astype(jnp.float32) - 1.0
        # Written out instead of `coords @ gaussian` so that no reduced-precision matmul
        # (TF32 on GPU) perturbs the sine arguments, which reach ~|20|.
        proj = coords[..., 0:1] * gaussian[0] + coords[..., 1:2] * gaussian[1]
        proj = 2.0 * math.pi * proj
        return jnp.concatenate([jnp.sin(proj), jnp.cos(proj)], axis=-1)


class PromptEncoder(nn.Module):
    """Embeds point and mask prompts for the mask decoder."""

    embed_dim: int = 256
    image_embedding_size: tuple[int, int] = (64, 64)  # (h, w) of the stride-16 features
    input_image_size: tuple[int, int] = (1024, 1024)  # (H, W) of the model input
    mask_in_chans: int = 16
    dtype: jnp.dtype | None = None

    def setup(self):
        self.pe_layer = PositionEmbeddingRandom(self.embed_dim // 2)
        self.point_embeddings = [
            nn.Embed(1, self.embed_dim, embedding_init=nn.initializers.normal(1.0))
            for _ in range(NUM_POINT_EMBEDDINGS)
        ]
        self.not_a_point_embed = nn.Embed(
            1, self.embed_dim, embedding_init=nn.initializers.normal(1.0)
        )
        self.no_mask_embed = nn.Embed(1, self.embed_dim, embedding_init=nn.initializers.normal(1.0))
        c = self.mask_in_chans
        # Layer indices match the reference's nn.Sequential (2 and 5 are the GELUs).
        self.mask_downscaling = nn.Sequential(
            [
                Conv(c // 4, (2, 2), strides=(2, 2), padding="VALID", dtype=self.dtype),
                nn.LayerNorm(epsilon=_LN2D_EPS, dtype=self.dtype),
                gelu,
                Conv(c, (2, 2), strides=(2, 2), padding="VALID", dtype=self.dtype),
                nn.LayerNorm(epsilon=_LN2D_EPS, dtype=self.dtype),
                gelu,
                Conv(self.embed_dim, (1, 1), padding="VALID", dtype=self.dtype),
            ]
        )

    @property
    def mask_input_size(self) -> tuple[int, int]:
        """(H, W) a mask prompt must have: 4x the image embedding."""
        h, w = self.image_embedding_size
        return 4 * h, 4 * w

    def get_dense_pe(self) -> jax.Array:
        """Position encoding of every cell of the image embedding: (1, h, w, embed_dim)."""
        h, w = self.image_embedding_size
        ys = (jnp.arange(h, dtype=jnp.float32) + 0.5) / h
        xs = (jnp.arange(w, dtype=jnp.float32) + 0.5) / w
        grid = jnp.stack(jnp.meshgrid(xs, ys, indexing="xy"), axis=-1)  # (h, w, 2) as (x, y)
        return self.pe_layer(grid)[None]

    def embed_points(self, coords: jax.Array, labels: jax.Array, pad: bool) -> jax.Array:
        """Sparse tokens for points.

        Args:
          coords: (B, N, 2) float, (x, y) in model-input pixels.
          labels: (B, N) int (see the module docstring).
          pad: append one (0, 0) point with label -1 (the reference does when boxes is None).

        Returns:
          (B, N + pad, embed_dim) float32.
        """
        coords = coords.astype(jnp.float32) + 0.5  # pixel centres
        labels = labels.astype(jnp.int32)
        if pad:
            b = coords.shape[0]
            coords = jnp.concatenate([coords, jnp.zeros((b, 1, 2), jnp.float32)], axis=1)
            labels = jnp.concatenate([labels, jnp.full((b, 1), -1, jnp.int32)], axis=1)
        height, width = self.input_image_size
        normalized = coords / jnp.array([width, height], jnp.float32)
        embedding = self.pe_layer(normalized)  # (B, N, C)
        labels = labels[..., None]  # (B, N, 1)
        not_a_point = self.not_a_point_embed.embedding[0].astype(jnp.float32)
        embedding = jnp.where(
            labels == -1, jnp.broadcast_to(not_a_point, embedding.shape), embedding
        )
        for i, table in enumerate(self.point_embeddings):
            embedding = jnp.where(labels == i, embedding + table.embedding[0], embedding)
        return embedding

    def embed_masks(self, masks: jax.Array) -> jax.Array:
        """(B, 4h, 4w, 1) mask logits -> (B, h, w, embed_dim)."""
        return self.mask_downscaling(masks)

    def __call__(
        self,
        point_coords: jax.Array | None,
        point_labels: jax.Array | None,
        masks: jax.Array | None,
        pad: bool = True,
    ) -> tuple[jax.Array, jax.Array]:
        """Embeds the prompts (reference `forward` with boxes=None, as SAM 2 always calls it).

        Args:
          point_coords: (B, N, 2) in model-input pixels (x, y), or None for no points.
          point_labels: (B, N) int, or None with point_coords.
          masks: (B, 4h, 4w, 1) mask-prompt logits, or None.
          pad: append the "not a point" padding token to the points (the reference does so
            whenever no boxes are given, i.e. always in SAM 2).

        Returns:
          sparse: (B, N + pad, embed_dim), or (B, 0, embed_dim) without points.
          dense: (B, h, w, embed_dim).
        """
        if point_coords is not None:
            batch = point_coords.shape[0]
        elif masks is not None:
            batch = masks.shape[0]
        else:
            batch = 1
        if point_coords is None:
            sparse = jnp.zeros((batch, 0, self.embed_dim), jnp.float32)
        else:
            sparse = self.embed_points(point_coords, point_labels, pad)
        if masks is None:
            h, w = self.image_embedding_size
            no_mask = self.no_mask_embed.embedding.reshape(1, 1, 1, self.embed_dim)
            dense = jnp.broadcast_to(no_mask, (batch, h, w, self.embed_dim))
        else:
            dense = self.embed_masks(masks)
        return sparse, dense


def padded_points_mask(
    point_valid: jax.Array, point_labels: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Fixed-shape (padded) points for the prompt encoder with `pad=True`.

    Args:
      point_valid: (B, P) bool, False for padding entries.
      point_labels: (B, P) int labels.

    Returns:
      labels (B, P) with padding labelled -1, and the (B, P + 1) bool mask of the sparse
      tokens the mask decoder attends to: the valid points and the appended "not a point"
      token. With no valid point, slot 0 plays the reference's dummy point (label -1), so
      the result equals the reference's call with only the valid points.
    """
    point_valid = point_valid.astype(bool)
    b, p = point_valid.shape
    dummy = ~point_valid.any(axis=1, keepdims=True) & (jnp.arange(p)[None] == 0)
    labels = jnp.where(point_valid, point_labels, -1)
    token_mask = jnp.concatenate([point_valid | dummy, jnp.ones((b, 1), bool)], axis=1)
    return labels, token_mask
