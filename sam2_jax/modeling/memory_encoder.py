"""Memory encoder (reference `modeling/memory_encoder.py`).

Fuses a frame's raw top-level features with its (already scaled) predicted mask into a
mem_dim=64 spatial memory plus its sine position encoding. NHWC throughout.
"""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

from sam2_jax.modeling.common import gelu, layer_norm
from sam2_jax.modeling.conv import Conv, DepthwiseConv
from sam2_jax.modeling.matmul import Dense
from sam2_jax.modeling.position_encoding import sine_position_encoding_2d


class MaskDownSampler(nn.Module):
    """Conv(k3, s2, pad 1) -> LayerNorm2d -> GELU, repeated until `total_stride`, then a 1x1 conv.

    Channels grow by stride^2 per stage (1 -> 4 -> 16 -> 64 -> 256 for total stride 16).
    Submodules are named `encoder_{i}` after the reference's `nn.Sequential` indices (the GELUs
    take the indices 2, 5, 8, 11).
    """

    embed_dim: int = 256
    kernel_size: int = 3
    stride: int = 2
    padding: int = 1
    total_stride: int = 16
    dtype: jnp.dtype | None = None

    @nn.compact
    def __call__(self, masks: jax.Array) -> jax.Array:
        """masks: (B, H, W, 1) -> (B, H / total_stride, W / total_stride, embed_dim)."""
        num_layers = round(math.log2(self.total_stride) / math.log2(self.stride))
        if self.stride**num_layers != self.total_stride:
            raise ValueError(f"total_stride {self.total_stride} is not a power of {self.stride}")
        x, channels, index = masks, 1, 0
        pad = ((self.padding, self.padding), (self.padding, self.padding))
        for _ in range(num_layers):
            channels *= self.stride**2
            x = Conv(
                channels,
                (self.kernel_size, self.kernel_size),
                strides=(self.stride, self.stride),
                padding=pad,  # explicit symmetric padding, as torch's padding=1 (not "SAME")
                dtype=self.dtype,
                name=f"encoder_{index}",
            )(x)
            x = gelu(layer_norm(1e-6, f"encoder_{index + 1}", self.dtype)(x))
            index += 3
        return Conv(self.embed_dim, (1, 1), dtype=self.dtype, name=f"encoder_{index}")(x)


class CXBlock(nn.Module):
    """ConvNeXt block: depthwise 7x7 -> LayerNorm2d -> Dense 4x -> GELU -> Dense -> layer scale."""

    dim: int = 256
    kernel_size: int = 7
    padding: int = 3
    dtype: jnp.dtype | None = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """x: (B, h, w, dim) -> (B, h, w, dim)."""
        y = DepthwiseConv(
            self.dim, self.kernel_size, self.padding, dtype=self.dtype, name="dwconv"
        )(x)  # kernel (k, k, 1, dim)
        y = layer_norm(1e-6, "norm", self.dtype)(y)
        y = gelu(Dense(4 * self.dim, dtype=self.dtype, name="pwconv1")(y))
        y = Dense(self.dim, dtype=self.dtype, name="pwconv2")(y)
        gamma = self.param("gamma", nn.initializers.constant(1e-6), (self.dim,))
        return x + gamma.astype(y.dtype) * y


class Fuser(nn.Module):
    """A stack of CXBlocks named `layers_{i}` (no input projection, as configured in SAM 2)."""

    dim: int = 256
    num_layers: int = 2
    dtype: jnp.dtype | None = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """x: (B, h, w, dim) -> (B, h, w, dim)."""
        for i in range(self.num_layers):
            x = CXBlock(self.dim, dtype=self.dtype, name=f"layers_{i}")(x)
        return x


class MemoryEncoder(nn.Module):
    """Mask downsampler + feature projection, a 2-block CXBlock fuser, projection to out_dim."""

    out_dim: int = 64
    in_dim: int = 256
    num_fuser_layers: int = 2
    dtype: jnp.dtype | None = None

    def setup(self):
        self.mask_downsampler = MaskDownSampler(self.in_dim, dtype=self.dtype)
        self.pix_feat_proj = Conv(self.in_dim, (1, 1), dtype=self.dtype)
        self.fuser = Fuser(self.in_dim, self.num_fuser_layers, dtype=self.dtype)
        self.out_proj = Conv(self.out_dim, (1, 1), dtype=self.dtype)

    def __call__(self, pix_feat: jax.Array, masks: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Encodes one frame's memory.

        Args:
          pix_feat: (B, h, w, in_dim) raw top-level backbone features (not memory-conditioned).
          masks: (B, 16h, 16w, 1) mask already mapped to [-10, 10] (sigmoid or binarized, then
            x20 - 10); no further sigmoid is applied (the reference's `skip_mask_sigmoid=True`).

        Returns:
          features (B, h, w, out_dim) and their sine position encoding (B, h, w, out_dim).
        """
        masks = self.mask_downsampler(masks.astype(pix_feat.dtype))
        x = self.pix_feat_proj(pix_feat) + masks
        x = self.out_proj(self.fuser(x))
        b, h, w, c = x.shape
        pos = jnp.asarray(sine_position_encoding_2d(h, w, c), x.dtype)
        return x, jnp.broadcast_to(pos, (b, h, w, c))
