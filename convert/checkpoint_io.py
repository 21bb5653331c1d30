"""Reading and writing SAM 2 checkpoints: reference `.pt`, Hugging Face safetensors, and ours.

Three on-disk formats are understood (`detect_format`):

- "reference": a file written by `torch.save({"model": SAM2Base.state_dict(), ...})`, as
  Meta releases them (`sam2.1_hiera_tiny.pt`). Needs torch (an optional dependency).
- "hf": a Hugging Face `Sam2Model` / `Sam2VideoModel` directory (`model.safetensors` or a
  sharded `model.safetensors.index.json`) or a single `.safetensors` file. Read with the
  safetensors numpy API and renamed by `hf_layout`; no torch needed.
- "converted": a directory written by `save_converted` (`sam2-jax convert`): `config.json`
  (variant name, image size, optionally the memory policy the weights are meant to track
  with) and `params/`, an Orbax params-only checkpoint of the Flax tree.

`load_checkpoint` turns any of them into a params tree for a `ModelConfig`, strictly: a
checkpoint of another variant raises `CheckpointMismatchError` naming the expected config, the
variant the checkpoint looks like, and every missing, unexpected and mis-shaped key.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import pathlib
import shutil
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np

from sam2_jax.config import CONFIGS, ModelConfig, get_config
from sam2_jax.convert import hf_layout
from sam2_jax.convert.state_dict import (
    CheckpointMismatchError,
    export_state_dict,
    state_dict_to_params,
)
from sam2_jax.output_files import atomic, write_text

Format = Literal["reference", "hf", "converted"]
PathLike = str | os.PathLike

CONFIG_FILE = "config.json"  # in a converted directory
PARAMS_DIR = "params"  # the Orbax checkpoint inside a converted directory
FORMAT_TAG = "sam2_jax.converted_params"
FORMAT_VERSION = 1
HF_WEIGHTS = "model.safetensors"
HF_INDEX = "model.safetensors.index.json"
_TORCH_SUFFIXES = (".pt", ".pth", ".ckpt")
_ZIP_MAGIC, _PICKLE_MAGIC = b"PK\x03\x04", b"\x80"


class CheckpointFormatError(ValueError):
    """A path that is not a readable checkpoint: unknown format, truncated or corrupt file."""


# --------------------------------------------------------------------------- format detection


def detect_format(path: PathLike) -> Format:
    """Which kind of checkpoint `path` is.

    Raises:
      FileNotFoundError: nothing at `path`.
      CheckpointFormatError: neither a reference file, an HF directory / .safetensors file, nor
        a directory written by `save_converted`.
    """
    path = pathlib.Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if path.is_dir():
        if (path / CONFIG_FILE).is_file() and _read_json(path / CONFIG_FILE).get(
            "format"
        ) == FORMAT_TAG:
            return "converted"
        if (path / HF_WEIGHTS).is_file() or (path / HF_INDEX).is_file():
            return "hf"
        raise CheckpointFormatError(
            f"{path} is a directory but neither a converted sam2_jax checkpoint ({CONFIG_FILE} "
            f"with format {FORMAT_TAG!r} and {PARAMS_DIR}/) nor a Hugging Face model directory "
            f"({HF_WEIGHTS} or {HF_INDEX}); only safetensors weights are read from HF."
        )
    with open(path, "rb") as f:
        head = f.read(16)
    if path.suffix == ".safetensors" or _looks_like_safetensors(head):
        return "hf"
    if path.suffix in _TORCH_SUFFIXES or head.startswith((_ZIP_MAGIC, _PICKLE_MAGIC)):
        return "reference"
    raise CheckpointFormatError(
        f"unrecognized checkpoint format: {path}. Expected a reference SAM 2 checkpoint "
        f"(torch.save file, {'/'.join(_TORCH_SUFFIXES)}), a Hugging Face Sam2Model directory or "
        ".safetensors file, or a directory written by `sam2-jax convert`."
    )


def _looks_like_safetensors(head: bytes) -> bool:
    # 8-byte little-endian header length, then the JSON header itself.
    return len(head) > 8 and head[8:9] == b"{" and 0 < int.from_bytes(head[:8], "little") < 1 << 30


def _read_json(path: pathlib.Path) -> dict[str, Any]:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise CheckpointFormatError(f"could not read {path}: {err}") from err


# --------------------------------------------------------------------------- reference .pt


def _import_torch():
    try:
        import torch
    except ImportError as err:
        raise ImportError(
            "reading or writing a reference .pt checkpoint needs PyTorch (`pip install torch`); "
            "Hugging Face safetensors and converted checkpoints load without it"
        ) from err
    return torch


def read_reference_checkpoint(path: PathLike) -> dict[str, np.ndarray]:
    """`torch.load(path, map_location="cpu", weights_only=True)["model"]` as numpy arrays.

    Returns:
      reference key -> array, in the file's dtype (bfloat16 widened to float32).
    """
    torch = _import_torch()
    path = pathlib.Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # zip/pickle errors of every kind: truncated, corrupt, not torch
        raise CheckpointFormatError(
            f"could not read reference checkpoint {path} (truncated or corrupt?): "
            f"{type(err).__name__}: {err}"
        ) from err
    if not isinstance(payload, Mapping) or "model" not in payload:
        found = sorted(payload) if isinstance(payload, Mapping) else type(payload).__name__
        raise CheckpointFormatError(
            f"{path} is a torch file but not a SAM 2 checkpoint: expected a dict with a 'model' "
            f"entry (the SAM2Base state_dict), found {found}"
        )
    return {key: _tensor_to_numpy(value) for key, value in payload["model"].items()}


def _tensor_to_numpy(tensor: Any) -> np.ndarray:
    tensor = tensor.detach().cpu()
    if tensor.is_floating_point() and tensor.element_size() < 4:  # bf16 / fp16
        tensor = tensor.float()
    return tensor.numpy()


def write_reference_checkpoint(params: Mapping[str, Any], path: PathLike) -> pathlib.Path:
    """Writes `{"model": state_dict}` that the reference's `load_state_dict(strict=True)` takes.

    Args:
      params: our Flax params tree (without the outer 'params' key).
      path: the .pt file to write; its parent directory is created.
    """
    torch = _import_torch()
    path = pathlib.Path(path)
    state_dict = {k: torch.from_numpy(np.array(v)) for k, v in export_state_dict(params).items()}
    with atomic(path) as temporary:  # a failed write never leaves a partial .pt
        torch.save({"model": state_dict}, temporary)
    return path


# --------------------------------------------------------------------------- Hugging Face


def read_hf_checkpoint(path: PathLike) -> dict[str, np.ndarray]:
    """An HF `Sam2Model` / `Sam2VideoModel` safetensors checkpoint, renamed to reference keys.

    Args:
      path: a directory holding `model.safetensors` (or a sharded `model.safetensors.index.json`),
        or one `.safetensors` file.
    """
    path = pathlib.Path(path)
    if path.is_dir():
        if (path / HF_WEIGHTS).is_file():
            files = [path / HF_WEIGHTS]
        else:
            weight_map = _read_json(path / HF_INDEX).get("weight_map", {})
            files = [path / name for name in sorted(set(weight_map.values()))]
    else:
        files = [path]
    hf_state: dict[str, np.ndarray] = {}
    for file in files:
        hf_state.update(_load_safetensors(file))
    return hf_layout.hf_to_reference(hf_state)


def _load_safetensors(path: pathlib.Path) -> dict[str, np.ndarray]:
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        return load_file(path)
    except TypeError:  # bfloat16 has no numpy dtype: read through JAX and widen
        from safetensors import safe_open

        with safe_open(path, framework="flax") as f:
            return {k: np.asarray(f.get_tensor(k), np.float32) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as err:
        raise CheckpointFormatError(
            f"could not read safetensors file {path} (truncated or corrupt?): {err}"
        ) from err


# --------------------------------------------------------------------------- converted (Orbax)


def save_converted(
    params: Mapping[str, Any],
    config: ModelConfig,
    out_dir: PathLike,
    *,
    overwrite: bool = False,
    source: str | None = None,
    memory_policy: str | None = None,
) -> pathlib.Path:
    """Writes `out_dir/params` (Orbax, params only) and `out_dir/config.json`.

    Args:
      params: the Flax params tree (without the outer 'params' key).
      config: the model config the params belong to; its name and image size are recorded.
      overwrite: replace an existing converted checkpoint in `out_dir`.
      source: where the weights came from, recorded for information.
      memory_policy: the name of the memory policy (`sam2_jax.memory.get_policy`) the video
        predictors use with these weights when none is given; None: SAM 2's rule.
    """
    import orbax.checkpoint as ocp

    out_dir = pathlib.Path(out_dir).absolute()  # Orbax wants absolute paths
    params_dir = out_dir / PARAMS_DIR
    if params_dir.exists() or (out_dir / CONFIG_FILE).exists():
        if not overwrite:
            raise FileExistsError(f"{out_dir} already holds a checkpoint (pass overwrite=True)")
        shutil.rmtree(params_dir, ignore_errors=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    host_params = _map_leaves(params, np.asarray)
    with ocp.StandardCheckpointer() as checkpointer:
        checkpointer.save(params_dir, host_params)
    meta = {
        "format": FORMAT_TAG,
        "format_version": FORMAT_VERSION,
        "name": config.name,
        "image_size": config.image_size,
        "source": source,
    }
    if memory_policy is not None:
        meta["memory_policy"] = memory_policy
    write_text(out_dir / CONFIG_FILE, json.dumps(meta, indent=2) + "\n")
    return out_dir


def read_converted_config(path: PathLike) -> ModelConfig:
    """The config recorded in a converted directory's config.json."""
    meta = _read_json(pathlib.Path(path) / CONFIG_FILE)
    if meta.get("format") != FORMAT_TAG:
        raise CheckpointFormatError(f"{path} is not a converted sam2_jax checkpoint")
    if meta.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointFormatError(
            f"{path} was written by a newer sam2_jax (format version {meta['format_version']})"
        )
    return get_config(meta["name"], image_size=meta.get("image_size"))


