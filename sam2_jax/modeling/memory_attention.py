"""Memory attention (reference `modeling/memory_attention.py` + `RoPEAttention`).

The current frame's top-level features (queries, on a square grid) self-attend, then
cross-attend to the memory bank: the spatial memories of earlier frames (each a grid of
mem_dim=64 tokens) followed by object-pointer tokens. Both attentions rotate queries and keys
with 2D axial RoPE (`rope.py`); the memory keys of every frame get the same rotation as the
query grid, pointer tokens none.

For a fixed-capacity memory bank (inside `jax.lax.scan`) the memory sequence is padded:
`memory_mask` hides the empty slots from the softmax, and the RoPE layout of the keys is given
per key (`rope_mask`, `rope_index`) instead of as a count of trailing pointer tokens.
`MemoryAttention.forward_like_reference` reproduces the reference's call (a concatenation of
frames, then `num_obj_ptr_tokens` pointers).
"""

from __future__ import annotations

import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from sam2_jax.modeling.attention import dot_product_attention
from sam2_jax.modeling.common import layer_norm
from sam2_jax.modeling.matmul import Dense
from sam2_jax.modeling.rope import apply_rope, grid_side, rope_tables

# (cos, sin), each (B or 1, N, head_dim / 2) float32
RopeTables = tuple[jax.Array, jax.Array]


