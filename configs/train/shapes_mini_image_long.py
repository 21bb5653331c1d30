"""Phase 1c of training `sam2.1_hiera_mini` from scratch: the long single-frame run.

Phase 1b (`shapes_mini_image_more`) ended with held-out one-click image mIoU 0.64 and a
train/test gap of only ~0.03 (12 videos of each split): the model underfits, and more images
are what lowers the loss (see "Training from scratch" in train/README.md). This phase starts
from phase 1b's export with a cosine over 30,000 steps (AdamW 2e-4, 100 warmup steps), ~4 h on
the 2-core CPU: rerun the same command to resume it where it stopped (checkpoints every 250
steps; a resumed run must keep this recipe, only `steps` / `stop_at_step` may change).

  sam2-jax train --config shapes_mini_image_more    # phase 1b, then its train-export
  sam2-jax train --config shapes_mini_image_long
  sam2-jax train-export --workdir runs/shapes_mini_image_long --model sam2.1_hiera_mini \\
      --image-size 128 --out runs/shapes_mini_image_long/export
"""

import dataclasses

from sam2_jax.train.config import load_config


def get_config():
    phase1b = load_config("shapes_mini_image_more")
    return dataclasses.replace(
        phase1b,
        init_checkpoint="runs/shapes_mini_image_more/export",
        steps=30000,
        seed=4,
        workdir="runs/shapes_mini_image_long",
    )
