"""Fixed-shape (padded) prompts give the reference's unpadded results.

One padded call of `SAM2.forward_sam_heads` for objects with 0, 1, 2 and 4 points (a box is
2 points) against one reference `_forward_sam_heads` call per object with only its points,
with the per-object multimask rule of tracking (multimask iff at most one point) and with a
static multimask flag.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from sam2_jax.modeling.sam2_base import SAM2
from tests import reference as ref
from tests import tracking_harness as th

MAX_LOGIT_ERROR = 1e-4
P = 6  # padded points per object


def object_points(rng, size: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per object (coords (n, 2) model-input pixels, labels (n,)); n = 0, 1, 2 (box), 4."""

    def pts(n):
        return rng.uniform(0, size, (n, 2)).astype(np.float32)

    return [
        (pts(0), np.zeros((0,), np.int32)),
        (pts(1), np.array([1], np.int32)),
        (pts(2), np.array([2, 3], np.int32)),
        (pts(4), np.array([2, 3, 1, 0], np.int32)),
    ]


@pytest.mark.parametrize("name", ["sam2.1_hiera_t"])
@pytest.mark.parametrize("multimask", ["per_object", True, False])
def test_padded_points_match_unpadded_reference(name, multimask):
    torch_model, module, variables = th.model_pair(name, 2.0)
    size, emb = th.SIZE, th.SIZE // 16
    rng = np.random.default_rng(0)
    objects = object_points(rng, size)
    b = len(objects)
    feats = rng.normal(size=(b, emb, emb, 256)).astype(np.float32)
    high = (
        rng.normal(size=(b, 4 * emb, 4 * emb, 32)).astype(np.float32),
        rng.normal(size=(b, 2 * emb, 2 * emb, 64)).astype(np.float32),
    )
    coords = np.zeros((b, P, 2), np.float32)
    labels = np.zeros((b, P), np.int32)
    valid = np.zeros((b, P), bool)
    for i, (c, lab) in enumerate(objects):
        coords[i, : len(c)], labels[i, : len(c)], valid[i, : len(c)] = c, lab, True
    coords[~valid] = rng.uniform(0, size, (int((~valid).sum()), 2))  # junk in the padding
    labels[~valid] = 1
    counts = valid.sum(1)
    flag = counts <= 1 if multimask == "per_object" else multimask

    ours = jax.jit(
        lambda v, f, c, lab, val, h0, h1, mm: module.apply(
            v, f, c, lab, None, (h0, h1), mm, point_valid=val, method=SAM2.forward_sam_heads
        ),
        static_argnums=() if multimask == "per_object" else (7,),
    )(variables, feats, coords, labels, valid, *high, jnp.asarray(flag) if multimask ==
      "per_object" else flag)  # fmt: skip

    for i, (c, lab) in enumerate(objects):
        points = None
        if len(c):
            points = {
                "point_coords": torch.from_numpy(c[None]),
                "point_labels": torch.from_numpy(lab[None]),
            }
        mm = bool(flag[i]) if multimask == "per_object" else multimask
        with torch.no_grad():
            theirs = torch_model._forward_sam_heads(
                backbone_features=ref.nchw(feats[i : i + 1]),
                point_inputs=points,
                high_res_features=[ref.nchw(h[i : i + 1]) for h in high],
                multimask_output=mm,
            )
        _, _, ious, low_res, _, obj_ptr, score = theirs
        low_ours = np.asarray(ours.low_res_masks[i, ..., 0])
        err = ref.relative_max_error(low_ours, low_res[0, 0].numpy())
        assert err <= MAX_LOGIT_ERROR, (i, err)
        np.testing.assert_allclose(np.asarray(ours.obj_ptr[i]), obj_ptr[0].numpy(), atol=1e-4)
        np.testing.assert_allclose(
            np.asarray(ours.object_score_logits[i]), score[0].numpy(), atol=1e-4
        )
        if multimask == "per_object":
            best = ious[0].max() if mm else ious[0, 0]  # the selected mask's IoU
            np.testing.assert_allclose(np.asarray(ours.iou[i, 0]), best.numpy(), atol=1e-4)
            # K = 3 slots: the candidates, or the single mask's IoU and two zeros
            slots = ious[0].numpy() if mm else np.array([ious[0, 0].item(), 0.0, 0.0])
            np.testing.assert_allclose(np.asarray(ours.ious[i]), slots, atol=1e-4)
        else:
            np.testing.assert_allclose(np.asarray(ours.ious[i]), ious[0].numpy(), atol=1e-4)