def read_converted_memory_policy(path: PathLike) -> str | None:
    """The memory policy name a converted directory's config.json records (None: none).

    Raises:
      CheckpointFormatError: the entry is not a string.
    """
    policy = _read_json(pathlib.Path(path) / CONFIG_FILE).get("memory_policy")
    if policy is not None and not isinstance(policy, str):
        raise CheckpointFormatError(
            f"{path}: config.json's memory_policy must be a policy name, got {policy!r}"
        )
    return policy


def read_converted(path: PathLike) -> tuple[ModelConfig, dict[str, Any]]:
    """A converted directory's config and raw params tree (numpy leaves), unchecked."""
    import orbax.checkpoint as ocp

    path = pathlib.Path(path).absolute()
    config = read_converted_config(path)
    try:
        with ocp.StandardCheckpointer() as checkpointer:
            params = checkpointer.restore(path / PARAMS_DIR)
    except Exception as err:  # Orbax / TensorStore errors of every kind
        raise CheckpointFormatError(
            f"could not read the Orbax params in {path / PARAMS_DIR} (incomplete or corrupt?): "
            f"{type(err).__name__}: {err}"
        ) from err
    return config, _map_leaves(params, np.asarray)


def _map_leaves(tree: Mapping[str, Any], fn) -> dict[str, Any]:
    return {k: _map_leaves(v, fn) if isinstance(v, Mapping) else fn(v) for k, v in tree.items()}


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in tree.items():
        path = f"{prefix}/{key}" if prefix else key
        flat.update(_flatten(value, path) if isinstance(value, Mapping) else {path: value})
    return flat


