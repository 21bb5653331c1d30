"""Writing an export-compiled folder: the programs, the weights and the manifest.

Each program (`sam2_jax.exporting.programs`) is lowered once for all requested platforms
with `jax.export` (weights as its first argument, so every program shares one
`weights.npz` instead of carrying a copy), serialized, read back to check that it
deserializes, and written atomically. Lowering for cuda and tpu needs no accelerator.
"""

from __future__ import annotations

import dataclasses
import io
import json
import pathlib
import time
from collections.abc import Callable, Sequence

import jax
import jaxlib
import numpy as np
from jax import export

import sam2_jax
from sam2_jax import output_files, transforms
from sam2_jax.build import SAM2Model
from sam2_jax.exporting.programs import POLICY, Program, history_table, programs
from sam2_jax.memory.bank import NO_FRAME
from sam2_jax.modeling.sam_heads import NO_OBJ_SCORE
from sam2_jax.serving.manifest import (
    MANIFEST,
    PLATFORMS,
    WEIGHTS,
    FunctionSpec,
    Layout,
    Manifest,
    TensorSpec,
)
from sam2_jax.video.io import IMAGENET_MEAN, IMAGENET_STD
from sam2_jax.video.postprocess import HOLE_LOGIT


def weight_names(params) -> tuple[list[str], list[jax.Array], jax.tree_util.PyTreeDef]:
    """The params tree flattened: "/"-joined key paths, leaves, and the tree structure."""
    with_paths, treedef = jax.tree_util.tree_flatten_with_path(params)
    names = ["/".join(str(getattr(k, "key", k)) for k in path) for path, _ in with_paths]
    return names, [leaf for _, leaf in with_paths], treedef


def export_program(model: SAM2Model, program: Program, platforms: Sequence[str]) -> export.Exported:
    """`program` lowered for `platforms`: call it as `exported.call(weights, inputs)` with the
    float32 weights in `weight_names` order and a dict of its named inputs."""
    _, leaves, treedef = weight_names(model.params)
    module = model.module

    def call(weights: list[jax.Array], inputs: dict[str, jax.Array]) -> dict[str, jax.Array]:
        params = jax.tree_util.tree_unflatten(treedef, weights)
        return program.fn(module, {"params": params}, inputs)

    weight_specs = [jax.ShapeDtypeStruct(leaf.shape, np.float32) for leaf in leaves]
    return export.export(jax.jit(call), platforms=tuple(platforms))(weight_specs, program.inputs)


def output_specs(exported: export.Exported) -> tuple[TensorSpec, ...]:
    """The named outputs of an exported program, sorted by name."""
    index = jax.tree_util.tree_unflatten(exported.out_tree, range(len(exported.out_avals)))
    return tuple(
        TensorSpec(name, tuple(exported.out_avals[i].shape), str(exported.out_avals[i].dtype))
        for name, i in sorted(index.items())
    )


def _weights_file(leaves: list[jax.Array], names: list[str]) -> bytes:
    """weights.npz: each tensor float16 where that is exact (e.g. a float16-trained model),
    else float32."""
    stored = {}
    for name, leaf in zip(names, leaves, strict=True):
        value = np.asarray(leaf, np.float32)
        half = value.astype(np.float16)
        exact = np.array_equal(half.astype(np.float32), value)
        stored[name] = half if exact else value
    buffer = io.BytesIO()
    np.savez(buffer, **stored)
    return buffer.getvalue()


def _write_bytes(path: pathlib.Path, data: bytes) -> None:
    with output_files.atomic(path) as temporary:
        temporary.write_bytes(data)


