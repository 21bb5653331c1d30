"""Small building blocks shared by several SAM 2 components."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from sam2_jax.modeling.matmul import Dense


def gelu(x: jax.Array) -> jax.Array:
    """Exact (erf) GELU, x / 2 (1 + erf(x / sqrt 2)): torch.nn.GELU()'s formula.

    `jax.nn.gelu(approximate=False)` takes erfc instead, which XLA expands into three
    polynomial branches, an exponential and two divisions per element: on the 2-core CPU that
    was 4x slower (6.6 ms of sam2.1_hiera_t's first block at 512 px) than erf's one rational
    polynomial.
    """
    return 0.5 * x * (1.0 + jax.lax.erf(x * jnp.asarray(0.7071067811865476, x.dtype)))


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
            x = Dense(dim, dtype=self.dtype, param_dtype=self.param_dtype, name=f"layers_{i}")(x)
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
