"""2D convolution as patch extraction + one matmul, a drop-in for `flax.linen.Conv` here.

Same params (kernel (kh, kw, C_in, C_out), bias (C_out,)), same names, same outputs; only the
computation differs. XLA on CPU computes the kernel gradient of `conv_general_dilated` with a
slow generic loop (a 1x1 convolution's weight gradient over an 8x8 map took 40 ms per call in
the training step, ~100x a matmul of the same size), so the training step spent a fifth of
its time there. As strided slices and a dot, both directions are matmuls and pads.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

Padding = str | Sequence[tuple[int, int]]


def _pad_pairs(padding: Padding, kernel: tuple[int, int]) -> tuple[tuple[int, int], ...]:
    if padding == "VALID":
        return ((0, 0), (0, 0))
    if padding == "SAME":  # stride 1 only, as every use here
        return tuple(((k - 1) // 2, k - 1 - (k - 1) // 2) for k in kernel)
    return tuple(tuple(p) for p in padding)


def conv2d(
    x: jax.Array, kernel: jax.Array, strides: tuple[int, int], padding: Padding
) -> jax.Array:
    """x (B, H, W, C_in), kernel (kh, kw, C_in, C_out) -> (B, H_out, W_out, C_out), no bias."""
    kh, kw, c_in, c_out = kernel.shape
    sh, sw = strides
    (pt, pb), (pl, pr) = _pad_pairs(padding, (kh, kw))
    if (pt, pb, pl, pr) != (0, 0, 0, 0):
        x = jnp.pad(x, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    b, h, w, _ = x.shape
    ho, wo = (h - kh) // sh + 1, (w - kw) // sw + 1
    if (kh, kw) == (1, 1):
        x = x[:, : (ho - 1) * sh + 1 : sh, : (wo - 1) * sw + 1 : sw]
        return jnp.einsum("bhwc,cd->bhwd", x, kernel[0, 0])
    if (kh, kw) == (sh, sw):  # non-overlapping patches: a reshape
        x = x[:, : ho * kh, : wo * kw].reshape(b, ho, kh, wo, kw, c_in)  # (B, ho, kh, wo, kw, C)
        return jnp.einsum("bhiwjc,ijcd->bhwd", x, kernel)
    patches = jnp.stack(
        [
            x[:, i : i + (ho - 1) * sh + 1 : sh, j : j + (wo - 1) * sw + 1 : sw]
            for i in range(kh)
            for j in range(kw)
        ],
        axis=3,
    )  # (B, ho, wo, kh * kw, C_in), offsets row-major as the kernel's (kh, kw)
    return jnp.einsum("bhwpc,pcd->bhwd", patches, kernel.reshape(kh * kw, c_in, c_out))


class Conv(nn.Module):
    """`nn.Conv` for 2D NHWC inputs without groups or dilation (see the module docstring)."""

    features: int
    kernel_size: Sequence[int]
    strides: Sequence[int] = (1, 1)
    padding: Padding = "SAME"
    use_bias: bool = True
    dtype: jnp.dtype | None = None
    param_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """x: (B, H, W, C_in) -> (B, H_out, W_out, features)."""
        kh, kw = self.kernel_size
        kernel = self.param(
            "kernel",
            nn.initializers.lecun_normal(),
            (kh, kw, x.shape[-1], self.features),
            self.param_dtype,
        )
        dtype = self.dtype or jnp.result_type(x, kernel)
        y = conv2d(x.astype(dtype), kernel.astype(dtype), tuple(self.strides), self.padding)
        if self.use_bias:
            bias = self.param("bias", nn.initializers.zeros, (self.features,), self.param_dtype)
            y = y + bias.astype(dtype)
        return y
