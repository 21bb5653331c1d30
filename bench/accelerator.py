"""Video tracking frames/s on an accelerator: per model size, and against the object count.

    python -m bench.accelerator [--variants t,s,b+,l] [--objects 1,4,16] [--frames 64]
        [--image-size 1024] [--dtype bfloat16] [--repeats 3] [--json out.json]

`track_video` (the compiled scan: image encoder, memory attention, decoder, memory encoder
per frame) on `--frames` synthetic frames already on the device, objects clicked on frame 0,
random weights (the object-score bias keeps the objects present, so every frame runs the full
step). Compute in `--dtype` (parameters stay
float32), as the reference's README measures its A100 figures under bfloat16 autocast;
those figures (1 object, SAM 2.1, `torch.compile`d) are printed beside ours for scale: they
come from another machine and are not a same-machine ratio. The first call compiles and is
reported apart; frames/s is the median of the timed calls.

Runs on any backend (CPU included, where small sizes make a smoke check:
`--variants t --image-size 256 --frames 8 --objects 1,2 --dtype float32`).
"""

from __future__ import annotations

import argparse
import json

import jax
import jax.numpy as jnp
import numpy as np

from bench.harness import measure
from sam2_jax.config import get_config
from sam2_jax.modeling.sam2_base import SAM2, init_params
from sam2_jax.video.offline import ObjectPrompt, track_video

# The reference README's SAM 2.1 speeds (frames/s, A100, bfloat16, torch.compile), 1 object.
REFERENCE_A100_FPS = {"t": 91.2, "s": 84.8, "b+": 64.1, "l": 39.5}
VARIANTS = {"t": "sam2.1_hiera_t", "s": "sam2.1_hiera_s", "b+": "sam2.1_hiera_b+",
            "l": "sam2.1_hiera_l"}  # fmt: skip
OBJ_SCORE_BIAS = 2.0  # random weights call objects absent; this keeps them present


def _model(variant: str, image_size: int, dtype: str):
    module = SAM2(get_config(VARIANTS[variant], image_size=image_size), dtype=jnp.dtype(dtype))
    params = jax.jit(lambda k: init_params(module, k))(jax.random.key(0))
    head = params["sam_mask_decoder"]["pred_obj_score_head"]
    last = sorted(k for k in head if k.startswith("layers"))[-1]
    head[last]["bias"] = head[last]["bias"] + OBJ_SCORE_BIAS
    return module, {"params": params}


def run(variant: str, objects: int, *, frames: int, image_size: int, dtype: str, repeats: int):
    """frames/s of one tracking call of `objects` objects through `frames` frames."""
    module, variables = _model(variant, image_size, dtype)
    rng = np.random.default_rng(0)
    video = jax.device_put(rng.normal(size=(frames, image_size, image_size, 3)).astype("float32"))
    prompts = [
        ObjectPrompt(0, k, points=rng.uniform(0.2, 0.8, (1, 2)) * image_size, labels=np.ones(1))
        for k in range(objects)
    ]

    def call():
        result = track_video(module, variables, video, frames, prompts)
        return jax.block_until_ready(result.low_res_masks)

    m = measure(call, repeats=repeats)
    row = {
        "variant": VARIANTS[variant],
        "objects": objects,
        "frames": frames,
        "image_size": image_size,
        "dtype": dtype,
        "device": str(jax.devices()[0].device_kind),
        "first_call_s": round(m.first_call_s, 2),
        "frames_per_s": round(frames / m.median_s, 2),
    }
    if objects == 1 and image_size == 1024:
        row["reference_readme_a100_fps"] = REFERENCE_A100_FPS[variant]
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--variants", default="t,s,b+,l")
    parser.add_argument("--objects", default="1,4,16")
    parser.add_argument("--frames", type=int, default=64)
    parser.add_argument("--image-size", type=int, default=1024)
    parser.add_argument("--dtype", default="bfloat16", choices=["bfloat16", "float32"])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--json", help="also write the rows to this file")
    args = parser.parse_args()
    variants = [v.strip() for v in args.variants.split(",")]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variants {unknown}; known: {', '.join(VARIANTS)}")
    counts = [int(n) for n in args.objects.split(",")]
    common = dict(frames=args.frames, image_size=args.image_size, dtype=args.dtype,
                  repeats=args.repeats)  # fmt: skip
    rows = [run(v, 1, **common) for v in variants]  # every size, one object
    rows += [run(variants[0], n, **common) for n in counts if n != 1]  # objects, first size
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=2)


if __name__ == "__main__":
    main()
