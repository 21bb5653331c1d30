"""The reference's Hydra overrides that build its `SAM2Base` with the shapes of a ModelConfig.

A released variant needs at most `++model.image_size=...`; a variant of our own (the small
models trained from scratch, e.g. `sam2.1_hiera_nano`) also changes the trunk, the widths and
the layer counts. With these overrides on the released config of the same family
(`configs/sam2.1/sam2.1_hiera_t.yaml`), the reference builds a model whose state_dict is the
one `export_state_dict` writes for that variant:

    from sam2.build_sam import build_sam2
    from sam2_jax.convert.reference_config import reference_build_args

    config_file, overrides = reference_build_args(get_config("sam2.1_hiera_nano"))
    model = build_sam2(config_file, "nano.pt", hydra_overrides_extra=overrides)
"""

from __future__ import annotations

from sam2_jax.config import CONFIGS, ModelConfig


def _list(values) -> str:
    return "[" + ",".join(str(v) for v in values) + "]"


def reference_build_args(config: ModelConfig) -> tuple[str, list[str]]:
    """(reference config file, Hydra overrides) that build `config` in the reference.

    Released variants use their own file; others the released tiny of their family, with
    every field that differs from it overridden.
    """
    family = "sam2.1" if config.is_sam21 else "sam2"
    base = config.name if config.name in _RELEASED else f"{family}_hiera_t"
    released = CONFIGS[base]
    overrides = []
    if config.image_size != 1024:
        overrides.append(f"++model.image_size={config.image_size}")
    if base == config.name:
        return f"configs/{family}/{base}.yaml", overrides
    trunk, ref = config.trunk, released.trunk
    enc = "++model.image_encoder"
    for field, key in (
        ("embed_dim", "embed_dim"),
        ("num_heads", "num_heads"),
        ("stages", "stages"),
        ("global_att_blocks", "global_att_blocks"),
        ("window_spec", "window_spec"),
        ("window_pos_embed_bkg_spatial_size", "window_pos_embed_bkg_spatial_size"),
    ):
        value = getattr(trunk, field)
        if value != getattr(ref, field):
            overrides.append(
                f"{enc}.trunk.{key}={_list(value) if isinstance(value, tuple) else value}"
            )
    if config.backbone_channel_list != released.backbone_channel_list:
        overrides.append(f"{enc}.neck.backbone_channel_list={_list(config.backbone_channel_list)}")
    d, m = config.d_model, config.mem_dim
    if d != released.d_model:
        attn = "++model.memory_attention"
        overrides += [
            f"{enc}.neck.d_model={d}",
            f"{enc}.neck.position_encoding.num_pos_feats={d}",
            f"{attn}.d_model={d}",
            f"{attn}.layer.d_model={d}",
            f"{attn}.layer.self_attention.embedding_dim={d}",
            f"{attn}.layer.cross_attention.embedding_dim={d}",
            f"++model.memory_encoder.in_dim={d}",
            f"++model.memory_encoder.mask_downsampler.embed_dim={d}",
            f"++model.memory_encoder.fuser.layer.dim={d}",
        ]
    if m != released.mem_dim:
        overrides += [
            f"++model.memory_attention.layer.cross_attention.kv_in_dim={m}",
            f"++model.memory_encoder.out_dim={m}",
            f"++model.memory_encoder.position_encoding.num_pos_feats={m}",
        ]
    if config.memory_attention_layers != released.memory_attention_layers:
        overrides.append(f"++model.memory_attention.num_layers={config.memory_attention_layers}")
    if config.num_maskmem != released.num_maskmem:
        overrides.append(f"++model.num_maskmem={config.num_maskmem}")
    return f"configs/{family}/{base}.yaml", overrides


_RELEASED = {
    f"{family}_hiera_{size}" for family in ("sam2", "sam2.1") for size in ("t", "s", "b+", "l")
}