def _check_tree(params: Mapping[str, Any], expected: Mapping[str, Any], what: str) -> None:
    """Strict structure and shape check of a Flax params tree against the model's."""
    got, want = _flatten(params), _flatten(expected)
    missing = sorted(set(want) - set(got))
    unexpected = sorted(set(got) - set(want))
    mis_shaped = [
        (p, tuple(got[p].shape), tuple(want[p].shape))
        for p in sorted(set(got) & set(want))
        if tuple(got[p].shape) != tuple(want[p].shape)
    ]
    if missing or unexpected or mis_shaped:
        lines = [f"{what} does not match the model:"]
        if missing:
            lines.append(f"  missing ({len(missing)}): " + ", ".join(missing))
        if unexpected:
            lines.append(f"  unexpected ({len(unexpected)}): " + ", ".join(unexpected))
        lines += [f"  wrong shape for {p}: got {g}, expected {w}" for p, g, w in mis_shaped]
        raise CheckpointMismatchError("\n".join(lines))


# --------------------------------------------------------------------------- one entry point


def read_state_dict(path: PathLike) -> tuple[Format, dict[str, np.ndarray]]:
    """A reference or HF checkpoint as a reference-layout state_dict (numpy)."""
    fmt = detect_format(path)
    if fmt == "reference":
        return fmt, read_reference_checkpoint(path)
    if fmt == "hf":
        return fmt, read_hf_checkpoint(path)
    raise CheckpointFormatError(f"{path} is a converted checkpoint; use read_converted")


