"""Training configuration: frozen dataclasses, built by `configs/train/<name>.py:get_config()`.

A config file is plain Python (no ml_collections): it returns a `TrainConfig`. Command-line
overrides `key.sub=value` replace fields by dotted path (`apply_overrides`); the value is
parsed as a Python literal when it is one (numbers, tuples, None, True), else kept as text.

`validate` checks every field against its annotated type and its allowed range (`RULES`), so
a bad value (`batch_size=abc`, `checkpoint.every_steps=0`) is refused in one line naming the
key and the value before anything is built or compiled; `apply_overrides` and the loop both
call it. Every such error is a `ConfigError`.
"""

from __future__ import annotations

import ast
import dataclasses
import difflib
import importlib.util
import math
import os
import pathlib
import types
import typing
from collections.abc import Callable
from typing import Any


class ConfigError(ValueError):
    """A training config (or override) that cannot run; the message names the key and value."""


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
    # fnmatch patterns of the Flax param paths that train ("sam_mask_decoder/*"; `*` also
    # matches across '/'); every other
    # param is frozen: LR 0 and no gradient computed for it (its backward is not built).
    trainable: tuple[str, ...] = ("*",)


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

    Raises:
      FileNotFoundError: no such config.
      ConfigError: the file defines no `get_config()`, or it returns a config `validate`
        refuses.
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
        raise ConfigError(f"{file} defines no get_config()")
    config = module.get_config(phase) if phase else module.get_config()
    if not isinstance(config, TrainConfig):
        raise ConfigError(f"{file}: get_config() returned {type(config).__name__}, not TrainConfig")
    validate(config)
    return config


def field_types(node: type = TrainConfig, prefix: str = "") -> dict[str, Any]:
    """Every settable dotted key of a config class ("optim.base_lr") -> its annotated type."""
    hints = typing.get_type_hints(node)
    keys: dict[str, Any] = {}
    for field in dataclasses.fields(node):
        hint = hints[field.name]
        if dataclasses.is_dataclass(hint):
            keys.update(field_types(hint, f"{prefix}{field.name}."))
        else:
            keys[f"{prefix}{field.name}"] = hint
    return keys


