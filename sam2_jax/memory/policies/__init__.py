"""Memory policies by name: `get_policy("reference" | "samurai" | "sam3" | "dam4sam" |
"sam2long", **options)`; `policy_for_model`: the one a predictor uses."""

from __future__ import annotations

from collections.abc import Callable

from sam2_jax.memory.policies.dam4sam import Dam4SamPolicy
from sam2_jax.memory.policies.gated import GatedPolicy
from sam2_jax.memory.policies.sam2long import Sam2LongPolicy
from sam2_jax.memory.policies.sam3 import Sam3Policy
from sam2_jax.memory.policies.samurai import SamuraiPolicy
from sam2_jax.memory.policy import MemoryPolicy, ReferencePolicy

POLICIES: dict[str, Callable[..., MemoryPolicy]] = {
    "reference": ReferencePolicy,
    "samurai": SamuraiPolicy,
    "sam3": Sam3Policy,
    "dam4sam": Dam4SamPolicy,
    "sam2long": Sam2LongPolicy,
}


def get_policy(name: str, **options) -> MemoryPolicy:
    """The memory policy `name` with its options (the dataclass fields of its class, e.g.
    `get_policy("samurai", kf_score_weight=0.15)`, `get_policy("reference", stride=2)`)."""
    if name not in POLICIES:
        raise ValueError(f"unknown memory policy {name!r}; known: {', '.join(POLICIES)}")
    try:
        return POLICIES[name](**options)
    except TypeError as e:
        raise ValueError(f"memory policy {name!r}: {e}") from None


def as_policy(policy: MemoryPolicy | str) -> MemoryPolicy:
    """A policy, or one given by name (with its default options)."""
    return get_policy(policy) if isinstance(policy, str) else policy


def policy_name_for_model(name: str | None, recorded: str | None) -> str:
    """The policy name a model tracks with: `name`; None: `recorded`, the one the model's
    checkpoint names (`SAM2Model.memory_policy`), and SAM 2's rule when it names none."""
    return name or recorded or "reference"


def policy_for_model(policy: MemoryPolicy | str | None, recorded: str | None) -> MemoryPolicy:
    """`policy` (or its name); None: as `policy_name_for_model`."""
    return as_policy(policy if policy is not None else policy_name_for_model(None, recorded))


__all__ = [
    "POLICIES",
    "Dam4SamPolicy",
    "GatedPolicy",
    "as_policy",
    "Sam2LongPolicy",
    "Sam3Policy",
    "SamuraiPolicy",
    "get_policy",
    "policy_for_model",
    "policy_name_for_model",
]
