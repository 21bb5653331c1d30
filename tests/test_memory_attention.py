"""Parity of `MemoryAttention` with the reference's `memory_attention(curr, curr_pos, memory,
memory_pos, num_obj_ptr_tokens)`, for the reference's own (unpadded) layout and for a padded,
masked, fixed-capacity layout like our memory bank's."""

import functools

import jax
import numpy as np
import pytest
import torch

from sam2_jax.modeling.memory_attention import MemoryAttention
from tests import reference as ref

NAME = "sam2.1_hiera_t"  # memory attention is the same in every variant
# max |ours - ref| / max |ref| on the (B, Nq, 256) output
TOLERANCE = 1e-4
MEM_DIM = 64


@pytest.fixture(scope="module")
def torch_model():
    # Built at 256; its RoPE tables are recomputed for any square query grid, 64x64 included.
    return ref.cached_reference(NAME, 256)


@pytest.fixture(scope="module")
def variables(torch_model):
    return {"params": ref.convert_memory(torch_model, NAME, 256)["memory_attention"]}


@functools.partial(jax.jit, static_argnames="num_obj_ptr_tokens")
def _ours_like_reference(variables, curr, curr_pos, memory, memory_pos, num_obj_ptr_tokens):
    return MemoryAttention().apply(
        variables,
        curr,
        curr_pos,
        memory,
        memory_pos,
        num_obj_ptr_tokens,
        method=MemoryAttention.forward_like_reference,
    )


@jax.jit
def _ours_padded(variables, curr, curr_pos, memory, memory_pos, memory_mask, rope_mask):
    return MemoryAttention().apply(
        variables, curr, curr_pos, memory, memory_pos, memory_mask, rope_mask
    )


def _reference(torch_model, curr, curr_pos, memory, memory_pos, num_obj_ptr_tokens):
    """Batch-first numpy in and out; the reference works sequence-first."""
    seq_first = lambda x: torch.from_numpy(np.ascontiguousarray(np.swapaxes(x, 0, 1)))
    with torch.no_grad():
        out = torch_model.memory_attention(
            curr=seq_first(curr),
            curr_pos=seq_first(curr_pos),
            memory=seq_first(memory),
            memory_pos=seq_first(memory_pos),
            num_obj_ptr_tokens=num_obj_ptr_tokens,
        )
    return np.swapaxes(out.numpy(), 0, 1)


def _inputs(rng, batch, side, frames, ptr_tokens):
    nq, nk = side * side, frames * side * side + ptr_tokens
    normal = lambda *shape: rng.standard_normal(shape).astype(np.float32)
    return (
        normal(batch, nq, 256),
        normal(batch, nq, 256),
        normal(batch, nk, 64),
        normal(batch, nk, 64),
    )


@pytest.mark.parametrize(
    ("batch", "frames", "ptr_tokens"),
    [(1, 1, 0), (1, 7, 64), (2, 2, 8)],
    ids=["1frame", "7frames+16ptrs", "2objects"],
)
def test_matches_reference_at_16x16(torch_model, variables, batch, frames, ptr_tokens):
    rng = np.random.default_rng(frames * 10 + ptr_tokens)
    inputs = _inputs(rng, batch, 16, frames, ptr_tokens)
    expected = _reference(torch_model, *inputs, ptr_tokens)
    ours = _ours_like_reference(variables, *inputs, ptr_tokens)
    err = ref.relative_max_error(ours, expected)
    print(f"{batch}x{frames} frames + {ptr_tokens} pointer tokens: relative error {err:.2e}")
    assert err <= TOLERANCE


