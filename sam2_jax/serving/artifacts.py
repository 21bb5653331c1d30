"""Loading an export-compiled folder and calling its programs by name.

`CompiledModel(folder)` reads the manifest and the weights (once, onto the default device)
and deserializes each program on first use. `model(name, **inputs)` checks the inputs
against the manifest (names, shapes; values are cast to the declared dtypes) and returns the
program's outputs as a dict of device arrays, which can be passed back in unchanged (the
tracking step's memory bank).

Only JAX and numpy: no model code is imported.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax import export

from sam2_jax.serving.manifest import WEIGHTS, FunctionSpec, Manifest, read_manifest


class CompiledModel:
    """The programs, weights and manifest of one export-compiled folder.

    Attributes:
      folder: the folder.
      manifest: its `Manifest`.
    """

    def __init__(self, folder: str | os.PathLike):
        """Raises:
        FileNotFoundError: no manifest or weights file.
        ValueError: a manifest of another format, or weights that do not match it.
        """
        self.folder = pathlib.Path(folder)
        self.manifest: Manifest = read_manifest(folder)
        path = self.folder / WEIGHTS
        if not path.is_file():
            raise FileNotFoundError(f"{os.fspath(folder)!r} has no {WEIGHTS}")
        with np.load(path) as stored:
            missing = [n for n in self.manifest.weight_names if n not in stored.files]
            if missing:
                raise ValueError(f"{path}: missing weight tensors {missing[:3]}")
            # each program takes float32 weights; the file keeps them float16 where exact
            self._weights = [
                jnp.asarray(stored[name].astype(np.float32)) for name in self.manifest.weight_names
            ]
        self._programs: dict[str, Callable] = {}

    @property
    def image_size(self) -> int:
        return self.manifest.image_size

    def spec(self, name: str) -> FunctionSpec:
        if name not in self.manifest.functions:
            known = ", ".join(self.manifest.functions)
            raise KeyError(f"{self.folder} exports no {name!r} (it has {known})")
        return self.manifest.functions[name]

    def exported(self, name: str) -> export.Exported:
        """The deserialized `jax.export.Exported` of a program."""
        return export.deserialize(bytearray((self.folder / self.spec(name).file).read_bytes()))

    def _program(self, name: str) -> Callable:
        if name not in self._programs:
            self._programs[name] = jax.jit(self.exported(name).call)
        return self._programs[name]

    def __call__(self, name: str, **inputs: Any) -> dict[str, jax.Array]:
        """Runs program `name` on its named inputs (every input of the manifest, no others).

        Raises:
          ValueError: a missing, unknown or wrongly shaped input.
        """
        spec = self.spec(name)
        expected = {s.name: s for s in spec.inputs}
        unknown = sorted(set(inputs) - set(expected))
        missing = sorted(set(expected) - set(inputs))
        if unknown or missing:
            raise ValueError(f"{name}: inputs {missing} missing, {unknown} unknown")
        args = {}
        for key, value in inputs.items():
            s = expected[key]
            array = jnp.asarray(value, jnp.dtype(s.dtype))
            if array.shape != s.shape:
                raise ValueError(f"{name}: input {key} must be {s.shape}, got {array.shape}")
            args[key] = array
        return self._program(name)(self._weights, args)
