"""`sam2-jax export-compiled`: the model as `jax.export` programs (and ONNX) that
`sam2_jax.serving` runs without the model's code."""
