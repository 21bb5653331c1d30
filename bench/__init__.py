"""Side-by-side benchmarks: sam2_jax vs the reference PyTorch SAM 2, same weights, same input."""
