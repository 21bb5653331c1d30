"""CI-sized SAM 2 training run: the small `sam2.1_hiera_mini` at 128 px on synthetic shapes.

Random weights, 3-frame clips, 2 objects, batch 2, a few steps at a high LR, so that the loss
visibly falls within a couple of minutes on a CPU (most of it compiling the step):

  sam2-jax train --config smoke --workdir /tmp/smoke steps=20
"""

from sam2_jax.train.config import CheckpointConfig, OptimConfig, TrainConfig


def get_config() -> TrainConfig:
    return TrainConfig(
        model="sam2.1_hiera_mini",
        image_size=128,
        num_frames=3,
        max_objects=2,
        batch_size=2,
        steps=12,
        seed=0,
        compute_dtype="float32",  # a bfloat16 training step is slower on CPU
        task="sam2_jax.train.task:sam2_task",
        data="sam2_jax.train.task:synthetic_data",
        data_options=(("num_videos", 8), ("video_frames", 4), ("num_threads", 0)),
        # Clicks / boxes, never a ground-truth mask prompt: with few frames a mask prompt on
        # every conditioning frame makes the outputs the prompts themselves (zero loss, zero
        # gradient). One correction click per corrected frame keeps the graph small.
        prompt_options=(("prob_to_use_pt_input", 1.0), ("num_correction_pt_per_frame", 1)),
        workdir="runs/smoke",
        log_every=1,
        optim=OptimConfig(base_lr=5e-4, vision_lr=5e-4, warmup_steps=2, layer_decay=1.0),
        checkpoint=CheckpointConfig(every_steps=6, keep=2),
    )
