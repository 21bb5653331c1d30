"""`build_sam2`: a model config, the Flax module and its params, from any checkpoint or none."""

from __future__ import annotations

import dataclasses
import os
import pathlib
from typing import Any

import jax
import jax.numpy as jnp

from sam2_jax.config import ModelConfig, get_config
from sam2_jax.modeling.sam2_base import SAM2, quick_random_params

# The bundled default model (a converted directory, `sam2.1_hiera_nano` at 128 px), trained from
# scratch on synthetic moving shapes; its MODEL_CARD.md says how and how well.
DEFAULT_MODEL_DIR = pathlib.Path(__file__).resolve().parent / "assets" / "default_model"
COMPUTE_DTYPES = ("float32", "bfloat16")


@dataclasses.dataclass(frozen=True, eq=False)
class SAM2Model:
    """A ready-to-apply SAM 2: `model.module.apply(model.variables, ..., method=SAM2.<stage>)`.

    Attributes:
      config: the variant and input size.
      module: the (stateless) Flax module.
      params: the params tree (without the outer 'params' key), leaves as jax.Arrays.
      random_weights: True when no checkpoint was given and params are a random init.
      checkpoint: the path the weights were read from (None for a random init).
      memory_policy: the name of the memory policy the checkpoint records (a converted
        directory's config.json `memory_policy`; the bundled default model's is "dam4sam"),
        which the video predictors use when not given one; None: SAM 2's rule.
    """

    config: ModelConfig
    module: SAM2
    params: dict[str, Any]
    random_weights: bool = False
    checkpoint: str | None = None
    memory_policy: str | None = None

    @property
    def variables(self) -> dict[str, Any]:
        """`{"params": params}`, what `module.apply` takes."""
        return {"params": self.params}


def build_sam2(
    config_name: str | None = None,
    checkpoint: str | os.PathLike | None = None,
    *,
    image_size: int | None = None,
    seed: int = 0,
    compute_dtype: str = "float32",
) -> SAM2Model:
    """Builds SAM 2 with weights from a checkpoint, or randomly initialised without one.

    `build_sam2()` with neither argument loads the bundled default model (`DEFAULT_MODEL_DIR`:
    `sam2.1_hiera_nano` at 128 px, trained from scratch on synthetic moving shapes, not on real
    images; see its MODEL_CARD.md).

    Args:
      config_name: a variant name (`sam2.1_hiera_t`, `sam2.1_hiera_tiny`, ...). May be None
        with a checkpoint: then a converted directory's recorded variant, or the released
        variant whose trunk the weights match.
      checkpoint: None (random init of `config_name`), a reference `.pt` file, a Hugging
        Face `Sam2Model` directory or `.safetensors` file, or a directory written by
        `sam2-jax convert`.
      image_size: square input size, a multiple of 32 (default: the converted checkpoint's,
        else 1024). Weights do not depend on it.
      seed: PRNG seed of the random init (unused with a checkpoint).
      compute_dtype: "float32" (the reference's precision on CPU), or "bfloat16": activations
        and matrix products in bfloat16 with float32 accumulation (params stay float32;
        softmax, normalization and the outputs float32), ~1.4x faster on CPUs with AMX.

    Raises:
      ValueError: an unknown compute_dtype.
      FileNotFoundError, CheckpointFormatError, CheckpointMismatchError: from
        `sam2_jax.convert.checkpoint_io.load_checkpoint`; the last names the expected config.
    """
    if compute_dtype not in COMPUTE_DTYPES:
        raise ValueError(
            f"compute_dtype={compute_dtype!r}: must be one of {', '.join(COMPUTE_DTYPES)}"
        )
    dtype = jnp.dtype(compute_dtype)
    if checkpoint is None and config_name is None:
        checkpoint = default_model_dir()
    if checkpoint is None:
        config = get_config(config_name, image_size=image_size)
        params = quick_random_params(SAM2(config), seed)
        return SAM2Model(config, SAM2(config, dtype=dtype), params, random_weights=True)

    from sam2_jax.convert.checkpoint_io import load_checkpoint

    config, params = load_checkpoint(checkpoint, config_name, image_size=image_size)
    params = jax.device_put(params)
    module = SAM2(config, dtype=dtype)
    policy = _recorded_memory_policy(checkpoint)
    return SAM2Model(config, module, params, checkpoint=os.fspath(checkpoint), memory_policy=policy)


def _recorded_memory_policy(checkpoint: str | os.PathLike) -> str | None:
    """The memory policy a converted directory names, checked against the known ones."""
    from sam2_jax.convert.checkpoint_io import (
        CheckpointFormatError,
        detect_format,
        read_converted_memory_policy,
    )
    from sam2_jax.memory.policies import get_policy

    if detect_format(checkpoint) != "converted":
        return None
    policy = read_converted_memory_policy(checkpoint)
    if policy is not None:
        try:
            get_policy(policy)
        except ValueError as err:
            raise CheckpointFormatError(f"{checkpoint}: config.json: {err}") from None
    return policy


def default_model_dir() -> pathlib.Path:
    """The bundled default model's directory.

    Raises:
      FileNotFoundError: the package was installed without it.
    """
    if not (DEFAULT_MODEL_DIR / "config.json").is_file():
        raise FileNotFoundError(
            f"the bundled default model is missing ({DEFAULT_MODEL_DIR}): reinstall sam2_jax, or "
            "give a config name (random weights) or a checkpoint"
        )
    return DEFAULT_MODEL_DIR
