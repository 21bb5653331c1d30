"""The `sam2-jax` command line."""

from __future__ import annotations

import argparse
import contextlib
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


@contextlib.contextmanager
def _checkpoint_errors(command: str):
    """Turns the expected checkpoint errors into a one-line message and exit status 1."""
    from sam2_jax.convert import CheckpointMismatchError
    from sam2_jax.convert.checkpoint_io import CheckpointFormatError

    try:
        yield
    except (
        FileNotFoundError,
        FileExistsError,
        ImportError,
        CheckpointFormatError,
        CheckpointMismatchError,
    ) as err:
        raise SystemExit(f"sam2-jax {command}: error: {err}") from err


def _summary(config, params, **extra) -> str:
    import jax

    leaves = jax.tree.leaves(params)
    report = {
        "config": config.name,
        "image_size": config.image_size,
        "tensors": len(leaves),
        "parameters": int(sum(np.size(leaf) for leaf in leaves)),
        **extra,
    }
    return json.dumps(report, indent=2)


def convert_checkpoint(args: argparse.Namespace) -> None:
    from sam2_jax.convert import checkpoint_io

    with _checkpoint_errors("convert"):
        fmt = checkpoint_io.detect_format(args.checkpoint)
        config, params = checkpoint_io.load_checkpoint(
            args.checkpoint, args.config, image_size=args.image_size
        )
        out = checkpoint_io.save_converted(
            params, config, args.out, overwrite=args.overwrite, source=str(args.checkpoint)
        )
    print(_summary(config, params, source=str(args.checkpoint), format=fmt, out=str(out)))


def export_checkpoint(args: argparse.Namespace) -> None:
    from sam2_jax.convert import checkpoint_io

    with _checkpoint_errors("export"):
        config, params = checkpoint_io.load_checkpoint(args.checkpoint, args.config)
        out = checkpoint_io.write_reference_checkpoint(params, args.out)
    print(_summary(config, params, source=str(args.checkpoint), out=str(out)))


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

    conv = commands.add_parser(
        "convert",
        help="convert a reference .pt / Hugging Face checkpoint to a sam2_jax (Orbax) directory",
    )
    conv.add_argument("checkpoint", help="reference .pt, HF directory or .safetensors file")
    conv.add_argument("--config", default=None, help="e.g. sam2.1_hiera_t (default: guessed)")
    conv.add_argument("--out", required=True, help="output directory")
    conv.add_argument("--image-size", type=int, default=None, help="recorded default input size")
    conv.add_argument("--overwrite", action="store_true", help="replace an existing output")
    conv.set_defaults(run=convert_checkpoint)

    exp = commands.add_parser(
        "export", help="write any supported checkpoint as a reference-loadable {'model': ...} .pt"
    )
    exp.add_argument("checkpoint", help="converted directory (or reference .pt / HF checkpoint)")
    exp.add_argument("--config", default=None, help="default: recorded or guessed")
    exp.add_argument("--out", required=True, help="the .pt file to write")
    exp.set_defaults(run=export_checkpoint)

    args = parser.parse_args(argv)
    args.run(args)


if __name__ == "__main__":
    main()
