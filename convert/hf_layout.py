"""Renames between the Hugging Face `transformers` SAM 2 state_dict and the reference layout.

Hugging Face publishes SAM 2 / 2.1 as `Sam2Model` / `Sam2VideoModel` safetensors
(`facebook/sam2.1-hiera-tiny`, ...). Their key names come from transformers'
`models/sam2/convert_sam2_to_hf.py` and `models/sam2_video/convert_sam2_video_to_hf.py`
(`KEYS_TO_MODIFY_MAPPING` plus `replace_keys`), and the module attributes in
`models/sam2/modeling_sam2.py` / `models/sam2_video/modeling_sam2_video.py`. In short:

- prefixes: `image_encoder.trunk` -> `vision_encoder.backbone`, `image_encoder.neck` ->
  `vision_encoder.neck`, `sam_prompt_encoder` -> `prompt_encoder`, `sam_mask_decoder` ->
  `mask_decoder`;
- `norm*` -> `layer_norm*`, `out_proj` -> `o_proj`, `patch_embed.proj` ->
  `patch_embed.projection`, the neck's `convs.{k}.conv` -> `convs.{k}`;
- `MLP.layers.{0..n-1}` -> `FeedForward.proj_in / layers.{0..n-3} / proj_out`;
- `nn.Sequential` indices become names (`output_upscaling.0` -> `upscale_conv1`, mask
  downsampler `encoder.{3k}` -> `layers.{k}.conv`, ...);
- memory / pointer parameters get long names (`maskmem_tpos_enc` ->
  `memory_temporal_positional_encoding`, ...).

Every tensor keeps its shape and layout, with two exceptions: the four `(1, 256)` point
embeddings are stacked into one `(4, 256)` `nn.Embedding`, and the prompt encoder's Gaussian
matrix is stored under two names (a tied buffer; either may be absent from a file written by
`save_pretrained`). The table is declarative and works in both directions.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Mapping

import numpy as np

from sam2_jax.convert.state_dict import CheckpointMismatchError

WB = ("weight", "bias")  # an nn.Linear / nn.Conv2d / LayerNorm: two leaves
W = ("weight",)  # an nn.Embedding
BARE = ("",)  # an nn.Parameter: the path is the whole key


@dataclasses.dataclass(frozen=True)
class Rename:
    """One module (or bare parameter) path in both layouts; `{i}` stands for an index."""

    reference: str
    hf: str
    leaves: tuple[str, ...] = WB

    @functools.cached_property
    def reference_regex(self) -> re.Pattern[str]:
        return _template_regex(self.reference, self.leaves)

    @functools.cached_property
    def hf_regex(self) -> re.Pattern[str]:
        return _template_regex(self.hf, self.leaves)


def _template_regex(template: str, leaves: tuple[str, ...]) -> re.Pattern[str]:
    parts = re.split(r"\{(\w+)\}", template)
    body = "".join(
        re.escape(part) if i % 2 == 0 else f"(?P<{part}>\\d+)" for i, part in enumerate(parts)
    )
    suffix = "|".join(re.escape(f".{leaf}" if leaf else "") for leaf in leaves)
    return re.compile(f"{body}(?P<_leaf>{suffix})\\Z")


def _feed_forward(reference: str, hf: str, num_layers: int) -> list[Rename]:
    """Reference `MLP.layers.{k}` -> HF `FeedForward` (`proj_in`, `layers.{k-1}`, `proj_out`)."""
    names = ["proj_in", *(f"layers.{k}" for k in range(num_layers - 2)), "proj_out"]
    return [Rename(f"{reference}.layers.{k}", f"{hf}.{name}") for k, name in enumerate(names)]


def _attention(reference: str, hf: str) -> list[Rename]:
    return [
        *(Rename(f"{reference}.{p}_proj", f"{hf}.{p}_proj") for p in "qkv"),
        Rename(f"{reference}.out_proj", f"{hf}.o_proj"),
    ]


_TRUNK, _HF_TRUNK = "image_encoder.trunk", "vision_encoder.backbone"
_BLOCK, _HF_BLOCK = f"{_TRUNK}.blocks.{{i}}", f"{_HF_TRUNK}.blocks.{{i}}"
_MEM_LAYER = "memory_attention.layers.{l}"
_DOWNSAMPLER = "memory_encoder.mask_downsampler"
_FUSER, _HF_FUSER = "memory_encoder.fuser.layers.{i}", "memory_encoder.memory_fuser.layers.{i}"
_TWO_WAY = "sam_mask_decoder.transformer.layers.{l}"
_HF_TWO_WAY = "mask_decoder.transformer.layers.{l}"

RENAMES: tuple[Rename, ...] = (
    # SAM2Base's own parameters and heads.
    Rename("maskmem_tpos_enc", "memory_temporal_positional_encoding", BARE),
    Rename("no_mem_embed", "no_memory_embedding", BARE),
    Rename("no_mem_pos_enc", "no_memory_positional_encoding", BARE),
    Rename("no_obj_ptr", "no_object_pointer", BARE),
    Rename("no_obj_embed_spatial", "occlusion_spatial_embedding_parameter", BARE),  # 2.1
    Rename("mask_downsample", "mask_downsample"),
    *_feed_forward("obj_ptr_proj", "object_pointer_proj", 3),
    Rename("obj_ptr_tpos_proj", "temporal_positional_encoding_projection_layer"),  # 2.1
    # Image encoder: Hiera trunk and FPN neck.
    Rename(f"{_TRUNK}.pos_embed", f"{_HF_TRUNK}.pos_embed", BARE),
    Rename(f"{_TRUNK}.pos_embed_window", f"{_HF_TRUNK}.pos_embed_window", BARE),
    Rename(f"{_TRUNK}.patch_embed.proj", f"{_HF_TRUNK}.patch_embed.projection"),
    Rename(f"{_BLOCK}.norm1", f"{_HF_BLOCK}.layer_norm1"),
    Rename(f"{_BLOCK}.norm2", f"{_HF_BLOCK}.layer_norm2"),
    Rename(f"{_BLOCK}.attn.qkv", f"{_HF_BLOCK}.attn.qkv"),
    Rename(f"{_BLOCK}.attn.proj", f"{_HF_BLOCK}.attn.proj"),
    Rename(f"{_BLOCK}.proj", f"{_HF_BLOCK}.proj"),
    *_feed_forward(f"{_BLOCK}.mlp", f"{_HF_BLOCK}.mlp", 2),
    Rename("image_encoder.neck.convs.{k}.conv", "vision_encoder.neck.convs.{k}"),
    # Memory attention.
    *_attention(f"{_MEM_LAYER}.self_attn", f"{_MEM_LAYER}.self_attn"),
    *_attention(f"{_MEM_LAYER}.cross_attn_image", f"{_MEM_LAYER}.cross_attn_image"),
    Rename(f"{_MEM_LAYER}.linear1", f"{_MEM_LAYER}.linear1"),
    Rename(f"{_MEM_LAYER}.linear2", f"{_MEM_LAYER}.linear2"),
    *(Rename(f"{_MEM_LAYER}.norm{n}", f"{_MEM_LAYER}.layer_norm{n}") for n in (1, 2, 3)),
    Rename("memory_attention.norm", "memory_attention.layer_norm"),
    # Memory encoder: the downsampler's Sequential (conv, LayerNorm2d, GELU) x 4 + final conv.
    *(
        Rename(f"{_DOWNSAMPLER}.encoder.{3 * k}", f"{_DOWNSAMPLER}.layers.{k}.conv")
        for k in range(4)
    ),
    *(
        Rename(f"{_DOWNSAMPLER}.encoder.{3 * k + 1}", f"{_DOWNSAMPLER}.layers.{k}.layer_norm")
        for k in range(4)
    ),
    Rename(f"{_DOWNSAMPLER}.encoder.12", f"{_DOWNSAMPLER}.final_conv"),
    Rename("memory_encoder.pix_feat_proj", "memory_encoder.feature_projection"),
    Rename(f"{_FUSER}.gamma", f"{_HF_FUSER}.scale", BARE),
    Rename(f"{_FUSER}.dwconv", f"{_HF_FUSER}.depthwise_conv"),
    Rename(f"{_FUSER}.norm", f"{_HF_FUSER}.layer_norm"),
    Rename(f"{_FUSER}.pwconv1", f"{_HF_FUSER}.pointwise_conv1"),
    Rename(f"{_FUSER}.pwconv2", f"{_HF_FUSER}.pointwise_conv2"),
    Rename("memory_encoder.out_proj", "memory_encoder.projection"),
    # Prompt encoder (point_embeddings and the Gaussian matrix: see STACKED / GAUSSIAN below).
    Rename("sam_prompt_encoder.not_a_point_embed", "prompt_encoder.not_a_point_embed", W),
    Rename("sam_prompt_encoder.no_mask_embed", "prompt_encoder.no_mask_embed", W),
    Rename("sam_prompt_encoder.mask_downscaling.0", "prompt_encoder.mask_embed.conv1"),
    Rename("sam_prompt_encoder.mask_downscaling.1", "prompt_encoder.mask_embed.layer_norm1"),
    Rename("sam_prompt_encoder.mask_downscaling.3", "prompt_encoder.mask_embed.conv2"),
    Rename("sam_prompt_encoder.mask_downscaling.4", "prompt_encoder.mask_embed.layer_norm2"),
    Rename("sam_prompt_encoder.mask_downscaling.6", "prompt_encoder.mask_embed.conv3"),
    # Mask decoder: two-way transformer, output heads.
    *_attention(f"{_TWO_WAY}.self_attn", f"{_HF_TWO_WAY}.self_attn"),
    *_attention(
        f"{_TWO_WAY}.cross_attn_token_to_image", f"{_HF_TWO_WAY}.cross_attn_token_to_image"
    ),
    *_attention(
        f"{_TWO_WAY}.cross_attn_image_to_token", f"{_HF_TWO_WAY}.cross_attn_image_to_token"
    ),
    *_feed_forward(f"{_TWO_WAY}.mlp", f"{_HF_TWO_WAY}.mlp", 2),
    *(Rename(f"{_TWO_WAY}.norm{n}", f"{_HF_TWO_WAY}.layer_norm{n}") for n in (1, 2, 3, 4)),
    *_attention(
        "sam_mask_decoder.transformer.final_attn_token_to_image",
        "mask_decoder.transformer.final_attn_token_to_image",
    ),
    Rename(
        "sam_mask_decoder.transformer.norm_final_attn",
        "mask_decoder.transformer.layer_norm_final_attn",
    ),
    Rename("sam_mask_decoder.iou_token", "mask_decoder.iou_token", W),
    Rename("sam_mask_decoder.mask_tokens", "mask_decoder.mask_tokens", W),
    Rename("sam_mask_decoder.obj_score_token", "mask_decoder.obj_score_token", W),
    Rename("sam_mask_decoder.output_upscaling.0", "mask_decoder.upscale_conv1"),
    Rename("sam_mask_decoder.output_upscaling.1", "mask_decoder.upscale_layer_norm"),
    Rename("sam_mask_decoder.output_upscaling.3", "mask_decoder.upscale_conv2"),
    Rename("sam_mask_decoder.conv_s0", "mask_decoder.conv_s0"),
    Rename("sam_mask_decoder.conv_s1", "mask_decoder.conv_s1"),
    *_feed_forward(
        "sam_mask_decoder.output_hypernetworks_mlps.{m}",
        "mask_decoder.output_hypernetworks_mlps.{m}",
        3,
    ),
    *_feed_forward("sam_mask_decoder.iou_prediction_head", "mask_decoder.iou_prediction_head", 3),
    *_feed_forward("sam_mask_decoder.pred_obj_score_head", "mask_decoder.pred_obj_score_head", 3),
)


@dataclasses.dataclass(frozen=True)
class Stacked:
    """`count` reference tensors of shape (1, ...) <-> one HF tensor of shape (count, ...)."""

    reference: str  # with one `{i}` placeholder
    hf: str
    count: int


# Reference: four nn.Embedding(1, 256) (neg / pos point, box corners); HF: nn.Embedding(4, 256).
STACKED: tuple[Stacked, ...] = (
    Stacked(
        "sam_prompt_encoder.point_embeddings.{i}.weight", "prompt_encoder.point_embed.weight", 4
    ),
)

# The Gaussian matrix (2, 128) of the random-Fourier position encoding: one buffer in the
# reference, a tied pair in HF (`shared_image_embedding` on the model, `shared_embedding` in
# the prompt encoder). Written under both names; read from whichever is present.
GAUSSIAN = "sam_prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"
HF_GAUSSIAN = (
    "shared_image_embedding.positional_embedding",
    "prompt_encoder.shared_embedding.positional_embedding",
)


def _rename(key: str, direction: str) -> str | None:
    for rule in RENAMES:
        source = rule.reference_regex if direction == "to_hf" else rule.hf_regex
        found = source.match(key)
        if found:
            groups = found.groupdict()
            leaf = groups.pop("_leaf")
            target = rule.hf if direction == "to_hf" else rule.reference
            return target.format(**groups) + leaf
    return None


def reference_key_to_hf(key: str) -> str | None:
    """The HF name of one reference key, or None for the stacked/tied keys and unknown keys."""
    return _rename(key, "to_hf")


def reference_to_hf(state_dict: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Reference `SAM2Base.state_dict()` (name -> array) -> HF `Sam2VideoModel` layout.

    Raises:
      CheckpointMismatchError: naming reference keys that no rule covers.
    """
    out: dict[str, np.ndarray] = {}
    unknown = []
    stacked_keys = {}
    for stack in STACKED:
        pattern = _template_regex(stack.reference, BARE)
        stacked_keys.update({k: stack for k in state_dict if pattern.match(k)})
    for key, value in state_dict.items():
        if key in stacked_keys:
            continue
        if key == GAUSSIAN:
            for name in HF_GAUSSIAN:
                out[name] = value
            continue
        name = _rename(key, "to_hf")
        if name is None:
            unknown.append(key)
        else:
            out[name] = value
    for stack in STACKED:
        parts = [state_dict.get(stack.reference.format(i=i)) for i in range(stack.count)]
        if all(p is None for p in parts):
            continue
        missing = [stack.reference.format(i=i) for i, p in enumerate(parts) if p is None]
        if missing:
            raise CheckpointMismatchError(f"cannot stack {stack.hf}: missing {', '.join(missing)}")
        out[stack.hf] = np.concatenate([np.asarray(p) for p in parts], axis=0)  # (count, ...)
    if unknown:
        raise CheckpointMismatchError(
            f"reference keys with no HF name ({len(unknown)}): " + ", ".join(sorted(unknown))
        )
    return out


