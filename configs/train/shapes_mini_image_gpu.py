"""Phase 1 of training `sam2.1_hiera_mini` from scratch, sized for one GPU.

The single-frame objective of `shapes_mini_image` with the batch and LR of the H200 probe in
train/README.md ("How many images it takes": batch 32, AdamW 3e-4, total loss 0.43 after
~390 k images and still falling), on fresh synthetic videos made on read
(`synthetic_stream_data`, 12 grain worker processes; no dataset to prepare) instead of 1,000
prepared ones. 20,000 steps = 640 k images. Checkpoints every 1,000 steps, so a run cut off by
a time limit loses little and resumes with the same command. Export and evaluate as the CPU
phases:

  sam2-jax train --config shapes_mini_image_gpu
  sam2-jax train-export --workdir runs/shapes_mini_image_gpu --model sam2.1_hiera_mini \\
      --image-size 128 --out runs/shapes_mini_image_gpu/export
  sam2-jax eval-synthetic --checkpoint runs/shapes_mini_image_gpu/export --videos 50
"""

import dataclasses

from sam2_jax.train.config import CheckpointConfig, load_config


def get_config():
    cpu = load_config("shapes_mini_image")
    return dataclasses.replace(
        cpu,
        batch_size=32,
        steps=20000,
        seed=5,
        data="sam2_jax.train.task:synthetic_stream_data",
        # 8-frame videos: clips start on any frame, so objects that enter late are seen too.
        data_options=(("video_frames", 8), ("num_workers", 12), ("num_threads", 1)),
        workdir="runs/shapes_mini_image_gpu",
        log_every=50,
        optim=dataclasses.replace(cpu.optim, base_lr=3e-4, vision_lr=3e-4, warmup_steps=200),
        checkpoint=CheckpointConfig(every_steps=1000, keep=3),
    )
