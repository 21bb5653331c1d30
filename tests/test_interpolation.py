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


@pytest.mark.parametrize("in_hw,out_hw", [((256, 256), (1200, 1800)), ((24, 24), (37, 130))])
def test_banded_bilinear_resize_matches_torch(in_hw, out_hw):
    x = np.random.default_rng(3).standard_normal((2, *in_hw, 3)).astype(np.float32)
    ours = np.asarray(interpolation.resize_bilinear_banded(x, out_hw))
    ref = F.interpolate(
        torch.from_numpy(x).permute(0, 3, 1, 2), size=out_hw, mode="bilinear", align_corners=False
    ).permute(0, 2, 3, 1)
    # float32 rounding of the taps' weights and products: worst seen 3.6e-5 on unit-variance
    # inputs at 256 -> 1800 (the matrix form, `upsample_bilinear`, is within 5e-7)
    np.testing.assert_allclose(ours, ref.numpy(), atol=1e-4)
    # the same taps as the AMG's gathers (`linear_taps`)
    y0, y1, wy = interpolation.linear_taps(in_hw[0], out_hw[0])
    x0, x1, wx = interpolation.linear_taps(in_hw[1], out_hw[1])
    cols = x[:, :, x0] * (1 - wx)[:, None] + x[:, :, x1] * wx[:, None]
    taps = cols[:, y0] * (1 - wy)[:, None, None] + cols[:, y1] * wy[:, None, None]
    np.testing.assert_allclose(ours, taps, atol=2e-6)
