"""Training and fine-tuning SAM 2: optimizer, sharding, checkpoints, the loop and its CLI.

Installed as `sam2_jax.train`.
"""
