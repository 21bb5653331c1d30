"""2D convolutions with the params of `flax.linen.Conv` and CPU-friendly computations.

`Conv` and `DepthwiseConv` have the params (names, shapes) of `flax.linen.Conv` (without /
with `feature_group_count=dim`). On platforms other than CPU both are XLA's convolutions,
forward and gradient. On CPU (chosen per platform when the program is lowered):

- `Conv`'s forward is XLA's (exactly `lax.conv_general_dilated`), its gradient the VJP of the
  same convolution written as strided slices and one matmul: XLA on CPU computes a
  convolution's kernel gradient with generic loops; a 1x1 convolution (stride 1, no padding)
  is a product over channels on every platform, forward and gradient;
- `DepthwiseConv` is k * k shifted products, forward and gradient: XLA's grouped convolution
  is 16x slower there (forward), and its gradient builds a dense (k, k, dim, dim) kernel.
  The sums run in another order than XLA's (differences of a few float32 ULPs).

Measured on the small model's training step on CPU: 1 clip x 8 frames x 1 object 4.05 s ->
1.74 s (depthwise gradient), 2 clips x 8 x 3 objects 5.9 s -> 3.9 s.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from sam2_jax.modeling.matmul import einsum
from sam2_jax.modeling.platform import per_platform

Pads = tuple[tuple[int, int], tuple[int, int]]
_DIMS = ("NHWC", "HWIO", "NHWC")


def pad_pairs(padding: str | Sequence[Sequence[int]], kernel: tuple[int, int]) -> Pads:
    """ "VALID", "SAME" (stride 1, as every use here) or explicit pairs -> ((t, b), (l, r))."""
    if padding == "VALID":
        return ((0, 0), (0, 0))
    if padding == "SAME":
        return tuple(((k - 1) // 2, k - 1 - (k - 1) // 2) for k in kernel)
    return tuple((int(a), int(b)) for a, b in padding)


def _conv_as_matmul(x: jax.Array, kernel: jax.Array, strides: tuple[int, int], pads: Pads):
    """The convolution as strided slices + a dot: x (B, H, W, Ci), kernel (kh, kw, Ci, Co)."""
    kh, kw, c_in, c_out = kernel.shape
    sh, sw = strides
    x = jnp.pad(x, ((0, 0), *pads, (0, 0)))
    b, h, w, _ = x.shape
    ho, wo = (h - kh) // sh + 1, (w - kw) // sw + 1
    if (kh, kw) == (1, 1):
        x = x[:, : (ho - 1) * sh + 1 : sh, : (wo - 1) * sw + 1 : sw]
        return einsum("bhwc,cd->bhwd", x, kernel[0, 0])
    if (kh, kw) == (sh, sw):  # non-overlapping patches: a reshape
        x = x[:, : ho * kh, : wo * kw].reshape(b, ho, kh, wo, kw, c_in)  # (B, ho, kh, wo, kw, C)
        return einsum("bhiwjc,ijcd->bhwd", x, kernel)
    patches = jnp.stack(
        [
            x[:, i : i + (ho - 1) * sh + 1 : sh, j : j + (wo - 1) * sw + 1 : sw]
            for i in range(kh)
            for j in range(kw)
        ],
        axis=3,
    )  # (B, ho, wo, kh * kw, C_in), offsets row-major as the kernel's (kh, kw)
    return einsum("bhwpc,pcd->bhwd", patches, kernel.reshape(kh * kw, c_in, c_out))


def _depthwise_as_shifts(x: jax.Array, kernel: jax.Array, pads: Pads) -> jax.Array:
    """Depthwise stride-1 convolution as k * k shifted products: kernel (kh, kw, 1, C)."""
    kh, kw = kernel.shape[:2]
    x = jnp.pad(x, ((0, 0), *pads, (0, 0)))
    h, w = x.shape[1] - kh + 1, x.shape[2] - kw + 1
    out = jnp.zeros((x.shape[0], h, w, x.shape[3]), x.dtype)
    for i in range(kh):
        for j in range(kw):
            out = out + x[:, i : i + h, j : j + w, :] * kernel[i, j, 0]
    return out


def _xla_conv(x: jax.Array, kernel: jax.Array, strides: tuple[int, int], pads: Pads):
    out = jax.lax.conv_general_dilated(
        x, kernel, strides, pads, dimension_numbers=_DIMS, preferred_element_type=jnp.float32
    )  # accumulated in float32 (`matmul`)
    return out.astype(jnp.result_type(x, kernel))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def conv2d(x: jax.Array, kernel: jax.Array, strides: tuple[int, int], pads: Pads) -> jax.Array:
    """`lax.conv_general_dilated` (NHWC / HWIO), differentiated through `_conv_as_matmul` on
    CPU."""
    return _xla_conv(x, kernel, strides, pads)


def _conv2d_fwd(x, kernel, strides, pads):
    return conv2d(x, kernel, strides, pads), (x, kernel)


def _conv2d_bwd(strides, pads, residuals, g):
    """The VJP of `_conv_as_matmul` on CPU, of XLA's convolution elsewhere."""

    def vjp(forward):
        return lambda x, kernel, g: jax.vjp(forward, x, kernel)[1](g)

    on_cpu = vjp(lambda a, k: _conv_as_matmul(a, k, strides, pads))
    elsewhere = vjp(lambda a, k: _xla_conv(a, k, strides, pads))
    return per_platform(*residuals, g, cpu=on_cpu, default=elsewhere)


