"""The bundled default model (`sam2.1_hiera_nano`, 128 px; 96 px up to session 6), trained
from scratch on synthetic moving shapes, in phases that each continue from the committed model.

Every phase starts from `sam2_jax/assets/default_model/` when it exists (random init
otherwise) with a fresh optimizer state, so training accumulates across sessions through the
committed export alone; run folders are scratch. A session runs one phase as long as it can
(rerunning the same command resumes its workdir), exports, evaluates on the held-out stream
and replaces the committed model only when it scores better (`sam2_jax/assets/default_model/
MODEL_CARD.md` lists every phase run so far, with its command and scores):

  sam2-jax train --config default_model:image
  sam2-jax train-export --workdir runs/default_model_image --model sam2.1_hiera_nano \\
      --image-size 128 --dtype float16 --out runs/default_model_image/export
  sam2-jax eval-synthetic --checkpoint runs/default_model_image/export --videos 20

Phases:
- `image`: single frames of fresh videos (made as they are read, never repeated), one click
  or a box plus one correction click per object, focal:dice 1:1 (the released 20:1 stalls
  from scratch, train/README.md), AdamW 2e-4 held constant after a short warmup, so a run can
  be cut off anywhere and continued by the next session.
- `video`: 4-frame clips, the reference's prompt simulation with clicks drawn more often
  (evaluation prompts one click) and 2 correction clicks: trains the memory.
"""

import dataclasses

from sam2_jax.build import DEFAULT_MODEL_DIR
from sam2_jax.train.config import CheckpointConfig, OptimConfig, TrainConfig


def _start() -> str | None:
    """The committed model to continue from (None before the first export: random init)."""
    return str(DEFAULT_MODEL_DIR) if (DEFAULT_MODEL_DIR / "config.json").is_file() else None


def get_config(phase: str = "image") -> TrainConfig:
    image = TrainConfig(
        model="sam2.1_hiera_nano",
        image_size=128,  # the synthetic videos' own size (96 px up to session 6)
        init_checkpoint=_start(),
        num_frames=1,
        max_objects=3,
        batch_size=4,
        steps=1_000_000,  # a constant LR: the length is where the session stops
        seed=0,
        compute_dtype="float32",  # a bfloat16 step was slower on CPU (0.83 vs 0.69 s)
        data="sam2_jax.train.task:synthetic_stream_data",
        data_options=(("video_frames", 1), ("num_workers", 1), ("num_threads", 1)),
        prompt_options=(("prob_to_use_box_input", 0.2), ("num_correction_pt_per_frame", 1)),
        loss_options=(("weight_mask", 1.0),),
        workdir="runs/default_model_image",
        log_every=50,
        optim=OptimConfig(
            base_lr=2e-4,
            vision_lr=2e-4,
            schedule="constant",
            warmup_steps=100,
            weight_decay=0.05,
            layer_decay=1.0,
            clip_norm=1.0,
        ),
        checkpoint=CheckpointConfig(every_steps=1000, keep=2),
    )
    if phase == "image":
        return image
    if phase == "video":
        return dataclasses.replace(
            image,
            num_frames=4,
            batch_size=2,
            seed=1,
            data_options=(("video_frames", 8), ("num_workers", 1), ("num_threads", 1)),
            prompt_options=(
                ("prob_to_use_pt_input", 0.75),
                ("prob_to_use_box_input", 0.2),
                ("num_correction_pt_per_frame", 2),
            ),
            workdir="runs/default_model_video",
            log_every=10,
            optim=dataclasses.replace(image.optim, base_lr=1e-4, vision_lr=1e-4, warmup_steps=20),
            checkpoint=CheckpointConfig(every_steps=200, keep=2),
        )
    raise ValueError(f"default_model has the phases 'image' and 'video', not {phase!r}")
