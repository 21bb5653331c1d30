"""Held-out evaluation on synthetic moving shapes: one click per object, as a user would.

The videos come from the moving-shapes generator's "test" stream (seed `crc32("test")`), which
training never reads (the `MovingShapes` builder draws its "train" split from
`crc32("train")`). Every object visible on frame 0 (at least `min_area` pixels) gets one
positive click at its centre (the pixel farthest from its boundary, the usual interactive
segmentation protocol) and is tracked through the video by the video predictor; J and F
follow the DAVIS definitions (`sam2_jax.evaluation.vos`, first and last frame skipped).
Single-image accuracy is the mean IoU of the image predictor's top-scoring mask from one
centre click on frame 0.
"""

from __future__ import annotations

import zlib

import numpy as np
from scipy import ndimage

from sam2_jax.evaluation.measures import region_similarity
from sam2_jax.evaluation.vos import VideoMasks, evaluate_video

TEST_SEED = zlib.crc32(b"test")  # the MovingShapes "test" split's stream (seed 0)


def center_click(mask: np.ndarray) -> np.ndarray:
    """(H, W) bool -> (2,) float32 (x, y): the mask pixel farthest from the background."""
    if not mask.any():
        raise ValueError("cannot click on an empty mask")
    distance = ndimage.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]  # (H, W)
    y, x = np.unravel_index(np.argmax(distance), distance.shape)
    return np.array([x, y], np.float32)


def held_out_videos(
    num_videos: int,
    *,
    num_frames: int = 16,
    size: int = 128,
    num_objects: int = 3,
    seed: int = TEST_SEED,
    start: int = 0,
):
    """Yields (name, SyntheticVideo) for test videos start .. start + num_videos - 1."""
    from sam2_jax.train.data.synthetic import generate_video

    for i in range(start, start + num_videos):
        video = generate_video(
            seed, i, num_frames=num_frames, height=size, width=size, num_objects=num_objects
        )
        yield f"test_{i:06d}", video


def clicked_objects(masks: np.ndarray, min_area: int) -> list[int]:
    """Objects with at least `min_area` pixels on frame 0; masks (T, O, H, W) bool."""
    return [o for o in range(masks.shape[1]) if masks[0, o].sum() >= min_area]


def track_one_click(predictor, frames: np.ndarray, clicks: dict[int, np.ndarray]) -> np.ndarray:
    """Tracks objects from one click each on frame 0.

    Args:
      predictor: a SAM2VideoPredictor.
      frames: (T, H, W, 3) uint8.
      clicks: object index -> (2,) (x, y); the object's id is index + 1.

    Returns:
      (len(clicks), T, H, W) bool predicted masks, in the order of `clicks`.
    """
    state = predictor.init_state(frames)
    for o, click in clicks.items():
        predictor.add_new_points_or_box(state, 0, o + 1, points=click[None], labels=np.array([1]))
    objects = list(clicks)
    pred = np.zeros((len(objects), *frames.shape[:3]), bool)
    for f, obj_ids, logits in predictor.propagate_in_video(state, 0):
        for k, oid in enumerate(obj_ids):
            pred[objects.index(oid - 1), f] = np.asarray(logits[k]).reshape(frames.shape[1:3]) > 0
    return pred


def evaluate_one_click(
    video_predictor,
    image_predictor,
    num_videos: int = 50,
    *,
    num_frames: int = 16,
    size: int = 128,
    num_objects: int = 3,
    min_area: int = 64,
    start: int = 0,
    progress=None,
) -> dict[str, object]:
    """J&F of one-click video tracking and mIoU of one-click image segmentation.

    Returns {"J&F-Mean", "J-Mean", "F-Mean", "image-mIoU", "objects", "videos": {name:
    {object id: {"J&F", "J", "F", "image_IoU"}}}, "protocol": {...}} (means over objects).
    """
    per_video: dict[str, dict[int, dict[str, float]]] = {}
    for name, video in held_out_videos(
        num_videos, num_frames=num_frames, size=size, num_objects=num_objects, start=start
    ):
        objects = clicked_objects(video.masks, min_area)
        if not objects:
            continue
        clicks = {o: center_click(video.masks[0, o]) for o in objects}
        pred = track_one_click(video_predictor, video.frames, clicks)
        ids = tuple(o + 1 for o in objects)
        frame_names = tuple(f"{t:05d}" for t in range(video.frames.shape[0]))
        gt_masks = np.moveaxis(video.masks[:, objects], 1, 0)  # (T, O', H, W) -> (O', T, H, W)
        scores = evaluate_video(
            VideoMasks(frame_names, ids, gt_masks, None),
            VideoMasks(frame_names, ids, pred, None),
        )
        image_predictor.set_image(video.frames[0])
        per_video[name] = {}
        for o, oid in zip(objects, ids, strict=True):
            masks, iou, _ = image_predictor.predict(
                point_coords=clicks[o][None],
                point_labels=np.array([1]),
                multimask_output=True,
            )
            best = masks[int(np.argmax(iou))]
            image_iou = float(region_similarity(best[None], video.masks[0, o][None])[0])
            s = scores[oid]
            per_video[name][oid] = {
                "J&F": s["J&F"],
                "J": s["J"]["mean"],
                "F": s["F"]["mean"],
                "image_IoU": image_iou,
            }
        if progress is not None:
            progress(name, per_video[name])
    objs = [r for v in per_video.values() for r in v.values()]
    if not objs:
        raise ValueError("no object reached min_area on frame 0 in any video")
    mean = lambda key: float(np.mean([r[key] for r in objs]))
    return {
        "J&F-Mean": mean("J&F"),
        "J-Mean": mean("J"),
        "F-Mean": mean("F"),
        "image-mIoU": mean("image_IoU"),
        "objects": len(objs),
        "videos": per_video,
        "protocol": {
            "split_seed": TEST_SEED,
            "videos": f"{start}..{start + num_videos - 1}",
            "num_frames": num_frames,
            "size": size,
            "num_objects": num_objects,
            "min_area": min_area,
            "click": "one positive click per object at the pixel farthest from its boundary, "
            "frame 0",
        },
    }
