"""Phase 1d of training `sam2.1_hiera_mini` from scratch: single frames of fresh videos.

Phase 1c (`shapes_mini_image_long`) at step 9,500 began to overfit its 1,000 prepared videos:
one-click image mIoU 0.80 on training videos against 0.73 on held-out ones (12 videos each,
frames 0 and 2), the gap having been 0.03 at phase 1b's end. This phase starts from that
step's export and draws new videos as it reads them (`synthetic_stream_data`: 4-frame
videos, made in one worker process), otherwise phase 1c's recipe. Rerun the same command to
resume it.

  sam2-jax train --config shapes_mini_image_long stop_at_step=9500
  sam2-jax train-export --workdir runs/shapes_mini_image_long --model sam2.1_hiera_mini \\
      --image-size 128 --step 9500 --out runs/shapes_mini_image_long/export_9500
  sam2-jax train --config shapes_mini_image_fresh
"""

import dataclasses

from sam2_jax.train.config import load_config


def get_config():
    phase1c = load_config("shapes_mini_image_long")
    return dataclasses.replace(
        phase1c,
        init_checkpoint="runs/shapes_mini_image_long/export_9500",
        steps=30000,
        seed=6,
        data="sam2_jax.train.task:synthetic_stream_data",
        data_options=(("video_frames", 4), ("num_workers", 1), ("num_threads", 1)),
        workdir="runs/shapes_mini_image_fresh",
    )
