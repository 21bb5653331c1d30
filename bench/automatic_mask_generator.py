"""SAM2AutomaticMaskGenerator: `generate` time, sam2_jax vs the reference.

Both generators hold the same (re-randomized, converted) weights, run with the default
settings (32 x 32 clicks, 64 per batch, no crops) and see the same full-size image. A call
is one whole `generate`: image encoding, 16 decoder batches, per-mask upsampling to the
image size, filtering, NMS and output masks. Random weights predict low IoUs, so the IoU
head's output bias is raised on both sides (as the parity tests do) to let masks through
the filters and the post-filter steps do real work.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from sam2.automatic_mask_generator import SAM2AutomaticMaskGenerator as ReferenceGenerator

from bench.harness import measure_pair, print_comparison
from sam2_jax.amg.generator import SAM2AutomaticMaskGenerator
from tests import reference as ref

IMAGE = "truck.jpg"
IOU_BIAS_SHIFT = 1.3
MASK_LOGIT_SCALE = 8.0
MAX_REPEATS = 2  # one reference generate at 1024 takes minutes on a small CPU


def _generators(variant: str, image_size: int):
    torch_model = ref.build_reference(variant, image_size, seed=3)
    decoder = torch_model.sam_mask_decoder
    with torch.no_grad():
        decoder.iou_prediction_head.layers[2].bias += IOU_BIAS_SHIFT
        for mlp in decoder.output_hypernetworks_mlps:
            mlp.layers[2].weight *= MASK_LOGIT_SCALE
            mlp.layers[2].bias *= MASK_LOGIT_SCALE
    ours = SAM2AutomaticMaskGenerator(ref.converted_model(torch_model, variant, image_size))
    theirs = ReferenceGenerator(torch_model)
    theirs.predictor._bb_feat_sizes = [(image_size // d,) * 2 for d in (4, 8, 16)]
    return ours, theirs


def run(variant: str, image_size: int, repeats: int) -> dict:
    path = ref.SHARED_DATA / "images" / IMAGE
    if not path.exists():
        raise SystemExit(f"bench automatic_mask_generator needs the sample image {path}")
    image = np.asarray(Image.open(path).convert("RGB"))
    h, w = image.shape[:2]
    ours, theirs = _generators(variant, image_size)
    repeats = min(repeats, MAX_REPEATS)
    records = {}

    def ours_generate():
        records["ours"] = ours.generate(image)

    def theirs_generate():
        with torch.inference_mode():
            records["theirs"] = theirs.generate(image)

    result = print_comparison(
        f"generate {variant} @ {image_size} default settings ({IMAGE} {w}x{h})",
        *measure_pair(ours_generate, theirs_generate, repeats=repeats),
    )
    # A benchmark of wrong outputs is worthless: check agreement on the timed input.
    counts = {k: len(v) for k, v in records.items()}
    iou = _best_ious(records["theirs"], records["ours"])
    result.update(masks=counts, min_best_mask_iou=iou)
    print(f"masks: ours {counts['ours']}, reference {counts['theirs']}; worst best-match IoU {iou}")
    return result


def _best_ious(theirs: list[dict], ours: list[dict]) -> float:
    """For each reference mask, the IoU of our best-overlapping mask; the minimum."""
    if not theirs or not ours:
        return float(len(theirs) == len(ours))
    a = np.stack([r["segmentation"] for r in theirs]).reshape(len(theirs), -1).astype(np.float32)
    b = np.stack([r["segmentation"] for r in ours]).reshape(len(ours), -1).astype(np.float32)
    inter = a @ b.T
    union = a.sum(1)[:, None] + b.sum(1)[None] - inter
    return float((inter / np.maximum(union, 1)).max(1).min())
