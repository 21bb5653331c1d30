"""SAM2ImagePredictor: `set_image` and click-to-mask latency, sam2_jax vs the reference.

Both predictors hold the same (re-randomized, converted) weights and see the same full-size
image. Click-to-mask is one `predict` call with one positive click after `set_image`, end to
end: prompt transform, prompt encoder, mask decoder, upsampling to the image size and
thresholding, numpy out.
"""

from __future__ import annotations

import jax
import numpy as np
import torch
from PIL import Image
from sam2.sam2_image_predictor import SAM2ImagePredictor as ReferencePredictor

from bench.harness import measure_pair, print_comparison
from sam2_jax.image.predictor import SAM2ImagePredictor
from tests import reference as ref

IMAGE = "truck.jpg"


def _predictors(variant: str, image_size: int) -> tuple[SAM2ImagePredictor, ReferencePredictor]:
    torch_model = ref.build_reference(variant, image_size)
    ours = SAM2ImagePredictor(ref.converted_model(torch_model, variant, image_size))
    theirs = ReferencePredictor(torch_model)
    # The reference hard-codes the 1024 feature sizes.
    theirs._bb_feat_sizes = [(image_size // d,) * 2 for d in (4, 8, 16)]
    return ours, theirs


def _load_image() -> np.ndarray:
    path = ref.SHARED_DATA / "images" / IMAGE
    if not path.exists():
        raise SystemExit(f"bench image_predictor needs the sample image {path}")
    return np.asarray(Image.open(path).convert("RGB"))


def run(variant: str, image_size: int, repeats: int) -> list[dict]:
    """Returns the two comparisons (set_image, click-to-mask) for one variant."""
    ours, theirs = _predictors(variant, image_size)
    image = _load_image()
    h, w = image.shape[:2]
    click = dict(point_coords=np.array([[w * 0.5, h * 0.6]]), point_labels=np.array([1]))

    def ours_set_image():
        ours.set_image(image)
        jax.block_until_ready(ours._features)

    def theirs_set_image():
        with torch.inference_mode():
            theirs.set_image(image)

    def theirs_predict():
        with torch.inference_mode():
            return theirs.predict(**click)

    results = [
        print_comparison(
            f"set_image {variant} @ {image_size} ({IMAGE} {w}x{h})",
            *measure_pair(ours_set_image, theirs_set_image, repeats=repeats),
        )
    ]
    # Both images are set now (the last calls): time the click alone.
    result = print_comparison(
        f"click-to-mask predict {variant} @ {image_size} (1 click, 3 masks at {w}x{h})",
        *measure_pair(lambda: ours.predict(**click), theirs_predict, repeats=repeats),
    )
    # A benchmark of wrong outputs is worthless: check agreement on the timed input.
    (m1, i1, _), (m2, i2, _) = ours.predict(**click), theirs_predict()
    result["mask_agreement"] = float((m1 == m2).mean())
    result["max_iou_difference"] = float(np.abs(i1 - i2).max())
    print(
        f"masks agree on {result['mask_agreement']:.4%} of pixels; "
        f"max IoU prediction difference {result['max_iou_difference']:.1e}"
    )
    results.append(result)
    return results