def guess_variant(state_dict: Mapping[str, Any]) -> str | None:
    """The released variant whose trunk matches a reference-layout state_dict, if any."""
    blocks = {
        int(key.split(".")[3])
        for key in state_dict
        if key.startswith("image_encoder.trunk.blocks.") and key.split(".")[3].isdigit()
    }
    patch = state_dict.get("image_encoder.trunk.patch_embed.proj.weight")
    if patch is None or not blocks:
        return None
    sam21 = "no_obj_embed_spatial" in state_dict or "obj_ptr_tpos_proj.weight" in state_dict
    for name, config in CONFIGS.items():
        if (
            config.trunk.depth == max(blocks) + 1
            and config.trunk.embed_dim == np.shape(patch)[0]
            and config.is_sam21 == sam21
        ):
            return name
    return None


@functools.lru_cache(maxsize=8)
def expected_shapes(config: ModelConfig) -> dict[str, Any]:
    """The full params tree of `config` as ShapeDtypeStructs (cached: do not modify it)."""
    from sam2_jax.modeling.sam2_base import SAM2, param_shapes

    return param_shapes(SAM2(config))


def load_checkpoint(
    path: PathLike,
    config: str | ModelConfig | None = None,
    *,
    image_size: int | None = None,
) -> tuple[ModelConfig, dict[str, Any]]:
    """Any supported checkpoint -> (config, params tree with numpy float32 leaves), strictly.

    Args:
      path: reference .pt, HF directory / .safetensors, or converted directory.
      config: the variant to load into (name or ModelConfig). None: the one recorded in a
        converted directory, or the released variant whose trunk the weights match.
      image_size: input size of the returned config when `config` is a name or None (default:
        the converted directory's, else 1024). Weights do not depend on it.

    Raises:
      FileNotFoundError, CheckpointFormatError: see `detect_format` and the readers.
      CheckpointMismatchError: the checkpoint does not fit `config` (another variant, missing
        or extra weights); the message names the expected config and the keys.
    """
    fmt = detect_format(path)
    if fmt == "converted":
        stored, params = read_converted(path)
        config = _resolve(config, stored.name, image_size, default_size=stored.image_size)
        if stored.name != config.name:
            raise CheckpointMismatchError(
                f"{path} holds a converted {stored.name} checkpoint, but config {config.name} "
                "was expected"
            )
        _check_tree(params, expected_shapes(config), f"converted checkpoint {path}")
        return config, _map_leaves(params, lambda a: np.asarray(a, np.float32))
    _, state_dict = read_state_dict(path)
    guess = guess_variant(state_dict)
    if config is None and guess is None:
        raise CheckpointMismatchError(
            f"cannot tell which SAM 2 variant {path} is; pass the config name explicitly"
        )
    config = _resolve(config, guess, image_size)
    try:
        return config, state_dict_to_params(state_dict, expected_shapes(config))
    except CheckpointMismatchError as err:
        looks = f"; it looks like a {guess} checkpoint" if guess and guess != config.name else ""
        raise CheckpointMismatchError(
            f"{fmt} checkpoint {path} does not fit config {config.name} (the expected config)"
            f"{looks}.\n{err}"
        ) from None


def _resolve(
    config: str | ModelConfig | None,
    default_name: str,
    image_size: int | None,
    default_size: int | None = None,
) -> ModelConfig:
    """The ModelConfig asked for; `image_size` overrides, `default_size` only fills in names."""
    if isinstance(config, ModelConfig):
        return config if image_size is None else dataclasses.replace(config, image_size=image_size)
    return get_config(config or default_name, image_size=image_size or default_size)
