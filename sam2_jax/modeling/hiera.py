"""Hiera image trunk (reference `modeling/backbones/hieradet.py`), NHWC throughout."""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from sam2_jax.config import BlockSpec, HieraConfig
from sam2_jax.modeling.attention import dot_product_attention
from sam2_jax.modeling.common import MLP, DropPath, gelu, max_pool_2d
from sam2_jax.modeling.conv import Conv
from sam2_jax.modeling.interpolation import resize_bicubic_torch
from sam2_jax.modeling.matmul import Dense, einsum

_LN_EPS = 1e-6  # the reference builds Hiera's LayerNorms with eps=1e-6


def window_partition(
    x: jax.Array, window: int, pad_value: jax.Array | None = None
) -> tuple[jax.Array, tuple[int, int]]:
    """Pads bottom/right to a multiple of `window` and cuts non-overlapping windows.

    Args:
      x: (B, H, W, C).
      pad_value: (1, 1, 1, C) the padding tokens' value; None: zeros.
    Returns:
      windows (B * nH * nW, window, window, C) in row-major window order, and (Hp, Wp).
    """
    b, h, w, c = x.shape
    pad_h, pad_w = -h % window, -w % window
    hp, wp = h + pad_h, w + pad_w
    if pad_h or pad_w:
        x = jnp.pad(x, ((0, 0), (0, pad_h), (0, pad_w), (0, 0)))
        if pad_value is not None:
            inside = (np.arange(hp)[:, None] < h) & (np.arange(wp)[None, :] < w)  # (Hp, Wp)
            x = jnp.where(inside[None, :, :, None], x, pad_value.astype(x.dtype))
    # (B, nH, win, nW, win, C) -> (B, nH, nW, win, win, C) -> (B*nH*nW, win, win, C)
    x = x.reshape(b, hp // window, window, wp // window, window, c)
    return x.transpose(0, 1, 3, 2, 4, 5).reshape(-1, window, window, c), (hp, wp)


def window_unpartition(
    windows: jax.Array, window: int, padded_hw: tuple[int, int], hw: tuple[int, int]
) -> jax.Array:
    """Inverse of `window_partition`: (B*nH*nW, win, win, C) -> (B, H, W, C), padding cropped."""
    hp, wp = padded_hw
    nh, nw = hp // window, wp // window
    b = windows.shape[0] // (nh * nw)
    # (B, nH, nW, win, win, C) -> (B, nH, win, nW, win, C) -> (B, Hp, Wp, C)
    x = windows.reshape(b, nh, nw, window, window, -1).transpose(0, 1, 3, 2, 4, 5)
    x = x.reshape(b, hp, wp, -1)
    return x[:, : hw[0], : hw[1]]


class QKVProjection(nn.Module):
    """`nn.Dense(3 * dim_out)` (same params) whose output is split into queries, keys and values
    of `num_heads` heads: features ordered [q | k | v], each [head0 | head1 | ...].

    The three are three products with slices of the kernel, not one product split afterwards:
    then the kernel's gradient is three plain products too. Splitting one (B, N, 3 x dim)
    output made XLA on CPU pad the three gradients back into it and transpose the sum for the
    kernel's product: ~2.2 s of the 5 s gradient of sam2.1_hiera_t's image encoder on 8 frames
    at 256 px.
    """

    dim_out: int
    num_heads: int
    dtype: jnp.dtype | None = None

    @nn.compact
    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        """x: (B, N, C) -> q, k, v, each (B, N, heads, head_dim)."""
        c = x.shape[-1]
        kernel = self.param("kernel", nn.initializers.lecun_normal(), (c, 3 * self.dim_out))
        bias = self.param("bias", nn.initializers.zeros, (3 * self.dim_out,))
        dtype = self.dtype or jnp.result_type(x, kernel)
        head_dim = self.dim_out // self.num_heads
        kernel = kernel.astype(dtype).reshape(c, 3, self.num_heads, head_dim)
        bias = bias.astype(dtype).reshape(3, self.num_heads, head_dim)
        x = x.astype(dtype)
        # (B, N, C) x (C, heads, hd) -> (B, N, heads, hd)
        return tuple(einsum("bnc,chd->bnhd", x, kernel[:, i]) + bias[i] for i in range(3))


class MultiScaleAttention(nn.Module):
    """Multi-head attention within windows (or globally), queries optionally max-pooled per
    window before attending.

    The reference zero-pads the normed input to whole windows and projects every padded token
    (its queries, keys and values are then the projection's bias), attends, projects back and
    crops. Here the projections run on the grid's own tokens only: q, k and v are padded with
    the projection of a zero token (exactly the bias), and the output is cropped before its
    projection. Same values; at 512 px the stage-3 windows (14 on a 32 x 32 grid: 42 x 42
    padded) made the reference project 1.72x the tokens there.
    """

    dim_out: int
    num_heads: int
    q_stride: tuple[int, int] | None = None
    window: int = 0  # 0: global attention over the whole map
    dtype: jnp.dtype | None = None

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """x: (B, H, W, C) -> (B, H', W', dim_out), H' = H / q_stride when pooling."""
        b, h, w, c = x.shape
        head_dim = self.dim_out // self.num_heads
        qkv = QKVProjection(self.dim_out, self.num_heads, self.dtype, name="qkv")
        # (B, HW, heads, hd) -> (B, H, W, dim_out), each
        q, k, v = (t.reshape(b, h, w, self.dim_out) for t in qkv(x.reshape(b, h * w, c)))
        window = self.window
        if window > 0:
            # the projections of a zero (padding) token, each (1, 1, 1, dim_out)
            zero = qkv(jnp.zeros((1, 1, c), x.dtype))
            (q, padded_hw), (k, _), (v, _) = (
                window_partition(t, window, pad.reshape(1, 1, 1, self.dim_out))
                for t, pad in zip((q, k, v), zero, strict=True)
            )  # (B * windows, win, win, dim_out) each
        bw, hk, wk = k.shape[:3]  # (B * windows, win, win) or (B, H, W)
        if self.q_stride is not None:
            sh, sw = self.q_stride
            q = max_pool_2d(q, self.q_stride)  # within each window, as the reference
            h, w = h // sh, w // sw
            if window > 0:
                window, padded_hw = window // sh, (padded_hw[0] // sh, padded_hw[1] // sw)
        hq, wq = q.shape[1:3]
        out = dot_product_attention(
            q.reshape(bw, hq * wq, self.num_heads, head_dim),
            k.reshape(bw, hk * wk, self.num_heads, head_dim),
            v.reshape(bw, hk * wk, self.num_heads, head_dim),
        ).reshape(bw, hq, wq, self.dim_out)
        if window > 0:
            out = window_unpartition(out, window, padded_hw, (h, w))
        return Dense(self.dim_out, dtype=self.dtype, name="proj")(out)


class MultiScaleBlock(nn.Module):
    """Pre-norm transformer block with optional windowing and query pooling."""

    spec: BlockSpec
    mlp_ratio: float = 4.0
    drop_path: float = 0.0
    dtype: jnp.dtype | None = None

    @nn.compact
    def __call__(self, x: jax.Array, deterministic: bool = True) -> jax.Array:
        """x: (B, H, W, dim) -> (B, H', W', dim_out)."""
        spec = self.spec
        shortcut = x
        x = nn.LayerNorm(epsilon=_LN_EPS, dtype=self.dtype, name="norm1")(x)
        if spec.dim != spec.dim_out:
            # The shortcut projects the *normed* input and pools it over the whole map.
            shortcut = Dense(spec.dim_out, dtype=self.dtype, name="proj")(x)
            shortcut = max_pool_2d(shortcut, spec.q_stride)
        x = MultiScaleAttention(
            spec.dim_out,
            spec.num_heads,
            spec.q_stride,
            spec.window_size,
            dtype=self.dtype,
            name="attn",
        )(x)

        drop = DropPath(self.drop_path, name="drop_path")
        x = shortcut + drop(x, deterministic)
        y = nn.LayerNorm(epsilon=_LN_EPS, dtype=self.dtype, name="norm2")(x)
        y = MLP(
            int(spec.dim_out * self.mlp_ratio), spec.dim_out, 2, gelu, dtype=self.dtype, name="mlp"
        )(y)
        return x + drop(y, deterministic)


class Hiera(nn.Module):
    """Hierarchical ViT trunk; returns the feature map at the end of every stage."""

    config: HieraConfig
    dtype: jnp.dtype | None = None

    def _pos_embed(self, grid_hw: tuple[int, int]) -> jax.Array:
        """Background embedding bicubic-resized to the patch grid plus the tiled window embedding.

        Returns:
          (H, W, C) with H, W the patch grid.
        """
        cfg = self.config
        bkg = self.param(
            "pos_embed",
            nn.initializers.truncated_normal(0.02),
            (*cfg.window_pos_embed_bkg_spatial_size, cfg.embed_dim),
        )
        window = self.param(
            "pos_embed_window",
            nn.initializers.truncated_normal(0.02),
            (cfg.window_spec[0], cfg.window_spec[0], cfg.embed_dim),
        )
        pos = resize_bicubic_torch(bkg, grid_hw)
        reps = (grid_hw[0] // window.shape[0], grid_hw[1] // window.shape[1], 1)
        return pos + jnp.tile(window, reps)

    @nn.compact
    def __call__(self, images: jax.Array, deterministic: bool = True) -> list[jax.Array]:
        """images: (B, S, S, 3) normalized -> per-stage maps, highest resolution first.

        For S=1024 and tiny: (B,256,256,96), (B,128,128,192), (B,64,64,384), (B,32,32,768).
        """
        cfg = self.config
        x = Conv(
            cfg.embed_dim,
            (7, 7),
            strides=(4, 4),
            padding=((3, 3), (3, 3)),
            dtype=self.dtype,
            name="patch_embed",
        )(images)
        x = x + self._pos_embed(x.shape[1:3]).astype(x.dtype)

        drop_rates = np.linspace(0.0, cfg.drop_path_rate, cfg.depth)
        outputs = []
        for i, spec in enumerate(cfg.block_specs()):
            x = MultiScaleBlock(
                spec, cfg.mlp_ratio, float(drop_rates[i]), dtype=self.dtype, name=f"blocks_{i}"
            )(x, deterministic)
            if i in cfg.stage_ends:
                outputs.append(x)
        return outputs