def _options(hint: Any) -> tuple[Any, ...]:
    """The alternatives of a union type (`int | None` -> (int, NoneType)), else (hint,)."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        return typing.get_args(hint)
    return (hint,)


def _is_pairs(value: Any) -> bool:
    """A tuple of (name, value) pairs, the shape of every tuple field of the config."""
    return isinstance(value, tuple) and all(
        isinstance(p, tuple) and len(p) == 2 and isinstance(p[0], str) for p in value
    )


def _is_texts(option: Any) -> bool:
    """Whether a tuple type is `tuple[str, ...]` (the other tuple fields hold pairs)."""
    return typing.get_args(option) == (str, Ellipsis)


def _fits(value: Any, option: Any) -> bool:
    """Whether `value` has the type `option` (an int is a float; a bool is no number)."""
    if option is type(None):
        return value is None
    if option in (int, float) and isinstance(value, bool):
        return False
    if option is float:
        return isinstance(value, int | float)
    if typing.get_origin(option) is tuple:
        if _is_texts(option):
            return isinstance(value, tuple) and all(isinstance(v, str) for v in value)
        return _is_pairs(value)
    return isinstance(value, option)


_TYPE_NAMES = {int: "an integer", float: "a number", bool: "True or False", str: "text"}


def _describe(hint: Any) -> str:
    """`int | None` -> "an integer or None"."""
    words = [
        "None"
        if o is type(None)
        else "a tuple of texts"
        if _is_texts(o)
        else _TYPE_NAMES.get(o, "a tuple of (name, value) pairs")
        for o in _options(hint)
    ]
    return " or ".join(words)


def _coerce(text: str, hint: Any) -> Any:
    """An override's text -> its value for a field of type `hint`: a Python literal when it is
    one, else the text; an integer for a float field becomes a float, a literal for a text
    field stays the text (`workdir=2024` is the folder '2024'), lists become tuples."""
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        value = text
    options = _options(hint)
    if value is None:
        return value
    if any(_is_texts(o) for o in options) and isinstance(value, str):
        # `optim.trainable=sam_mask_decoder/*,memory_attention/*`: comma-separated patterns
        return tuple(part.strip() for part in value.split(","))
    if float in options and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if str in options and not isinstance(value, str):
        return text
    if isinstance(value, list):
        return tuple(tuple(v) if isinstance(v, list) else v for v in value)
    return value


Rule = tuple[Callable[[Any], bool], str]  # (allowed(value), what is allowed)
_AT_LEAST_1: Rule = (lambda v: v >= 1, "must be >= 1")
_NON_NEGATIVE: Rule = (lambda v: math.isfinite(v) and v >= 0, "must be a finite number >= 0")
_POSITIVE: Rule = (lambda v: math.isfinite(v) and v > 0, "must be a finite number > 0")
_BELOW_1: Rule = (lambda v: 0 <= v < 1, "must be in [0, 1)")
COMPUTE_DTYPES = ("float32", "bfloat16", "float16")

# The range of every field that has one (its type is checked for every field).
RULES: dict[str, Rule] = {
    "image_size": _AT_LEAST_1,
    "num_frames": _AT_LEAST_1,
    "max_objects": _AT_LEAST_1,
    "batch_size": _AT_LEAST_1,
    "steps": _AT_LEAST_1,
    "stop_at_step": (lambda v: v is None or v >= 1, "must be >= 1 (or None: run all steps)"),
    "compute_dtype": (lambda v: v in COMPUTE_DTYPES, f"must be one of {', '.join(COMPUTE_DTYPES)}"),
    "drop_path_rate": _BELOW_1,
    "log_every": _AT_LEAST_1,
    "optim.base_lr": _NON_NEGATIVE,
    "optim.vision_lr": _NON_NEGATIVE,
    "optim.schedule": (lambda v: v in ("cosine", "constant"), "must be 'cosine' or 'constant'"),
    "optim.end_lr_ratio": _NON_NEGATIVE,
    "optim.warmup_steps": (lambda v: v >= 0, "must be >= 0"),
    "optim.weight_decay": _NON_NEGATIVE,
    "optim.layer_decay": _POSITIVE,
    "optim.b1": _BELOW_1,
    "optim.b2": _BELOW_1,
    "optim.eps": _POSITIVE,
    "optim.clip_norm": (lambda v: v is None or _POSITIVE[0](v), "must be > 0 (or None: no clip)"),
    "optim.trainable": (lambda v: len(v) > 0 and all(v), "must name at least one pattern"),
    "mesh.data": (lambda v: v == -1 or v >= 1, "must be >= 1, or -1 (every device fsdp leaves)"),
    "mesh.fsdp": _AT_LEAST_1,
    "mesh.fsdp_min_size": _AT_LEAST_1,
    "checkpoint.every_steps": _AT_LEAST_1,
    "checkpoint.keep": _AT_LEAST_1,
}


def _get(config: TrainConfig, key: str) -> Any:
    value = config
    for part in key.split("."):
        value = getattr(value, part)
    return value


def validate(config: TrainConfig) -> TrainConfig:
    """Checks every field's type and range; returns `config`.

    Raises:
      ConfigError: "key=value: what is expected" for the first field that is wrong.
    """
    for key, hint in field_types().items():
        value = _get(config, key)
        if not any(_fits(value, option) for option in _options(hint)):
            raise ConfigError(
                f"{key}={value!r}: expected {_describe(hint)}, got {type(value).__name__}"
            )
        allowed, rule = RULES.get(key, (lambda v: True, ""))
        if not allowed(value):
            raise ConfigError(f"{key}={value!r}: {rule}")
    return config


def unknown_name(what: str, name: str, names: list[str], *, owner: str, prefix: str = "") -> str:
    """The message for a `name` that is none of `names`: the close ones, else all of them
    ("unknown WHAT 'name': did you mean a?", "...; OWNER has a, b, c"), each shown after
    `prefix` (the name's group, which takes no part in the matching)."""
    close = difflib.get_close_matches(name, names)
    head = f"unknown {what} {prefix + name!r}"
    if close:
        return f"{head}: did you mean {' or '.join(prefix + c for c in close)}?"
    return f"{head}; {owner} has {', '.join(sorted(names))}"


def _unknown_key(key: str, keys: dict[str, Any]) -> ConfigError:
    """The error for a key that is no field: a group's fields, close matches (within the
    key's group when it names one), or the names the config has."""
    fields = [k for k in keys if k.startswith(f"{key}.")]
    if fields:
        return ConfigError(f"config key {key!r} is a group; set one of {', '.join(fields)}")
    group, _, name = key.rpartition(".")
    names = [k[len(group) + 1 :] for k in keys if k.startswith(f"{group}.")]
    if names:
        return ConfigError(unknown_name("config key", name, names, owner=group, prefix=f"{group}."))
    close = difflib.get_close_matches(key, list(keys))
    if close:
        return ConfigError(f"unknown config key {key!r}: did you mean {' or '.join(close)}?")
    top = sorted({k.split(".")[0] for k in keys})
    return ConfigError(f"unknown config key {key!r}; the config has {', '.join(top)}")


def _replace(node: Any, parts: list[str], value: Any) -> Any:
    """`node` with the field at the dotted path `parts` set to `value`."""
    if len(parts) > 1:
        value = _replace(getattr(node, parts[0]), parts[1:], value)
    return dataclasses.replace(node, **{parts[0]: value})


def apply_overrides(config: TrainConfig, overrides: list[str]) -> TrainConfig:
    """Returns `config` with every `dotted.key=value` applied, e.g. `optim.base_lr=1e-5`,
    validated (`validate`).

    Raises:
      ConfigError: an override without '=', naming a key the config does not have (with the
        close matches), or giving a value of the wrong type or out of range.
    """
    keys = field_types()
    for item in overrides:
        key, sep, text = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"override {item!r} is not key=value (e.g. steps=200)")
        if key not in keys:
            raise _unknown_key(key, keys)
        config = _replace(config, key.split("."), _coerce(text.strip(), keys[key]))
    return validate(config)


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

    A field the record lacks (added to `TrainConfig` after the run was recorded) counts as its
    default, which is how that run behaved.

    Returns {dotted field: (recorded value, new value)}, values as JSON gives them back.
    """
    import json

    def as_saved(c: TrainConfig) -> dict[str, Any]:  # tuples -> lists, as config.json holds
        return _flatten(json.loads(json.dumps(to_dict(c), default=str)))

    old, new = {**as_saved(TrainConfig()), **_flatten(recorded)}, as_saved(config)
    return {k: (old.get(k), new.get(k)) for k in sorted(old.keys() | new.keys())
            if old.get(k) != new.get(k)}  # fmt: skip


def check_resume(recorded: dict[str, Any], config: TrainConfig) -> list[str]:
    """Raises ValueError if resuming a run recorded with `recorded` under `config` would change
    its recipe; returns the allowed changes as "field: old -> new" lines."""
    changes = config_changes(recorded, config)
    allowed = lambda key: key.split(".")[0] in RESUMABLE_CHANGES
    refused = [f"{k}: {a!r} -> {b!r}" for k, (a, b) in changes.items() if not allowed(k)]
    if refused:
        raise ConfigError(
            f"{config.workdir} holds a run recorded with another config, and resuming it would "
            f"continue its state under a different recipe: {'; '.join(refused)}. Use a new "
            f"workdir, or the recorded values (config.json). A resumed run may change only: "
            f"{', '.join(RESUMABLE_CHANGES)}."
        )
    return [f"{k}: {a!r} -> {b!r}" for k, (a, b) in changes.items()]