def reference_rope_layout(
    num_keys: int, num_queries: int, num_obj_ptr_tokens: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """The reference's key layout as explicit per-key arrays.

    The first `num_keys - num_obj_ptr_tokens` keys are whole memory frames, each rotated like the
    query grid; the trailing pointer tokens are not rotated.

    Returns:
      rope_mask (1, num_keys) bool and rope_index (1, num_keys) int32.
    """
    positions = np.arange(num_keys)
    rope_mask = positions < num_keys - num_obj_ptr_tokens
    rope_index = (positions % num_queries).astype(np.int32)
    return rope_mask[None], rope_index[None]


class RoPEAttention(nn.Module):
    """q/k/v projections, axial RoPE on q and k, softmax attention, output projection."""

    embedding_dim: int = 256
    num_heads: int = 1
    dropout_rate: float = 0.1  # on the attention probabilities, training only
    dtype: jnp.dtype | None = None
    param_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(
        self,
        q: jax.Array,
        k: jax.Array,
        v: jax.Array,
        q_rope: RopeTables,
        k_rope: RopeTables,
        key_mask: jax.Array | None = None,
        deterministic: bool = True,
        key_block: int | None = None,
    ) -> jax.Array:
        """q: (B, Nq, E); k, v: (B, Nk, kv_in_dim); key_mask: (B or 1, Nk) bool or None;
        key_block: see `dot_product_attention`.

        With one head and values narrower than E (memory: kv_in_dim 64 < 256) the value
        projection is taken after the attention, softmax(QK) (V Wv + b) = (softmax(QK) V) Wv
        + b (probabilities sum to 1 over the attended keys): the product over keys runs at
        kv_in_dim wide, 4x fewer FLOPs there.

        Returns:
          (B, Nq, E).
        """
        dense = functools.partial(
            Dense, self.embedding_dim, dtype=self.dtype, param_dtype=self.param_dtype
        )
        b, nq, nk = q.shape[0], q.shape[1], k.shape[1]
        head_dim = self.embedding_dim // self.num_heads
        late_values = self.num_heads == 1 and v.shape[-1] < self.embedding_dim
        # (B, N, E) -> (B, N, H, D)
        q = dense(name="q_proj")(q).reshape(b, nq, self.num_heads, head_dim)
        k = dense(name="k_proj")(k).reshape(b, nk, self.num_heads, head_dim)
        v_proj = dense(name="v_proj")
        if late_values:
            v = v[:, :, None, :]  # (B, Nk, kv_in_dim) -> (B, Nk, 1, kv_in_dim)
        else:
            v = v_proj(v).reshape(b, nk, self.num_heads, head_dim)
        q = apply_rope(q, *q_rope)
        k = apply_rope(k, *k_rope)
        rng = None
        if not deterministic and self.dropout_rate > 0.0:
            rng = self.make_rng("dropout")
        out = dot_product_attention(
            q,
            k,
            v,
            key_mask=key_mask,
            dropout_rate=self.dropout_rate,
            dropout_rng=rng,
            key_block=key_block,
        )
        if late_values:
            out = v_proj(out[:, :, 0])  # (B, Nq, kv_in_dim) -> (B, Nq, E)
            if key_mask is not None:  # no attended key: a zero output, as without this
                attended = jnp.broadcast_to(key_mask, (b, nk)).any(axis=1)
                out = jnp.where(attended[:, None, None], out, 0.0)
        return dense(name="out_proj")(out.reshape(b, nq, self.embedding_dim))


class MemoryAttentionLayer(nn.Module):
    """Pre-norm self-attention, cross-attention to memory, ReLU FFN (reference defaults)."""

    d_model: int = 256
    dim_feedforward: int = 2048
    dropout_rate: float = 0.1
    num_heads: int = 1
    dtype: jnp.dtype | None = None
    param_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(
        self,
        x: jax.Array,
        memory: jax.Array,
        memory_pos: jax.Array,
        q_rope: RopeTables,
        k_rope: RopeTables,
        memory_mask: jax.Array | None = None,
        deterministic: bool = True,
    ) -> jax.Array:
        """x: (B, Nq, d_model); memory, memory_pos: (B, Nk, mem_dim). Returns (B, Nq, d_model)."""
        attn = functools.partial(
            RoPEAttention,
            self.d_model,
            self.num_heads,
            self.dropout_rate,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
        )
        dense = functools.partial(Dense, dtype=self.dtype, param_dtype=self.param_dtype)
        dropout = functools.partial(nn.Dropout, self.dropout_rate, deterministic=deterministic)

        # Self-attention: no additive position encoding, RoPE only.
        t = layer_norm(1e-5, "norm1", self.dtype)(x)
        t = attn(name="self_attn")(t, t, t, q_rope, q_rope, deterministic=deterministic)
        x = x + dropout()(t)

        # Cross-attention: keys get the memory position encoding, queries and values do not.
        t = layer_norm(1e-5, "norm2", self.dtype)(x)
        # blocks of whole memory frames (>= 1024 keys): empty bank slots are skipped
        frame_block = t.shape[1] * -(-1024 // t.shape[1])
        t = attn(name="cross_attn_image")(
            t, memory + memory_pos, memory, q_rope, k_rope, memory_mask, deterministic,
            frame_block,
        )  # fmt: skip
        x = x + dropout()(t)

        t = layer_norm(1e-5, "norm3", self.dtype)(x)
        t = nn.relu(dense(self.dim_feedforward, name="linear1")(t))
        t = dense(self.d_model, name="linear2")(dropout()(t))
        return x + dropout()(t)


class MemoryAttention(nn.Module):
    """`num_layers` MemoryAttentionLayers with the input position term and a final LayerNorm."""

    d_model: int = 256
    num_layers: int = 4
    dim_feedforward: int = 2048
    dropout_rate: float = 0.1
    num_heads: int = 1
    rope_theta: float = 10000.0
    dtype: jnp.dtype | None = None
    param_dtype: jnp.dtype = jnp.float32

    @nn.compact
    def __call__(
        self,
        curr: jax.Array,
        curr_pos: jax.Array,
        memory: jax.Array,
        memory_pos: jax.Array,
        memory_mask: jax.Array | None = None,
        rope_mask: jax.Array | None = None,
        rope_index: jax.Array | None = None,
        deterministic: bool = True,
    ) -> jax.Array:
        """Conditions the current frame's features on the memory bank.

        Args:
          curr: (B, Nq, d_model) top-level features of a square grid, flattened row-major.
          curr_pos: (B, Nq, d_model) their sine position encoding.
          memory: (B, Nk, mem_dim) memory tokens (spatial memories, then pointer tokens).
          memory_pos: (B, Nk, mem_dim) their position (+ temporal) encodings.
          memory_mask: (B or 1, Nk) bool, False for empty slots; None = all valid.
          rope_mask: (B or 1, Nk) bool, True for keys that are RoPE-rotated (spatial memory),
            False for pointer tokens; None = all rotated.
          rope_index: (B or 1, Nk) int, each key's flat position in the query grid; None =
            `arange(Nk) % Nq` (consecutive whole frames).
          deterministic: False enables dropout (rng stream 'dropout').

        Returns:
          (B, Nq, d_model).
        """
        nq, nk = curr.shape[1], memory.shape[1]
        side = grid_side(nq)
        head_dim = self.d_model // self.num_heads
        q_rope = rope_tables(jnp.arange(nq)[None], side, head_dim, theta=self.rope_theta)
        if rope_index is None:
            rope_index = (jnp.arange(nk) % nq)[None]
        k_rope = rope_tables(rope_index, side, head_dim, rope_mask, self.rope_theta)

        x = curr + 0.1 * curr_pos  # pos_enc_at_input
        for i in range(self.num_layers):
            x = MemoryAttentionLayer(
                self.d_model,
                self.dim_feedforward,
                self.dropout_rate,
                self.num_heads,
                dtype=self.dtype,
                param_dtype=self.param_dtype,
                name=f"layers_{i}",
            )(x, memory, memory_pos, q_rope, k_rope, memory_mask, deterministic)
        return layer_norm(1e-5, "norm", self.dtype)(x)

    def forward_like_reference(
        self,
        curr: jax.Array,
        curr_pos: jax.Array,
        memory: jax.Array,
        memory_pos: jax.Array,
        num_obj_ptr_tokens: int = 0,
        deterministic: bool = True,
    ) -> jax.Array:
        """The reference's call: unpadded memory, the last `num_obj_ptr_tokens` are pointers.

        Shapes as in `__call__` (batch-first); `num_obj_ptr_tokens` is a Python int.
        """
        rope_mask, rope_index = reference_rope_layout(
            memory.shape[1], curr.shape[1], num_obj_ptr_tokens
        )
        return self(
            curr,
            curr_pos,
            memory,
            memory_pos,
            rope_mask=jnp.asarray(rope_mask),
            rope_index=jnp.asarray(rope_index),
            deterministic=deterministic,
        )
