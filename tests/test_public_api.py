"""The names the README and the docs use are importable from the package top."""

import sam2_jax
from sam2_jax.amg.generator import SAM2AutomaticMaskGenerator
from sam2_jax.image.predictor import SAM2ImagePredictor
from sam2_jax.video.predictor import SAM2VideoPredictor, build_sam2_video_predictor


def test_predictors_and_builders_are_importable_from_the_package_top():
    assert sam2_jax.SAM2ImagePredictor is SAM2ImagePredictor
    assert sam2_jax.SAM2VideoPredictor is SAM2VideoPredictor
    assert sam2_jax.SAM2AutomaticMaskGenerator is SAM2AutomaticMaskGenerator
    assert sam2_jax.build_sam2_video_predictor is build_sam2_video_predictor
    assert callable(sam2_jax.build_sam2)


def test_every_name_in_all_exists():
    missing = [name for name in sam2_jax.__all__ if not hasattr(sam2_jax, name)]
    assert not missing, f"sam2_jax.__all__ names {missing}, which the package does not define"
