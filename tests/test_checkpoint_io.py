"""Checkpoint reading / writing: reference .pt, Hugging Face safetensors, converted Orbax dirs.

The round trips are bit-exact: reference model -> .pt -> `sam2-jax convert` -> Orbax directory
-> `build_sam2` -> exported .pt -> the reference's `load_state_dict(strict=True)`.
"""

from __future__ import annotations

import re
import shutil
import sys

import jax
import numpy as np
import pytest
import torch
from safetensors.numpy import save_file

from sam2_jax import SAM2, build_sam2
from sam2_jax.cli import main as cli_main
from sam2_jax.config import get_config
from sam2_jax.convert import CheckpointMismatchError, hf_layout
from sam2_jax.convert import checkpoint_io as io
from tests import reference as ref

NAME, SIZE = "sam2.1_hiera_t", 64


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def torch_model():
    return ref.build_reference(NAME, SIZE)


@pytest.fixture(scope="module")
def state_dict(torch_model) -> dict[str, np.ndarray]:
    return ref.numpy_state_dict(torch_model)


@pytest.fixture(scope="module")
def reference_pt(torch_model, tmp_path_factory):
    path = tmp_path_factory.mktemp("ref") / "sam2.1_hiera_tiny.pt"
    torch.save({"model": torch_model.state_dict(), "epoch": 3}, path)
    return path


@pytest.fixture(scope="module")
def converted_dir(reference_pt, tmp_path_factory):
    out = tmp_path_factory.mktemp("converted") / "tiny"
    config, params = io.load_checkpoint(reference_pt, NAME, image_size=SIZE)
    io.save_converted(params, config, out, source=str(reference_pt))
    return out


@pytest.fixture(scope="module")
def fresh_model():
    return ref.build_reference(NAME, SIZE, seed=1)


def _assert_identical_to_reference(path, state_dict, fresh):
    """`path` is a {"model": ...} .pt that the reference loads strictly, bit-identical."""
    loaded = torch.load(path, map_location="cpu", weights_only=True)["model"]
    ref.rerandomize(fresh, seed=2)  # different weights until loaded
    fresh.load_state_dict(loaded, strict=True)
    reloaded = ref.numpy_state_dict(fresh)
    assert reloaded.keys() == state_dict.keys()
    for key, value in state_dict.items():
        assert reloaded[key].dtype == value.dtype, key
        np.testing.assert_array_equal(reloaded[key], value, err_msg=key)
    return fresh


# --------------------------------------------------------------------------- round trips


def test_detect_format(reference_pt, converted_dir, tmp_path):
    assert io.detect_format(reference_pt) == "reference"
    assert io.detect_format(converted_dir) == "converted"
    save_file({"a": np.zeros(2, np.float32)}, tmp_path / "weights.bin")  # sniffed, not named
    assert io.detect_format(tmp_path / "weights.bin") == "hf"
    (tmp_path / "hf").mkdir()
    save_file({"a": np.zeros(2, np.float32)}, tmp_path / "hf" / "model.safetensors")
    assert io.detect_format(tmp_path / "hf") == "hf"


