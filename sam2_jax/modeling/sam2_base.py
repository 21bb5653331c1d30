"""The SAM 2 model as one Flax module with one method per stage of the data flow.

Submodule names follow the reference's `SAM2Base` attributes so the converter's table stays
mechanical. Call a stage with `model.apply(variables, ..., method=SAM2.forward_image)`.
"""

from __future__ import annotations

from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from sam2_jax.config import ModelConfig
from sam2_jax.modeling.common import MLP
from sam2_jax.modeling.conv import Conv
from sam2_jax.modeling.image_encoder import ImageEncoder
from sam2_jax.modeling.interpolation import downsample_bilinear_antialias, upsample_bilinear
from sam2_jax.modeling.mask_decoder import MaskDecoder
from sam2_jax.modeling.matmul import Dense
from sam2_jax.modeling.memory_attention import MemoryAttention
from sam2_jax.modeling.memory_encoder import MemoryEncoder
from sam2_jax.modeling.prompt_encoder import PromptEncoder, padded_points_mask
from sam2_jax.modeling.sam_heads import SAMHeadsOutput, select_outputs


class SAM2(nn.Module):
    config: ModelConfig
    dtype: jnp.dtype | None = None

    def setup(self):
        cfg = self.config
        self.image_encoder = ImageEncoder(cfg, dtype=self.dtype)
        self.sam_mask_decoder = MaskDecoder(
            cfg.d_model,
            dynamic_multimask_via_stability=cfg.dynamic_multimask_via_stability,
            dynamic_multimask_stability_delta=cfg.dynamic_multimask_stability_delta,
            dynamic_multimask_stability_thresh=cfg.dynamic_multimask_stability_thresh,
            dtype=self.dtype,
        )
        # SAM heads (reference `_build_sam_heads` and the learned "no-X" vectors)
        size, emb = cfg.image_size, cfg.embedding_size
        self.sam_prompt_encoder = PromptEncoder(
            cfg.d_model, (emb, emb), (size, size), mask_in_chans=16, dtype=self.dtype
        )
        self.obj_ptr_proj = MLP(cfg.d_model, cfg.d_model, 3, dtype=self.dtype)
        self.mask_downsample = Conv(
            1, (4, 4), strides=(4, 4), padding="VALID", dtype=self.dtype
        )  # 0/1 mask at image size -> mask prompt at 4x the embedding size
        small_normal = nn.initializers.truncated_normal(0.02)
        self.no_mem_embed = self.param("no_mem_embed", small_normal, (1, 1, cfg.d_model))
        self.no_obj_ptr = self.param("no_obj_ptr", small_normal, (1, cfg.d_model))
        self._setup_memory()

    def _setup_memory(self) -> None:
        """Memory encoder, memory attention and the temporal / "no memory" parameters."""
        cfg = self.config
        self.memory_encoder = MemoryEncoder(cfg.mem_dim, cfg.d_model, dtype=self.dtype)
        self.memory_attention = MemoryAttention(
            cfg.d_model, num_layers=cfg.memory_attention_layers, dtype=self.dtype
        )
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
            Dense(cfg.mem_dim, dtype=self.dtype) if cfg.proj_tpos_enc_in_obj_ptrs else None
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

    def forward_sam_heads(
        self,
        backbone_features: jax.Array,
        point_coords: jax.Array | None = None,
        point_labels: jax.Array | None = None,
        mask_inputs: jax.Array | None = None,
        high_res_features: tuple[jax.Array, jax.Array] | None = None,
        multimask_output: bool | jax.Array = False,
        training: bool = False,
        point_valid: jax.Array | None = None,
        appear_threshold: float = 0.0,
        choose: Callable[[jax.Array, jax.Array], jax.Array] | None = None,
        candidate_pointers: bool = False,
    ) -> SAMHeadsOutput:
        """Prompt encoder + mask decoder + object pointer (reference `_forward_sam_heads`).

        Args:
          backbone_features: (B, h, w, C) stride-16 features (memory-conditioned when tracking).
          point_coords: (B, P, 2) (x, y) in model-input pixels, or None. A "not a point" token
            is always appended; with None a dummy (0, 0) point with label -1 is used, so the
            decoder sees 2 "not a point" tokens, as in the reference.
          point_labels: (B, P) int (1 pos, 0 neg, 2/3 box corners, -1 padding), or None.
          mask_inputs: (B, H, W, 1) mask prompt (logits or 0/1), or None; resized with an
            antialiased bilinear filter to (4h, 4w) when it has another size.
          high_res_features: (feat_s0 (B, 4h, 4w, C/8), feat_s1 (B, 2h, 2w, C/4)).
          multimask_output: a Python bool (static): 3 candidates and the best by predicted IoU.
            Or a (B,) bool array, per object: the decoder runs once and each object gets the
            multimask or the single-mask selection; the K-sized outputs then have 3 slots
            (`SAMHeadsOutput`).
          training: static; turns off the decoder's inference-only stability fallback.
          point_valid: optional (B, P) bool for fixed-shape (padded) points: entries that are
            False are padding. The result equals the reference's call with only the valid
            points: P' valid points give P' point tokens plus the "not a point" pad token;
            none gives the dummy -1 point plus the pad token. Padding tokens are masked out
            of the decoder's attention.
          appear_threshold, choose: `select_outputs`' (the object-score threshold of "present"
            and a replacement for the best-IoU choice among multimask candidates).
          candidate_pointers: static; also return each multimask candidate's object pointer
            (`SAMHeadsOutput.candidate_obj_ptrs`).

        Returns:
          SAMHeadsOutput. Masks of objects whose score is <= 0 are NO_OBJ_SCORE everywhere, and
          their object pointer is the learned `no_obj_ptr`.
        """
        b = backbone_features.shape[0]
        if point_coords is None:
            point_coords = jnp.zeros((b, 1, 2), jnp.float32)
            point_labels = jnp.full((b, 1), -1, jnp.int32)
        prompt_encoder = self.sam_prompt_encoder
        if mask_inputs is not None:
            mask_inputs = mask_inputs.astype(jnp.float32)
            if mask_inputs.shape[1:3] != prompt_encoder.mask_input_size:
                mask_inputs = downsample_bilinear_antialias(
                    mask_inputs, prompt_encoder.mask_input_size
                )
        sparse_mask = None
        if point_valid is not None:
            point_labels, sparse_mask = padded_points_mask(point_valid, point_labels)
        sparse, dense = prompt_encoder(point_coords, point_labels, mask_inputs, pad=True)
        decoder = self.sam_mask_decoder
        masks, ious, tokens, object_score_logits = decoder.predict_masks(
            backbone_features,
            prompt_encoder.get_dense_pe(),
            sparse,
            dense,
            high_res_features=high_res_features,
            sparse_mask=sparse_mask,
        )  # (B, 4h, 4w, 4), (B, 4), (B, 4, C), (B, 1)
        if not isinstance(multimask_output, bool):
            multimask_output = jnp.asarray(multimask_output, bool)
        chosen = select_outputs(
            masks,
            ious,
            tokens,
            object_score_logits,
            multimask_output,
            stability=None
            if training or not decoder.dynamic_multimask_via_stability
            else decoder.select_via_stability,
            use_multimask_token_for_obj_ptr=decoder.use_multimask_token_for_obj_ptr,
            appear_threshold=appear_threshold,
            choose=choose,
        )
        size = self.config.image_size
        high_res_multimasks = upsample_bilinear(chosen.low_res_multimasks, (size, size))
        high_res_masks = upsample_bilinear(chosen.low_res_mask, (size, size))
        obj_ptr = self._gate_obj_ptr(self.obj_ptr_proj(chosen.token), chosen.appearing)
        candidate_obj_ptrs = None
        if candidate_pointers:
            if decoder.use_multimask_token_for_obj_ptr:
                candidate_tokens = tokens[:, 1:]  # (B, 3, C)
            else:
                candidate_tokens = jnp.repeat(tokens[:, :1], 3, axis=1)
            ptrs = self.obj_ptr_proj(candidate_tokens)  # (B, 3, C)
            candidate_obj_ptrs = self._gate_obj_ptr(ptrs, chosen.appearing[:, :, None])
        return SAMHeadsOutput(
            chosen.low_res_multimasks,
            high_res_multimasks,
            chosen.ious,
            chosen.low_res_mask,
            high_res_masks,
            obj_ptr,
            object_score_logits,
            chosen.iou,
            candidate_obj_ptrs,
        ).in_float32()

    def _gate_obj_ptr(self, obj_ptr: jax.Array, is_obj_appearing: jax.Array) -> jax.Array:
        """(B, C), (B, 1) bool -> the pointer where the object appears, else `no_obj_ptr`."""
        lam = is_obj_appearing.astype(obj_ptr.dtype)
        return lam * obj_ptr + (1.0 - lam) * self.no_obj_ptr

    def use_mask_as_output(
        self,
        backbone_features: jax.Array,
        high_res_features: tuple[jax.Array, jax.Array] | None,
        mask_inputs: jax.Array,
        appear_threshold: float = 0.0,
    ) -> SAMHeadsOutput:
        """A mask prompt taken as the output itself (reference `_use_mask_as_output`).

        Args:
          backbone_features: (B, h, w, C) raw stride-16 features (no memory conditioning).
          high_res_features: as in `forward_sam_heads`.
          mask_inputs: (B, S, S, 1) binary mask (bool or 0/1 float) at the model input size.
          appear_threshold: as in `forward_sam_heads` (the decoder's pointer for the mask).

        Returns:
          SAMHeadsOutput with K = 1: logits exactly +-10 at S x S, their antialiased bilinear
          downsampling at S/4, IoU 1, object score +-10 from "any pixel > 0", and the object
          pointer the decoder gives for the (learned-downsampled) mask as its prompt.
        """
        mask = mask_inputs.astype(jnp.float32)
        high_res_masks = mask * 20.0 - 10.0
        size = mask.shape[1:3]
        low_res_masks = downsample_bilinear_antialias(high_res_masks, (size[0] // 4, size[1] // 4))
        ious = jnp.ones((mask.shape[0], 1), jnp.float32)
        obj_ptr = self.forward_sam_heads(
            backbone_features,
            mask_inputs=self.mask_downsample(mask),
            high_res_features=high_res_features,
            appear_threshold=appear_threshold,
        ).obj_ptr
        is_obj_appearing = jnp.any(mask.reshape(mask.shape[0], -1) > 0.0, axis=1)[:, None]
        object_score_logits = 20.0 * is_obj_appearing.astype(jnp.float32) - 10.0
        obj_ptr = self._gate_obj_ptr(obj_ptr, is_obj_appearing)
        return SAMHeadsOutput(
            low_res_masks,
            high_res_masks,
            ious,
            low_res_masks,
            high_res_masks,
            obj_ptr,
            object_score_logits,
            ious,
        ).in_float32()

    def initialize_sam_heads(self) -> None:
        """Touches every SAM-heads submodule and parameter, conv_s0 / conv_s1 included (dummy
        inputs; for `init`)."""
        cfg = self.config
        emb, dim = cfg.embedding_size, cfg.d_model
        features = jnp.zeros((1, emb, emb, dim), jnp.float32)
        high_res = (
            jnp.zeros((1, 4 * emb, 4 * emb, dim // 8), jnp.float32),
            jnp.zeros((1, 2 * emb, 2 * emb, dim // 4), jnp.float32),
        )
        self.sam_mask_decoder.project_high_res_features(
            jnp.zeros((1, 4 * emb, 4 * emb, dim), jnp.float32),
            jnp.zeros((1, 2 * emb, 2 * emb, dim), jnp.float32),
        )
        points = jnp.zeros((1, 1, 2), jnp.float32)
        self.forward_sam_heads(features, points, jnp.ones((1, 1), jnp.int32), None, high_res, True)
        mask = jnp.zeros((1, cfg.image_size, cfg.image_size, 1), jnp.float32)
        self.use_mask_as_output(features, high_res, mask)

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
        self.initialize_sam_heads()
        self.initialize_memory()


def init_params(model: SAM2, rng: jax.Array) -> dict:
    """Random params for the whole model (the `params` collection)."""
    size = model.config.image_size
    images = jnp.zeros((1, size, size, 3), jnp.float32)
    return model.init(rng, images, method=SAM2.initialize_all)["params"]


def param_shapes(model: SAM2) -> dict:
    """The params tree as ShapeDtypeStructs, without computing anything."""
    return jax.eval_shape(lambda: init_params(model, jax.random.key(0)))


def quick_random_params(model: SAM2, seed: int = 0) -> dict:
    """Random params built on the host from the param shapes, in seconds.

    `init_params` compiles the whole model's forward pass (minutes on CPU at 1024); this only
    traces shapes and draws each leaf by its role, with Flax's default scales: kernels
    LeCun-normal, biases 0, norm scales 1, other parameters (embeddings, tokens, position
    and temporal encodings) N(0, 0.02^2), the prompt encoder's Gaussian matrix N(0, 1).
    For demos and tests that need *some* weights; training from scratch uses `init_params`.
    """
    rng = np.random.default_rng(seed)

    def draw(path, leaf):
        name = str(getattr(path[-1], "key", path[-1]))
        shape = leaf.shape
        if name == "kernel":
            fan_in = int(np.prod(shape[:-1])) or 1
            value = rng.standard_normal(shape) / np.sqrt(fan_in)
        elif name == "bias":
            value = np.zeros(shape)
        elif name == "scale":
            value = np.ones(shape)
        elif name == "positional_encoding_gaussian_matrix":
            value = rng.standard_normal(shape)  # drawn N(0, 1), as the reference does
        else:
            value = rng.standard_normal(shape) * 0.02
        return jnp.asarray(value, leaf.dtype)

    return jax.tree_util.tree_map_with_path(draw, param_shapes(model))
