"""`SAM2AutomaticMaskGenerator`: "segment everything" with the reference's API and records.

A grid of single-click prompts covers the image (and, with `crop_n_layers`, overlapping
crops of it). Per crop, the image is encoded once; the clicks are decoded `points_per_batch`
at a time by one compiled call of fixed shape (the last batch is padded), so one compile
serves every batch. Per-mask work at the crop resolution (upsampling, stability scores,
tight boxes) is compiled too and never brings full-size logits back to the host. Filtering
by predicted IoU and stability, dropping masks cut off by a crop edge, and box NMS (within a
crop, then across crops) run on the small per-mask values; only the surviving masks are
upsampled to binary masks and run-length encoded.

Same results as the reference, with two harmless differences in how they are reached:
masks are RLE-encoded after NMS rather than before (NMS only reads boxes and scores), and
uncompressed RLE is computed by numpy, COCO RLE by pycocotools directly from the masks.
"""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np

from sam2_jax import rle, transforms
from sam2_jax.amg import mask_scoring
from sam2_jax.amg import utils as amg_utils
from sam2_jax.buckets import power_of_two_bucket
from sam2_jax.build import SAM2Model
from sam2_jax.image.predictor import SAM2ImagePredictor, _decode

OUTPUT_MODES = ("binary_mask", "uncompressed_rle", "coco_rle")
LOW_RES_CLAMP = 32.0  # the reference clamps low-res logits fed back as mask prompts


