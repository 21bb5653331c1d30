"""Strict conversion of a reference `state_dict` to Flax params, and back."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from sam2_jax.convert.table import RULES, Rule


class CheckpointMismatchError(ValueError):
    """A checkpoint does not fit the model: lists missing, unexpected and mis-shaped keys."""


def _flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    flat = {}
    for key, value in tree.items():
        path = f"{prefix}/{key}" if prefix else key
        if isinstance(value, Mapping):
            flat.update(_flatten(value, path))
        else:
            flat[path] = value
    return flat


def _unflatten(flat: Mapping[str, Any]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for path, value in flat.items():
        node = tree
        *parents, leaf = path.split("/")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return tree


def _to_numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor, without importing torch here
        value = value.detach().cpu()
        if str(value.dtype) == "torch.bfloat16":
            value = value.float()
        value = value.numpy()
    return np.asarray(value)


def _match(name: str, rules: Sequence[Rule], direction: str) -> tuple[Rule, str] | None:
    for rule in rules:
        source = rule.torch_regex if direction == "to_flax" else rule.flax_regex
        found = source.match(name)
        if found:
            target = rule.flax if direction == "to_flax" else rule.torch
            return rule, target.format(**found.groupdict())
    return None


def _raise_if_mismatched(what: str, missing, unexpected, mis_shaped) -> None:
    if not (missing or unexpected or mis_shaped):
        return
    lines = [f"{what} does not match the model:"]
    if missing:
        lines.append(f"  missing ({len(missing)}): " + ", ".join(sorted(missing)))
    if unexpected:
        lines.append(f"  unexpected ({len(unexpected)}): " + ", ".join(sorted(unexpected)))
    for name, got, want in mis_shaped:
        lines.append(f"  wrong shape for {name}: got {got}, expected {want}")
    raise CheckpointMismatchError("\n".join(lines))


def state_dict_to_params(
    state_dict: Mapping[str, Any],
    expected: Mapping[str, Any],
    rules: Sequence[Rule] = RULES,
    dtype: np.dtype = np.float32,
) -> dict[str, Any]:
    """Converts a reference state_dict to a Flax params tree, strictly.

    Args:
      state_dict: torch key -> tensor/array (the reference's `model.state_dict()` or a subset).
      expected: the Flax params tree the result must fill exactly (arrays or ShapeDtypeStructs,
        e.g. from `jax.eval_shape` of the model's init), without the outer 'params' key.
      rules: the key table.

    Returns:
      A params tree with the same structure as `expected`, holding numpy arrays.

    Raises:
      CheckpointMismatchError: naming every source key no rule or no model leaf takes, every
        model leaf left unfilled, and every shape that differs.
    """
    want = {path: tuple(leaf.shape) for path, leaf in _flatten(expected).items()}
    out, unexpected, mis_shaped = {}, [], []
    for key, value in state_dict.items():
        found = _match(key, rules, "to_flax")
        if found is None or found[1] not in want:
            unexpected.append(key)
            continue
        rule, path = found
        array = rule.transform.to_flax(_to_numpy(value))
        if array.shape != want[path]:
            torch_shape = tuple(_to_numpy(value).shape)
            mis_shaped.append((key, torch_shape, _torch_shape(rule, want[path])))
            continue
        out[path] = np.ascontiguousarray(array, dtype=dtype)
    missing = [_torch_name(path, rules) for path in want if path not in out]
    missing = [m for m in missing if m not in {k for k, *_ in mis_shaped}]
    _raise_if_mismatched("checkpoint", missing, unexpected, mis_shaped)
    return _unflatten(out)


def _torch_name(path: str, rules: Sequence[Rule]) -> str:
    found = _match(path, rules, "to_torch")
    return found[1] if found else f"<no rule for Flax param {path}>"


def _torch_shape(rule: Rule, flax_shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(rule.transform.to_torch(np.empty(flax_shape, np.uint8)).shape)


def export_state_dict(params: Mapping[str, Any], rules: Sequence[Rule] = RULES) -> dict[str, Any]:
    """Flax params tree (without the outer 'params') -> reference state_dict of numpy arrays."""
    out, unmapped = {}, []
    for path, leaf in _flatten(params).items():
        found = _match(path, rules, "to_torch")
        if found is None:
            unmapped.append(path)
            continue
        rule, key = found
        out[key] = np.ascontiguousarray(rule.transform.to_torch(np.asarray(leaf, np.float32)))
    _raise_if_mismatched("params", [], unmapped, [])
    return out
