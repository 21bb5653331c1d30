"""Small building blocks shared by several SAM 2 components."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp


def gelu(x: jax.Array) -> jax.Array:
    """Exact (erf) GELU, as torch.nn.GELU(); jax.nn.gelu defaults to the tanh approximation."""
    return nn.gelu(x, approximate=False)


class MLP(nn.Module):
    """`num_layers` Dense layers, activation between them (not after the last).

    Mirrors the reference's `MLP(input_dim, hidden_dim, output_dim, num_layers)`; the layers are
    named `layers_{i}` like the reference's `layers.{i}`.
    """

    hidden_dim: int
    output_dim: int
    num_layers: int
    activation: Callable[[jax.Array], jax.Array] = nn.relu
    sigmoid_output: bool = False
    dtype: jnp.dtype | None = None
    param_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        dims = [self.hidden_dim] * (self.num_layers - 1) + [self.output_dim]
        for i, dim in enumerate(dims):
            x = nn.Dense(dim, dtype=self.dtype, param_dtype=self.param_dtype, name=f"layers_{i}")(x)
            if i < self.num_layers - 1:
                x = self.activation(x)
        if self.sigmoid_output:
            x = jax.nn.sigmoid(x)
        return x


class DropPath(nn.Module):
    """Stochastic depth: drops the whole residual branch per example (rng stream 'dropout')."""

    rate: float

    @nn.compact
    def __call__(self, x: jax.Array, deterministic: bool = True) -> jax.Array:
        if deterministic or self.rate == 0.0:
            return x
        keep = 1.0 - self.rate
        shape = (x.shape[0],) + (1,) * (x.ndim - 1)
        mask = jax.random.bernoulli(self.make_rng("dropout"), keep, shape)
        return jnp.where(mask, x / keep, jnp.zeros_like(x))


def layer_norm(epsilon: float, name: str, dtype: jnp.dtype | None = None) -> nn.LayerNorm:
    """LayerNorm over the last (channel) axis with an explicit epsilon.

    LayerNorm2d in the reference normalizes NCHW over C; in NHWC that is this same layer.
    """
    return nn.LayerNorm(epsilon=epsilon, dtype=dtype, name=name)


def max_pool_2d(x: jax.Array, stride: Sequence[int]) -> jax.Array:
    """Max pooling with kernel == stride, floor mode (torch MaxPool2d(k, k)). x: (B, H, W, C)."""
    return nn.max_pool(x, window_shape=tuple(stride), strides=tuple(stride), padding="VALID")


class DepthwiseConv(nn.Module):
    """Depthwise k x k convolution with zero padding `padding`, stride 1, and a bias.

    Params are those of `nn.Conv(dim, (k, k), feature_group_count=dim)` (kernel (k, k, 1, dim),
    bias (dim,)), but the output is computed as a sum of k * k shifted, per-channel scaled
    copies of the input. The result is the same; what changes is the gradient: XLA on CPU
    turns the kernel gradient of a grouped convolution into a dense (k, k, dim, dim)
    convolution, `dim` times the needed work (for the memory encoder's 7x7 over 256 channels
    it was ~40% of a training step), while the gradient of this sum is k * k reductions.
    """

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
        dtype = self.dtype or x.dtype
        x = x.astype(dtype)
        kernel, bias = kernel.astype(dtype), bias.astype(dtype)
        h, w = x.shape[1] + 2 * p - k + 1, x.shape[2] + 2 * p - k + 1
        padded = jnp.pad(x, ((0, 0), (p, p), (p, p), (0, 0)))  # (B, H + 2p, W + 2p, dim)
        out = jnp.zeros((x.shape[0], h, w, self.dim), dtype) + bias
        for i in range(k):
            for j in range(k):
                out = out + padded[:, i : i + h, j : j + w, :] * kernel[i, j, 0]
        return out
