"""The memory sequence a tracked frame attends to, ours vs the reference's.

A synthetic propagation: every frame gets a distinct random spatial memory and object pointer
(markers). At each step the reference's `_prepare_memory_conditioned_features` runs with its
memory attention replaced by a recorder, and ours assembles its padded sequence from a
fixed-size bank (`memory.tokens.memory_sequence`: `select_memories` + token assembly). The present
(memory, position) rows must be the same set: the same frames, the same temporal encoding rows,
the same pointer positions; pointer tokens are the only keys without RoPE in both. Besides
the reference's defaults, its two evaluation settings (`memory_temporal_stride_for_eval`,
`max_cond_frames_in_attn`) are checked through `reference_policy(...)`.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from sam2_jax.config import get_config
from sam2_jax.convert import state_dict_to_params
from sam2_jax.memory import reference_policy
from sam2_jax.memory.bank import empty_bank, write_recent
from sam2_jax.memory.tokens import memory_sequence
from sam2_jax.modeling.position_encoding import sine_position_encoding_2d
from sam2_jax.modeling.sam2_base import SAM2, param_shapes
from sam2_jax.video.loop import reverse_bank
from tests import reference as ref

SIZE = 128  # 8x8 memory grid: selection does not depend on the resolution


class Recorder(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.calls = []

    def forward(self, curr, curr_pos, memory, memory_pos, num_obj_ptr_tokens=0):
        self.calls.append((memory.float().numpy(), memory_pos.float().numpy(), num_obj_ptr_tokens))
        return curr[0]


@functools.lru_cache(maxsize=2)
def models(name: str):
    torch_model = ref.build_reference(name, SIZE, video=True)
    module = SAM2(get_config(name, image_size=SIZE))
    params = state_dict_to_params(ref.numpy_state_dict(torch_model), param_shapes(module))
    return torch_model, module, jax.device_put(params)


def sorted_rows(x: np.ndarray) -> np.ndarray:
    x = np.round(x.astype(np.float64), 5)
    return x[np.lexsort(x.T[::-1])]


SCENARIOS = {
    # (cond frames, tracking order, reverse, num_frames)
    "forward_two_cond": ([3, 12], list(range(3, 34)), False, 40),
    "forward_short_video": ([0], list(range(0, 9)), False, 9),
    "reverse_after_forward": ([20], list(range(20, 40)) + list(range(20, -1, -1)), None, 40),
    "future_cond_frame": ([10], list(range(2, 20)), False, 30),
    "three_cond_frames": ([3, 12, 25], list(range(3, 40)), False, 40),
    "four_cond_frames": ([3, 12, 25, 33], list(range(3, 40)), False, 40),
    "three_cond_reverse_after_forward": (
        [4, 20, 31],
        list(range(20, 40)) + list(range(20, -1, -1)),
        None,
        40,
    ),
}
POLICIES = {
    # name: (memory_temporal_stride_for_eval, max_cond_frames_in_attn)
    "reference": (1, -1),
    "stride_2": (2, -1),
    "stride_3_two_cond": (3, 2),
    "stride_2_one_cond": (2, 1),  # the reference asserts >= 2: run without its assertion
}
CASES = [("sam2.1_hiera_t", s, "reference") for s in sorted(SCENARIOS) if "four" not in s]
CASES += [("sam2_hiera_t", s, "reference") for s in sorted(SCENARIOS) if "three" not in s]
CASES += [
    ("sam2.1_hiera_t", s, p)
    for p in ("stride_2", "stride_3_two_cond", "stride_2_one_cond")
    for s in ("forward_two_cond", "three_cond_frames", "three_cond_reverse_after_forward")
]
CASES += [
    ("sam2.1_hiera_t", "four_cond_frames", p) for p in ("stride_3_two_cond", "stride_2_one_cond")
]


@pytest.mark.parametrize(("name", "scenario", "policy_name"), CASES)
def test_memory_sequence_matches_reference(name, scenario, policy_name, monkeypatch):
    torch_model, module, params = models(name)
    stride, max_cond = POLICIES[policy_name]
    policy = reference_policy(stride, max_cond)
    monkeypatch.setattr(torch_model, "memory_temporal_stride_for_eval", stride)
    monkeypatch.setattr(torch_model, "max_cond_frames_in_attn", max_cond)
    if max_cond == 1:
        monkeypatch.setattr(
            "sam2.modeling.sam2_base.select_closest_cond_frames",
            ref.closest_cond_frames_without_assert(),
        )
    cfg = module.config
    cond_frames, order, reverse, num_frames = SCENARIOS[scenario]
    recorder = Recorder()
    monkeypatch.setitem(torch_model._modules, "memory_attention", recorder)
    side, hw, dim = cfg.embedding_size, cfg.embedding_size**2, cfg.d_model
    pos = torch.from_numpy(sine_position_encoding_2d(side, side, cfg.mem_dim)).permute(2, 0, 1)
    rng = np.random.default_rng(0)
    marker_mem = {f: rng.normal(size=(cfg.mem_dim, side, side)) for f in range(num_frames)}
    marker_ptr = {f: rng.normal(size=(dim,)).astype(np.float32) for f in range(num_frames)}

    def ref_out(f):
        return {
            "maskmem_features": torch.tensor(marker_mem[f][None], dtype=torch.bfloat16),
            "maskmem_pos_enc": [pos[None]],
            "obj_ptr": torch.from_numpy(marker_ptr[f][None]),
        }

    def our_mem(f):  # (1, HW, M) as stored (bfloat16), (1, C)
        x = torch.tensor(marker_mem[f], dtype=torch.bfloat16).float().numpy()
        return jnp.asarray(x.reshape(cfg.mem_dim, hw).T[None]), jnp.asarray(marker_ptr[f][None])

    output_dict = {"cond_frame_outputs": {}, "non_cond_frame_outputs": {}}
    bank = empty_bank(1, hw, mem_dim=cfg.mem_dim, hidden_dim=dim, cond_capacity=4)
    for f in cond_frames:
        output_dict["cond_frame_outputs"][f] = ref_out(f)
        bank, _ = policy.write(bank, f, *our_mem(f), jnp.array([True]), jnp.array([True]))

    sequence = jax.jit(
        lambda bank, f, rev: module.apply(
            {"params": params},
            method=lambda m: memory_sequence(m, bank, f, rev, num_frames, policy),
        )
    )
    # A forward pass fills a seed for the reverse pass from the same start (as `track_video`).
    start, span = order[0], policy.history_span
    seed = empty_bank(1, hw, mem_dim=cfg.mem_dim, hidden_dim=dim, cond_capacity=1,
                      num_recent=span, num_ptrs=span)  # fmt: skip
    feats = [torch.zeros(hw, 1, dim)]
    checked = 0
    previous = order[0]
    for step, f in enumerate(order):
        rev = reverse if reverse is not None else (step > 0 and f < previous)
        if rev and reverse is None and previous > f and previous > start:  # direction switch
            bank = reverse_bank(bank, seed, start, policy)
        previous = f
        if f in cond_frames:
            continue
        recorder.calls.clear()
        with torch.no_grad():
            torch_model._prepare_memory_conditioned_features(
                frame_idx=f,
                is_init_cond_frame=False,
                current_vision_feats=feats,
                current_vision_pos_embeds=feats,
                feat_sizes=[(side, side)],
                output_dict=output_dict,
                num_frames=num_frames,
                track_in_reverse=rev,
            )
        (memory, memory_pos, n_ptr_tokens) = recorder.calls[0]
        expected = np.concatenate([memory[:, 0], memory_pos[:, 0]], axis=1)  # (N, 2M)
        ours, ours_pos, key_mask, rope_mask, _ = sequence(bank, f, rev)
        valid = np.asarray(key_mask[0])
        got = np.concatenate([np.asarray(ours[0]), np.asarray(ours_pos[0])], axis=1)[valid]
        assert got.shape == expected.shape, (scenario, f, got.shape, expected.shape)
        np.testing.assert_allclose(sorted_rows(got), sorted_rows(expected), atol=2e-5)
        # The same number of keys without RoPE: the pointer tokens.
        assert int((~np.asarray(rope_mask[0]) & valid).sum()) == n_ptr_tokens, (scenario, f)
        checked += 1

        output_dict["non_cond_frame_outputs"][f] = ref_out(f)
        bank, _ = policy.write(
            bank, f, *our_mem(f), jnp.array([False]), jnp.array([True]), reverse=rev
        )
        if not rev and 1 <= f - start <= span:
            seed = write_recent(seed, f, *our_mem(f), jnp.array([True]))
    assert checked >= 8
