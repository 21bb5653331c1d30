"""Parity of `PromptEncoder` with the reference's `sam_prompt_encoder` (boxes=None, as SAM 2).

Weights: the reference's, re-randomized and converted. Tolerance: max |ours - ref| <= 1e-5 x
max |ref| per output (worst seen ~2e-6, on the dense position encoding).
"""

import jax
import numpy as np
import pytest
import torch

from tests import reference as ref

NAME, SIZE = "sam2.1_hiera_t", 256
TOLERANCE = 1e-5


@pytest.fixture(scope="module")
def models():
    torch_model = ref.cached_reference(NAME, SIZE)
    model, variables = ref.convert_sam_heads(torch_model, NAME, SIZE)
    return torch_model.sam_prompt_encoder, model, variables


def _ours(model, variables, coords, labels, masks, pad=True):
    def encode(module, coords, labels, masks):
        return module.sam_prompt_encoder(coords, labels, masks, pad=pad)

    return model.apply(variables, coords, labels, masks, method=encode)


def _reference(prompt_encoder, coords, labels, masks):
    points = None if coords is None else (torch.from_numpy(coords), torch.from_numpy(labels))
    torch_masks = None if masks is None else ref.nchw(masks)
    with torch.no_grad():
        sparse, dense = prompt_encoder(points=points, boxes=None, masks=torch_masks)
    return sparse.numpy(), ref.nhwc(dense)


POINT_CASES = {
    "one_click": ([[[100.0, 60.0]]], [[1]]),
    "clicks_with_negatives": ([[[10.0, 20.0], [200.0, 30.5], [255.0, 255.0]]], [[1, 0, 0]]),
    "box_and_click": ([[[30.0, 40.0], [180.0, 220.0], [90.0, 100.0]]], [[2, 3, 1]]),
    # label -1 entries, as a fixed-shape caller pads: same as the reference given the same -1s
    "padded_with_minus_one": ([[[50.0, 50.0], [0.0, 0.0], [0.0, 0.0]]], [[1, -1, -1]]),
    # batch of two prompt sets, corner coordinates
    "batch_of_two": (
        [[[0.0, 0.0], [255.9, 0.0]], [[0.0, 255.9], [128.0, 128.0]]],
        [[1, 0], [2, 3]],
    ),
}


@pytest.mark.parametrize("case", sorted(POINT_CASES))
def test_points_match_reference(models, case):
    prompt_encoder, model, variables = models
    coords = np.asarray(POINT_CASES[case][0], np.float32)
    labels = np.asarray(POINT_CASES[case][1], np.int32)
    sparse, dense = _ours(model, variables, coords, labels, None)
    ref_sparse, ref_dense = _reference(prompt_encoder, coords, labels, None)
    # one padding "not a point" token appended, as the reference does with boxes=None
    assert sparse.shape == ref_sparse.shape == (coords.shape[0], coords.shape[1] + 1, 256)
    errors = (
        ref.relative_max_error(sparse, ref_sparse),
        ref.relative_max_error(dense, ref_dense),
    )
    print(f"{case}: sparse {errors[0]:.1e}, dense {errors[1]:.1e}")
    assert max(errors) <= TOLERANCE, errors


def test_minus_one_points_are_the_not_a_point_embedding(models):
    """The position of a -1 point is discarded: all such tokens are the same learned vector."""
    prompt_encoder, model, variables = models
    coords = np.asarray([[[3.0, 7.0], [200.0, 10.0]]], np.float32)
    labels = np.asarray([[-1, -1]], np.int32)
    sparse, _ = _ours(model, variables, coords, labels, None)
    expected = prompt_encoder.not_a_point_embed.weight.detach().numpy()[0]
    np.testing.assert_array_equal(np.asarray(sparse)[0], np.broadcast_to(expected, (3, 256)))


def test_mask_prompt_matches_reference(models):
    prompt_encoder, model, variables = models
    masks = np.random.default_rng(0).standard_normal((2, 64, 64, 1)).astype(np.float32) * 5
    coords = np.asarray([[[10.0, 20.0]], [[30.0, 40.0]]], np.float32)
    labels = np.asarray([[1], [0]], np.int32)
    sparse, dense = _ours(model, variables, coords, labels, masks)
    ref_sparse, ref_dense = _reference(prompt_encoder, coords, labels, masks)
    assert dense.shape == (2, 16, 16, 256)
    assert ref.relative_max_error(dense, ref_dense) <= TOLERANCE
    assert ref.relative_max_error(sparse, ref_sparse) <= TOLERANCE


def test_mask_only_gives_no_sparse_tokens(models):
    """The image predictor's mask-only prompt: points None -> 0 sparse tokens."""
    prompt_encoder, model, variables = models
    masks = np.random.default_rng(1).standard_normal((3, 64, 64, 1)).astype(np.float32)
    sparse, dense = _ours(model, variables, None, None, masks)
    ref_sparse, ref_dense = _reference(prompt_encoder, None, None, masks)
    assert sparse.shape == ref_sparse.shape == (3, 0, 256)
    assert ref.relative_max_error(dense, ref_dense) <= TOLERANCE


def test_no_prompt_at_all(models):
    prompt_encoder, model, variables = models
    sparse, dense = _ours(model, variables, None, None, None)
    ref_sparse, ref_dense = _reference(prompt_encoder, None, None, None)
    assert sparse.shape == ref_sparse.shape == (1, 0, 256)
    np.testing.assert_array_equal(np.asarray(dense), ref_dense)  # no_mask_embed, broadcast


def test_without_padding_token(models):
    """pad=False is the reference's `_embed_points(..., pad=False)` (boxes given)."""
    prompt_encoder, model, variables = models
    coords = np.asarray([[[10.0, 20.0], [100.0, 5.0]]], np.float32)
    labels = np.asarray([[2, 3]], np.int32)
    sparse, _ = _ours(model, variables, coords, labels, None, pad=False)
    with torch.no_grad():
        expected = prompt_encoder._embed_points(
            torch.from_numpy(coords), torch.from_numpy(labels), pad=False
        ).numpy()
    assert sparse.shape == expected.shape == (1, 2, 256)
    assert ref.relative_max_error(sparse, expected) <= TOLERANCE


def test_dense_position_encoding_matches_reference(models):
    prompt_encoder, model, variables = models
    ours = model.apply(variables, method=lambda module: module.sam_prompt_encoder.get_dense_pe())
    with torch.no_grad():
        expected = ref.nhwc(prompt_encoder.get_dense_pe())
    assert ours.shape == expected.shape == (1, 16, 16, 256)
    error = ref.relative_max_error(ours, expected)
    print(f"dense PE relative error {error:.1e}")
    assert error <= TOLERANCE


def test_jitted_padded_points_trace_once(models):
    """Different clicks of one padded shape reuse one compilation."""
    _, model, variables = models
    encode = jax.jit(lambda v, c, lab: _ours(model, v, c, lab, None)[0])
    rng = np.random.default_rng(2)
    encode(variables, np.zeros((1, 4, 2), np.float32), np.full((1, 4), -1, np.int32))
    before = encode._cache_size()
    for n_clicks in range(1, 5):
        labels = np.full((1, 4), -1, np.int32)
        labels[0, :n_clicks] = 1
        encode(variables, rng.uniform(0, 256, (1, 4, 2)).astype(np.float32), labels)
    assert encode._cache_size() == before == 1
