"""`ExportedImagePredictor`: `SAM2ImagePredictor`'s `set_image` / `predict` on exported
programs (`image_encoder`, `prompt_decoder`), with the same pre- and post-processing
(`sam2_jax.transforms`, `sam2_jax.image.prompts`) and no model code."""

from __future__ import annotations

import os

import numpy as np

from sam2_jax import transforms
from sam2_jax.image.prompts import prepare_image_prompts
from sam2_jax.serving.artifacts import CompiledModel
from sam2_jax.serving.manifest import exported_points


def open_programs(folder: str | os.PathLike, backend: str):
    """The programs of an export-compiled folder: "jax" (the serialized `jax.export`
    programs) or "onnx" (its ONNX files, through onnxruntime)."""
    if backend == "jax":
        return CompiledModel(folder)
    if backend == "onnx":
        from sam2_jax.serving.onnx_runtime import OnnxModel

        return OnnxModel(folder)
    raise ValueError(f"backend must be 'jax' or 'onnx', got {backend!r}")


class ExportedImagePredictor:
    """Encode an image once, then predict masks from clicks, boxes and masks.

    Example:
      predictor = ExportedImagePredictor("out/compiled")
      predictor.set_image(image)  # (H, W, 3) uint8
      masks, scores, logits = predictor.predict(np.array([[x, y]]), np.array([1]))
    """

    def __init__(
        self,
        folder: str | os.PathLike,
        mask_threshold: float = 0.0,
        max_hole_area: float = 0.0,
        max_sprinkle_area: float = 0.0,
        *,
        backend: str = "jax",
    ) -> None:
        """Args:
        folder: written by `sam2-jax export-compiled`.
        mask_threshold, max_hole_area, max_sprinkle_area: as `SAM2ImagePredictor`'s.
        backend: "jax" or "onnx" (needs the folder's ONNX files: `--onnx`).
        """
        self.programs = open_programs(folder, backend)
        self.manifest = self.programs.manifest
        self.mask_threshold = mask_threshold
        self.max_hole_area = max_hole_area
        self.max_sprinkle_area = max_sprinkle_area
        self._features: dict | None = None
        self._orig_hw: tuple[int, int] | None = None

    @property
    def resolution(self) -> int:
        return self.manifest.image_size

    def set_image(self, image) -> None:
        """Encodes one image: (H, W, 3) uint8 RGB array or a PIL image (grayscale / RGBA as
        `transforms.as_rgb_uint8`)."""
        pixels = transforms.as_rgb_uint8(image)
        batch = np.asarray(transforms.preprocess(pixels, self.resolution))[None]
        self._features = self.programs("image_encoder", image=batch)
        self._orig_hw = tuple(pixels.shape[:2])

    def reset_predictor(self) -> None:
        self._features = None
        self._orig_hw = None

    def predict(
        self,
        point_coords: np.ndarray | None = None,
        point_labels: np.ndarray | None = None,
        box: np.ndarray | None = None,
        mask_input: np.ndarray | None = None,
        multimask_output: bool = True,
        return_logits: bool = False,
        normalize_coords: bool = True,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Masks for the image set with `set_image` (`SAM2ImagePredictor.predict`).

        Args:
          point_coords: (N, 2) or (B, N, 2) x, y in image pixels ([0, 1] with
            normalize_coords=False); at most `layout.max_points` per set, a box counting 2.
          point_labels: (N,) or (B, N): 1 positive, 0 negative.
          box: (4,) or (B, 4) x0, y0, x1, y1.
          mask_input: (1, m, m) or (B, 1, m, m) low-res logits from a previous call.
          multimask_output: three candidate masks instead of one.

        Returns:
          masks (C, H, W) (or (B, C, H, W)), IoU predictions (C,) (or (B, C)) and low-res
          logits (C, m, m) (or (B, C, m, m)) clamped to [-32, 32]; C = 3 or 1.
        """
        if self._features is None:
            raise RuntimeError("An image must be set with .set_image(...) before mask prediction.")
        side = 4 * self.manifest.embedding_size
        coords, labels, mask = prepare_image_prompts(
            point_coords,
            point_labels,
            box,
            mask_input,
            orig_hw=self._orig_hw,
            resolution=self.resolution,
            mask_side=side,
            normalize_coords=normalize_coords,
        )
        sets = coords.shape[0] if coords is not None else mask.shape[0] if mask is not None else 1
        key = "multimask" if multimask_output else "single"
        low_res, iou = [], []
        no_mask = np.zeros((1, side, side), np.float32)
        for i in range(sets):  # the program decodes one prompt set at a time
            points = None if coords is None else (coords[i], labels[i])
            padded, padded_labels, count = exported_points(points, self.manifest.layout)
            out = self.programs(
                "prompt_decoder",
                **self._features,
                point_coords=padded,
                point_labels=padded_labels,
                num_points=count,
                mask_input=no_mask if mask is None else mask[i, ..., 0][None],
                has_mask=np.array([mask is not None]),
            )
            low_res.append(np.asarray(out[f"{key}_low_res"])[0])
            iou.append(np.asarray(out[f"{key}_iou"])[0])
        masks, low_res = transforms.postprocess_low_res(
            np.stack(low_res),
            self._orig_hw,
            threshold=self.mask_threshold,
            max_hole_area=self.max_hole_area,
            max_sprinkle_area=self.max_sprinkle_area,
            return_logits=return_logits,
        )
        iou = np.stack(iou)
        squeeze = lambda a: a[0] if a.shape[0] == 1 else a  # as the reference's squeeze(0)
        return squeeze(masks), squeeze(iou), squeeze(low_res)