def hf_to_reference(state_dict: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """HF `Sam2Model` / `Sam2VideoModel` state_dict -> reference `SAM2Base` layout.

    Raises:
      CheckpointMismatchError: naming HF keys that no rule covers, a stacked tensor of the
        wrong length, or tied Gaussian matrices that differ.
    """
    out: dict[str, np.ndarray] = {}
    unknown = []
    stacks = {stack.hf: stack for stack in STACKED}
    gaussians = [np.asarray(state_dict[name]) for name in HF_GAUSSIAN if name in state_dict]
    for key, value in state_dict.items():
        if key in HF_GAUSSIAN:
            continue
        if key in stacks:
            stack, value = stacks[key], np.asarray(value)
            if value.shape[0] != stack.count:
                raise CheckpointMismatchError(
                    f"{key} has shape {value.shape}; expected {stack.count} rows"
                )
            for i in range(stack.count):
                out[stack.reference.format(i=i)] = value[i : i + 1]  # (1, ...)
            continue
        name = _rename(key, "from_hf")
        if name is None:
            unknown.append(key)
        else:
            out[name] = value
    if gaussians:
        if any(not np.array_equal(g, gaussians[0]) for g in gaussians[1:]):
            raise CheckpointMismatchError(f"the tied tensors {' and '.join(HF_GAUSSIAN)} differ")
        out[GAUSSIAN] = gaussians[0]
    if unknown:
        raise CheckpointMismatchError(
            f"HF keys with no reference name ({len(unknown)}): " + ", ".join(sorted(unknown))
        )
    return out
