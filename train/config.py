"""Training configuration: frozen dataclasses, built by `configs/train/<name>.py:get_config()`.

A config file is plain Python (no ml_collections): it returns a `TrainConfig`. Command-line
overrides `key.sub=value` replace fields by dotted path (`apply_overrides`); the value is
parsed as a Python literal when it is one (numbers, tuples, None, True), else kept as text.
"""

from __future__ import annotations

import ast
import dataclasses
import importlib.util
import os
import pathlib
from typing import Any


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    """AdamW with the reference fine-tune recipe (sam2.1_hiera_b+_MOSE_finetune.yaml).

    Per parameter: lr = schedule(step) x (vision_lr for `image_encoder/*`, else base_lr)
    x layer_decay ** (depth - block) inside the Hiera trunk; weight decay is 0 for biases and
    torch `nn.LayerNorm` parameters (see `sam2_jax.train.optim`).
    """

    base_lr: float = 5.0e-6
    vision_lr: float = 3.0e-6  # image encoder (trunk and neck)
    schedule: str = "cosine"  # "cosine" (to end_lr_ratio x peak) or "constant"
    end_lr_ratio: float = 0.1  # cosine end value / start value (the reference divides by 10)
    warmup_steps: int = 0  # linear warmup from 0 before the schedule (0: none, as the reference)
    weight_decay: float = 0.1
    layer_decay: float = 0.9  # Hiera layer-wise LR decay (1.0: off)
    b1: float = 0.9
    b2: float = 0.999
    eps: float = 1.0e-8
    clip_norm: float | None = 0.1  # global gradient norm (None: no clipping)


@dataclasses.dataclass(frozen=True)
class MeshConfig:
    """Device mesh (`data`, `fsdp`) and the logical-axis rules that place arrays on it.

    `data=-1` takes every device not used by `fsdp`. Params and optimizer state are split
    along their largest dimension divisible by the `fsdp` size (logical axis "shard"), when
    they hold at least `fsdp_min_size` elements; smaller ones are replicated.
    """

    data: int = -1
    fsdp: int = 1
    fsdp_min_size: int = 2**14
    logical_axis_rules: tuple[tuple[str, Any], ...] = (
        ("batch", ("data", "fsdp")),  # examples are split over every device
        ("shard", "fsdp"),  # the sharded dimension of a param / optimizer-state leaf
    )


@dataclasses.dataclass(frozen=True)
class CheckpointConfig:
    every_steps: int = 1000  # save period (the last step is always saved)
    keep: int = 3  # checkpoints kept (oldest deleted first)
    async_save: bool = True


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """One training run. `task` and `data` name functions as "module:function".

    task: builds the params, the loss and the param-name map (default: SAM 2 with the
      iterative-prompt objective, `sam2_jax.train.task:sam2_task`).
    data: returns the host batch iterator (with `get_state` / `set_state`).
    """

    model: str = "sam2.1_hiera_b+"
    image_size: int = 1024
    init_checkpoint: str | None = None  # converted / .pt / HF weights to fine-tune from
    num_frames: int = 8
    max_objects: int = 3
    batch_size: int = 8  # global, over all devices and hosts
    steps: int = 1000
    # End the run after this step (checkpointed) while the LR schedule still spans `steps`:
    # the cut-off phase of a multi-phase recipe. None: run all `steps`.
    stop_at_step: int | None = None
    seed: int = 123
    compute_dtype: str = "bfloat16"  # activations; params stay float32
    remat: bool = False  # keep only matmul outputs for the backward pass, recompute the rest
    drop_path_rate: float = 0.0  # Hiera stochastic depth (the reference fine-tune uses 0.1)
    task: str = "sam2_jax.train.task:sam2_task"
    data: str = "sam2_jax.train.task:synthetic_data"
    data_options: tuple[tuple[str, Any], ...] = ()  # extra keyword arguments for the data
    # TrainPromptConfig fields of the SAM 2 objective, e.g. (("num_correction_pt_per_frame", 1),)
    prompt_options: tuple[tuple[str, Any], ...] = ()
    loss_options: tuple[tuple[str, Any], ...] = ()  # LossConfig fields, e.g. weight_mask
    workdir: str = "runs/default"
    log_every: int = 10
    optim: OptimConfig = OptimConfig()
    mesh: MeshConfig = MeshConfig()
    checkpoint: CheckpointConfig = CheckpointConfig()


