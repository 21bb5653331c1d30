"""`dot_product_attention`: key masks and dropout, through the plain and the blocked path."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sam2_jax.modeling import attention

# max |blocked - plain| / max |plain|; both are float32 softmax(q k^T / sqrt(D)) v
TOLERANCE = 1e-5


# One shape for every test, so each attention variant compiles once.
B, NQ, NK, H, D = 2, 300, 700, 2, 32


def _inputs(seed=0):
    rng = np.random.default_rng(seed)
    q, k, v = (rng.standard_normal((B, n, H, D)).astype(np.float32) for n in (NQ, NK, NK))
    return jnp.asarray(q), jnp.asarray(k), jnp.asarray(v)


def _mask(seed=0):
    """Random valid keys, with a whole empty stretch (skipped key blocks) in batch 0."""
    mask = np.random.default_rng(seed).random((B, NK)) < 0.6
    mask[0, 128:512] = False
    return jnp.asarray(mask)


@functools.partial(jax.jit, static_argnames="dropout_rate")
def _blocked(q, k, v, key_mask, dropout_rate=0.0, dropout_rng=None):
    # small blocks: several query and key blocks, both padded at the end
    return attention._blocked_attention(
        q, k, v, key_mask, dropout_rate, dropout_rng, query_block=64, key_block=128
    )


def _rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return np.abs(a - b).max() / np.abs(b).max()


def test_blocked_matches_plain_with_mask():
    q, k, v = _inputs()
    mask = _mask()
    plain = jax.nn.dot_product_attention(q, k, v, mask=mask[:, None, None, :])
    blocked = _blocked(q, k, v, mask)
    err = _rel(blocked, plain)
    print(f"masked blocked vs plain: {err:.2e}")
    assert err <= TOLERANCE


def test_blocked_matches_plain_without_mask():
    q, k, v = _inputs(seed=1)
    err = _rel(_blocked(q, k, v, None), jax.nn.dot_product_attention(q, k, v))
    assert err <= TOLERANCE


def test_masked_keys_have_no_influence():
    """Changing masked keys/values changes nothing, in both paths (exactly, for blocked)."""
    q, k, v = _inputs(seed=2)
    mask = _mask(seed=2)
    noise = jnp.where(mask[:, :, None, None], 0.0, 1e3)
    for fn in (_blocked, lambda q, k, v, m: attention.dot_product_attention(q, k, v, key_mask=m)):
        a = fn(q, k, v, mask)
        b = fn(q, k + noise, v - noise, mask)
        np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=0, atol=1e-5)


def test_matches_torch_sdpa_with_mask():
    q, k, v = _inputs(seed=3)
    mask = _mask(seed=3)
    t = lambda x: torch.from_numpy(np.array(x)).transpose(1, 2)  # (B, H, N, D)
    expected = F.scaled_dot_product_attention(
        t(q), t(k), t(v), attn_mask=torch.from_numpy(np.array(mask))[:, None, None, :]
    ).transpose(1, 2)
    ours = attention.dot_product_attention(q, k, v, key_mask=mask)
    assert _rel(ours, expected.numpy()) <= TOLERANCE
    assert _rel(_blocked(q, k, v, mask), expected.numpy()) <= TOLERANCE


def test_fully_masked_rows_are_zero_on_both_paths():
    q, k, v = _inputs(seed=4)
    mask = np.ones((B, NK), bool)
    mask[1] = False
    mask = jnp.asarray(mask)
    for out in (_blocked(q, k, v, mask), attention.dot_product_attention(q, k, v, key_mask=mask)):
        out = np.asarray(out)
        assert np.isfinite(out).all()
        np.testing.assert_array_equal(out[1], 0.0)
        assert np.abs(out[0]).max() > 0


@pytest.mark.parametrize("path", ["plain", "blocked"])
def test_dropout_is_unbiased_and_respects_the_mask(path):
    """Dropout on the normalized probabilities keeps the expectation: the mean over many rngs
    approaches the deterministic output; masked keys stay irrelevant with dropout on."""
    q, k, v = _inputs(seed=5)
    mask = _mask(seed=5)
    if path == "plain":
        fn = lambda rng, k, v: attention._plain_attention(q, k, v, mask, 0.1, rng)
    else:
        fn = lambda rng, k, v: _blocked(q, k, v, mask, dropout_rate=0.1, dropout_rng=rng)
    fn = jax.jit(fn)
    exact = np.asarray(attention.dot_product_attention(q, k, v, key_mask=mask))
    samples = [np.asarray(fn(jax.random.key(i), k, v)) for i in range(100)]
    assert _rel(samples[0], exact) > 1e-2  # dropout does something
    mean_error = np.abs(np.mean(samples, axis=0) - exact).mean() / np.abs(exact).mean()
    assert mean_error < 0.05, mean_error  # one sample alone is off by ~0.3
    noise = jnp.where(mask[:, :, None, None], 0.0, 1e3)
    np.testing.assert_allclose(
        np.asarray(fn(jax.random.key(0), k + noise, v - noise)), samples[0], rtol=0, atol=1e-5
    )


def test_dispatch_uses_blocked_path_for_long_sequences_on_cpu(monkeypatch):
    q, k, v = _inputs(seed=6)
    mask = _mask(seed=6)
    calls = []
    original = attention._blocked_attention

    def spy(*args, **kwargs):
        calls.append(args[0].shape)
        return original(*args, **kwargs)

    monkeypatch.setattr(attention, "_BLOCKED_MIN_TOKENS", 128)
    monkeypatch.setattr(attention, "_blocked_attention", spy)
    out = attention.dot_product_attention(q, k, v, key_mask=mask)
    assert calls, "blocked path not taken"
    expected = jax.nn.dot_product_attention(q, k, v, mask=mask[:, None, None, :])
    assert _rel(out, expected) <= TOLERANCE


def _products(platform: str, dtype) -> list[tuple[str, str]]:
    """(operand types, result type) of each dot in `dot_product_attention` lowered for
    `platform` with `dtype` inputs, and that its output keeps that dtype."""
    from jax import export

    q, k, v = (a.astype(dtype) for a in _inputs())

    def fn(q, k, v, key_mask):
        return attention.dot_product_attention(q, k, v, key_mask=key_mask)

    exported = export.export(jax.jit(fn), platforms=(platform,))(q, k, v, _mask())
    assert exported.out_avals[0].dtype == dtype
    return [
        tuple(line.split(" : (")[1].split(" loc(")[0].split(") -> "))  # operands, result
        for line in exported.mlir_module().splitlines()
        if "= stablehlo.dot_general" in line
    ]


@pytest.mark.parametrize("platform", ["cpu", "cuda", "tpu"])
def test_bfloat16_operands_on_every_platform(platform):
    """bfloat16 attention multiplies bfloat16 operands on every platform (what fused
    accelerator kernels take, and what has a fast path on CPU: there with float32 results, as
    that path needs); the program exported for one platform holds only that platform's
    branch."""
    dots = _products(platform, jnp.bfloat16)
    assert len(dots) == 2, dots  # scores and values, one branch
    for operands, result in dots:
        assert operands.count("xbf16>") == 2, (platform, dots)
        assert platform != "cpu" or result.endswith("xf32>"), dots


def test_float16_is_computed_in_float32_on_cpu():
    """float16 products have no fast path on CPU: there the attention runs in float32."""
    dots = _products("cpu", jnp.float16)
    assert len(dots) == 2, dots
    for operands, result in dots:
        assert operands.count("xf32>") == 2 and result.endswith("xf32>"), dots