def describe_rules() -> tuple[dict, dict, dict]:
    """(preprocessing, postprocessing, memory) of the manifest: what a runtime does around
    the programs, in words and numbers."""
    mean = [round(float(v), 6) for v in IMAGENET_MEAN]  # float32 constants, as written
    std = [round(float(v), 6) for v in IMAGENET_STD]
    assert np.array_equal(transforms.IMAGENET_MEAN, IMAGENET_MEAN)
    assert np.array_equal(transforms.IMAGENET_STD, IMAGENET_STD)
    preprocessing = {
        "image": {
            "input": "(H, W, 3) uint8 RGB",
            "resize": "to S x S (aspect ratio not kept) with antialiased bilinear "
            "interpolation (jax.image.resize method 'linear', antialias=True)",
            "normalize": "(x / 255 - mean) / std, NHWC, batch 1",
            "mean": mean,
            "std": std,
        },
        "video": {
            "resize": "each frame to S x S (aspect ratio not kept) with PIL's bicubic filter",
            "normalize": "(x / 255 - mean) / std, NHWC, batch 1",
            "mean": mean,
            "std": std,
        },
        "points": "x, y in image pixels -> (x / W * S, y / H * S) in model-input pixels; a "
        "box is two points labelled 2 (top-left) and 3 (bottom-right) placed before the "
        "clicks; padding points are labelled -1 beyond num_points",
        "video_mask_prompt": "(H, W) bool -> S x S by antialiased bilinear resizing, >= 0.5",
    }
    postprocessing = {
        "mask_threshold": 0.0,
        "image_low_res_clamp": 32.0,
        "upsample": "low-res logits -> original size, bilinear (align_corners=False, no antialias)",
        "video_fill_hole_area": 8,
        "video_hole_logit": round(float(HOLE_LOGIT), 6),
        "image_multimask": "multimask_output=True returns the 3 multimask outputs, False the "
        "single-mask output (with the stability fallback)",
    }
    memory = {
        "policy": f"{type(POLICY).__name__} {dataclasses.asdict(POLICY)}",
        "no_frame": NO_FRAME,
        "no_obj_score": NO_OBJ_SCORE,
        "history": history_table(),
    }
    return preprocessing, postprocessing, memory


def export_compiled(
    model: SAM2Model,
    out: pathlib.Path,
    *,
    platforms: Sequence[str] = PLATFORMS,
    layout: Layout | None = None,
    onnx: bool = False,
    log: Callable[[str], None] = print,
) -> Manifest:
    """Writes the programs, weights.npz and manifest.json of `model` into `out` (which
    `output_files.prepare_out_dir` has checked); with `onnx` also image_encoder.onnx and
    prompt_decoder.onnx (`sam2_jax.exporting.onnx`).

    Returns:
      the manifest written.
    """
    layout = Layout() if layout is None else layout
    names, leaves, _ = weight_names(model.params)
    cfg = model.config
    functions = {}
    for program in programs(cfg, layout):
        start = time.perf_counter()
        exported = export_program(model, program, platforms)
        data = bytes(exported.serialize())
        back = export.deserialize(bytearray(data))
        assert back.platforms == tuple(platforms) and back.in_avals == exported.in_avals
        _write_bytes(out / f"{program.name}.jax", data)
        functions[program.name] = FunctionSpec(
            program.name,
            f"{program.name}.jax",
            program.doc,
            tuple(TensorSpec(k, tuple(v.shape), str(v.dtype)) for k, v in program.inputs.items()),
            output_specs(exported),
        )
        seconds = time.perf_counter() - start
        log(f"{program.name}.jax: {len(data) / 1024:.0f} KiB ({seconds:.1f} s)")
    if onnx:
        from sam2_jax.exporting.onnx import ONNX_PROGRAMS, write_onnx

        for program in programs(cfg, layout):
            if program.name in ONNX_PROGRAMS:
                path = write_onnx(model, program, out)
                functions[program.name] = dataclasses.replace(
                    functions[program.name], onnx_file=path.name
                )
                log(f"{path.name}: {path.stat().st_size / 2**20:.1f} MiB")
    weights = _weights_file(leaves, names)
    _write_bytes(out / WEIGHTS, weights)
    log(f"{WEIGHTS}: {len(weights) / 2**20:.1f} MiB ({len(names)} tensors)")
    preprocessing, postprocessing, memory = describe_rules()
    manifest = Manifest(
        image_size=cfg.image_size,
        layout=layout,
        functions=functions,
        weight_names=tuple(names),
        preprocessing=preprocessing,
        postprocessing=postprocessing,
        memory=memory,
        model={
            "name": cfg.name,
            "checkpoint": model.checkpoint,
            "random_weights": model.random_weights,
            "config": dataclasses.asdict(cfg),
        },
        platforms=tuple(platforms),
        versions={
            "sam2_jax": sam2_jax.__version__,
            "jax": jax.__version__,
            "jaxlib": jaxlib.__version__,
        },
    )
    output_files.write_text(out / MANIFEST, json.dumps(manifest.to_json(), indent=1) + "\n")
    return manifest
