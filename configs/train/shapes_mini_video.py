"""Phase 2 of training `sam2.1_hiera_mini` from scratch: clips, so the memory learns to track.

Starts from phase 1b's export (`shapes_mini_image_more`: the image path segments clicked
shapes; memory attention and the memory encoder are still at their random init) and trains
the whole model on 4-frame clips of the synthetic moving-shapes videos with the reference's
prompt simulation: 1-2 initial conditioning frames prompted by a click, a box or the
ground-truth mask, correction clicks on up to 2 frames, the other frames tracked from memory.
A lower LR than the image phases (1e-4) so the image path is not undone while the memory
starts from random. Run after phase 1b and its export:

  sam2-jax train --config shapes_mini_video
  sam2-jax train-export --workdir runs/shapes_mini_video --model sam2.1_hiera_mini \\
      --image-size 128 --out runs/shapes_mini_video/export
"""

import dataclasses

from sam2_jax.train.config import CheckpointConfig, load_config


def get_config():
    image_phase = load_config("shapes_mini_image")
    return dataclasses.replace(
        image_phase,
        init_checkpoint="runs/shapes_mini_image_more/export",
        num_frames=4,
        batch_size=2,
        steps=400,
        seed=2,
        # Evaluation prompts one click on frame 0, so points are drawn more often than the
        # reference's 0.5; 2 correction clicks per corrected frame instead of 7.
        prompt_options=(
            ("prob_to_use_pt_input", 0.75),
            ("prob_to_use_box_input", 0.2),
            ("num_correction_pt_per_frame", 2),
        ),
        workdir="runs/shapes_mini_video",
        optim=dataclasses.replace(image_phase.optim, base_lr=1e-4, vision_lr=1e-4, warmup_steps=20),
        checkpoint=CheckpointConfig(every_steps=100, keep=2),
    )
