"""ONNX files of the image programs through `jax2onnx` (the `onnx` extra).

`image_encoder` and `prompt_decoder` convert and run in onnxruntime (tests/test_serving.py
checks the masks against the live predictor). The video programs do not, with jax2onnx
0.13.0 (the newest release that installs beside this project's pinned orbax-checkpoint):

- `video_prompt_step`: conversion stops at `jax.image.resize(..., antialias=True)` (the mask
  prompt's downsampling): "resize with antialias=True is not supported yet";
- `track_step`: it converts, but onnxruntime refuses the graph: a `Mul` of shapes
  (4, 2, 1) and (4, 1, 64) (the prompt encoder's Fourier features of the padded points)
  fails shape inference ("Incompatible dimensions").

ONNX files carry their weights (float32 initializers); inputs and outputs have the
manifest's names.
"""

from __future__ import annotations

import logging
import pathlib

import jax

from sam2_jax import output_files
from sam2_jax.build import SAM2Model
from sam2_jax.exporting.programs import Program
from sam2_jax.modeling.platform import traced_for

ONNX_PROGRAMS = ("image_encoder", "prompt_decoder")


def _to_onnx():
    """jax2onnx's converter; its plugins for libraries this project does not use log import
    errors against this JAX release, which are not ours to show."""
    logging.getLogger("jax2onnx.plugins.plugin_system").setLevel(logging.CRITICAL)
    try:
        from jax2onnx import to_onnx
    except ImportError as err:
        raise ImportError(
            f"ONNX export needs jax2onnx ({err}): pip install 'sam2-jax[onnx]'"
        ) from err
    return to_onnx


def write_onnx(model: SAM2Model, program: Program, out: pathlib.Path) -> pathlib.Path:
    """Converts `program` with `model`'s weights inside to `out/<name>.onnx`.

    Its outputs are the program's, sorted by name (as the manifest lists them).
    """
    to_onnx = _to_onnx()
    keys = list(program.inputs)
    variables = model.variables
    output_names: list[str] = []

    def fn(*arrays):
        outputs = program.fn(model.module, variables, dict(zip(keys, arrays, strict=True)))
        output_names[:] = sorted(outputs)
        return tuple(outputs[name] for name in output_names)

    with traced_for("cpu"):  # ONNX has no per-platform branches: onnxruntime runs CPU's
        jax.eval_shape(fn, *program.inputs.values())  # fills output_names
        onnx_model = to_onnx(
            fn,
            [program.inputs[k] for k in keys],
            model_name=program.name,
            input_names=keys,
            output_names=list(output_names),
        )
    path = out / f"{program.name}.onnx"
    with output_files.atomic(path) as temporary:
        temporary.write_bytes(onnx_model.SerializeToString())
    return path
