"""`manifest.json` of an export-compiled folder: what each program takes and returns.

The folder `sam2-jax export-compiled` writes holds

- `<function>.jax`: a serialized `jax.export.Exported` (StableHLO) per function, lowered for
  every platform in `platforms` (one file serves them all);
- `weights.npz`: the model's tensors, each stored as float16 where that is exact, else
  float32; every program takes all of them, cast to float32, in `weights.names` order, as its
  first argument (a list), then a dict of named inputs; it returns a dict of named outputs;
- optionally `<function>.onnx` (`onnx`), with the weights inside;
- `manifest.json`, read by `read_manifest` into a `Manifest`.

The programs have static shapes, padded to the `Layout` (fixed click bucket, objects per
tracking step, conditioning slots per object).
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
from typing import Any

import numpy as np

from sam2_jax.prompts import pad_points

FORMAT = "sam2_jax.compiled"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
WEIGHTS = "weights.npz"
PLATFORMS = ("cpu", "cuda", "tpu")
BANK = "bank."  # prefix of the memory bank's fields among a program's inputs and outputs


@dataclasses.dataclass(frozen=True)
class Layout:
    """The fixed paddings the programs are exported with.

    Attributes:
      max_points: click bucket: prompt points per object and call (a box counts as 2);
        padding points are masked out of the decoder, so results equal unpadded calls.
      max_objects: objects per tracking step; a video with more is tracked in groups (objects
        are tracked independently), fewer are padded with untracked objects.
      cond_slots: conditioning (prompted) frames an object may have in the memory bank.
    """

    max_points: int = 16
    max_objects: int = 4
    cond_slots: int = 4

    def __post_init__(self):
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{field.name} must be a positive integer, got {value!r}")


def exported_points(
    points: tuple[np.ndarray, np.ndarray] | None, layout: Layout
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One object's (n, 2) / (n,) points (or None) padded to the programs' click bucket:
    (1, P, 2) float32, (1, P) int32 and (1,) int32 counts.

    Raises:
      ValueError: more points than the programs were exported for.
    """
    try:
        return pad_points([points], layout.max_points)
    except ValueError as e:
        raise ValueError(f"{e}; export the programs again with a larger click bucket") from None


@dataclasses.dataclass(frozen=True)
class TensorSpec:
    """One named input or output: `shape` and numpy `dtype` name ("float32", "bfloat16")."""

    name: str
    shape: tuple[int, ...]
    dtype: str

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TensorSpec:
        return cls(str(data["name"]), tuple(int(n) for n in data["shape"]), str(data["dtype"]))


@dataclasses.dataclass(frozen=True)
class FunctionSpec:
    """One exported program: its file, what it does, its named inputs and outputs."""

    name: str
    file: str
    doc: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    onnx_file: str | None = None

    def input(self, name: str) -> TensorSpec:
        return next(spec for spec in self.inputs if spec.name == name)

    def to_json(self) -> dict[str, Any]:
        out = {
            "file": self.file,
            "doc": self.doc,
            "inputs": [spec.to_json() for spec in self.inputs],
            "outputs": [spec.to_json() for spec in self.outputs],
        }
        if self.onnx_file:
            out["onnx_file"] = self.onnx_file
        return out

    @classmethod
    def from_json(cls, name: str, data: dict[str, Any]) -> FunctionSpec:
        return cls(
            name,
            str(data["file"]),
            str(data.get("doc", "")),
            tuple(TensorSpec.from_json(d) for d in data["inputs"]),
            tuple(TensorSpec.from_json(d) for d in data["outputs"]),
            data.get("onnx_file"),
        )


@dataclasses.dataclass(frozen=True)
class Manifest:
    """Everything a runtime needs besides the programs.

    Attributes:
      image_size: S, the model input side.
      layout: the paddings.
      functions: name -> FunctionSpec.
      weight_names: the weight tensors (keys of weights.npz), in argument order.
      preprocessing / postprocessing: the rules the runtime applies around the programs
        (mean / std, resize filters, thresholds), written out for other runtimes.
      memory: `no_frame` (frame index of empty bank slots), `no_obj_score` (logit of
        absent objects) and `history` ([distance, reads memory, reads pointer] of the
        earlier frames, in tracking order, whose stored outputs seed a bank).
      model: the model config, checkpoint and whether the weights are random.
      platforms: the platforms every program was lowered for.
      versions: package and JAX versions that wrote the folder.
    """

    image_size: int
    layout: Layout
    functions: dict[str, FunctionSpec]
    weight_names: tuple[str, ...]
    preprocessing: dict[str, Any]
    postprocessing: dict[str, Any]
    memory: dict[str, Any]
    model: dict[str, Any]
    platforms: tuple[str, ...]
    versions: dict[str, str]

    @property
    def embedding_size(self) -> int:
        """h = S / 16, the side of the image embedding (low-res masks are 4h)."""
        return self.image_size // 16

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "versions": self.versions,
            "platforms": list(self.platforms),
            "image_size": self.image_size,
            "layout": dataclasses.asdict(self.layout),
            "preprocessing": self.preprocessing,
            "postprocessing": self.postprocessing,
            "memory": self.memory,
            "model": self.model,
            "weights": {
                "file": WEIGHTS,
                "call_dtype": "float32",
                "names": list(self.weight_names),
            },
            "functions": {name: spec.to_json() for name, spec in self.functions.items()},
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Manifest:
        if data.get("format") != FORMAT:
            raise ValueError(f"not a {FORMAT} manifest (format {data.get('format')!r})")
        if data.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"{FORMAT} format version {data.get('format_version')!r}; this runtime reads "
                f"version {FORMAT_VERSION}: export the model again"
            )
        return cls(
            image_size=int(data["image_size"]),
            layout=Layout(**data["layout"]),
            functions={
                name: FunctionSpec.from_json(name, spec) for name, spec in data["functions"].items()
            },
            weight_names=tuple(data["weights"]["names"]),
            preprocessing=data["preprocessing"],
            postprocessing=data["postprocessing"],
            memory=data["memory"],
            model=data["model"],
            platforms=tuple(data["platforms"]),
            versions=data["versions"],
        )


def read_manifest(folder: str | os.PathLike) -> Manifest:
    """The manifest of an export-compiled folder.

    Raises:
      FileNotFoundError: no manifest.json there.
      ValueError: not one, or of another format version.
    """
    path = pathlib.Path(folder) / MANIFEST
    if not path.is_file():
        raise FileNotFoundError(
            f"{os.fspath(folder)!r} has no {MANIFEST}: give a folder written by "
            "`sam2-jax export-compiled`"
        )
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not JSON: {err}") from err
    return Manifest.from_json(data)
