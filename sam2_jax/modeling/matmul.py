"""Matrix products that accumulate in float32 whatever their operands' dtype.

With bfloat16 operands XLA's CPU backend takes its fast path (AMX tiles on recent Xeons:
~850 GFLOP/s on this project's 2 cores against ~290 for float32) only when the product's
result is float32; a bfloat16 result runs ~5x slower than that. So every product of the
model asks for a float32 result and casts it back to the operands' dtype, which is also what
accelerators do inside a bfloat16 matmul. float32 operands give the same program as a plain
product.
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp


def _accumulation_dtype(*operands: jax.Array) -> jnp.dtype:
    dtype = jnp.result_type(*operands)
    return jnp.dtype(jnp.float32) if jnp.issubdtype(dtype, jnp.floating) else dtype


def dot_general(lhs: jax.Array, rhs: jax.Array, dimension_numbers, precision=None, **kwargs):
    """`jax.lax.dot_general` with a float32 result, cast back to the operands' dtype."""
    kwargs.pop("preferred_element_type", None)
    out = jax.lax.dot_general(
        lhs,
        rhs,
        dimension_numbers,
        precision=precision,
        preferred_element_type=_accumulation_dtype(lhs, rhs),
        **kwargs,
    )
    return out.astype(jnp.result_type(lhs, rhs))


def einsum(subscripts: str, *operands: jax.Array) -> jax.Array:
    """`jnp.einsum` with a float32 result, cast back to the operands' dtype."""
    out = jnp.einsum(subscripts, *operands, preferred_element_type=_accumulation_dtype(*operands))
    return out.astype(jnp.result_type(*operands))


# nn.Dense (same params, same arguments) whose product accumulates as above
Dense = functools.partial(nn.Dense, dot_general=dot_general)
