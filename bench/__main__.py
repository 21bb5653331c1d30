"""`python -m bench [--only NAME] [--repeats N]`: every benchmark, ours vs the reference."""

from __future__ import annotations

import argparse
import json

import torch

from bench import (
    automatic_mask_generator,
    flops,
    image_encoder,
    image_predictor,
    training_step,
    video,
    video_session,
)

BENCHMARKS = {
    "image_encoder": lambda repeats: [
        image_encoder.run(variant, 1024, repeats)
        for variant in ("sam2.1_hiera_t", "sam2.1_hiera_b+")
    ],
    "image_predictor": lambda repeats: [
        result
        for variant in ("sam2.1_hiera_t", "sam2.1_hiera_b+")
        for result in image_predictor.run(variant, 1024, repeats)
    ],
    "video": video.run_all,
    "video_session": video_session.run_all,
    "flops": lambda repeats: flops.run(repeats=repeats),
    "training_step": lambda repeats: [training_step.run(repeats)],
    "automatic_mask_generator": lambda repeats: [
        automatic_mask_generator.run("sam2.1_hiera_t", 1024, repeats)
    ],
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--only", choices=sorted(BENCHMARKS), action="append")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", help="also write the results to this file")
    args = parser.parse_args()
    torch.set_num_threads(torch.get_num_threads())  # the reference uses all cores, as JAX does
    results = {}
    for name in args.only or sorted(BENCHMARKS):
        results[name] = BENCHMARKS[name](args.repeats)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
