"""Image encoder (`forward_image`): sam2_jax vs the reference, same weights, same image."""

from __future__ import annotations

import jax
import numpy as np
import torch

from bench.harness import measure_pair, print_comparison
from sam2_jax.modeling.sam2_base import SAM2
from tests import reference as ref


def run(variant: str, image_size: int, repeats: int) -> dict:
    torch_model = ref.build_reference(variant, image_size)
    model, variables = ref.convert_image_path(torch_model, variant, image_size)
    image = ref.normalize(ref.load_image("truck.jpg", image_size))[None]  # (1, S, S, 3)
    torch_image = ref.nchw(image)
    device_image = jax.device_put(image)

    encode = jax.jit(lambda v, x: model.apply(v, x, method=SAM2.forward_image))

    def reference_call():
        with torch.inference_mode():
            torch_model.forward_image(torch_image)

    ours, theirs = measure_pair(
        lambda: jax.block_until_ready(encode(variables, device_image)),
        reference_call,
        repeats=repeats,
    )

    # A benchmark of wrong outputs is worthless: check agreement on the timed input.
    with torch.inference_mode():
        expected = ref.nhwc(torch_model.forward_image(torch_image)["vision_features"])
    error = ref.relative_max_error(
        np.asarray(encode(variables, device_image)["vision_features"]), expected
    )
    result = print_comparison(f"forward_image {variant} @ {image_size}", ours, theirs)
    print(f"vision_features max relative difference vs reference: {error:.1e}")
    result["max_relative_difference"] = error
    return result
