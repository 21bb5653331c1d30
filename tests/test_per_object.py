"""`memory.per_object.call_per_object`: on CPU the objects run one at a time (a loop over
them), elsewhere as one batch, with the same results."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import export

from sam2_jax import build_sam2
from sam2_jax.memory.encoding import encode_memory
from sam2_jax.modeling.platform import traced_for

B = 3


@pytest.fixture(scope="module")
def model():
    return build_sam2()


def _encode(model, raw, high):
    def fn(v, raw, high):
        return model.module.apply(
            v,
            method=lambda m: encode_memory(
                m, raw, high, jnp.ones((B,)), None, jnp.float32, per_object=True
            ),
        )

    return fn


def _inputs(model):
    cfg = model.config
    rng = np.random.default_rng(0)
    h, s = cfg.embedding_size, cfg.image_size
    raw = jnp.asarray(rng.standard_normal((B, h, h, cfg.d_model)), jnp.float32)
    high = jnp.asarray(rng.standard_normal((B, s, s, 1)) * 4, jnp.float32)
    return raw, high


def test_one_at_a_time_equals_the_batch(model):
    raw, high = _inputs(model)
    fn = _encode(model, raw, high)
    per_object = jax.jit(fn)(model.variables, raw, high)  # CPU: one object at a time
    with traced_for("default"):
        batch = jax.jit(lambda *a: fn(*a))(model.variables, raw, high)
    # the same float32 products on shapes of 1 and of B objects: XLA may order sums otherwise
    err = float(jnp.abs(per_object - batch).max() / jnp.abs(batch).max())
    assert err <= 1e-5, err


@pytest.mark.parametrize("platform", ["cpu", "cuda"])
def test_a_loop_over_objects_on_cpu_only(model, platform):
    raw, high = _inputs(model)
    fn = _encode(model, raw, high)
    text = export.export(jax.jit(fn), platforms=(platform,))(model.variables, raw, high)
    loops = text.mlir_module().count("stablehlo.while")
    assert loops == (1 if platform == "cpu" else 0), loops
