"""Code that differs per platform, chosen when a program is lowered.

`per_platform(*args, cpu=f, default=g)` is `jax.lax.platform_dependent`: a program lowered
(or exported) for several platforms holds each one's branch, and the compiler sees only the
branch of the platform it compiles for. Converters that know nothing of platforms (ONNX)
trace under `traced_for("cpu")`, which calls that platform's branch directly.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Callable, Iterator
from typing import TypeVar

import jax

T = TypeVar("T")
_FIXED: contextvars.ContextVar[str | None] = contextvars.ContextVar("platform", default=None)


def per_platform(*args, cpu: Callable[..., T], default: Callable[..., T]) -> T:
    """`cpu(*args)` on CPU, `default(*args)` on every other platform."""
    fixed = _FIXED.get()
    if fixed is not None:
        return (cpu if fixed == "cpu" else default)(*args)
    return jax.lax.platform_dependent(*args, cpu=cpu, default=default)


@contextlib.contextmanager
def traced_for(platform: str) -> Iterator[None]:
    """Inside: `per_platform` takes `platform`'s branch while tracing, without a switch."""
    token = _FIXED.set(platform)
    try:
        yield
    finally:
        _FIXED.reset(token)