conv2d.defvjp(_conv2d_fwd, _conv2d_bwd)


def _xla_depthwise(x: jax.Array, kernel: jax.Array, pads: Pads) -> jax.Array:
    return jax.lax.conv_general_dilated(
        x, kernel, (1, 1), pads, dimension_numbers=_DIMS, feature_group_count=x.shape[-1]
    )


def depthwise_conv2d(x: jax.Array, kernel: jax.Array, pads: Pads) -> jax.Array:
    """Grouped stride-1 convolution (one group per channel): k * k shifted products on CPU
    (forward and gradient; XLA's grouped convolution takes 16x longer there: 19 ms vs 1.2 ms
    for the memory encoder's 7x7 at 32x32x256), XLA's convolution elsewhere."""
    return per_platform(
        x,
        kernel,
        cpu=lambda x, kernel: _depthwise_as_shifts(x, kernel, pads),
        default=lambda x, kernel: _xla_depthwise(x, kernel, pads),
    )


class Conv(nn.Module):
    """`nn.Conv` for 2D NHWC inputs without groups or dilation (see the module docstring)."""

    features: int
    kernel_size: Sequence[int]
    strides: Sequence[int] = (1, 1)
    padding: str | Sequence[Sequence[int]] = "SAME"
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
        pads = pad_pairs(self.padding, (kh, kw))
        if (kh, kw) == tuple(self.strides) == (1, 1) and pads == ((0, 0), (0, 0)):
            # a product over channels: the same sums as XLA's convolution (bit-identical on
            # CPU, where it ran 1.3-2.9x faster: 5.8 -> 2.6 ms for the neck's 96 -> 256 at
            # 128 x 128), differentiated as a product everywhere
            y = _conv_as_matmul(x.astype(dtype), kernel.astype(dtype), (1, 1), pads)
        else:
            y = conv2d(x.astype(dtype), kernel.astype(dtype), tuple(self.strides), pads)
        if self.use_bias:
            bias = self.param("bias", nn.initializers.zeros, (self.features,), self.param_dtype)
            y = y + bias.astype(dtype)
        return y


class DepthwiseConv(nn.Module):
    """`nn.Conv(dim, (k, k), padding=p, feature_group_count=dim)`: kernel (k, k, 1, dim), bias
    (dim,); the gradient as in the module docstring."""

    dim: int
    kernel_size: int = 7
    padding: int = 3
    dtype: jnp.dtype | None = None
    param_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """x: (B, H, W, dim) -> (B, H + 2p - k + 1, W + 2p - k + 1, dim)."""
        k, p = self.kernel_size, self.padding
        kernel = self.param(
            "kernel", nn.initializers.lecun_normal(), (k, k, 1, self.dim), self.param_dtype
        )
        bias = self.param("bias", nn.initializers.zeros, (self.dim,), self.param_dtype)
        dtype = self.dtype or jnp.result_type(x, kernel)
        y = depthwise_conv2d(x.astype(dtype), kernel.astype(dtype), ((p, p), (p, p)))
        return y + bias.astype(dtype)