def _padded_bank(rng, side, frame_slots, ptr_slots, objects):
    """A fixed-capacity memory and, per object, the reference's unpadded equivalent.

    Layout: `frame_slots` spatial memories of side^2 tokens, then `ptr_slots` pointers of 4
    tokens. Each object uses some slots (given as (frame slot order, pointer slots) in the
    reference's concatenation order); the others hold large garbage and are masked out.
    """
    hw = side * side
    nk = frame_slots * hw + ptr_slots * 4
    b = len(objects)
    memory = (1e3 * rng.standard_normal((b, nk, MEM_DIM))).astype(np.float32)
    memory_pos = (1e3 * rng.standard_normal((b, nk, MEM_DIM))).astype(np.float32)
    mask = np.zeros((b, nk), bool)
    unpadded = []
    for o, (frames, pointers) in enumerate(objects):
        spans = [range(f * hw, (f + 1) * hw) for f in frames]
        spans += [range(frame_slots * hw + 4 * p, frame_slots * hw + 4 * p + 4) for p in pointers]
        index = np.concatenate([np.asarray(s) for s in spans])
        memory[o, index] = rng.standard_normal((len(index), MEM_DIM))
        memory_pos[o, index] = rng.standard_normal((len(index), MEM_DIM))
        mask[o, index] = True
        unpadded.append((memory[o, index][None], memory_pos[o, index][None], 4 * len(pointers)))
    rope_mask = (np.arange(nk) < frame_slots * hw)[None]  # pointers are never rotated
    return memory, memory_pos, mask, rope_mask, unpadded


def _compare_padded(torch_model, variables, side, frame_slots, ptr_slots, objects, seed):
    rng = np.random.default_rng(seed)
    curr, curr_pos, *_ = _inputs(rng, len(objects), side, 0, 0)
    memory, memory_pos, mask, rope_mask, unpadded = _padded_bank(
        rng, side, frame_slots, ptr_slots, objects
    )
    ours = np.asarray(_ours_padded(variables, curr, curr_pos, memory, memory_pos, mask, rope_mask))
    errors = []
    for o, (mem, mem_pos, ptr_tokens) in enumerate(unpadded):
        expected = _reference(
            torch_model, curr[o : o + 1], curr_pos[o : o + 1], mem, mem_pos, ptr_tokens
        )
        errors.append(ref.relative_max_error(ours[o : o + 1], expected))
    return errors


def test_padded_masked_bank_equals_unpadded_reference(torch_model, variables):
    """Two objects in one call with different numbers of valid frames and pointers, their slots
    scattered (ring order) among 10 frame slots and 19 pointer slots of garbage."""
    objects = [
        ([0, 6, 4, 5], [1, 7, 2, 18, 0]),  # 1 cond + 3 recent frames, 5 pointers
        ([2, 3, 7, 8, 9, 1, 0], list(range(3, 19))),  # 7 frames, 16 pointers
    ]
    errors = _compare_padded(torch_model, variables, 16, 10, 19, objects, seed=7)
    print(f"padded+masked vs unpadded reference, per object: {errors}")
    assert max(errors) <= TOLERANCE


@pytest.mark.full_size
def test_padded_bank_matches_reference_at_1024(torch_model, variables):
    """The 64x64 grid of 1024-pixel images (4096 queries): 2 memory frames + 3 pointers out of
    3 frame slots and 4 pointer slots. On CPU this goes through the blocked attention (masks and
    skipped empty key blocks included)."""
    errors = _compare_padded(torch_model, variables, 64, 3, 4, [([2, 0], [3, 0, 1])], seed=8)
    print(f"64x64 padded bank vs reference: {errors}")
    assert max(errors) <= TOLERANCE


def test_dropout_only_in_training_mode(variables):
    """Our own behaviour (the reference is not run in training mode here); one layer keeps the
    compile short."""
    rng = np.random.default_rng(9)
    inputs = _inputs(rng, 1, 8, 2, 8)
    model = MemoryAttention(num_layers=1)
    params = variables["params"]
    variables = {"params": {"layers_0": params["layers_0"], "norm": params["norm"]}}

    @functools.partial(jax.jit, static_argnames="deterministic")
    def run(key, deterministic):
        return model.apply(variables, *inputs, deterministic=deterministic, rngs={"dropout": key})

    eval_a, eval_b = run(jax.random.key(0), True), run(jax.random.key(1), True)
    np.testing.assert_array_equal(eval_a, eval_b)  # the rng is ignored in eval mode
    train_a, train_a2 = run(jax.random.key(0), False), run(jax.random.key(0), False)
    train_b = run(jax.random.key(1), False)
    assert np.isfinite(np.asarray(train_a)).all()
    np.testing.assert_array_equal(train_a, train_a2)  # reproducible from the rng
    assert ref.relative_max_error(train_a, eval_a) > 1e-2
    assert ref.relative_max_error(train_a, train_b) > 1e-2
    with pytest.raises(Exception, match="dropout"):  # training mode needs the rng
        jax.jit(lambda v: model.apply(v, *inputs, deterministic=False))(variables)
