"""The SAM 2 model as one Flax module with one method per stage of the data flow.

Submodule names follow the reference's `SAM2Base` attributes so the converter's table stays
mechanical. Call a stage with `model.apply(variables, ..., method=SAM2.forward_image)`.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from sam2_jax.config import ModelConfig
from sam2_jax.modeling.image_encoder import ImageEncoder
from sam2_jax.modeling.mask_decoder import MaskDecoder
from sam2_jax.modeling.memory_attention import MemoryAttention
from sam2_jax.modeling.memory_encoder import MemoryEncoder


class SAM2(nn.Module):
    config: ModelConfig
    dtype: jnp.dtype | None = None

    def setup(self):
        cfg = self.config
        self.image_encoder = ImageEncoder(cfg, dtype=self.dtype)
        self.sam_mask_decoder = MaskDecoder(cfg.d_model, dtype=self.dtype)
        self._setup_memory()

    def _setup_memory(self) -> None:
        """Memory encoder, memory attention and the temporal / "no memory" parameters."""
        cfg = self.config
        self.memory_encoder = MemoryEncoder(cfg.mem_dim, cfg.d_model, dtype=self.dtype)
        self.memory_attention = MemoryAttention(cfg.d_model, dtype=self.dtype)
        init = nn.initializers.truncated_normal(0.02)
        # Stored (num_maskmem, mem_dim); the reference's is (num_maskmem, 1, 1, mem_dim).
        # Row num_maskmem - t_pos - 1 is added to a memory of temporal slot t_pos.
        self.maskmem_tpos_enc = self.param("maskmem_tpos_enc", init, (cfg.num_maskmem, cfg.mem_dim))
        self.no_mem_pos_enc = self.param("no_mem_pos_enc", init, (1, 1, cfg.d_model))
        self.no_obj_embed_spatial = (
            self.param("no_obj_embed_spatial", init, (1, cfg.mem_dim))
            if cfg.no_obj_embed_spatial
            else None
        )  # SAM 2.1: added to the spatial memory of frames where the object is absent
        self.obj_ptr_tpos_proj = (
            nn.Dense(cfg.mem_dim, dtype=self.dtype) if cfg.proj_tpos_enc_in_obj_ptrs else None
        )  # SAM 2.1: temporal sine encoding of pointers (d_model) -> mem_dim

    def forward_image(
        self, images: jax.Array, deterministic: bool = True
    ) -> dict[str, list[jax.Array] | jax.Array]:
        """Encodes a batch of preprocessed images.

        Args:
          images: (B, S, S, 3) float, ImageNet-normalized, S = config.image_size.

        Returns:
          dict with
            backbone_fpn: [(B, S/4, S/4, 32), (B, S/8, S/8, 64), (B, S/16, S/16, 256)]; the
              first two already projected by the mask decoder's conv_s0 / conv_s1.
            vision_pos_enc: [(B, S/4, S/4, 256), (B, S/8, S/8, 256), (B, S/16, S/16, 256)].
            vision_features: the last backbone_fpn entry.
        """
        expected = (self.config.image_size, self.config.image_size, 3)
        if images.ndim != 4 or images.shape[1:] != expected:
            raise ValueError(f"expected images of shape (B, {expected}), got {images.shape}")
        features, positions = self.image_encoder(images, deterministic)
        feat_s0, feat_s1 = self.sam_mask_decoder.project_high_res_features(features[0], features[1])
        features = [feat_s0, feat_s1, *features[2:]]
        return {
            "backbone_fpn": features,
            "vision_pos_enc": positions,
            "vision_features": features[-1],
        }

    def initialize_memory(self) -> None:
        """Touches every memory submodule and parameter (dummy inputs; used by init)."""
        cfg = self.config
        emb, dim, tokens = cfg.embedding_size, cfg.d_model, cfg.embedding_size**2
        features = jnp.zeros((1, emb, emb, dim), jnp.float32)
        masks = jnp.zeros((1, cfg.image_size, cfg.image_size, 1), jnp.float32)
        memory, memory_pos = self.memory_encoder(features, masks)
        curr = features.reshape(1, tokens, dim)
        self.memory_attention(
            curr,
            curr,
            memory.reshape(1, tokens, cfg.mem_dim),
            memory_pos.reshape(1, tokens, cfg.mem_dim),
        )
        if self.obj_ptr_tpos_proj is not None:
            self.obj_ptr_tpos_proj(jnp.zeros((1, dim), jnp.float32))

    def initialize_all(self, images: jax.Array) -> None:
        """Touches every submodule and parameter once, so `init` with this method creates the
        complete params tree (all keys of a reference checkpoint). Each component extends it."""
        self.forward_image(images)
        self.initialize_memory()


def init_params(model: SAM2, rng: jax.Array) -> dict:
    """Random params for the whole model (the `params` collection)."""
    size = model.config.image_size
    images = jnp.zeros((1, size, size, 3), jnp.float32)
    return model.init(rng, images, method=SAM2.initialize_all)["params"]


def param_shapes(model: SAM2) -> dict:
    """The params tree as ShapeDtypeStructs, without computing anything."""
    return jax.eval_shape(lambda: init_params(model, jax.random.key(0)))
