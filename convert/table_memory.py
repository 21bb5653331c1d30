"""Converter rules for the memory path: memory encoder, memory attention and the top-level
temporal / "no memory" params (`maskmem_tpos_enc`, `no_mem_pos_enc`, `no_obj_embed_spatial`,
`obj_ptr_tpos_proj`).

Flax paths mirror the reference's attribute names; `nn.Sequential` / `ModuleList` index `k`
becomes `<name>_k`, keeping the reference's indices (the downsampler's GELUs at 2, 5, 8, 11
have no params).
"""

from __future__ import annotations

from sam2_jax.convert.table import Rule, conv, linear, norm
from sam2_jax.convert.transforms import TPOS_ENC

_ME, _FME = "memory_encoder", "memory_encoder"
_MA, _FMA = "memory_attention", "memory_attention"
_DS, _FDS = f"{_ME}.mask_downsampler.encoder", f"{_FME}/mask_downsampler/encoder"
_CX, _FCX = f"{_ME}.fuser.layers.{{i}}", f"{_FME}/fuser/layers_{{i}}"
_LAYER, _FLAYER = f"{_MA}.layers.{{l}}", f"{_FMA}/layers_{{l}}"


def _attention(torch: str, flax: str) -> list[Rule]:
    return [
        rule
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj")
        for rule in linear(f"{torch}.{proj}", f"{flax}/{proj}")
    ]


# Conv and LayerNorm2d both have `.weight`, so the downsampler's indices are listed one by one
# (4 stages for total stride 16 at stride 2: convs 0, 3, 6, 9, norms 1, 4, 7, 10, 1x1 conv 12).
MEMORY_ENCODER_RULES: list[Rule] = [
    *[rule for i in (0, 3, 6, 9, 12) for rule in conv(f"{_DS}.{i}", f"{_FDS}_{i}")],
    *[rule for i in (1, 4, 7, 10) for rule in norm(f"{_DS}.{i}", f"{_FDS}_{i}")],
    *conv(f"{_ME}.pix_feat_proj", f"{_FME}/pix_feat_proj"),
    Rule(f"{_CX}.gamma", f"{_FCX}/gamma"),
    *conv(f"{_CX}.dwconv", f"{_FCX}/dwconv"),  # depthwise (C, 1, 7, 7) -> (7, 7, 1, C)
    *norm(f"{_CX}.norm", f"{_FCX}/norm"),
    *linear(f"{_CX}.pwconv1", f"{_FCX}/pwconv1"),
    *linear(f"{_CX}.pwconv2", f"{_FCX}/pwconv2"),
    *conv(f"{_ME}.out_proj", f"{_FME}/out_proj"),
]

MEMORY_ATTENTION_RULES: list[Rule] = [
    *_attention(f"{_LAYER}.self_attn", f"{_FLAYER}/self_attn"),
    *_attention(f"{_LAYER}.cross_attn_image", f"{_FLAYER}/cross_attn_image"),
    *linear(f"{_LAYER}.linear1", f"{_FLAYER}/linear1"),
    *linear(f"{_LAYER}.linear2", f"{_FLAYER}/linear2"),
    *[rule for n in (1, 2, 3) for rule in norm(f"{_LAYER}.norm{n}", f"{_FLAYER}/norm{n}")],
    *norm(f"{_MA}.norm", f"{_FMA}/norm"),
]

MEMORY_RULES: list[Rule] = [
    Rule("maskmem_tpos_enc", "maskmem_tpos_enc", TPOS_ENC),  # (7, 1, 1, 64) <-> (7, 64)
    Rule("no_mem_pos_enc", "no_mem_pos_enc"),
    Rule("no_obj_embed_spatial", "no_obj_embed_spatial"),
    *linear("obj_ptr_tpos_proj", "obj_ptr_tpos_proj"),
    *MEMORY_ENCODER_RULES,
    *MEMORY_ATTENTION_RULES,
]
