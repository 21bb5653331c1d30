"""Optimizer parity: per-parameter LR / weight decay and AdamW steps against the reference trainer.

The reference's own `construct_optimizer` builds torch param groups for a reference model with
the options of sam2.1_hiera_b+_MOSE_finetune.yaml (cosine LRs for base / vision, layer decay
0.9 over the Hiera trunk with the pos_embed override, no weight decay for biases and
`nn.LayerNorm`). Our per-leaf assignment, keyed by the converter's torch names, must equal
it for every parameter, and three clipped AdamW steps on the same gradients must give the
same parameters.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

from sam2_jax.convert import RULES, state_dict_to_params
from sam2_jax.convert.state_dict import _match
from sam2_jax.train import optim
from sam2_jax.train.config import ConfigError, OptimConfig
from tests.reference import build_reference

pytest.importorskip("fvcore")
training_optimizer = pytest.importorskip("training.optimizer")
from omegaconf import OmegaConf  # noqa: E402

BASE_LR, VISION_LR, STEPS = 5.0e-6, 3.0e-6, 10
COSINE = "fvcore.common.param_scheduler.CosineParamScheduler"
CONSTANT = "fvcore.common.param_scheduler.ConstantParamScheduler"
# The fine-tune config's `optim` section (values as in sam2.1_hiera_b+_MOSE_finetune.yaml).
OPTIONS = {
    "lr": [
        {"scheduler": {"_target_": COSINE, "start_value": BASE_LR, "end_value": BASE_LR / 10}},
        {
            "scheduler": {
                "_target_": COSINE,
                "start_value": VISION_LR,
                "end_value": VISION_LR / 10,
            },
            "param_names": ["image_encoder.*"],
        },
    ],
    "weight_decay": [
        {"scheduler": {"_target_": CONSTANT, "value": 0.1}},
        {
            "scheduler": {"_target_": CONSTANT, "value": 0.0},
            "param_names": ["*bias*"],
            "module_cls_names": ["torch.nn.LayerNorm"],
        },
    ],
}
MODIFIERS = [
    {
        "_target_": "training.optimizer.layer_decay_param_modifier",
        "_partial_": True,
        "layer_decay_value": 0.9,
        "apply_to": "image_encoder.trunk",
        "overrides": [{"pattern": "*pos_embed*", "value": 1.0}],
    }
]


@pytest.fixture(scope="module")
def reference_model():
    return build_reference("sam2.1_hiera_t", 128)


def reference_optimizer(model):
    """The reference trainer's optimizer (param groups and schedulers) for `model`."""
    return training_optimizer.construct_optimizer(
        model,
        OmegaConf.create({"_target_": "torch.optim.AdamW"}),
        OmegaConf.create(OPTIONS),
        [OmegaConf.create(m) for m in MODIFIERS],
    )


def _groups_by_name(model, optimizer) -> dict[str, tuple[float, float]]:
    names = {id(p): n for n, p in model.named_parameters()}
    out = {}
    for group in optimizer.optimizer.param_groups:
        for p in group["params"]:
            out[names[id(p)]] = (group["lr"], group["weight_decay"])
    return out


def _flax_path(torch_name: str) -> str:
    return _match(torch_name, RULES, "to_flax")[1]


@pytest.mark.parametrize("step", [0, 4])
def test_lr_and_weight_decay_per_parameter_equal_reference(reference_model, step):
    model = reference_model
    optimizer = reference_optimizer(model)
    optimizer.step_schedulers(step / STEPS, step)
    theirs = _groups_by_name(model, optimizer)
    assert len(theirs) == len(list(model.parameters()))
    cfg = OptimConfig(base_lr=BASE_LR, vision_lr=VISION_LR)
    shape = float(optim.schedule_shape(cfg, STEPS)(step))
    depth = len(model.image_encoder.trunk.blocks)
    wrong = []
    for name, (lr, wd) in theirs.items():
        path = _flax_path(name)
        ours_lr = optim.lr_multiplier(path, cfg, depth) * shape
        ours_wd = cfg.weight_decay if optim.has_weight_decay(path) else 0.0
        if not np.isclose(ours_lr, lr, rtol=1e-6, atol=0) or ours_wd != wd:
            wrong.append((name, path, (lr, wd), (ours_lr, ours_wd)))
    assert not wrong, f"{len(wrong)} params differ (reference, ours): {wrong[:5]}"
    # Not vacuous: the groups really differ.
    assert len({v for v in theirs.values()}) > depth


# One parameter of each kind of group (the optimizer's compile time grows with the leaf count;
# every parameter's LR and weight decay is checked above). The last trunk block sets the depth.
STEP_PARAMS = (
    "image_encoder.trunk.pos_embed",
    "image_encoder.trunk.patch_embed.proj.weight",
    "image_encoder.trunk.blocks.0.attn.qkv.weight",
    "image_encoder.trunk.blocks.0.norm1.weight",
    "image_encoder.trunk.blocks.11.mlp.layers.0.bias",
    "image_encoder.trunk.blocks.11.attn.proj.weight",
    "image_encoder.neck.convs.0.conv.weight",
    "memory_attention.layers.0.self_attn.q_proj.weight",
    "memory_attention.layers.0.norm1.weight",
    "memory_encoder.fuser.layers.0.norm.weight",
    "sam_mask_decoder.iou_token.weight",
    "maskmem_tpos_enc",
)


