"""The mask decoder's two-way transformer (reference `modeling/sam/transformer.py`).

Tokens (B, N, C) and image features (B, h*w, C) attend to each other in turn; post-norm
LayerNorms with PyTorch's default eps 1e-5.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from sam2_jax.modeling.attention import dot_product_attention
from sam2_jax.modeling.common import MLP
from sam2_jax.modeling.matmul import Dense

_LN_EPS = 1e-5  # torch.nn.LayerNorm default, used throughout the two-way transformer


class Attention(nn.Module):
    """Multi-head attention whose projections may shrink the width by `downsample_rate`.

    q/k/v project to `embedding_dim // downsample_rate` (heads split contiguously), the
    output projects back to `embedding_dim`. The softmax scale is 1/sqrt of the *internal*
    head dimension.
    """

    embedding_dim: int
    num_heads: int
    downsample_rate: int = 1
    kv_in_dim: int | None = None  # width of k/v inputs; Dense infers it, kept for clarity
    dtype: jnp.dtype | None = None

    @property
    def internal_dim(self) -> int:
        return self.embedding_dim // self.downsample_rate

    @nn.compact
    def __call__(
        self, q: jax.Array, k: jax.Array, v: jax.Array, key_mask: jax.Array | None = None
    ) -> jax.Array:
        """q (B, Nq, embedding_dim), k / v (B, Nk, kv_in_dim) -> (B, Nq, embedding_dim).

        key_mask: optional (B, Nk) bool, False for keys no query may attend to (padding).
        """
        if self.internal_dim % self.num_heads:
            raise ValueError("num_heads must divide embedding_dim // downsample_rate")
        head_dim = self.internal_dim // self.num_heads

        def project(x: jax.Array, name: str) -> jax.Array:
            x = Dense(self.internal_dim, dtype=self.dtype, name=name)(x)
            return x.reshape(*x.shape[:2], self.num_heads, head_dim)  # (B, N, H, D)

        out = dot_product_attention(
            project(q, "q_proj"), project(k, "k_proj"), project(v, "v_proj"), key_mask=key_mask
        )
        out = out.reshape(*out.shape[:2], self.internal_dim)  # (B, Nq, H*D)
        return Dense(self.embedding_dim, dtype=self.dtype, name="out_proj")(out)


class TwoWayAttentionBlock(nn.Module):
    """Token self-attention, token->image cross-attention, token MLP, image->token attention."""

    embedding_dim: int
    num_heads: int
    mlp_dim: int = 2048
    attention_downsample_rate: int = 2
    skip_first_layer_pe: bool = False  # layer 0: no PE and no residual in self-attention
    dtype: jnp.dtype | None = None

    @nn.compact
    def __call__(
        self,
        queries: jax.Array,
        keys: jax.Array,
        query_pe: jax.Array,
        key_pe: jax.Array,
        token_mask: jax.Array | None = None,
    ) -> tuple[jax.Array, jax.Array]:
        """queries / query_pe (B, N, C), keys / key_pe (B, h*w, C) -> same shapes.

        token_mask: optional (B, N) bool, False for padding tokens: they are hidden as keys
        (token self-attention, image->token attention), so the other outputs do not depend
        on them; their own outputs are meaningless.
        """
        dim, heads, rate = self.embedding_dim, self.num_heads, self.attention_downsample_rate

        def norm(name: str) -> nn.LayerNorm:
            return nn.LayerNorm(epsilon=_LN_EPS, dtype=self.dtype, name=name)

        self_attn = Attention(dim, heads, dtype=self.dtype, name="self_attn")
        if self.skip_first_layer_pe:
            queries = self_attn(queries, queries, queries, token_mask)
        else:
            q = queries + query_pe
            queries = queries + self_attn(q, q, queries, token_mask)
        queries = norm("norm1")(queries)

        token_to_image = Attention(
            dim, heads, rate, dtype=self.dtype, name="cross_attn_token_to_image"
        )
        queries = queries + token_to_image(queries + query_pe, keys + key_pe, keys)
        queries = norm("norm2")(queries)

        mlp = MLP(self.mlp_dim, dim, num_layers=2, activation=nn.relu, dtype=self.dtype, name="mlp")
        queries = norm("norm3")(queries + mlp(queries))

        image_to_token = Attention(
            dim, heads, rate, dtype=self.dtype, name="cross_attn_image_to_token"
        )
        keys = keys + image_to_token(keys + key_pe, queries + query_pe, queries, token_mask)
        keys = norm("norm4")(keys)
        return queries, keys


class TwoWayTransformer(nn.Module):
    """`depth` two-way blocks and a final token->image attention.

    The prompt tokens act as their own position encoding (`query_pe` = the input tokens).
    """

    depth: int = 2
    embedding_dim: int = 256
    num_heads: int = 8
    mlp_dim: int = 2048
    attention_downsample_rate: int = 2
    dtype: jnp.dtype | None = None

    @nn.compact
    def __call__(
        self,
        image_embedding: jax.Array,
        image_pe: jax.Array,
        point_embedding: jax.Array,
        token_mask: jax.Array | None = None,
    ) -> tuple[jax.Array, jax.Array]:
        """Runs the transformer.

        Args:
          image_embedding: (B, h, w, C).
          image_pe: (B or 1, h, w, C).
          point_embedding: (B, N, C) tokens.
          token_mask: optional (B, N) bool, False for padding tokens (fixed-shape prompts):
            no token or image position attends to them, so the valid tokens' outputs equal
            those of the unpadded sequence.

        Returns:
          queries (B, N, C) and keys (B, h*w, C).
        """
        b, h, w, c = image_embedding.shape
        keys = image_embedding.reshape(b, h * w, c)  # row-major, as torch's flatten(2)
        key_pe = jnp.broadcast_to(image_pe, (b, h, w, c)).reshape(b, h * w, c)
        queries = point_embedding
        for i in range(self.depth):
            queries, keys = TwoWayAttentionBlock(
                self.embedding_dim,
                self.num_heads,
                self.mlp_dim,
                self.attention_downsample_rate,
                skip_first_layer_pe=(i == 0),
                dtype=self.dtype,
                name=f"layers_{i}",
            )(queries, keys, point_embedding, key_pe, token_mask)
        final = Attention(
            self.embedding_dim,
            self.num_heads,
            self.attention_downsample_rate,
            dtype=self.dtype,
            name="final_attn_token_to_image",
        )
        queries = queries + final(queries + point_embedding, keys + key_pe, keys)
        queries = nn.LayerNorm(epsilon=_LN_EPS, dtype=self.dtype, name="norm_final_attn")(queries)
        return queries, keys
