"""DAM4SAM's memory rules on constructed frames: when a frame enters the distractor memory,
and what a later frame reads (no package to compare with: DAM4SAM is not released as one;
`tests/test_memory_policies.py` checks that it runs batched as alone).

Masks are drawn at the low-res size of a 96 px model (24 x 24): the policy measures them
upsampled to 96 x 96.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from sam2_jax.memory.bank import empty_bank
from sam2_jax.memory.policies import get_policy
from sam2_jax.memory.policy import StepScores

L = 24  # low-res side


def _disk(cy: float, cx: float, r: float) -> np.ndarray:
    yy, xx = np.mgrid[0:L, 0:L]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def _step(chosen: np.ndarray, alternatives: list[np.ndarray], iou: float = 0.9) -> StepScores:
    """One object's scores: the chosen mask is candidate 0 (highest predicted IoU)."""
    logits = lambda m: np.where(m, 8.0, -8.0).astype(np.float32)
    candidates = np.stack([logits(chosen)] + [logits(a) for a in alternatives], -1)[None]
    return StepScores(
        iou=jnp.asarray([iou], jnp.float32),
        object_score=jnp.asarray([5.0], jnp.float32),
        mask_logits=jnp.asarray(logits(chosen)[None]),
        multimask=jnp.asarray([True]),
        candidates=jnp.asarray(candidates),
        candidate_ious=jnp.asarray([[iou, iou - 0.1, iou - 0.2]], jnp.float32),
    )


def _write(policy, bank, frame: int, step: StepScores):
    features = jnp.full((1, 36, 64), float(frame), jnp.bfloat16)
    ptr = jnp.full((1, 256), float(frame))
    bank, _ = policy.write(bank, frame, features, ptr, jnp.asarray([frame == 0]),
                           jnp.asarray([True]), step)  # fmt: skip
    return bank


def _bank(policy):
    return empty_bank(1, 36, cond_capacity=2, num_recent=policy.num_recent_slots,
                      num_ptrs=policy.num_ptr_slots, policy_state=policy.init_state(1))  # fmt: skip


def test_a_look_alike_in_an_alternative_mask_enters_the_distractor_memory():
    policy = get_policy("dam4sam")
    target = _disk(12, 6, 3)
    twin = target | _disk(12, 18, 3)  # the alternative also covers a look-alike far away
    grown = _disk(12, 6.5, 3)  # an alternative a pixel to the side: the same box, nearly
    bank = _write(policy, _bank(policy), 0, _step(target, [grown, grown]))
    for f in range(1, 4):  # stable frames: no look-alike
        bank = _write(policy, bank, f, _step(target, [grown, grown]))
    st = bank.policy_state
    assert int(st.last_drm[0]) < 0 and not bool(st.mem_drm.any())
    revealing = _step(target, [twin, grown])
    assert bool(policy.binarize_memory(st, revealing, jnp.int32(4))[0])  # encoded binarized
    # not when the prediction is unsure, nor when the object's size jumps
    assert not bool(policy.binarize_memory(st, _step(target, [twin, grown], iou=0.7), 4)[0])
    big = _disk(12, 6, 5)
    assert not bool(policy.binarize_memory(st, _step(big, [big | _disk(12, 18, 3)] * 2), 4)[0])
    bank = _write(policy, bank, 4, revealing)
    st = bank.policy_state
    assert int(st.last_drm[0]) == 4
    # within drm_gap (5) frames of the last entry: no new entry
    assert not bool(policy.binarize_memory(st, revealing, jnp.int32(9))[0])
    assert bool(policy.binarize_memory(st, revealing, jnp.int32(10))[0])


def test_reads_distractor_memory_as_conditioning_and_recent_frames_by_rank():
    policy = get_policy("dam4sam")
    target, grown = _disk(12, 6, 3), _disk(12, 6.5, 3)
    twin = target | _disk(12, 18, 3)
    empty = np.zeros((L, L), bool)
    bank = _write(policy, _bank(policy), 0, _step(target, [grown, grown]))
    for f in range(1, 13):
        if f == 6:
            step = _step(target, [twin, grown])  # enters the DRM
        elif f == 11:
            step = _step(empty, [empty, empty], iou=0.5)  # the object is absent
        else:
            step = _step(target, [grown, grown])
        bank = _write(policy, bank, f, step)
    sel = policy.select(bank, jnp.int32(13), reverse=False, num_frames=40)
    frames = np.asarray(bank.recent_frame[0])
    read = dict(zip(frames[np.asarray(sel.recent_mem_valid[0])].tolist(),
                    np.asarray(sel.recent_tpos_index[0])[np.asarray(sel.recent_mem_valid[0])].tolist(),
                    strict=True))  # fmt: skip
    # DRM frame 6 with the conditioning row (6); RAM: the last present frame (12), then the
    # present multiples of 5 before it (10, 5), ranked 0, 1, 2: frame 11 is absent, frame 0
    # is never RAM; 7 - 1 prompted - 1 DRM = 5 RAM slots, of which 3 exist
    assert read == {6: 6, 12: 0, 10: 1, 5: 2}
    assert bool(sel.cond_mem_valid[0].any())
    # pointers: the window's present frames (11 absent), DRM frame 6 at its distance
    ptr_frames = np.asarray(bank.ptr_frame[0])[np.asarray(sel.recent_ptr_valid[0])]
    assert sorted(ptr_frames.tolist()) == [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 12]
