"""Checkpoint conversion between the reference PyTorch SAM 2 and sam2_jax (Flax) params.

Installed as `sam2_jax.convert`.
"""

from sam2_jax.convert.state_dict import (
    CheckpointMismatchError,
    export_state_dict,
    state_dict_to_params,
)
from sam2_jax.convert.table import RULES, Rule

__all__ = [
    "RULES",
    "CheckpointMismatchError",
    "Rule",
    "export_state_dict",
    "state_dict_to_params",
]
