"""The declarative table from reference `state_dict` keys to Flax param paths.

Each rule pairs a torch key template with a Flax path template ('/'-separated, under
'params'); `{name}` placeholders stand for integer indices and are carried across. Every rule
works in both directions, which is what makes export back to PyTorch possible.
"""

from __future__ import annotations

import dataclasses
import functools
import re

from sam2_jax.convert.transforms import (
    CONV,
    IDENTITY,
    LINEAR,
    NCHW_PARAM,
    Transform,
)


@dataclasses.dataclass(frozen=True)
class Rule:
    torch: str  # e.g. "image_encoder.trunk.blocks.{i}.attn.qkv.weight"
    flax: str  # e.g. "image_encoder/trunk/blocks_{i}/attn/qkv/kernel"
    transform: Transform = IDENTITY

    @functools.cached_property
    def torch_regex(self) -> re.Pattern[str]:
        return _template_regex(self.torch)

    @functools.cached_property
    def flax_regex(self) -> re.Pattern[str]:
        return _template_regex(self.flax)


def _template_regex(template: str) -> re.Pattern[str]:
    parts = re.split(r"\{(\w+)\}", template)
    # even parts are literal text, odd parts placeholder names
    pattern = "".join(
        re.escape(part) if i % 2 == 0 else f"(?P<{part}>\\d+)" for i, part in enumerate(parts)
    )
    return re.compile(pattern + r"\Z")


def linear(torch: str, flax: str) -> list[Rule]:
    return [
        Rule(f"{torch}.weight", f"{flax}/kernel", LINEAR),
        Rule(f"{torch}.bias", f"{flax}/bias"),
    ]


def conv(torch: str, flax: str) -> list[Rule]:
    return [Rule(f"{torch}.weight", f"{flax}/kernel", CONV), Rule(f"{torch}.bias", f"{flax}/bias")]


def norm(torch: str, flax: str) -> list[Rule]:
    """LayerNorm / LayerNorm2d: weight -> scale."""
    return [Rule(f"{torch}.weight", f"{flax}/scale"), Rule(f"{torch}.bias", f"{flax}/bias")]


_TRUNK = "image_encoder.trunk"
_FTRUNK = "image_encoder/trunk"

IMAGE_ENCODER_RULES: list[Rule] = [
    Rule(f"{_TRUNK}.pos_embed", f"{_FTRUNK}/pos_embed", NCHW_PARAM),
    Rule(f"{_TRUNK}.pos_embed_window", f"{_FTRUNK}/pos_embed_window", NCHW_PARAM),
    *conv(f"{_TRUNK}.patch_embed.proj", f"{_FTRUNK}/patch_embed"),
    *norm(f"{_TRUNK}.blocks.{{i}}.norm1", f"{_FTRUNK}/blocks_{{i}}/norm1"),
    *norm(f"{_TRUNK}.blocks.{{i}}.norm2", f"{_FTRUNK}/blocks_{{i}}/norm2"),
    *linear(f"{_TRUNK}.blocks.{{i}}.attn.qkv", f"{_FTRUNK}/blocks_{{i}}/attn/qkv"),
    *linear(f"{_TRUNK}.blocks.{{i}}.attn.proj", f"{_FTRUNK}/blocks_{{i}}/attn/proj"),
    *linear(f"{_TRUNK}.blocks.{{i}}.proj", f"{_FTRUNK}/blocks_{{i}}/proj"),
    *linear(f"{_TRUNK}.blocks.{{i}}.mlp.layers.{{j}}", f"{_FTRUNK}/blocks_{{i}}/mlp/layers_{{j}}"),
    *conv("image_encoder.neck.convs.{k}.conv", "image_encoder/neck/convs_{k}"),
]

# Components add their rules in their own table_*.py modules, appended here. They import the
# helpers above, so these imports come after them.
from sam2_jax.convert.table_memory import MEMORY_RULES  # noqa: E402
from sam2_jax.convert.table_sam_heads import SAM_HEADS_RULES  # noqa: E402

RULES: list[Rule] = [*IMAGE_ENCODER_RULES, *SAM_HEADS_RULES, *MEMORY_RULES]
