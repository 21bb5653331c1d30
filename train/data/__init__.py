"""Training data: tfds ArrayRecord builders, reference augmentations, a checkpointable loader."""
