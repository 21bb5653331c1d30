"""SAM mask decoder (reference `modeling/sam/mask_decoder.py`).

Holds the two 1x1 projections (`conv_s0`, `conv_s1`) that turn the stride-4 and stride-8 FPN
levels into the decoder's high-resolution features; `SAM2.forward_image` applies them once per
frame, as the reference does.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp


class MaskDecoder(nn.Module):
    transformer_dim: int = 256
    dtype: jnp.dtype | None = None

    def setup(self):
        self.conv_s0 = nn.Conv(self.transformer_dim // 8, (1, 1), dtype=self.dtype)
        self.conv_s1 = nn.Conv(self.transformer_dim // 4, (1, 1), dtype=self.dtype)

    def project_high_res_features(
        self, feat_s0: jax.Array, feat_s1: jax.Array
    ) -> tuple[jax.Array, jax.Array]:
        """(B, S/4, S/4, 256), (B, S/8, S/8, 256) -> (B, S/4, S/4, 32), (B, S/8, S/8, 64)."""
        return self.conv_s0(feat_s0), self.conv_s1(feat_s1)