def test_convert_api_round_trip_is_bit_exact(
    torch_model, fresh_model, state_dict, converted_dir, tmp_path
):
    model = build_sam2(NAME, converted_dir)
    assert not model.random_weights and model.checkpoint == str(converted_dir)
    assert model.config == get_config(NAME, image_size=SIZE)  # recorded size is the default
    assert jax.tree.structure(model.params) == jax.tree.structure(io.expected_shapes(model.config))
    exported = io.write_reference_checkpoint(model.params, tmp_path / "back.pt")
    fresh = _assert_identical_to_reference(exported, state_dict, fresh_model)

    # identical weights, identical image path: the reloaded reference and ours from the .pt
    images = np.random.default_rng(0).normal(size=(1, SIZE, SIZE, 3)).astype(np.float32)
    with torch.no_grad():
        before = torch_model.forward_image(ref.nchw(images))
        after = fresh.forward_image(ref.nchw(images))
    for a, b in zip(before["backbone_fpn"], after["backbone_fpn"], strict=True):
        assert torch.equal(a, b)
    from_pt = build_sam2(NAME, exported, image_size=SIZE)
    assert from_pt.checkpoint == str(exported)
    encode = jax.jit(lambda v, x: model.module.apply(v, x, method=SAM2.forward_image))
    ours_dir, ours_pt = encode(model.variables, images), encode(from_pt.variables, images)
    for a, b in zip(jax.tree.leaves(ours_dir), jax.tree.leaves(ours_pt), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_convert_cli_round_trip_is_bit_exact(
    reference_pt, fresh_model, state_dict, tmp_path, capsys
):
    out = tmp_path / "converted"
    argv = ["convert", str(reference_pt), "--config", NAME, "--out", str(out)]
    cli_main([*argv, "--image-size", str(SIZE)])
    assert '"tensors"' in capsys.readouterr().out
    assert io.read_converted_config(out) == get_config(NAME, image_size=SIZE)
    with pytest.raises(SystemExit, match="already holds a checkpoint"):
        cli_main(argv)
    cli_main([*argv, "--overwrite"])  # no --config / --image-size: guessed, default size
    assert io.read_converted_config(out) == get_config(NAME)

    cli_main(["export", str(out), "--out", str(tmp_path / "exported.pt")])
    _assert_identical_to_reference(tmp_path / "exported.pt", state_dict, fresh_model)


def test_build_sam2_infers_the_variant(reference_pt, converted_dir):
    assert build_sam2(None, converted_dir).config.name == NAME
    assert build_sam2(None, reference_pt, image_size=SIZE).config.name == NAME


def test_build_sam2_random_init():
    model = build_sam2("sam2.1_hiera_tiny", image_size=SIZE, seed=3)
    assert model.random_weights and model.checkpoint is None
    assert model.config.name == NAME
    shapes = jax.tree.map(lambda a: a.shape, io.expected_shapes(model.config))
    assert jax.tree.map(lambda a: a.shape, model.params) == shapes


# --------------------------------------------------------------------------- Hugging Face


def _documented_hf_names(reference_keys):
    """Reference key -> HF key by the procedure of transformers' convert_sam2(_video)_to_hf.py:
    ordered substring replacements, then index renames of Sequential / MLP layers; the point
    embeddings are stacked and the Gaussian matrix is stored twice (handled by the caller).
    Written independently of hf_layout's table, which this checks."""
    substrings = [
        *[(f"iou_prediction_head.layers.{i}", f"iou_prediction_head.{n}") for i, n in
          enumerate(["proj_in", "layers.0", "proj_out"])],
        ("mask_decoder.output_upscaling.0", "mask_decoder.upscale_conv1"),
        ("mask_decoder.output_upscaling.1", "mask_decoder.upscale_layer_norm"),
        ("mask_decoder.output_upscaling.3", "mask_decoder.upscale_conv2"),
        *[(f"mask_downscaling.{i}", f"mask_embed.{n}") for i, n in
          [(0, "conv1"), (1, "layer_norm1"), (3, "conv2"), (4, "layer_norm2"), (6, "conv3")]],
        ("dwconv", "depthwise_conv"), ("pwconv", "pointwise_conv"), ("fuser", "memory_fuser"),
        ("point_embeddings", "point_embed"),
        ("pe_layer.positional_encoding_gaussian_matrix", "shared_embedding.positional_embedding"),
        ("obj_ptr_tpos_proj", "temporal_positional_encoding_projection_layer"),
        ("no_obj_embed_spatial", "occlusion_spatial_embedding_parameter"),
        ("sam_prompt_encoder", "prompt_encoder"), ("sam_mask_decoder", "mask_decoder"),
        ("maskmem_tpos_enc", "memory_temporal_positional_encoding"), ("gamma", "scale"),
        ("image_encoder.neck", "vision_encoder.neck"), ("image_encoder", "vision_encoder.backbone"),
        ("pix_feat_proj", "feature_projection"), ("patch_embed.proj", "patch_embed.projection"),
        ("no_mem_embed", "no_memory_embedding"),
        ("no_mem_pos_enc", "no_memory_positional_encoding"),
        ("obj_ptr", "object_pointer"), (".norm", ".layer_norm"), ("trunk.", ""),
        ("out_proj", "o_proj"),
    ]  # fmt: skip
    two = {"0": "proj_in", "1": "proj_out"}
    three = {"0": "proj_in", "1": "layers.0", "2": "proj_out"}
    downsampler = {0: "layers.{}.conv", 1: "layers.{}.layer_norm"}
    index_renames = [
        (r"^(vision_encoder\.backbone\.blocks\.\d+\.mlp)\.layers\.(\d)", two),
        (r"^(mask_decoder\.transformer\.layers\.\d+\.mlp)\.layers\.(\d)", two),
        (r"^(mask_decoder\.pred_obj_score_head)\.layers\.(\d)", three),
        (r"^(mask_decoder\.output_hypernetworks_mlps\.\d+)\.layers\.(\d)", three),
        (r"^(object_pointer_proj)\.layers\.(\d)", three),
    ]
    names = {}
    for key in reference_keys:
        name = key
        for old, new in substrings:
            name = name.replace(old, new)
        for pattern, table in index_renames:
            name = re.sub(pattern, lambda m, t=table: f"{m[1]}.{t[m[2]]}", name)
        name = re.sub(r"^(vision_encoder\.neck\.convs\.\d+)\.conv\.", r"\1.", name)
        name = name.replace("memory_encoder.o_proj.", "memory_encoder.projection.")
        name = re.sub(
            r"(memory_encoder\.mask_downsampler)\.encoder\.(\d+)",
            lambda m: (
                f"{m[1]}."
                + (
                    "final_conv"
                    if m[2] == "12"
                    else downsampler[int(m[2]) % 3].format(int(m[2]) // 3)
                )
            ),
            name,
        )
        names[key] = name
    return names


def _hf_state_dict(state_dict):
    """The reference weights in HF layout, built by the documented procedure."""
    names = _documented_hf_names(state_dict)
    hf = {names[k]: v for k, v in state_dict.items() if ".point_embed." not in names[k]}
    points = [state_dict[f"sam_prompt_encoder.point_embeddings.{i}.weight"] for i in range(4)]
    hf["prompt_encoder.point_embed.weight"] = np.concatenate(points)  # (4, 256)
    hf["shared_image_embedding.positional_embedding"] = hf[
        "prompt_encoder.shared_embedding.positional_embedding"
    ]
    return hf


def test_hf_table_matches_documented_renames(state_dict):
    sam2_keys = ref.build_reference("sam2_hiera_t", SIZE).state_dict().keys()
    special = {hf_layout.GAUSSIAN} | {f"sam_prompt_encoder.point_embeddings.{i}.weight" for i in
                                      range(4)}  # fmt: skip
    for keys in (state_dict.keys(), sam2_keys):  # SAM 2.1 and SAM 2.0
        documented = _documented_hf_names(keys)
        for key in keys - special:
            assert hf_layout.reference_key_to_hf(key) == documented[key], key
        assert len(set(documented.values())) == len(documented)  # a bijection


def test_hf_round_trip_is_exact(state_dict, reference_pt, tmp_path):
    hf = _hf_state_dict(state_dict)
    assert hf.keys() == hf_layout.reference_to_hf(state_dict).keys()
    (tmp_path / "hf").mkdir()
    save_file(hf, tmp_path / "hf" / "model.safetensors")
    # save_pretrained drops the tied copy of the Gaussian matrix: a file with one must load too
    del hf["prompt_encoder.shared_embedding.positional_embedding"]
    save_file(hf, tmp_path / "single.safetensors")

    _, expected = io.load_checkpoint(reference_pt, NAME, image_size=SIZE)
    for path in (tmp_path / "hf", tmp_path / "single.safetensors"):
        assert io.detect_format(path) == "hf"
        back = io.read_hf_checkpoint(path)
        assert back.keys() == state_dict.keys()
        for key, value in state_dict.items():
            np.testing.assert_array_equal(back[key], value, err_msg=key)
        config, params = io.load_checkpoint(path, NAME, image_size=SIZE)
        assert config.name == NAME
        jax.tree.map(np.testing.assert_array_equal, params, expected)


def test_hf_unknown_key_and_untied_gaussian_are_named(state_dict):
    hf = _hf_state_dict(state_dict)
    with pytest.raises(CheckpointMismatchError, match="differ"):
        bad = dict(hf, **{"shared_image_embedding.positional_embedding": np.zeros((2, 128))})
        hf_layout.hf_to_reference(bad)
    with pytest.raises(CheckpointMismatchError, match=r"no reference name \(1\): vision_extra"):
        hf_layout.hf_to_reference(dict(hf, vision_extra=np.zeros(1)))


# --------------------------------------------------------------------------- clear errors


def test_wrong_variant_names_the_expected_config(reference_pt, converted_dir):
    with pytest.raises(CheckpointMismatchError) as err:
        io.load_checkpoint(reference_pt, "sam2.1_hiera_s", image_size=SIZE)
    message = str(err.value)
    assert "does not fit config sam2.1_hiera_s" in message
    assert f"looks like a {NAME} checkpoint" in message
    assert re.search(r"missing \(\d+\):.*image_encoder\.trunk\.blocks\.15\.", message)
    # SAM 2.1 weights into SAM 2: the 2.1-only parameters are unexpected
    with pytest.raises(CheckpointMismatchError, match=r"(?s)unexpected.*no_obj_embed_spatial"):
        io.load_checkpoint(reference_pt, "sam2_hiera_t")
    with pytest.raises(CheckpointMismatchError, match=f"converted {NAME} checkpoint.*sam2_hiera_l"):
        build_sam2("sam2_hiera_l", converted_dir)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        build_sam2(NAME, tmp_path / "nope.pt")
    with pytest.raises(SystemExit, match="sam2-jax convert: error: checkpoint not found"):
        cli_main(["convert", str(tmp_path / "nope.pt"), "--out", str(tmp_path / "out")])


def test_unknown_format(tmp_path):
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(io.CheckpointFormatError, match="unrecognized checkpoint format"):
        io.detect_format(tmp_path / "notes.txt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(io.CheckpointFormatError, match="neither a converted"):
        build_sam2(NAME, tmp_path / "empty")
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(io.CheckpointFormatError, match="expected a dict with a 'model' entry"):
        io.read_reference_checkpoint(tmp_path / "other.pt")


def test_truncated_files(reference_pt, converted_dir, state_dict, tmp_path):
    data = reference_pt.read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(io.CheckpointFormatError, match="truncated or corrupt"):
        build_sam2(NAME, tmp_path / "cut.pt")
    save_file(_hf_state_dict(state_dict), tmp_path / "full.safetensors")
    data = (tmp_path / "full.safetensors").read_bytes()
    (tmp_path / "cut.safetensors").write_bytes(data[: len(data) // 2])
    with pytest.raises(io.CheckpointFormatError, match="truncated or corrupt"):
        io.read_hf_checkpoint(tmp_path / "cut.safetensors")
    shutil.copytree(converted_dir, tmp_path / "incomplete")
    (tmp_path / "incomplete" / io.PARAMS_DIR / "_METADATA").unlink()
    with pytest.raises(io.CheckpointFormatError, match="incomplete or corrupt"):
        build_sam2(NAME, tmp_path / "incomplete")


def test_torch_is_only_needed_for_pt_files(reference_pt, converted_dir, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now raises ImportError
    with pytest.raises(ImportError, match="needs PyTorch"):
        io.read_reference_checkpoint(reference_pt)
    assert build_sam2(NAME, converted_dir).config.name == NAME
