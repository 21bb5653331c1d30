import numpy as np
import pytest
import torch
from sam2.modeling.position_encoding import PositionEmbeddingSine

from sam2_jax.modeling.position_encoding import sine_position_encoding_2d


@pytest.mark.parametrize("hw,feats", [((64, 64), 256), ((16, 16), 256), ((32, 24), 64)])
def test_sine_encoding_matches_reference(hw, feats):
    ref = PositionEmbeddingSine(feats)(torch.zeros(1, feats, *hw))[0].permute(1, 2, 0).numpy()
    ours = sine_position_encoding_2d(*hw, feats)
    np.testing.assert_allclose(ours, ref, atol=1e-5)
