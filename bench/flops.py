"""Achieved GFLOP/s of the compiled programs against the measured matmul peak.

`python -m bench.flops [--size 512] [--objects 1 6]`: for the image encoder and the parts of
the video frame step (memory attention with a full bank, SAM heads, memory encoder), the
FLOPs XLA's cost analysis counts, the median time of the program that runs, and their ratio
as a fraction of the float32 matmul peak measured in the same process (JAX and torch).

FLOPs are counted on the loop-free lowering of the same math (`traced_for("default")`: the
attention without the CPU's blocked online softmax, whose key-block loop XLA's cost analysis
counts once instead of once per block); times are those of the CPU programs.
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np
import torch

from bench.harness import measure
from sam2_jax.build import build_sam2
from sam2_jax.memory.bank import empty_bank
from sam2_jax.memory.policy import REFERENCE
from sam2_jax.memory.step import _memory_from_low_res
from sam2_jax.memory.tokens import condition_on_memory
from sam2_jax.modeling.platform import traced_for
from sam2_jax.modeling.sam2_base import SAM2

MATMUL = (4096, 384, 1536)  # (M, K, N): a Hiera MLP's shape at 1024 px


def matmul_peak(repeats: int = 20) -> dict[str, float]:
    """float32 GFLOP/s of one (M, K) @ (K, N) product, JAX and torch."""
    m, k, n = MATMUL
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((m, k), np.float32), rng.standard_normal((k, n), np.float32)
    ja, jb = jnp.asarray(a), jnp.asarray(b)
    product = jax.jit(jnp.matmul)
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    flops = 2 * m * k * n
    # one library after the other, not alternating: a torch call's worker threads keep
    # spinning after it returns and slow a short JAX product run right after it (247 against
    # 350 GFLOP/s on this machine)
    ours = measure(lambda: product(ja, jb).block_until_ready(), repeats=repeats).median_s
    theirs = measure(lambda: torch.matmul(ta, tb), repeats=repeats).median_s
    return {"jax": flops / ours / 1e9, "torch": flops / theirs / 1e9}


def _flops(fn, *args) -> float:
    """XLA's FLOP count of `fn(*args)` lowered without the CPU-only loops."""
    with traced_for("default"):  # a new function: the CPU program's trace is cached for `fn`
        cost = jax.jit(lambda *a: fn(*a)).lower(*args).compile().cost_analysis()
    return float((cost[0] if isinstance(cost, list) else cost)["flops"])


def _full_bank(b: int, hw: int, cfg) -> object:
    """A bank whose every slot is taken: 2 conditioning and num_maskmem - 1 recent memories,
    every pointer (a long video prompted on two frames: 8 memories of HW tokens)."""
    rng = np.random.default_rng(1)
    bank = empty_bank(b, hw, mem_dim=cfg.mem_dim, hidden_dim=cfg.d_model, cond_capacity=2)
    r, p = bank.recent_valid.shape[1], bank.ptr_valid.shape[1]
    return bank.replace(
        cond_features=jnp.asarray(rng.standard_normal(bank.cond_features.shape), jnp.bfloat16),
        recent_features=jnp.asarray(rng.standard_normal(bank.recent_features.shape), jnp.bfloat16),
        cond_frame=jnp.broadcast_to(jnp.arange(2, dtype=jnp.int32), (b, 2)),
        cond_valid=jnp.ones((b, 2), bool),
        recent_frame=jnp.broadcast_to(jnp.arange(20 - r, 20, dtype=jnp.int32), (b, r)),
        recent_valid=jnp.ones((b, r), bool),
        ptr_frame=jnp.broadcast_to(jnp.arange(20 - p, 20, dtype=jnp.int32), (b, p)),
        ptr_valid=jnp.ones((b, p), bool),
    )


def run(variant: str = "sam2.1_hiera_t", size: int = 512, objects=(1, 6), repeats: int = 5):
    peak = matmul_peak()
    print(f"float32 matmul {MATMUL}: JAX {peak['jax']:.0f} GFLOP/s, torch {peak['torch']:.0f}")
    model = build_sam2(variant, image_size=size)
    module, variables, cfg = model.module, model.variables, model.config
    h = cfg.embedding_size
    image = jnp.asarray(np.random.default_rng(0).standard_normal((1, size, size, 3)), jnp.float32)

    def encode(v, x):
        return module.apply(v, x, method=SAM2.forward_image)

    programs = {"image encoder": (encode, (variables, image))}
    features = jax.jit(encode)(variables, image)
    pos = features["vision_pos_enc"][-1]
    for b in objects:
        bank = _full_bank(b, h * h, cfg)
        raw = jnp.broadcast_to(features["vision_features"], (b, h, h, cfg.d_model))
        high_res = tuple(
            jnp.broadcast_to(x, (b, *x.shape[1:])) for x in features["backbone_fpn"][:2]
        )

        def attend(v, bank, raw):
            return module.apply(
                v,
                method=lambda m: condition_on_memory(
                    m, bank, raw, pos, jnp.int32(20), False, 100, REFERENCE
                ),
            )

        def heads(v, pix, b=b, high_res=high_res):
            points = jnp.zeros((b, 2, 2), jnp.float32)
            return module.apply(
                v,
                method=lambda m: m.forward_sam_heads(
                    pix, points, -jnp.ones((b, 2), jnp.int32), None, high_res,
                    multimask_output=jnp.zeros((b,), bool), point_valid=jnp.zeros((b, 2), bool),
                ),
            )  # fmt: skip

        def memory(v, raw, low, b=b):
            return module.apply(
                v,
                method=lambda m: _memory_from_low_res(
                    m, raw, low, jnp.ones((b,)), jnp.zeros((b,), bool), jnp.bfloat16
                ),
            )

        low = jnp.zeros((b, 4 * h, 4 * h), jnp.float32)
        programs[f"memory attention, {b} object(s), full bank"] = (attend, (variables, bank, raw))
        programs[f"SAM heads, {b} object(s)"] = (heads, (variables, raw))
        programs[f"memory encoder, {b} object(s)"] = (memory, (variables, raw, low))

    rows = []
    print(f"\n{variant} @ {size} px{'':26}GFLOP     ms  GFLOP/s  of JAX peak")
    for name, (fn, args) in programs.items():
        compiled = jax.jit(fn)
        seconds = measure(lambda c=compiled, a=args: jax.block_until_ready(c(*a)), repeats=repeats)
        gflop = _flops(fn, *args) / 1e9
        rate = gflop / seconds.median_s
        rows.append(
            {"program": name, "gflop": gflop, "median_s": seconds.median_s, "gflops": rate,
             "fraction_of_peak": rate / peak["jax"]}
        )  # fmt: skip
        print(
            f"{name:46}{gflop:7.1f}{seconds.median_s * 1e3:7.0f}{rate:9.0f}"
            f"{rate / peak['jax']:12.2f}"
        )
    return {"matmul_peak_gflops": peak, "programs": rows}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--variant", default="sam2.1_hiera_t")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--objects", type=int, nargs="+", default=[1, 6])
    args = parser.parse_args()
    run(args.variant, args.size, tuple(args.objects))
