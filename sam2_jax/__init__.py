"""sam2_jax: SAM 2 (Segment Anything in Images and Videos) in JAX/Flax."""

from sam2_jax.automatic_mask_generator import SAM2AutomaticMaskGenerator
from sam2_jax.build import SAM2Model, build_sam2
from sam2_jax.config import CONFIGS, ModelConfig, get_config
from sam2_jax.image_predictor import SAM2ImagePredictor
from sam2_jax.modeling.sam2_base import SAM2
from sam2_jax.video_predictor import SAM2VideoPredictor, build_sam2_video_predictor

__all__ = [
    "CONFIGS",
    "SAM2",
    "ModelConfig",
    "SAM2AutomaticMaskGenerator",
    "SAM2ImagePredictor",
    "SAM2Model",
    "SAM2VideoPredictor",
    "build_sam2",
    "build_sam2_video_predictor",
    "get_config",
]
__version__ = "0.1.0"
