"""Image encoder = Hiera trunk + FPN neck (reference `modeling/backbones/image_encoder.py`)."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from sam2_jax.config import ModelConfig
from sam2_jax.modeling.conv import Conv
from sam2_jax.modeling.hiera import Hiera
from sam2_jax.modeling.position_encoding import sine_position_encoding_2d


class FpnNeck(nn.Module):
    """1x1 lateral convs to d_model, top-down nearest-2x fusion on `fpn_top_down_levels` only.

    `convs_{k}` follows the reference's index order: k=0 is applied to the *lowest*-resolution
    trunk output.
    """

    d_model: int
    num_levels: int
    fpn_top_down_levels: tuple[int, ...]
    dtype: jnp.dtype | None = None

    @nn.compact
    def __call__(self, trunk_maps: list[jax.Array]) -> tuple[list[jax.Array], list[jax.Array]]:
        """trunk_maps: per-stage (B, H_i, W_i, C_i), highest resolution first.

        Returns:
          features and sine position encodings, both lists of (B, H_i, W_i, d_model), highest
          resolution first.
        """
        n = self.num_levels - 1
        features: list[jax.Array | None] = [None] * self.num_levels
        previous = None
        for i in range(n, -1, -1):
            lateral = Conv(self.d_model, (1, 1), dtype=self.dtype, name=f"convs_{n - i}")(
                trunk_maps[i]
            )
            if i in self.fpn_top_down_levels and previous is not None:
                # nearest 2x upsampling = pixel repetition, done in float32 as the reference does
                up = jnp.repeat(jnp.repeat(previous.astype(jnp.float32), 2, axis=1), 2, axis=2)
                previous = lateral + up.astype(lateral.dtype)
            else:
                previous = lateral
            features[i] = previous
        positions = []
        for feat in features:
            b, h, w, _ = feat.shape
            pe = jnp.asarray(sine_position_encoding_2d(h, w, self.d_model), feat.dtype)
            positions.append(jnp.broadcast_to(pe, (b, h, w, self.d_model)))
        return features, positions


class ImageEncoder(nn.Module):
    """Trunk + neck; drops the `scalp` lowest-resolution levels."""

    config: ModelConfig
    dtype: jnp.dtype | None = None

    @nn.compact
    def __call__(
        self, images: jax.Array, deterministic: bool = True
    ) -> tuple[list[jax.Array], list[jax.Array]]:
        """images: (B, S, S, 3) normalized.

        Returns:
          backbone_fpn and vision_pos_enc: lists of (B, S/4, S/4, 256), (B, S/8, S/8, 256),
          (B, S/16, S/16, 256). The last entry is the top-level `vision_features`.
        """
        cfg = self.config
        trunk_maps = Hiera(cfg.trunk, dtype=self.dtype, name="trunk")(images, deterministic)
        features, positions = FpnNeck(
            cfg.d_model, len(trunk_maps), cfg.fpn_top_down_levels, dtype=self.dtype, name="neck"
        )(trunk_maps)
        if cfg.scalp > 0:
            features, positions = features[: -cfg.scalp], positions[: -cfg.scalp]
        return features, positions
