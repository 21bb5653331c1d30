"""The ONNX files of an export-compiled folder (`--onnx`), called like `CompiledModel`.

`OnnxModel(folder)(name, **inputs)` runs `<name>.onnx` in onnxruntime (CPU) with the
manifest's input names and returns its outputs by name, so `ExportedImagePredictor(folder,
backend="onnx")` runs the same pre- and post-processing around ONNX programs.
"""

from __future__ import annotations

import os
import pathlib
from typing import Any

import numpy as np

from sam2_jax.serving.manifest import FunctionSpec, read_manifest


class OnnxModel:
    """onnxruntime sessions of a folder's ONNX programs (weights inside each file)."""

    def __init__(self, folder: str | os.PathLike):
        """Raises:
        ImportError: onnxruntime is not installed.
        FileNotFoundError: no manifest.
        """
        try:
            import onnxruntime
        except ImportError as err:
            raise ImportError(f"the ONNX backend needs onnxruntime ({err})") from err
        self._ort = onnxruntime
        self.folder = pathlib.Path(folder)
        self.manifest = read_manifest(folder)
        self._sessions: dict[str, Any] = {}

    def spec(self, name: str) -> FunctionSpec:
        spec = self.manifest.functions.get(name)
        if spec is None or not spec.onnx_file:
            raise FileNotFoundError(
                f"{self.folder} has no ONNX file for {name!r}: export it with --onnx"
            )
        return spec

    def __call__(self, name: str, **inputs: Any) -> dict[str, np.ndarray]:
        """Runs `<name>.onnx`; inputs are cast to the manifest's dtypes."""
        spec = self.spec(name)
        if name not in self._sessions:
            options = self._ort.SessionOptions()
            options.log_severity_level = 3  # no notes on unused initializers
            self._sessions[name] = self._ort.InferenceSession(
                str(self.folder / spec.onnx_file), options, providers=["CPUExecutionProvider"]
            )
        feed = {s.name: np.asarray(inputs[s.name], np.dtype(s.dtype)) for s in spec.inputs}
        values = self._sessions[name].run([s.name for s in spec.outputs], feed)
        return {s.name: v for s, v in zip(spec.outputs, values, strict=True)}
