"""Scripted sessions that tests/test_serving.py runs on the live and on the exported
predictors (they share the API), and the subprocess that runs them on the exported ones.

Only numpy and the predictors' methods are used here, so

    python -m tests.serving_sessions FOLDER OUT.npz

imports nothing of the model: it records which of the modules that must stay out
(`FORBIDDEN`) were imported, next to the outputs.
"""

from __future__ import annotations

import json
import sys

import numpy as np

from sam2_jax.cli.common import bundled

IMAGE = "groceries.jpg"  # 800 x 534
CLIP = "shapes_clip/frames"  # 24 frames of 128 x 128
PROMPTS = "shapes_clip/prompts.json"

# the frameworks and the model code a serving process must not import
FORBIDDEN = (
    "flax",
    "optax",
    "orbax",
    "torch",
    "sam2_jax.build",
    "sam2_jax.modeling.sam2_base",
    "sam2_jax.memory.step",
    "sam2_jax.video.loop",
    "sam2_jax.video.chunks",
    "sam2_jax.video.offline",
    "sam2_jax.memory",
    "sam2_jax.image.predictor",
    "sam2_jax.video.predictor",
)

IMAGE_PROMPTS = {
    "click": dict(point_coords=[[400, 300]], point_labels=[1]),
    "clicks_single": dict(
        point_coords=[[400, 300], [600, 100]], point_labels=[1, 0], multimask_output=False
    ),
    "box": dict(box=[100, 100, 500, 400], multimask_output=False),
    "box_and_click": dict(point_coords=[[300, 250]], point_labels=[1], box=[100, 100, 500, 400]),
    "two_sets": dict(point_coords=[[[400, 300]], [[200, 150]]], point_labels=[[1], [1]]),
}


def image_session(predictor) -> dict[str, np.ndarray]:
    """Masks, scores and low-res logits of every prompt in IMAGE_PROMPTS, then of the first
    click's best low-res logits fed back as a mask prompt."""
    from PIL import Image

    predictor.set_image(np.asarray(Image.open(bundled(IMAGE)).convert("RGB")))
    out = {}
    for name, kwargs in IMAGE_PROMPTS.items():
        kwargs = {k: np.asarray(v) if isinstance(v, list) else v for k, v in kwargs.items()}
        masks, scores, logits = predictor.predict(**kwargs)
        out.update({f"{name}/masks": masks, f"{name}/scores": scores, f"{name}/logits": logits})
    best = int(np.argmax(out["click/scores"]))
    masks, scores, logits = predictor.predict(
        mask_input=out["click/logits"][best : best + 1], multimask_output=False
    )
    out.update({"mask/masks": masks, "mask/scores": scores, "mask/logits": logits})
    return out


def video_session(predictor) -> dict[str, np.ndarray]:
    """The bundled clip's prompts (a click per object on frame 0), propagation over the
    clip; then a correction on frame 12 (a negative click, then one more click, which feeds
    the previous logits back in) and a reverse propagation of 4 frames from it. Returns every
    output's logits, (N_obj, 1, H, W), keyed by step and frame."""
    with open(bundled(PROMPTS)) as file:
        prompts = json.load(file)
    state = predictor.init_state(bundled(CLIP))
    out = {}
    for obj in prompts["objects"]:
        for p in obj["prompts"]:
            _, _, masks = predictor.add_new_points_or_box(
                state, p["frame"], obj["id"], points=p["points"], labels=p["labels"]
            )
            out[f"prompt/{obj['id']}/{p['frame']}"] = masks
    for f, _, masks in predictor.propagate_in_video(state):
        out[f"forward/{f}"] = masks
    _, _, out["correct/1"] = predictor.add_new_points_or_box(
        state, 12, 1, points=[[5.0, 5.0]], labels=[0]
    )
    _, _, out["correct/2"] = predictor.add_new_points_or_box(
        state, 12, 1, points=[[120.0, 8.0]], labels=[0], clear_old_points=False
    )
    for f, _, masks in predictor.propagate_in_video(
        state, start_frame_idx=12, max_frame_num_to_track=4, reverse=True
    ):
        out[f"reverse/{f}"] = masks
    return out


def main(folder: str, path: str) -> None:
    from sam2_jax.serving import ExportedImagePredictor, ExportedVideoPredictor

    results = {
        **{f"image/{k}": v for k, v in image_session(ExportedImagePredictor(folder)).items()},
        **{f"video/{k}": v for k, v in video_session(ExportedVideoPredictor(folder)).items()},
    }
    imported = [m for m in FORBIDDEN if any(n == m or n.startswith(m + ".") for n in sys.modules)]
    np.savez(path, imported=np.array(json.dumps(imported)), **results)


if __name__ == "__main__":
    main(*sys.argv[1:3])
