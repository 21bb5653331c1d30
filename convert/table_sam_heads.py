"""Converter rules for the SAM heads: prompt encoder, mask decoder, object-pointer projection
and the top-level params used around them (`no_mem_embed`, `no_obj_ptr`, `mask_downsample`).

Flax paths mirror the reference's attribute names; `nn.Sequential` / `ModuleList` index `k`
becomes `layers_k` or `<name>_k`, so the reference's layer indices are kept (the GELUs in
between have no params).
"""

from __future__ import annotations

from sam2_jax.convert.table import Rule, conv, linear, norm
from sam2_jax.convert.transforms import CONV_TRANSPOSE

_PE, _FPE = "sam_prompt_encoder", "sam_prompt_encoder"
_MD, _FMD = "sam_mask_decoder", "sam_mask_decoder"
_TR, _FTR = f"{_MD}.transformer", f"{_FMD}/transformer"


def _embedding(torch: str, flax: str) -> list[Rule]:
    """nn.Embedding weight (num, dim) -> nn.Embed embedding (num, dim)."""
    return [Rule(f"{torch}.weight", f"{flax}/embedding")]


def _conv_transpose(torch: str, flax: str) -> list[Rule]:
    return [
        Rule(f"{torch}.weight", f"{flax}/kernel", CONV_TRANSPOSE),
        Rule(f"{torch}.bias", f"{flax}/bias"),
    ]


def _attention(torch: str, flax: str) -> list[Rule]:
    return [
        rule
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj")
        for rule in linear(f"{torch}.{proj}", f"{flax}/{proj}")
    ]


PROMPT_ENCODER_RULES: list[Rule] = [
    Rule(
        f"{_PE}.pe_layer.positional_encoding_gaussian_matrix",
        f"{_FPE}/pe_layer/positional_encoding_gaussian_matrix",
    ),
    *_embedding(f"{_PE}.point_embeddings.{{i}}", f"{_FPE}/point_embeddings_{{i}}"),
    *_embedding(f"{_PE}.not_a_point_embed", f"{_FPE}/not_a_point_embed"),
    *_embedding(f"{_PE}.no_mask_embed", f"{_FPE}/no_mask_embed"),
    *conv(f"{_PE}.mask_downscaling.0", f"{_FPE}/mask_downscaling/layers_0"),
    *norm(f"{_PE}.mask_downscaling.1", f"{_FPE}/mask_downscaling/layers_1"),
    *conv(f"{_PE}.mask_downscaling.3", f"{_FPE}/mask_downscaling/layers_3"),
    *norm(f"{_PE}.mask_downscaling.4", f"{_FPE}/mask_downscaling/layers_4"),
    *conv(f"{_PE}.mask_downscaling.6", f"{_FPE}/mask_downscaling/layers_6"),
]

TWO_WAY_TRANSFORMER_RULES: list[Rule] = [
    *[
        rule
        for attn in ("self_attn", "cross_attn_token_to_image", "cross_attn_image_to_token")
        for rule in _attention(f"{_TR}.layers.{{i}}.{attn}", f"{_FTR}/layers_{{i}}/{attn}")
    ],
    *linear(f"{_TR}.layers.{{i}}.mlp.layers.{{j}}", f"{_FTR}/layers_{{i}}/mlp/layers_{{j}}"),
    *norm(f"{_TR}.layers.{{i}}.norm{{n}}", f"{_FTR}/layers_{{i}}/norm{{n}}"),
    *_attention(f"{_TR}.final_attn_token_to_image", f"{_FTR}/final_attn_token_to_image"),
    *norm(f"{_TR}.norm_final_attn", f"{_FTR}/norm_final_attn"),
]

MASK_DECODER_RULES: list[Rule] = [
    *conv(f"{_MD}.conv_s0", f"{_FMD}/conv_s0"),
    *conv(f"{_MD}.conv_s1", f"{_FMD}/conv_s1"),
    *TWO_WAY_TRANSFORMER_RULES,
    *_embedding(f"{_MD}.iou_token", f"{_FMD}/iou_token"),
    *_embedding(f"{_MD}.mask_tokens", f"{_FMD}/mask_tokens"),
    *_embedding(f"{_MD}.obj_score_token", f"{_FMD}/obj_score_token"),
    *_conv_transpose(f"{_MD}.output_upscaling.0", f"{_FMD}/output_upscaling/layers_0"),
    *norm(f"{_MD}.output_upscaling.1", f"{_FMD}/output_upscaling/layers_1"),
    *_conv_transpose(f"{_MD}.output_upscaling.3", f"{_FMD}/output_upscaling/layers_3"),
    *linear(
        f"{_MD}.output_hypernetworks_mlps.{{i}}.layers.{{j}}",
        f"{_FMD}/output_hypernetworks_mlps_{{i}}/layers_{{j}}",
    ),
    *linear(f"{_MD}.iou_prediction_head.layers.{{j}}", f"{_FMD}/iou_prediction_head/layers_{{j}}"),
    *linear(f"{_MD}.pred_obj_score_head.layers.{{j}}", f"{_FMD}/pred_obj_score_head/layers_{{j}}"),
]

SAM_HEADS_RULES: list[Rule] = [
    *PROMPT_ENCODER_RULES,
    *MASK_DECODER_RULES,
    *linear("obj_ptr_proj.layers.{j}", "obj_ptr_proj/layers_{j}"),
    *conv("mask_downsample", "mask_downsample"),
    Rule("no_mem_embed", "no_mem_embed"),
    Rule("no_obj_ptr", "no_obj_ptr"),
]
