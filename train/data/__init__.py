"""Training data: tfds ArrayRecord builders, reference augmentations, a checkpointable loader.

from sam2_jax.train.data import DataConfig, make_loader
it = make_loader(DataConfig(dataset_dir=".../moving_shapes/1.0.0", image_size=256),
                 split="train", seed=0, shard_index=0, shard_count=1)
batch = next(it)  # frames (B,T,S,S,3) uint8, masks (B,T,O,S,S) bool, object_valid (B,O)
state = it.get_state(); ...; it.set_state(state)
"""

from sam2_jax.train.data.augment import AugmentConfig
from sam2_jax.train.data.loader import DataConfig, data_source, make_loader

__all__ = ["AugmentConfig", "DataConfig", "data_source", "make_loader"]
