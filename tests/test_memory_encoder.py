"""Parity of `MemoryEncoder` with the reference's `memory_encoder(pix_feat, masks,
skip_mask_sigmoid=True)`, and strict conversion of every memory-path key."""

import jax
import numpy as np
import pytest
import torch

from sam2_jax.convert import export_state_dict, state_dict_to_params
from sam2_jax.modeling.memory_encoder import MemoryEncoder
from tests import reference as ref

NAME = "sam2.1_hiera_t"  # the memory path is the same in every variant
# max |ours - ref| / max |ref| for features and position encodings
TOLERANCE = 1e-4


def _scaled_masks(rng, b, size):
    """What SAM2Base feeds the encoder: sigmoid(logits) * 20 - 10, with sharp blobs."""
    logits = 4.0 * rng.standard_normal((b, size, size, 1))
    logits[:, size // 4 : size // 2, size // 3 :] += 8.0
    return (20.0 / (1.0 + np.exp(-logits)) - 10.0).astype(np.float32)


@pytest.fixture(scope="module")
def torch_model():
    # Built at 256; its memory encoder takes any input size (1024-pixel masks included).
    return ref.cached_reference(NAME, 256)


@pytest.fixture(scope="module")
def variables(torch_model):
    return {"params": ref.convert_memory(torch_model, NAME, 256)["memory_encoder"]}


_encode = jax.jit(MemoryEncoder().apply)


def _compare(torch_model, variables, image_size: int, batch: int, seed: int) -> dict[str, float]:
    rng = np.random.default_rng(seed)
    side = image_size // 16
    pix_feat = rng.standard_normal((batch, side, side, 256)).astype(np.float32)
    masks = _scaled_masks(rng, batch, image_size)
    with torch.no_grad():
        expected = torch_model.memory_encoder(
            ref.nchw(pix_feat), ref.nchw(masks), skip_mask_sigmoid=True
        )
    features, pos = _encode(variables, pix_feat, masks)
    assert features.shape == pos.shape == (batch, side, side, 64)
    return {
        "features": ref.relative_max_error(features, ref.nhwc(expected["vision_features"])),
        "pos": ref.relative_max_error(pos, ref.nhwc(expected["vision_pos_enc"][0])),
    }


def test_memory_encoder_matches_reference_at_256(torch_model, variables):
    errors = _compare(torch_model, variables, 256, batch=2, seed=0)
    print(f"memory encoder @256 relative errors: {errors}")
    assert max(errors.values()) <= TOLERANCE, errors


@pytest.mark.full_size
def test_memory_encoder_matches_reference_at_1024(torch_model, variables):
    errors = _compare(torch_model, variables, 1024, batch=1, seed=1)
    print(f"memory encoder @1024 relative errors: {errors}")
    assert max(errors.values()) <= TOLERANCE, errors


def test_mask_downsampler_padding_matches_torch_at_the_borders(torch_model, variables):
    """Explicit symmetric padding (not SAME): a mask that is on only in the last row/column
    must reach the output exactly as in the reference."""
    masks = np.full((1, 256, 256, 1), -10.0, np.float32)
    masks[:, -1, :] = masks[:, :, -1] = 10.0
    pix_feat = np.zeros((1, 16, 16, 256), np.float32)
    with torch.no_grad():
        expected = torch_model.memory_encoder(
            ref.nchw(pix_feat), ref.nchw(masks), skip_mask_sigmoid=True
        )["vision_features"]
    features, _ = _encode(variables, pix_feat, masks)
    assert ref.relative_max_error(features, ref.nhwc(expected)) <= TOLERANCE


@pytest.mark.parametrize("name", ["sam2_hiera_t", "sam2.1_hiera_t"])
def test_every_memory_key_converts_and_exports_back(name):
    """Strict both ways: every reference key under the memory prefixes fills exactly one leaf of
    SAM2's memory params (2.1 has no_obj_embed_spatial and obj_ptr_tpos_proj, 2.0 not)."""
    torch_model = ref.cached_reference(name, 256) if name == NAME else ref.build_reference(name, 64)
    state_dict = ref.numpy_state_dict(torch_model, ref.MEMORY_PREFIXES)
    _, shapes = ref.memory_model(name, 64)
    params = state_dict_to_params(state_dict, shapes)
    is_21 = name.startswith("sam2.1")
    assert ("no_obj_embed_spatial" in params) == is_21
    assert ("obj_ptr_tpos_proj" in params) == is_21
    assert params["maskmem_tpos_enc"].shape == (7, 64)
    np.testing.assert_array_equal(
        params["maskmem_tpos_enc"][2], state_dict["maskmem_tpos_enc"][2, 0, 0]
    )
    dw = state_dict["memory_encoder.fuser.layers.1.dwconv.weight"]  # (256, 1, 7, 7)
    np.testing.assert_array_equal(
        params["memory_encoder"]["fuser"]["layers_1"]["dwconv"]["kernel"][2, 5, 0, 9],
        dw[9, 0, 2, 5],
    )
    back = export_state_dict(params)
    assert back.keys() == state_dict.keys()
    for key, value in state_dict.items():
        np.testing.assert_array_equal(back[key], value, err_msg=key)
