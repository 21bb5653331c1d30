"""Serving without the model's code: the predictors on `sam2-jax export-compiled` programs.

`ExportedImagePredictor` and `ExportedVideoPredictor` have the live predictors' methods and
outputs but run only the deserialized `jax.export` programs of an export-compiled folder
(or, for images, its ONNX files), with numpy / JAX pre- and post-processing. Nothing here
imports Flax, Optax, Orbax or torch.
"""

from sam2_jax.serving.artifacts import CompiledModel
from sam2_jax.serving.image import ExportedImagePredictor
from sam2_jax.serving.manifest import Layout, Manifest, read_manifest
from sam2_jax.serving.video import ExportedVideoPredictor

__all__ = [
    "CompiledModel",
    "ExportedImagePredictor",
    "ExportedVideoPredictor",
    "Layout",
    "Manifest",
    "read_manifest",
]
