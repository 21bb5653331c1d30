"""sam2_jax: SAM 2 (Segment Anything in Images and Videos) in JAX/Flax.

The public names below are imported on first use, so that `import sam2_jax.serving` (which
runs exported programs without the model's code) does not import Flax.
"""

import importlib

# public name -> the module that defines it
_PUBLIC = {
    "CONFIGS": "sam2_jax.config",
    "ModelConfig": "sam2_jax.config",
    "get_config": "sam2_jax.config",
    "SAM2": "sam2_jax.modeling.sam2_base",
    "SAM2AutomaticMaskGenerator": "sam2_jax.amg.generator",
    "SAM2ImagePredictor": "sam2_jax.image.predictor",
    "SAM2Model": "sam2_jax.build",
    "build_sam2": "sam2_jax.build",
    "SAM2VideoPredictor": "sam2_jax.video.predictor",
    "build_sam2_video_predictor": "sam2_jax.video.predictor",
}

__all__ = sorted(_PUBLIC)
__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    module = _PUBLIC.get(name)
    if module is None:
        raise AttributeError(f"module 'sam2_jax' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
