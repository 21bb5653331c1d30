"""Fine-tune SAM 2.1 Hiera-B+ on a video dataset: the reference's MOSE fine-tune recipe.

As sam2.1_hiera_b+_MOSE_finetune.yaml: 1024 px, 8-frame clips, up to 3 objects, global batch 8
(1 per GPU on 8 GPUs), AdamW with cosine LRs 5e-6 (3e-6 for the image encoder) to a tenth,
layer decay 0.9, weight decay 0.1, clipping 0.1, bf16 compute, drop path 0.1. Set the weights
and the prepared dataset (`train/README.md`):

  sam2-jax train --config finetune_base_plus \\
      init_checkpoint=checkpoints/sam2.1_hiera_base_plus.pt \\
      "data_options=(('dataset_dir', 'data/tfds/vos_folder'),)" steps=40000
"""

from sam2_jax.train.config import CheckpointConfig, TrainConfig


def get_config(model: str = "sam2.1_hiera_b+") -> TrainConfig:
    return TrainConfig(
        model=model,
        image_size=1024,
        init_checkpoint=None,  # the released .pt / HF / converted weights to start from
        num_frames=8,
        max_objects=3,
        batch_size=8,
        steps=40_000,
        drop_path_rate=0.1,
        task="sam2_jax.train.task:sam2_task",
        data="sam2_jax.train.task:tfds_data",
        data_options=(("dataset_dir", "data/tfds/vos_folder"),),
        workdir=f"runs/finetune_{model}",
        log_every=10,
        checkpoint=CheckpointConfig(every_steps=1000, keep=3),
    )