def load_config(path: str | os.PathLike) -> TrainConfig:
    """Runs `get_config()` of a config file (a path, or a name under configs/train/).

    `name:phase` (or `file.py:phase`) runs `get_config(phase)` of a config that holds the
    phases of one recipe (e.g. `default_model:image`).
    """
    path, _, phase = os.fspath(path).partition(":")
    file = pathlib.Path(path)
    if not file.suffix:
        file = pathlib.Path(__file__).resolve().parents[1] / "configs" / "train" / f"{path}.py"
    if not file.is_file():
        raise FileNotFoundError(f"training config {os.fspath(path)!r} not found ({file})")
    spec = importlib.util.spec_from_file_location(f"train_config_{file.stem}", file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise ValueError(f"{file} defines no get_config()")
    config = module.get_config(phase) if phase else module.get_config()
    if not isinstance(config, TrainConfig):
        raise TypeError(f"{file}: get_config() returned {type(config).__name__}, not TrainConfig")
    return config


def _parse_value(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def apply_overrides(config: TrainConfig, overrides: list[str]) -> TrainConfig:
    """Returns `config` with every `dotted.key=value` applied, e.g. `optim.base_lr=1e-5`.

    Raises:
      ValueError: an override without '=', or naming a field the config does not have.
    """
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep:
            raise ValueError(f"override {item!r} is not key=value")
        config = _replace_path(config, key.strip().split("."), _parse_value(text.strip()), key)
    return config


def _replace_path(node: Any, parts: list[str], value: Any, full_key: str) -> Any:
    fields = {f.name for f in dataclasses.fields(node)}
    if parts[0] not in fields:
        known = ", ".join(sorted(fields))
        raise ValueError(f"unknown config key {full_key!r}: {type(node).__name__} has {known}")
    current = getattr(node, parts[0])
    if len(parts) > 1:
        if not dataclasses.is_dataclass(current):
            raise ValueError(f"config key {full_key!r}: {parts[0]!r} has no sub-fields")
        value = _replace_path(current, parts[1:], value, full_key)
    elif isinstance(current, float) and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    elif dataclasses.is_dataclass(current):
        raise ValueError(f"config key {full_key!r} is a group; set one of its fields")
    return dataclasses.replace(node, **{parts[0]: value})


def to_dict(config: TrainConfig) -> dict[str, Any]:
    """A JSON-ready dict of the config (recorded with every run)."""
    return dataclasses.asdict(config)


# Fields a resumed run may change: how far it goes, how it logs, saves and is laid out on the
# devices. Anything else (model, data, prompts, losses, optimizer, seed, ...) would continue
# the saved state under another recipe.
RESUMABLE_CHANGES = ("steps", "stop_at_step", "log_every", "workdir", "checkpoint", "mesh")


def _flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"optim": {"base_lr": 1}} -> {"optim.base_lr": 1}."""
    flat = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


def config_changes(recorded: dict[str, Any], config: TrainConfig) -> dict[str, tuple[Any, Any]]:
    """Fields that differ between a run's recorded config.json and `config`.

    Returns {dotted field: (recorded value, new value)}, values as JSON gives them back.
    """
    import json

    current = json.loads(json.dumps(to_dict(config), default=str))  # tuples -> lists, as saved
    old, new = _flatten(recorded), _flatten(current)
    return {k: (old.get(k), new.get(k)) for k in sorted(old.keys() | new.keys())
            if old.get(k) != new.get(k)}  # fmt: skip


def check_resume(recorded: dict[str, Any], config: TrainConfig) -> list[str]:
    """Raises ValueError if resuming a run recorded with `recorded` under `config` would change
    its recipe; returns the allowed changes as "field: old -> new" lines."""
    changes = config_changes(recorded, config)
    allowed = lambda key: key.split(".")[0] in RESUMABLE_CHANGES
    refused = [f"{k}: {a!r} -> {b!r}" for k, (a, b) in changes.items() if not allowed(k)]
    if refused:
        raise ValueError(
            f"{config.workdir} holds a run recorded with another config, and resuming it would "
            f"continue its state under a different recipe: {'; '.join(refused)}. Use a new "
            f"workdir, or the recorded values (config.json). A resumed run may change only: "
            f"{', '.join(RESUMABLE_CHANGES)}."
        )
    return [f"{k}: {a!r} -> {b!r}" for k, (a, b) in changes.items()]