def test_adamw_steps_equal_reference(reference_model):
    """Three clipped AdamW steps (max_norm 0.1, as the config) on the same gradients.

    Only STEP_PARAMS get gradients: torch skips parameters without one (in the step and in
    the clipping norm), and our optimizer gets exactly those params."""
    model = reference_model
    optimizer = reference_optimizer(model)
    all_named = dict(model.named_parameters())
    named = {n: all_named[n] for n in STEP_PARAMS}
    shapes = _shapes_of(named)
    # clone(): the converter may return numpy views of torch memory, which the steps mutate
    params = state_dict_to_params({n: p.detach().clone() for n, p in named.items()}, shapes)
    start = params
    assert optim.trunk_depth(params) == len(model.image_encoder.trunk.blocks)
    # LRs x1000 on both sides, so that parameters move well beyond float32 rounding.
    cfg = OptimConfig(base_lr=BASE_LR * 1e3, vision_lr=VISION_LR * 1e3)
    scale_reference(optimizer, 1e3)
    tx, _ = optim.make_optimizer(params, cfg, STEPS)
    # jitted: run eagerly, every op would compile once per leaf shape
    state = jax.jit(tx.init)(params)
    update, apply = jax.jit(tx.update), jax.jit(optax.apply_updates)
    clipper = training_optimizer.GradientClipper(max_norm=0.1)
    gen = torch.Generator().manual_seed(1)
    for p in all_named.values():
        p.grad = None
    for step in range(3):
        grads_t = {n: torch.randn(p.shape, generator=gen) * 0.05 for n, p in named.items()}
        for n, p in named.items():
            p.grad = grads_t[n].clone()
        clipper(model)
        optimizer.step(step / STEPS, step)
        grads = state_dict_to_params(grads_t, shapes)
        updates, state = update(grads, state, params)
        params = apply(params, updates)
    theirs = state_dict_to_params({n: p.detach().clone() for n, p in named.items()}, shapes)
    ours, theirs, start = (optim.flat_paths(jax.device_get(t)) for t in (params, theirs, start))
    worst = max(float(np.abs(ours[k] - theirs[k]).max()) for k in ours)
    moved = min(float(np.abs(ours[k] - start[k]).max()) for k in ours)
    # 3 steps on |params| <= 2.1 in two libraries: worst seen 3.6e-7 (<= 6 ULP of a leaf's
    # max |param|) x ~10 margin; every leaf moves by >= 2e-3
    assert worst < 4e-6 and moved > 1e-4, (worst, moved)
    for p in all_named.values():
        p.grad = None


def _shapes_of(named) -> dict:
    shapes = {}
    for name, p in named.items():
        rule, path = _match(name, RULES, "to_flax")
        flax_shape = rule.transform.to_flax(np.empty(tuple(p.shape), np.float32)).shape
        node = shapes
        *parents, leaf = path.split("/")
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = jax.ShapeDtypeStruct(flax_shape, jnp.float32)
    return shapes


def scale_reference(optimizer, factor: float) -> None:
    """Multiplies every LR scheduler of the reference optimizer by `factor`."""
    for schedulers in optimizer.schedulers:
        if "lr" in schedulers:
            schedulers["lr"] = training_optimizer.ValueScaler(schedulers["lr"], factor)


def test_reference_buffers_are_not_trained(reference_model):
    """Tensors the reference registers as buffers (not parameters) get LR 0 here, where they
    are Flax params; the prompt encoder's random Fourier matrix is one."""
    params = {n for n, _ in reference_model.named_parameters()}
    buffers = [n for n in reference_model.state_dict() if n not in params]
    converted = [n for n in buffers if _match(n, RULES, "to_flax") is not None]
    assert "sam_prompt_encoder.pe_layer.positional_encoding_gaussian_matrix" in converted
    cfg = OptimConfig(base_lr=1e-3, vision_lr=1e-3)
    for name in converted:
        assert optim.lr_multiplier(_flax_path(name), cfg, 12) == 0.0, name
    trained = optim.lr_multiplier(_flax_path("sam_mask_decoder.iou_token.weight"), cfg, 12)
    assert trained == 1e-3


def test_trainable_patterns_freeze_every_other_param(reference_model):
    """`OptimConfig.trainable`: params matching none of the patterns get LR 0 and are marked
    frozen (the train step stops their gradient); a pattern matching no param is refused."""
    named = dict(reference_model.named_parameters())
    named.update(dict(reference_model.named_buffers()))
    named = {n: t for n, t in named.items() if _match(n, RULES, "to_flax") is not None}
    params = _shapes_of(named)  # only the paths matter
    patterns = ("sam_mask_decoder/iou_prediction_head/*", "*/obj_score_token/*")
    cfg = OptimConfig(base_lr=1e-3, vision_lr=2e-3, trainable=patterns)
    lrs = optim.flat_paths(optim.lr_tree(params, cfg))
    frozen = optim.flat_paths(optim.frozen_tree(params, cfg))
    trained = sorted(p for p, lr in lrs.items() if lr > 0)
    head = [p for p in lrs if p.startswith("sam_mask_decoder/iou_prediction_head/")]
    assert len(head) == 6  # 3 layers' kernel and bias
    assert trained == sorted(head + ["sam_mask_decoder/obj_score_token/embedding"])
    assert sorted(p for p, f in frozen.items() if not f) == trained
    everything_trains = optim.frozen_tree(params, OptimConfig())
    assert not any(jax.tree.leaves(everything_trains))  # the default step is unchanged
    everything = optim.flat_paths(optim.lr_tree(params, OptimConfig(base_lr=1e-3, vision_lr=2e-3)))
    assert sum(lr > 0 for lr in everything.values()) == len(everything) - 1  # the Fourier buffer
    with pytest.raises(ConfigError, match=r"pattern 'sam_mask_decodr/\*' matches no param"):
        optim.make_optimizer(params, OptimConfig(trainable=("sam_mask_decodr/*",)), 10)
