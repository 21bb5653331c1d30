"""2D axial RoPE (`sam2_jax.modeling.rope`) against the reference's compute_axial_cis /
apply_rotary_enc."""

import jax.numpy as jnp
import numpy as np
import pytest
import torch
from sam2.modeling.position_encoding import apply_rotary_enc, compute_axial_cis

from sam2_jax.modeling.memory_attention import reference_rope_layout
from sam2_jax.modeling.rope import apply_rope, axial_frequencies, grid_side, rope_tables

DIM = 256  # memory attention: one head of 256
EPS32 = float(np.finfo(np.float32).eps)  # 1.19e-7
# numpy's and torch's float32 pow (then 1 / x) differ by <= 1 ULP on some x86 CPUs (AVX-512
# Xeons: 5 of the 64 values, 1.4e-7 relative): 4 ULP margin
FREQUENCY_RTOL = 4 * EPS32
# cos/sin of the same float32 angles: XLA and torch may round differently by an ulp (seen:
# 6e-8); the angles' own difference (frequencies not bit-equal) is added by angle_error_bound
TABLE_TOLERANCE = 2e-6
# max |ours - ref| / max |ref| for rotated vectors (plus 2 x angle_error_bound)
ROTATION_TOLERANCE = 1e-6


def reference_frequencies() -> np.ndarray:
    """The reference's float32 frequencies, as compute_axial_cis computes them."""
    return (1.0 / (10000.0 ** (torch.arange(0, DIM, 4)[: DIM // 4].float() / DIM))).numpy()


def angle_error_bound(side: int) -> float:
    """Bound on |our angle - the reference's| on a side x side grid. Angles are t * f with
    t <= side - 1 and f <= 1, one float32 product on each side: bit-equal when the frequencies
    are, else t * |df| plus each side's rounding of the product (<= 1/2 ULP of side - 1)."""
    freq_err = float(np.abs(axial_frequencies(DIM) - reference_frequencies()).max())
    return 0.0 if freq_err == 0 else (side - 1) * (freq_err + EPS32)


@pytest.mark.parametrize("side", [16, 64])
def test_tables_match_compute_axial_cis(side):
    expected = compute_axial_cis(dim=DIM, end_x=side, end_y=side)  # (side^2, D/2) complex64
    cos, sin = rope_tables(jnp.arange(side * side), side, DIM)
    err = max(
        np.abs(np.asarray(cos) - expected.real.numpy()).max(),
        np.abs(np.asarray(sin) - expected.imag.numpy()).max(),
    )
    bound = TABLE_TOLERANCE + angle_error_bound(side)  # cos and sin are 1-Lipschitz
    print(f"side {side}: worst table difference {err:.2e} (allowed {bound:.2e})")
    assert err <= bound


def test_frequencies_are_the_reference_float32_values():
    np.testing.assert_allclose(
        axial_frequencies(DIM), reference_frequencies(), rtol=FREQUENCY_RTOL, atol=0
    )


@pytest.mark.parametrize(("side", "frames", "pointers"), [(16, 1, 0), (16, 3, 8), (8, 7, 64)])
def test_rotation_matches_apply_rotary_enc(side, frames, pointers):
    """Queries on the grid; keys = `frames` whole memory frames (same rotation as the query grid)
    followed by `pointers` tokens that must come out unchanged."""
    rng = np.random.default_rng(side + frames + pointers)
    nq, nk = side * side, frames * side * side + pointers
    q = rng.standard_normal((2, 1, nq, DIM)).astype(np.float32)  # torch layout (B, H, N, D)
    k = rng.standard_normal((2, 1, nk, DIM)).astype(np.float32)
    freqs = compute_axial_cis(dim=DIM, end_x=side, end_y=side)
    q_ref, k_rot = apply_rotary_enc(
        torch.from_numpy(q),
        torch.from_numpy(k[:, :, : nk - pointers]),
        freqs_cis=freqs,
        repeat_freqs_k=True,
    )
    k_ref = np.concatenate([k_rot.numpy(), k[:, :, nk - pointers :]], axis=2)

    rope_mask, rope_index = reference_rope_layout(nk, nq, pointers)
    q_ours = apply_rope(
        jnp.asarray(q.transpose(0, 2, 1, 3)), *rope_tables(jnp.arange(nq)[None], side, DIM)
    )
    k_ours = apply_rope(
        jnp.asarray(k.transpose(0, 2, 1, 3)),
        *rope_tables(jnp.asarray(rope_index), side, DIM, jnp.asarray(rope_mask)),
    )
    q_ours, k_ours = (np.asarray(t).transpose(0, 2, 1, 3) for t in (q_ours, k_ours))
    # A pair (a, b) rotated by angles d apart moves by <= |(a, b)| d, and rotations keep the
    # pair norms, so max |expected| >= max |(a, b)| / sqrt(2): relative error <= sqrt(2) d.
    bound = ROTATION_TOLERANCE + 2 * angle_error_bound(side)
    for ours, expected in ((q_ours, q_ref.numpy()), (k_ours, k_ref)):
        err = np.abs(ours - expected).max() / np.abs(expected).max()
        assert err <= bound, (err, bound)
    # pointer tokens are not rotated at all: bit-exact
    np.testing.assert_array_equal(k_ours[:, :, nk - pointers :], k[:, :, nk - pointers :])


def test_rotation_preserves_norm_and_position_zero_is_identity():
    x = np.random.default_rng(0).standard_normal((1, 16, 1, DIM)).astype(np.float32)
    y = np.asarray(apply_rope(jnp.asarray(x), *rope_tables(jnp.arange(16)[None], 4, DIM)))
    np.testing.assert_allclose(
        np.linalg.norm(y.reshape(16, -1, 2), axis=-1),
        np.linalg.norm(x.reshape(16, -1, 2), axis=-1),
        rtol=1e-5,
    )
    np.testing.assert_array_equal(y[:, 0], x[:, 0])  # grid cell (0, 0): angle 0


def test_grid_side_requires_a_square():
    assert grid_side(4096) == 64
    with pytest.raises(ValueError, match="square"):
        grid_side(4100)
