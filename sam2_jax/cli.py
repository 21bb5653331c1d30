"""The `sam2-jax` command line."""

from __future__ import annotations

import argparse
import importlib.resources
import json
import time

import numpy as np

DEFAULT_IMAGE = "groceries.jpg"


def _bundled(name: str) -> str:
    return str(importlib.resources.files("sam2_jax") / "assets" / name)


def encode_image(args: argparse.Namespace) -> None:
    import jax
    import jax.numpy as jnp
    from PIL import Image

    from sam2_jax.config import get_config
    from sam2_jax.modeling.sam2_base import SAM2

    config = get_config(args.config, image_size=args.image_size)
    path = args.image or _bundled(DEFAULT_IMAGE)
    image = Image.open(path).convert("RGB")
    size = config.image_size
    pixels = np.asarray(image.resize((size, size), Image.BILINEAR), np.float32) / 255.0
    pixels = (pixels - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    batch = jnp.asarray(pixels[None], jnp.float32)

    model = SAM2(config)
    print(f"model {config.name} at {size}x{size}; weights: random (seed {args.seed})")
    variables = jax.jit(lambda key: model.init(key, batch, method=SAM2.forward_image))(
        jax.random.key(args.seed)
    )
    encode = jax.jit(lambda v, x: model.apply(v, x, method=SAM2.forward_image))
    start = time.perf_counter()
    jax.block_until_ready(encode(variables, batch))
    compile_s = time.perf_counter() - start
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        out = jax.block_until_ready(encode(variables, batch))
        times.append(time.perf_counter() - start)
    report = {
        "image": path,
        "image_hw": [image.height, image.width],
        "backbone_fpn": [list(f.shape) for f in out["backbone_fpn"]],
        "vision_pos_enc": [list(p.shape) for p in out["vision_pos_enc"]],
        "first_call_s (compile + run)": round(compile_s, 3),
        "median_encode_s": round(float(np.median(times)), 3),
        "backend": jax.default_backend(),
    }
    print(json.dumps(report, indent=2))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="sam2-jax", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    enc = commands.add_parser("encode-image", help="run the image encoder and report shapes/time")
    enc.add_argument("image", nargs="?", help=f"image file (default: bundled {DEFAULT_IMAGE})")
    enc.add_argument("--config", default="sam2.1_hiera_t")
    enc.add_argument("--image-size", type=int, default=None, help="default: the model's 1024")
    enc.add_argument("--repeats", type=int, default=3)
    enc.add_argument("--seed", type=int, default=0)
    enc.set_defaults(run=encode_image)

    args = parser.parse_args(argv)
    args.run(args)


if __name__ == "__main__":
    main()
