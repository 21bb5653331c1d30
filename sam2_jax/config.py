"""Model configurations for the eight released SAM 2 / SAM 2.1 variants.

Names follow the reference's config files (`sam2_hiera_t`, `sam2.1_hiera_b+`, ...). Only the
Hiera trunk (and so the neck's input widths) differs between sizes; SAM 2.1 adds three
memory-related flags. `get_config(name, image_size=...)` gives a variant at another input
resolution, as the reference's `++model.image_size=...` override does.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class HieraConfig:
    """Hiera trunk hyper-parameters (reference `Hiera.__init__`)."""

    embed_dim: int = 96
    num_heads: int = 1
    stages: tuple[int, ...] = (2, 3, 16, 3)
    global_att_blocks: tuple[int, ...] = (12, 16, 20)
    window_spec: tuple[int, ...] = (8, 4, 14, 7)
    window_pos_embed_bkg_spatial_size: tuple[int, int] = (14, 14)
    q_pool: int = 3  # number of stage transitions that pool queries
    q_stride: tuple[int, int] = (2, 2)
    dim_mul: float = 2.0
    head_mul: float = 2.0
    mlp_ratio: float = 4.0
    drop_path_rate: float = 0.0

    @property
    def depth(self) -> int:
        return sum(self.stages)

    @property
    def stage_ends(self) -> tuple[int, ...]:
        """Index of the last block of every stage."""
        return tuple(sum(self.stages[: i + 1]) - 1 for i in range(len(self.stages)))

    @property
    def q_pool_blocks(self) -> tuple[int, ...]:
        """First block of each pooled stage: it halves the map and doubles the width."""
        return tuple(end + 1 for end in self.stage_ends[:-1])[: self.q_pool]

    @property
    def stage_dims(self) -> tuple[int, ...]:
        return tuple(int(self.embed_dim * self.dim_mul**i) for i in range(len(self.stages)))

    def block_specs(self) -> list[BlockSpec]:
        """Per-block (dim_in, dim_out, heads, window, q_stride), as the reference derives them.

        The first block of a new stage keeps the previous stage's window size (it is read
        before the stage counter moves) but already uses the new width and head count.
        """
        specs = []
        dim, heads, stage = self.embed_dim, self.num_heads, 1
        for i in range(self.depth):
            dim_out = dim
            window = self.window_spec[stage - 1]
            if i in self.global_att_blocks:
                window = 0
            if i - 1 in self.stage_ends:
                dim_out = int(dim * self.dim_mul)
                heads = int(heads * self.head_mul)
                stage += 1
            pooled = i in self.q_pool_blocks
            specs.append(BlockSpec(dim, dim_out, heads, window, self.q_stride if pooled else None))
            dim = dim_out
        return specs


@dataclasses.dataclass(frozen=True)
class BlockSpec:
    dim: int
    dim_out: int
    num_heads: int
    window_size: int  # 0 = global attention
    q_stride: tuple[int, int] | None


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """A full SAM 2 model. Defaults are the values shared by all released configs."""

    name: str
    trunk: HieraConfig
    image_size: int = 1024
    backbone_stride: int = 16
    d_model: int = 256  # neck / decoder / memory-attention width
    mem_dim: int = 64
    fpn_top_down_levels: tuple[int, ...] = (2, 3)
    scalp: int = 1  # number of lowest-resolution FPN levels dropped
    num_maskmem: int = 7
    sigmoid_scale_for_mem_enc: float = 20.0
    sigmoid_bias_for_mem_enc: float = -10.0
    max_obj_ptrs_in_encoder: int = 16
    memory_attention_layers: int = 4
    # Inference-time fallback from an unstable single mask to the best of the 3 multimask
    # outputs; the reference's builders (image and video predictors) switch it on. Never
    # applied in training mode.
    dynamic_multimask_via_stability: bool = True
    dynamic_multimask_stability_delta: float = 0.05
    dynamic_multimask_stability_thresh: float = 0.98
    # SAM 2.1 additions.
    no_obj_embed_spatial: bool = False
    add_tpos_enc_to_obj_ptrs: bool = False
    proj_tpos_enc_in_obj_ptrs: bool = False
    use_signed_tpos_enc_to_obj_ptrs: bool = False

    @property
    def backbone_channel_list(self) -> tuple[int, ...]:
        """Trunk stage widths, lowest resolution first (the neck's `convs[k]` input widths)."""
        return tuple(reversed(self.trunk.stage_dims))

    @property
    def embedding_size(self) -> int:
        """Side of the top-level (stride-16) feature map."""
        return self.image_size // self.backbone_stride

    @property
    def is_sam21(self) -> bool:
        return self.no_obj_embed_spatial


_TRUNKS = {
    "t": HieraConfig(
        embed_dim=96,
        num_heads=1,
        stages=(1, 2, 7, 2),
        global_att_blocks=(5, 7, 9),
        window_pos_embed_bkg_spatial_size=(7, 7),
    ),
    "s": HieraConfig(
        embed_dim=96,
        num_heads=1,
        stages=(1, 2, 11, 2),
        global_att_blocks=(7, 10, 13),
        window_pos_embed_bkg_spatial_size=(7, 7),
    ),
    "b+": HieraConfig(embed_dim=112, num_heads=2),
    "l": HieraConfig(
        embed_dim=144,
        num_heads=2,
        stages=(2, 6, 36, 4),
        global_att_blocks=(23, 33, 43),
        window_pos_embed_bkg_spatial_size=(7, 7),
        window_spec=(8, 4, 16, 8),
    ),
}

_SAM21_FLAGS = dict(
    no_obj_embed_spatial=True,
    add_tpos_enc_to_obj_ptrs=True,
    proj_tpos_enc_in_obj_ptrs=True,
    use_signed_tpos_enc_to_obj_ptrs=True,
)


def _build_registry() -> dict[str, ModelConfig]:
    registry = {}
    for size, trunk in _TRUNKS.items():
        registry[f"sam2_hiera_{size}"] = ModelConfig(name=f"sam2_hiera_{size}", trunk=trunk)
        name21 = f"sam2.1_hiera_{size}"
        registry[name21] = ModelConfig(name=name21, trunk=trunk, **_SAM21_FLAGS)
    return registry


CONFIGS: dict[str, ModelConfig] = _build_registry()

# Not a released variant: a small SAM 2.1 for training from scratch on a CPU (the bundled
# moving-shapes model). A 7-block Hiera of width 48 (the released tiny: 12 blocks of width
# 96), 2 memory-attention layers instead of 4, 128 px input; decoder, prompt encoder, memory
# encoder and the memory bank are those of the released models.
CONFIGS["sam2.1_hiera_mini"] = ModelConfig(
    name="sam2.1_hiera_mini",
    trunk=HieraConfig(
        embed_dim=48,
        num_heads=1,
        stages=(1, 2, 3, 1),
        global_att_blocks=(5,),
        window_spec=(8, 4, 8, 4),
        window_pos_embed_bkg_spatial_size=(7, 7),
    ),
    image_size=128,
    memory_attention_layers=2,
    **_SAM21_FLAGS,
)

# Not a released variant: the project's bundled default model, trained from scratch on
# synthetic moving shapes by `configs/train/default_model.py` (sized for a 2-core CPU: ~3.4x
# the mini's training images per second). A 5-block Hiera of width 32, decoder / neck /
# memory-attention width 128, 32-channel memories, 2 memory-attention layers, 96 px input.
CONFIGS["sam2.1_hiera_nano"] = ModelConfig(
    name="sam2.1_hiera_nano",
    trunk=HieraConfig(
        embed_dim=32,
        num_heads=1,
        stages=(1, 1, 2, 1),
        global_att_blocks=(3,),
        window_spec=(8, 4, 8, 4),
        window_pos_embed_bkg_spatial_size=(7, 7),
    ),
    image_size=96,
    d_model=128,
    mem_dim=32,
    memory_attention_layers=2,
    **_SAM21_FLAGS,
)

# Names users also write: the checkpoint file stems of the releases.
_ALIASES = {
    f"{prefix}_hiera_{long}": f"{prefix}_hiera_{short}"
    for prefix in ("sam2", "sam2.1")
    for long, short in (("tiny", "t"), ("small", "s"), ("base_plus", "b+"), ("large", "l"))
}


def get_config(name: str, *, image_size: int | None = None) -> ModelConfig:
    """Returns the named variant, optionally at another square input size.

    Args:
      name: a reference config name (`sam2.1_hiera_t`) or checkpoint stem
        (`sam2.1_hiera_tiny`); a trailing `.yaml` is accepted.
      image_size: input side in pixels; a multiple of 32 so every Hiera stage is whole.
    """
    key = name.removesuffix(".yaml").split("/")[-1]
    key = _ALIASES.get(key, key)
    if key not in CONFIGS:
        raise ValueError(f"unknown model config {name!r}; known: {', '.join(sorted(CONFIGS))}")
    config = CONFIGS[key]
    if image_size is not None:
        if image_size <= 0 or image_size % 32:
            raise ValueError(f"image_size must be a positive multiple of 32, got {image_size}")
        config = dataclasses.replace(config, image_size=image_size)
    return config
