"""The video memory: the fixed-size bank, which memories a frame reads, and the replaceable
policy that decides reads and writes (`MemoryPolicy`, `reference_policy`, and the policies by
name: `get_policy`)."""

from sam2_jax.memory.bank import MemoryBank, empty_bank
from sam2_jax.memory.policies import POLICIES, get_policy
from sam2_jax.memory.policy import (
    REFERENCE,
    MemoryPolicy,
    ReferencePolicy,
    StepScores,
    reference_policy,
)
from sam2_jax.memory.selection import MemorySelection, select_memories

__all__ = [
    "REFERENCE",
    "MemoryBank",
    "MemoryPolicy",
    "MemorySelection",
    "POLICIES",
    "ReferencePolicy",
    "StepScores",
    "empty_bank",
    "get_policy",
    "reference_policy",
    "select_memories",
]
