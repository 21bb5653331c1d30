"""Video object segmentation evaluation: DAVIS J (region IoU) and F (boundary F-measure)."""

from sam2_jax.evaluation.measures import (
    contour_accuracy,
    contour_accuracy_frames,
    region_similarity,
    seg_to_boundary,
)
from sam2_jax.evaluation.vos import (
    VideoMasks,
    evaluate_folders,
    evaluate_video,
    format_results,
    read_video_masks,
    to_json,
    write_results,
)

__all__ = [
    "VideoMasks",
    "contour_accuracy",
    "contour_accuracy_frames",
    "evaluate_folders",
    "evaluate_video",
    "format_results",
    "read_video_masks",
    "region_similarity",
    "seg_to_boundary",
    "to_json",
    "write_results",
]
