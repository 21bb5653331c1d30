import numpy as np
import pytest
import torch
import torch.nn.functional as F

from sam2_jax.modeling import interpolation


@pytest.mark.parametrize("in_size,out_size", [(7, 64), (7, 256), (14, 256), (14, 64), (8, 3)])
def test_bicubic_matrix_matches_torch(in_size, out_size):
    x = np.random.default_rng(0).standard_normal((in_size, in_size, 5)).astype(np.float32)
    ours = np.asarray(interpolation.resize_bicubic_torch(x, (out_size, out_size)))
    ref = F.interpolate(
        torch.from_numpy(x).permute(2, 0, 1)[None], size=(out_size, out_size), mode="bicubic"
    )[0].permute(1, 2, 0)
    # 4x4 taps summed in another order on |values| <= 4: worst seen 1.5e-6 (6 ULP) x ~7 margin
    np.testing.assert_allclose(ours, ref.numpy(), atol=1e-5)


def test_bilinear_upsample_matches_torch():
    x = np.random.default_rng(1).standard_normal((2, 16, 16, 3)).astype(np.float32)
    ours = np.asarray(interpolation.upsample_bilinear(x, (64, 48)))
    ref = F.interpolate(
        torch.from_numpy(x).permute(0, 3, 1, 2), size=(64, 48), mode="bilinear", align_corners=False
    ).permute(0, 2, 3, 1)
    np.testing.assert_allclose(ours, ref.numpy(), atol=1e-5)


def test_antialiased_downsample_matches_torch():
    x = np.random.default_rng(2).standard_normal((1, 128, 96, 1)).astype(np.float32)
    ours = np.asarray(interpolation.downsample_bilinear_antialias(x, (32, 32)))
    ref = F.interpolate(
        torch.from_numpy(x).permute(0, 3, 1, 2),
        size=(32, 32),
        mode="bilinear",
        align_corners=False,
        antialias=True,
    ).permute(0, 2, 3, 1)
    np.testing.assert_allclose(ours, ref.numpy(), atol=1e-5)
