"""From-scratch training of the small `sam2.1_hiera_mini` on synthetic moving shapes (CPU).

Not yet a recipe that works: the first run of this config (1,100 steps, ~70 min on a 2-core
CPU) did not learn prompt-conditioned masks; see "Training from scratch" in train/README.md.
Random init, 128 px, 6-frame clips
of up to 3 objects, the reference's iterative-prompt simulation (clicks, boxes, mask prompts,
correction clicks) and augmentations, AdamW with warmup and a cosine decay:

  sam2-jax train --config shapes_mini --workdir runs/shapes_mini
"""

from sam2_jax.train.config import CheckpointConfig, OptimConfig, TrainConfig


def get_config() -> TrainConfig:
    return TrainConfig(
        model="sam2.1_hiera_mini",
        image_size=128,
        num_frames=6,
        max_objects=3,
        batch_size=2,
        steps=1100,
        seed=0,
        compute_dtype="float32",  # bf16 matmuls are slow on CPU
        task="sam2_jax.train.task:sam2_task",
        data="sam2_jax.train.task:synthetic_data",
        data_options=(("num_videos", 1000), ("video_frames", 16), ("num_threads", 1)),
        # Eval prompts one click on frame 0, so points are drawn more often than the
        # reference's 0.5; 3 correction clicks per corrected frame instead of 7.
        prompt_options=(
            ("prob_to_use_pt_input", 0.75),
            ("prob_to_use_box_input", 0.3),
            ("num_correction_pt_per_frame", 3),
        ),
        workdir="runs/shapes_mini",
        log_every=10,
        # From scratch: a much larger LR than the fine-tune recipe, no layer decay, looser clip.
        optim=OptimConfig(
            base_lr=5e-4,
            vision_lr=5e-4,
            warmup_steps=80,
            weight_decay=0.05,
            layer_decay=1.0,
            clip_norm=1.0,
        ),
        checkpoint=CheckpointConfig(every_steps=100, keep=3),
    )
