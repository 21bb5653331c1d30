"""Phase 1b of training `sam2.1_hiera_mini` from scratch: more single frames.

Starts from phase 1 (`shapes_mini_image`) cut off at step 3,750 and exported, with a fresh
schedule (AdamW 2e-4, 100 warmup steps, cosine over 6,000 steps); otherwise phase 1's data,
prompts and loss. Phase 1 cut off at 3,750 had held-out one-click image mIoU 0.38 with its
dice loss still falling; this phase continues the click-conditioning that is the slow part.

  sam2-jax train --config shapes_mini_image stop_at_step=3750
  sam2-jax train-export --workdir runs/shapes_mini_image --model sam2.1_hiera_mini \\
      --image-size 128 --out runs/shapes_mini_image/export
  sam2-jax train --config shapes_mini_image_more
  sam2-jax train-export --workdir runs/shapes_mini_image_more --model sam2.1_hiera_mini \\
      --image-size 128 --out runs/shapes_mini_image_more/export
"""

import dataclasses

from sam2_jax.train.config import load_config


def get_config():
    phase1 = load_config("shapes_mini_image")
    return dataclasses.replace(
        phase1,
        init_checkpoint="runs/shapes_mini_image/export",
        steps=6000,
        seed=1,
        workdir="runs/shapes_mini_image_more",
        optim=dataclasses.replace(phase1.optim, warmup_steps=100),
    )
