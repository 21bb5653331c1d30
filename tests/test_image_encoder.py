"""Parity of the image path (`SAM2.forward_image`) with the reference's `forward_image`."""

import chex
import jax
import numpy as np
import pytest
import torch

from sam2_jax.config import get_config
from sam2_jax.modeling.sam2_base import SAM2
from tests import reference as ref

# max |ours - ref| / max |ref| allowed for every output map
TOLERANCE = 1e-4


def _compare_forward_image(name: str, image_size: int, image: np.ndarray) -> dict[str, float]:
    torch_model = ref.build_reference(name, image_size)
    model, variables = ref.convert_image_path(torch_model, name, image_size)
    with torch.no_grad():
        expected = torch_model.forward_image(ref.nchw(image[None]))
    ours = jax.jit(lambda v, x: model.apply(v, x, method=SAM2.forward_image))(
        variables, image[None]
    )
    errors = {}
    for key in ("backbone_fpn", "vision_pos_enc"):
        assert len(ours[key]) == len(expected[key]) == 3
        for level, (a, b) in enumerate(zip(ours[key], expected[key], strict=True)):
            errors[f"{key}[{level}]"] = ref.relative_max_error(a, ref.nhwc(b))
    errors["vision_features"] = ref.relative_max_error(
        ours["vision_features"], ref.nhwc(expected["vision_features"])
    )
    return errors


def test_image_path_configs_equal_between_releases():
    """Per size, the reference's sam2 and sam2.1 model configs differ only in the SAM 2.1
    memory flags, so the image encoder, prompt encoder and mask decoder are the same
    architecture: one variant per trunk (ref.ONE_PER_TRUNK) covers the image path."""
    import os

    import sam2
    import yaml

    root = os.path.dirname(sam2.__file__)
    for size in ("t", "s", "b+", "l"):
        old, new = (
            yaml.safe_load(open(os.path.join(root, ref.reference_config_file(n))))["model"]
            for n in (f"sam2_hiera_{size}", f"sam2.1_hiera_{size}")
        )
        differing = {k for k in set(old) | set(new) if old.get(k) != new.get(k)}
        assert differing == ref.MEMORY_FLAGS_21, (size, differing)


def test_forward_image_random_input_matches_reference():
    """Every output map (three FPN levels, their position encodings, the features).

    The encoder of every trunk, at 256 and at 1024, is also checked through the image
    predictor (test_image_predictor.py compares the features its decoder reads)."""
    image = np.random.default_rng(0).standard_normal((256, 256, 3)).astype(np.float32)
    errors = _compare_forward_image("sam2.1_hiera_s", 256, image)
    worst = max(errors.values())
    print(f"sam2.1_hiera_s@256 random input, worst relative error {worst:.2e}: {errors}")
    assert worst <= TOLERANCE, errors


def test_block_layout_matches_reference():
    """Window size, heads, widths and q-pooling of every Hiera block, for every variant."""
    from sam2.modeling.backbones.hieradet import Hiera as TorchHiera

    for name in ref.ALL_VARIANTS:
        cfg = get_config(name).trunk
        torch_trunk = TorchHiera(
            embed_dim=cfg.embed_dim,
            num_heads=cfg.num_heads,
            stages=cfg.stages,
            global_att_blocks=cfg.global_att_blocks,
            window_spec=cfg.window_spec,
            window_pos_embed_bkg_spatial_size=cfg.window_pos_embed_bkg_spatial_size,
        )
        for spec, block in zip(cfg.block_specs(), torch_trunk.blocks, strict=True):
            assert (spec.dim, spec.dim_out, spec.window_size) == (
                block.dim,
                block.dim_out,
                block.window_size,
            ), name
            assert spec.num_heads == block.attn.num_heads, name
            assert (spec.q_stride is not None) == (block.q_stride is not None), name


def test_encoder_traces_once_per_shape():
    cfg = get_config("sam2.1_hiera_mini", image_size=64)  # the smallest: cheap compiles
    model = SAM2(cfg)
    x = np.zeros((1, 64, 64, 3), np.float32)
    # Under jit: an eager init runs the encoder op by op (~40 s on CPU).
    variables = jax.jit(lambda key: model.init(key, x, method=SAM2.forward_image))(
        jax.random.key(0)
    )

    @jax.jit
    @chex.assert_max_traces(n=2)
    def encode(v, images):
        return model.apply(v, images, method=SAM2.forward_image)["vision_features"]

    for _ in range(3):
        encode(variables, x)
    for _ in range(3):
        encode(variables, np.ones((2, 64, 64, 3), np.float32))  # one more shape: one more trace
    with pytest.raises(AssertionError):
        encode(variables, np.ones((3, 64, 64, 3), np.float32))  # a third shape exceeds n=2