class SAM2AutomaticMaskGenerator:
    """Generates masks for a whole image from a grid of point prompts."""

    def __init__(
        self,
        model: SAM2Model,
        points_per_side: int | None = 32,
        points_per_batch: int = 64,
        pred_iou_thresh: float = 0.8,
        stability_score_thresh: float = 0.95,
        stability_score_offset: float = 1.0,
        mask_threshold: float = 0.0,
        box_nms_thresh: float = 0.7,
        crop_n_layers: int = 0,
        crop_nms_thresh: float = 0.7,
        crop_overlap_ratio: float = 512 / 1500,
        crop_n_points_downscale_factor: int = 1,
        point_grids: list[np.ndarray] | None = None,
        min_mask_region_area: int = 0,
        output_mode: str = "binary_mask",
        use_m2m: bool = False,
        multimask_output: bool = True,
    ) -> None:
        """
        Args:
          model: from `sam2_jax.build_sam2`.
          points_per_side: clicks per side of the grid (points_per_side**2 in all); exclusive
            with point_grids.
          points_per_batch: clicks decoded in one compiled call.
          pred_iou_thresh: keep masks whose predicted IoU is > this (0 disables).
          stability_score_thresh: keep masks whose stability score is >= this (0 disables).
          stability_score_offset: the logit shift of the stability score's two thresholds.
          mask_threshold: logits above it are foreground.
          box_nms_thresh: box IoU above which NMS drops a lower-scoring mask of a crop.
          crop_n_layers: extra layers of crops; layer i has (2**i)**2 crops.
          crop_nms_thresh: box IoU of the NMS between crops (smaller crops win).
          crop_overlap_ratio: overlap of first-layer crops, as a fraction of the short side.
          crop_n_points_downscale_factor: layer i has points_per_side / factor**i per side.
          point_grids: explicit (P, 2) grids in [0, 1], one per crop layer.
          min_mask_region_area: fill holes and remove islands up to this area (in low-res
            mask pixels) before upsampling, as the reference's image predictor does.
          output_mode: 'binary_mask' ((H, W) bool), 'uncompressed_rle' or 'coco_rle'.
          use_m2m: refine every mask once, with its click and its own logits as mask prompt.
          multimask_output: three masks per click (else one).
        """
        if (points_per_side is None) == (point_grids is None):
            raise ValueError("Exactly one of points_per_side or point_grids must be provided.")
        if points_per_side is not None:
            self.point_grids = amg_utils.build_all_layer_point_grids(
                points_per_side, crop_n_layers, crop_n_points_downscale_factor
            )
        else:
            self.point_grids = [_check_grid(g, i) for i, g in enumerate(point_grids)]
            if len(self.point_grids) < crop_n_layers + 1:
                raise ValueError(
                    f"point_grids has {len(self.point_grids)} grid(s); crop_n_layers="
                    f"{crop_n_layers} needs one per layer ({crop_n_layers + 1})"
                )
        if output_mode not in OUTPUT_MODES:
            raise ValueError(f"Unknown output_mode {output_mode!r}; expected one of {OUTPUT_MODES}")
        if points_per_batch < 1:
            raise ValueError(f"points_per_batch must be >= 1, got {points_per_batch}")
        self.predictor = SAM2ImagePredictor(model)
        self.points_per_batch = points_per_batch
        self.pred_iou_thresh = pred_iou_thresh
        self.stability_score_thresh = stability_score_thresh
        self.stability_score_offset = stability_score_offset
        self.mask_threshold = mask_threshold
        self.box_nms_thresh = box_nms_thresh
        self.crop_n_layers = crop_n_layers
        self.crop_nms_thresh = crop_nms_thresh
        self.crop_overlap_ratio = crop_overlap_ratio
        self.crop_n_points_downscale_factor = crop_n_points_downscale_factor
        self.min_mask_region_area = min_mask_region_area
        self.output_mode = output_mode
        self.use_m2m = use_m2m
        self.multimask_output = multimask_output

    @property
    def model(self) -> SAM2Model:
        return self.predictor.model

    # ---------------------------------------------------------------- public API

    def generate(self, image) -> list[dict[str, Any]]:
        """Masks for every object the grid of clicks finds.

        Args:
          image: (H, W, 3) uint8 RGB array or a PIL image.

        Returns:
          one record per mask, as the reference's: segmentation ((H, W) bool, or an RLE dict
          by output_mode), area (int), bbox (XYWH list), predicted_iou, point_coords
          ([[x, y]] in image pixels), stability_score, crop_box (XYWH list).
        """
        image = transforms.as_rgb_uint8(image)
        data = self._generate_masks(image)
        masks = data["masks"]
        if self.output_mode == "coco_rle":
            segmentations = rle.masks_to_coco_rle(masks)
        elif self.output_mode == "uncompressed_rle":
            segmentations = [rle.mask_to_rle(m) for m in masks]
        else:
            segmentations = list(masks)
        return [
            {
                "segmentation": segmentations[i],
                "area": int(masks[i].sum()),
                "bbox": amg_utils.box_xyxy_to_xywh(data["boxes"][i]).tolist(),
                "predicted_iou": float(data["iou_preds"][i]),
                "point_coords": [data["points"][i].tolist()],
                "stability_score": float(data["stability_score"][i]),
                "crop_box": amg_utils.box_xyxy_to_xywh(data["crop_boxes"][i]).tolist(),
            }
            for i in range(len(segmentations))
        ]

    # ---------------------------------------------------------------- crops

    def _generate_masks(self, image: np.ndarray) -> dict[str, np.ndarray]:
        orig_hw = image.shape[:2]
        crop_boxes, layers = amg_utils.generate_crop_boxes(
            orig_hw, self.crop_n_layers, self.crop_overlap_ratio
        )
        crops = [
            self._process_crop(image, i, box, layer, orig_hw)
            for i, (box, layer) in enumerate(zip(crop_boxes, layers, strict=True))
        ]
        data = _concat(crops)
        if len(crop_boxes) > 1 and len(data["iou_preds"]):
            # Duplicates across crops: prefer masks from smaller crops.
            scores = 1 / amg_utils.box_area(data["crop_boxes"]).astype(np.float32)
            data = _take(data, amg_utils.nms(data["boxes"], scores, self.crop_nms_thresh))
        data["masks"] = self._full_size_masks(data, orig_hw)
        data["crop_boxes"] = data["crop_boxes"].astype(np.float32)
        data["boxes"] = data["boxes"].astype(np.float32)
        return data

    def _process_crop(self, image, crop_index, crop_box, layer, orig_hw) -> dict[str, np.ndarray]:
        x0, y0, x1, y1 = crop_box
        crop = image[y0:y1, x0:x1]
        crop_hw = crop.shape[:2]
        self.predictor.set_image(crop)
        # Grid in crop pixels: float64 scaling, float32 points (as the reference).
        points = (self.point_grids[layer] * np.array(crop_hw)[None, ::-1]).astype(np.float32)
        batches = [
            self._process_batch(points[i : i + self.points_per_batch], crop_hw, crop_box, orig_hw)
            for i in range(0, len(points), self.points_per_batch)
        ]
        self.predictor.reset_predictor()
        data = _concat(batches)
        data = _take(data, amg_utils.nms(data["boxes"], data["iou_preds"], self.box_nms_thresh))
        offset = np.array([x0, y0], np.int32)
        data["boxes"] = data["boxes"] + np.tile(offset, 2)
        data["points"] = data["points"] + offset.astype(np.float32)
        data["crop_boxes"] = np.tile(np.array(crop_box, np.int64), (len(data["boxes"]), 1))
        data["crop_index"] = np.full(len(data["boxes"]), crop_index, np.int32)
        return data

    # ---------------------------------------------------------------- point batches

    def _decode(self, points: np.ndarray, crop_hw, mask_input=None, multimask=True):
        """Decodes each click (crop pixels) as its own prompt, in padded fixed-size calls.

        Args:
          points: (n, 2) crop pixels, n <= points_per_batch.
          mask_input: (n, h, w) low-res logits or None.

        Returns:
          raw low-res logits (n, K, h, w) and predicted IoUs (n, K), as device arrays.
        """
        n, size = len(points), self.points_per_batch
        coords = transforms.transform_coords(points, self.predictor.resolution, crop_hw)
        coords = np.pad(coords, ((0, size - n), (0, 0)), mode="edge")[:, None]  # (B, 1, 2)
        labels = np.ones((size, 1), np.int32)
        if mask_input is not None:
            mask_input = jnp.pad(mask_input, ((0, size - n), (0, 0), (0, 0)), mode="edge")
            mask_input = mask_input[..., None]  # (B, h, w, 1)
        feats = self.predictor._features
        low_res, iou = _decode(
            self.model.module,
            self.model.variables,
            feats["image_embed"],
            feats["high_res_feats"],
            coords,
            labels,
            mask_input,
            multimask,
        )
        return low_res[:n], iou[:n]

    def _process_batch(self, points, crop_hw, crop_box, orig_hw) -> dict[str, np.ndarray]:
        low_res, iou = self._decode(points, crop_hw, multimask=self.multimask_output)
        k = low_res.shape[1]
        low_res = low_res.reshape(-1, *low_res.shape[2:])  # (n*K, h, w)
        iou = np.asarray(iou).reshape(-1)
        points = np.repeat(points, k, axis=0)
        if self.use_m2m:
            low_res, iou = self._refine(points, crop_hw, low_res)
        if self.min_mask_region_area > 0:
            low_res = transforms.fill_holes_and_remove_sprinkles(
                np.asarray(low_res),
                self.mask_threshold,
                self.min_mask_region_area,
                self.min_mask_region_area,
            )
        stability, boxes = mask_scoring.score_masks(
            low_res, tuple(crop_hw), self.mask_threshold, self.stability_score_offset
        )
        keep = np.ones(len(iou), bool)
        if self.pred_iou_thresh > 0.0:
            keep &= iou > self.pred_iou_thresh
        if self.stability_score_thresh > 0.0:
            keep &= stability >= self.stability_score_thresh
        orig_box = [0, 0, orig_hw[1], orig_hw[0]]
        keep &= ~amg_utils.is_box_near_crop_edge(boxes, crop_box, orig_box)
        index = np.flatnonzero(keep)
        return {
            "low_res": np.asarray(low_res)[index],
            "iou_preds": iou[index].astype(np.float32),
            "stability_score": stability[index],
            "boxes": boxes[index],
            "points": points[index],
        }

    def _refine(self, points, crop_hw, low_res):
        """Mask-to-mask refinement: each mask decoded again from its click and its own
        (clamped) logits as mask prompt, single-mask output. Returns ((n, h, w), (n,))."""
        prompts = jnp.clip(jnp.asarray(low_res), -LOW_RES_CLAMP, LOW_RES_CLAMP)
        refined, ious = [], []
        for i in range(0, len(points), self.points_per_batch):
            sl = slice(i, i + self.points_per_batch)
            masks, iou = self._decode(points[sl], crop_hw, prompts[sl], multimask=False)
            refined.append(masks[:, 0])
            ious.append(np.asarray(iou)[:, 0])
        return jnp.concatenate(refined), np.concatenate(ious)

    # ---------------------------------------------------------------- output masks

    def _full_size_masks(self, data, orig_hw) -> np.ndarray:
        """(N, H, W) bool image-size masks of the survivors, each from its crop's logits."""
        masks = np.zeros((len(data["iou_preds"]), *orig_hw), bool)
        crop_boxes = data["crop_boxes"]
        for crop in np.unique(data["crop_index"]):
            index = np.flatnonzero(data["crop_index"] == crop)
            x0, y0, x1, y1 = (int(v) for v in crop_boxes[index[0]])
            logits = data["low_res"][index]
            padded = power_of_two_bucket(len(index), 8)  # few distinct shapes -> few compiles
            logits = np.pad(logits, ((0, padded - len(index)), (0, 0), (0, 0)))
            crop_masks = mask_scoring.binary_masks(logits, (y1 - y0, x1 - x0), self.mask_threshold)
            masks[index, y0:y1, x0:x1] = np.asarray(crop_masks)[: len(index)]
        return masks


def _check_grid(grid, layer: int) -> np.ndarray:
    grid = np.asarray(grid, np.float64)
    if grid.ndim != 2 or grid.shape[1] != 2:
        raise ValueError(f"point_grids[{layer}] must be (P, 2) x, y in [0, 1]; got {grid.shape}")
    if ((grid < 0) | (grid > 1)).any():
        raise ValueError(f"point_grids[{layer}] has coordinates outside [0, 1]")
    return grid


def _concat(parts: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}


def _take(data: dict[str, np.ndarray], index: np.ndarray) -> dict[str, np.ndarray]:
    return {k: v[index] for k, v in data.items()}
