"""`modeling/common.gelu` is torch's exact GELU (the reference's `nn.GELU()`), written with erf."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import torch

from sam2_jax.modeling.common import gelu

# |ours - torch's| <= 4 float32 ULPs of |gelu(x)| + 2e-6: two libraries' erf approximations
# differ by an ULP or two, and for x in [-6, -3], where erf(x / sqrt 2) is within 1e-6 of -1
# and GELU is below 4e-3, 1 + erf cancels: there the two differ by up to 1.1e-6 (measured),
# below the float32 rounding of the O(1) sums these values feed
ULPS = 4
ABSOLUTE = 2e-6


def test_gelu_matches_torch_over_the_whole_range():
    x = np.concatenate(
        [np.linspace(-12.0, 12.0, 200_001), np.random.default_rng(0).standard_normal(100_000)]
    ).astype(np.float32)
    ours = np.asarray(gelu(jnp.asarray(x)))
    theirs = torch.nn.functional.gelu(torch.from_numpy(x)).numpy()
    allowed = np.abs(theirs) * np.finfo(np.float32).eps * ULPS + ABSOLUTE
    worst = np.abs(ours - theirs) / allowed
    assert worst.max() <= 1.0, (x[worst.argmax()], ours[worst.argmax()], theirs[worst.argmax()])
    np.testing.assert_array_equal(ours[x >= 6], x[x >= 6])  # the identity far right
    assert (np.abs(ours[x <= -6]) <= 1e-6).all()  # and ~0 far left
