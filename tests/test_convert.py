"""The converter is strict: every source key used, every leaf filled, every shape checked."""

import numpy as np
import pytest

from sam2_jax.convert import CheckpointMismatchError, export_state_dict, state_dict_to_params
from tests import reference as ref

NAME, SIZE = "sam2.1_hiera_t", 64


@pytest.fixture(scope="module")
def image_path_state_dict():
    torch_model = ref.build_reference(NAME, SIZE)
    return ref.numpy_state_dict(torch_model, ref.IMAGE_PATH_PREFIXES)


@pytest.fixture(scope="module")
def expected_shapes():
    return ref.image_path_model(NAME, SIZE)[1]


def test_all_image_path_keys_convert(image_path_state_dict, expected_shapes):
    params = state_dict_to_params(image_path_state_dict, expected_shapes)
    assert params["image_encoder"]["trunk"]["blocks_1"]["proj"]["kernel"].shape == (96, 192)


def test_missing_key_is_named(image_path_state_dict, expected_shapes):
    sd = dict(image_path_state_dict)
    del sd["image_encoder.trunk.blocks.3.attn.qkv.weight"]
    with pytest.raises(CheckpointMismatchError, match=r"missing.*blocks\.3\.attn\.qkv\.weight"):
        state_dict_to_params(sd, expected_shapes)


def test_extra_key_is_named(image_path_state_dict, expected_shapes):
    sd = dict(image_path_state_dict)
    sd["image_encoder.trunk.blocks.99.norm1.weight"] = np.ones(96, np.float32)
    sd["something.else"] = np.ones(3, np.float32)
    with pytest.raises(CheckpointMismatchError) as err:
        state_dict_to_params(sd, expected_shapes)
    message = str(err.value)
    assert "unexpected (2)" in message
    assert "image_encoder.trunk.blocks.99.norm1.weight" in message
    assert "something.else" in message


def test_wrong_shape_is_named(image_path_state_dict, expected_shapes):
    sd = dict(image_path_state_dict)
    sd["image_encoder.neck.convs.0.conv.weight"] = np.ones((256, 10, 1, 1), np.float32)
    with pytest.raises(CheckpointMismatchError) as err:
        state_dict_to_params(sd, expected_shapes)
    message = str(err.value)
    assert "wrong shape for image_encoder.neck.convs.0.conv.weight" in message
    assert "(256, 10, 1, 1)" in message and "(256, 768, 1, 1)" in message
    assert "missing" not in message  # the key exists, only its shape is wrong


def test_other_variant_is_rejected(image_path_state_dict):
    """A tiny checkpoint loaded into small: extra blocks are missing, shapes agree elsewhere."""
    small_shapes = ref.image_path_model("sam2.1_hiera_s", SIZE)[1]
    with pytest.raises(CheckpointMismatchError, match=r"missing \(\d+\).*blocks\.1[0-5]\."):
        state_dict_to_params(image_path_state_dict, small_shapes)


def test_export_round_trip_is_exact(image_path_state_dict, expected_shapes):
    params = state_dict_to_params(image_path_state_dict, expected_shapes)
    back = export_state_dict(params)
    assert back.keys() == image_path_state_dict.keys()
    for key, value in image_path_state_dict.items():
        np.testing.assert_array_equal(back[key], value, err_msg=key)
