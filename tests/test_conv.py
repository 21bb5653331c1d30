"""`modeling/conv.py`: on CPU the convolutions' gradients (matmuls) and the depthwise
convolution (shifted products) equal XLA's, and other platforms keep XLA's own."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import export

from sam2_jax.modeling import conv

# max |ours - XLA's| / max |XLA's|: the same sums in another order, float32
TOLERANCE = 1e-5

CASES = {
    "3x3 stride 1": ((3, 3), (1, 1), "SAME"),
    "2x2 stride 2 (patches)": ((2, 2), (2, 2), "VALID"),
    "3x3 stride 2, explicit pads": ((3, 3), (2, 2), ((1, 1), (1, 1))),
    "1x1": ((1, 1), (1, 1), "VALID"),
}


def _xla(x, kernel, strides, pads, groups=1):
    return jax.lax.conv_general_dilated(
        x, kernel, strides, pads, dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=groups,
    )  # fmt: skip


def _close(a, b):
    assert np.abs(np.asarray(a) - np.asarray(b)).max() <= TOLERANCE * np.abs(np.asarray(b)).max()


@pytest.mark.parametrize("case", list(CASES))
def test_conv_gradient_equals_xlas(case):
    kernel_size, strides, padding = CASES[case]
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((2, 10, 12, 5)), jnp.float32)
    kernel = jnp.asarray(rng.standard_normal((*kernel_size, 5, 7)), jnp.float32)
    pads = conv.pad_pairs(padding, kernel_size)
    ours, ours_vjp = jax.vjp(lambda a, k: conv.conv2d(a, k, strides, pads), x, kernel)
    xla, xla_vjp = jax.vjp(lambda a, k: _xla(a, k, strides, pads), x, kernel)
    np.testing.assert_array_equal(ours, xla)  # the forward is XLA's
    g = jnp.asarray(rng.standard_normal(xla.shape), jnp.float32)
    for a, b in zip(ours_vjp(g), xla_vjp(g), strict=True):
        _close(a, b)


@pytest.mark.parametrize(
    ("kernel_size", "pads"),
    [((7, 7), ((3, 3), (3, 3))), ((5, 3), ((1, 3), (2, 0))), ((3, 3), ((0, 0), (0, 0)))],
)
def test_depthwise_gradient_equals_xlas(kernel_size, pads):
    """The CPU path (shifted products) and its gradient against XLA's grouped convolution,
    asymmetric pads and no padding too."""
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.standard_normal((2, 9, 11, 6)), jnp.float32)
    kernel = jnp.asarray(rng.standard_normal((*kernel_size, 1, 6)), jnp.float32)
    ours, ours_vjp = jax.vjp(lambda a, k: conv.depthwise_conv2d(a, k, pads), x, kernel)
    xla, xla_vjp = jax.vjp(lambda a, k: _xla(a, k, (1, 1), pads, groups=6), x, kernel)
    _close(ours, xla)  # shifted products: the same sums in another order
    g = jnp.asarray(rng.standard_normal(xla.shape), jnp.float32)
    for a, b in zip(ours_vjp(g), xla_vjp(g), strict=True):
        _close(a, b)


def test_1x1_conv_module_is_a_product_equal_to_xlas_convolution():
    """`Conv` with a 1x1 kernel (stride 1, no padding) runs a product over channels: on CPU the
    same sums as XLA's convolution, so the same bits; its gradient is the product's."""
    rng = np.random.default_rng(2)
    x = jnp.asarray(rng.standard_normal((2, 16, 12, 96)), jnp.float32)
    module = conv.Conv(32, (1, 1), padding="VALID")
    params = module.init(jax.random.key(0), x)
    kernel, bias = params["params"]["kernel"], params["params"]["bias"]
    ours, ours_vjp = jax.vjp(lambda a: module.apply(params, a), x)
    xla, xla_vjp = jax.vjp(lambda a: _xla(a, kernel, (1, 1), ((0, 0), (0, 0))) + bias, x)
    np.testing.assert_array_equal(ours, xla)
    jaxpr = str(jax.make_jaxpr(lambda a: module.apply(params, a))(x))
    assert "conv_general_dilated" not in jaxpr and "dot_general" in jaxpr
    g = jnp.asarray(rng.standard_normal(xla.shape), jnp.float32)
    _close(ours_vjp(g)[0], xla_vjp(g)[0])


@pytest.mark.parametrize("platform", ["cpu", "cuda"])
def test_the_gradient_is_matmuls_on_cpu_only(platform):
    """The VJP lowered for CPU has no convolution but the forward's; for an accelerator the
    gradient is XLA's (a convolution for each of the two gradients)."""
    x = jnp.zeros((1, 8, 8, 4), jnp.float32)
    kernel = jnp.zeros((3, 3, 4, 4), jnp.float32)

    def loss(x, kernel):
        return (conv.conv2d(x, kernel, (1, 1), ((1, 1), (1, 1))) ** 2).sum()

    text = export.export(jax.jit(jax.grad(loss, (0, 1))), platforms=(platform,))(x, kernel)
    convolutions = text.mlir_module().count("= stablehlo.convolution")
    assert convolutions == (1 if platform == "cpu" else 3), convolutions


@pytest.mark.parametrize("platform", ["cpu", "cuda"])
def test_depthwise_is_shifted_products_on_cpu_only(platform):
    x = jnp.zeros((1, 8, 8, 4), jnp.float32)
    kernel = jnp.zeros((7, 7, 1, 4), jnp.float32)

    def forward(x, kernel):
        return conv.depthwise_conv2d(x, kernel, ((3, 3), (3, 3)))

    text = export.export(jax.jit(forward), platforms=(platform,))(x, kernel).mlir_module()
    assert text.count("= stablehlo.convolution") == (0 if platform == "cpu" else 1)
