"""Objects one at a time on CPU: the frame step's per-object parts (memory attention, memory
encoder) as a `lax.map` over the objects' axis there, as one batch elsewhere.

On CPU XLA runs these parts faster on one object's working set than on a batch of them
(6 objects at 512 px: memory attention 1.6 s -> 1.25 s, memory encoder 0.17 s -> 0.115 s);
accelerators want the batch. The choice is made per platform when the program is lowered.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax

from sam2_jax.modeling.platform import per_platform


def call_per_object(sub: nn.Module, *batched: jax.Array, **fixed: Any) -> Any:
    """`sub(*batched, **fixed)` for a bound submodule without random streams; every array of
    `batched` has the objects' axis B first, `fixed` (arrays broadcast over objects, static
    flags) is passed as is. On CPU the objects run one at a time.

    Returns:
      `sub`'s outputs, objects' axis first.
    """
    b = batched[0].shape[0]
    if b == 1 or sub.is_initializing():
        return sub(*batched, **fixed)
    unbound, variables = sub.clone(parent=None), sub.variables

    def as_batch(*xs):
        return unbound.apply(variables, *xs, **fixed)

    def one_at_a_time(*xs):
        def one(x):  # one object's arrays, a batch of 1 for the module
            out = as_batch(*(a[None] for a in x))
            return jax.tree.map(lambda a: a[0], out)

        return jax.lax.map(one, xs)

    return per_platform(*batched, cpu=one_at_a_time, default=as_batch)
