"""The training-mode forward equals the reference trainer's `SAM2Train.forward`.

The reference is built from its hydra config with `SAM2Train` as the target (training mode,
dropout and drop path off), re-randomized, and converted into our params. Its random choices
are forced with a scripted generator (prompt type, initial / correction frames, box or click)
and a torch seed (the clicks); everything it chose is read back from its outputs and given to
ours as a `PromptPlan`. Compared per frame and per step: the candidate mask logits (low-res),
predicted IoUs, object scores, the number of candidates, and the final masks. Then the
objective: with the same plan, our loss equals the reference loss on the reference outputs.

2 clips x 2 objects, 4 frames at 256 px, tiny variant, 3 correction clicks per frame.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("training.model.sam2")

from sam2_jax.config import get_config  # noqa: E402
from sam2_jax.convert import state_dict_to_params  # noqa: E402
from sam2_jax.memory import REFERENCE, ReferencePolicy, reference_policy  # noqa: E402
from sam2_jax.modeling.sam2_base import SAM2, param_shapes  # noqa: E402
from sam2_jax.train.forward import training_forward  # noqa: E402
from sam2_jax.train.objective import ObjectiveConfig, clip_losses  # noqa: E402
from sam2_jax.train.prompting import PromptPlan, TrainPromptConfig  # noqa: E402
from tests import reference as ref  # noqa: E402

NAME, SIZE = "sam2.1_hiera_t", 256
B, T, OBJ = 2, 4, 2  # clips, frames, objects per clip
NUM_CORRECTION = 3
TOL = 2e-3  # relative max error (max |ours - ref| / max |ref|) of logits, IoUs, scores

PROMPT_CFG = TrainPromptConfig(num_correction_pt_per_frame=NUM_CORRECTION)

# Scripted choices for the reference's numpy generator, in its call order:
# random(): use points?, then per initial frame use a box?, then per correction step sample
# from the GT? (0.5 = no); integers(): #initial frames, #corrected frames; choice(): extra
# initial frames, extra corrected frames.
CASES = {
    "mask_two_init_frames": dict(random=[0.9], integers=[2], choice=[[2]]),
    "click_and_extra_corrected_frame": dict(
        random=[0.1, 0.9, 0.5, 0.05, 0.5], integers=[1, 2], choice=[[2]]
    ),
    "box_and_click_on_two_init_frames": dict(random=[0.1, 0.1, 0.9], integers=[2], choice=[[3]]),
}


class ScriptedRng:
    """Stands in for the reference's `np.random.default_rng(42)` with given answers."""

    def __init__(self, random, integers, choice):
        self._random, self._integers, self._choice = list(random), list(integers), list(choice)

    def random(self):
        return self._random.pop(0) if self._random else 0.5

    def integers(self, low, high, endpoint=False):
        value = self._integers.pop(0)
        assert low <= value <= (high if endpoint else high - 1)
        return value

    def choice(self, options, size, replace=True):
        value = np.asarray(self._choice.pop(0))
        assert len(value) == size and set(value.tolist()) <= set(options)
        return value


@functools.lru_cache(maxsize=1)
def _models():
    from sam2.build_sam import build_sam2

    overrides = [
        f"++model.image_size={SIZE}",
        "++model._target_=training.model.sam2.SAM2Train",
        f"++model.prob_to_use_pt_input_for_train={PROMPT_CFG.prob_to_use_pt_input}",
        f"++model.prob_to_use_box_input_for_train={PROMPT_CFG.prob_to_use_box_input}",
        f"++model.num_frames_to_correct_for_train={PROMPT_CFG.num_frames_to_correct}",
        f"++model.rand_frames_to_correct_for_train={PROMPT_CFG.rand_frames_to_correct}",
        f"++model.num_init_cond_frames_for_train={PROMPT_CFG.num_init_cond_frames}",
        f"++model.rand_init_cond_frames_for_train={PROMPT_CFG.rand_init_cond_frames}",
        "++model.add_all_frames_to_correct_as_cond=true",
        f"++model.num_correction_pt_per_frame={NUM_CORRECTION}",
        f"++model.prob_to_sample_from_gt_for_train={PROMPT_CFG.prob_to_sample_from_gt}",
    ]
    model = build_sam2(
        ref.reference_config_file(NAME), None, device="cpu", hydra_overrides_extra=overrides
    )
    ref.rerandomize(model, seed=0)
    with torch.no_grad():  # objects present on most frames, so the masks are real
        model.sam_mask_decoder.pred_obj_score_head.layers[-1].bias += 3.0
    model.train()
    for module in model.modules():  # deterministic training mode
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
        if hasattr(module, "dropout_p"):
            module.dropout_p = 0.0
        if hasattr(module, "drop_prob"):
            module.drop_prob = 0.0
    ours = SAM2(get_config(NAME, image_size=SIZE))
    params = state_dict_to_params(ref.numpy_state_dict(model), param_shapes(ours))
    return model, ours, {"params": jax.device_put(params)}


def _clip() -> tuple[np.ndarray, np.ndarray]:
    """Frames (B, T, S, S, 3) normalized (the sample video, two clips) and moving ellipse
    masks (B, T, OBJ, S, S); object 1 of clip 1 leaves the image on the last frame."""
    from PIL import Image

    folder = ref.SHARED_DATA / "videos" / "bedroom"
    paths = sorted(folder.glob("*.jpg"))
    if len(paths) < 2 * T:
        pytest.skip(f"sample video not found at {folder}")
    frames = np.stack(
        [
            ref.normalize(np.asarray(Image.open(p).convert("RGB").resize((SIZE, SIZE))))
            for p in paths[: 2 * T]
        ]
    ).reshape(B, T, SIZE, SIZE, 3)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    masks = np.zeros((B, T, OBJ, SIZE, SIZE), bool)
    for b in range(B):
        for t in range(T):
            for o in range(OBJ):
                cy, cx = 70 + 90 * o + 6 * t, 60 + 70 * b + 10 * t
                masks[b, t, o] = ((yy - cy) / 40) ** 2 + ((xx - cx) / (30 + 10 * o)) ** 2 < 1
    masks[1, T - 1, 1] = False
    return frames.astype(np.float32), masks


def _reference_batch(frames, masks):
    from training.utils.data_utils import BatchedVideoDatapoint, BatchedVideoMetaData

    n = B * OBJ
    obj_to_frame = torch.tensor(
        [[[t, n_ // OBJ] for n_ in range(n)] for t in range(T)], dtype=torch.int
    )  # (T, N, 2): object n = b * OBJ + o lives in clip b
    return BatchedVideoDatapoint(
        img_batch=torch.from_numpy(np.moveaxis(frames, -1, 2).swapaxes(0, 1).copy()),
        obj_to_frame_idx=obj_to_frame,
        masks=torch.from_numpy(masks.swapaxes(1, 2).reshape(n, T, SIZE, SIZE).swapaxes(0, 1)),
        metadata=BatchedVideoMetaData(
            unique_objects_identifier=torch.zeros(T, n, 3, dtype=torch.long),
            frame_orig_size=torch.full((T, n, 2), SIZE, dtype=torch.long),
            batch_size=[T],
        ),
        dict_key="clip",
        batch_size=[T],
    )


def _run_reference(case: str, frames, masks):
    model, _, _ = _models()
    model.rng = ScriptedRng(**CASES[case])
    captured = {}
    original = model.prepare_prompt_inputs

    def capture(backbone_out, batch, start_frame_idx=0):
        out = original(backbone_out, batch, start_frame_idx)
        captured.update(out)
        return out

    model.prepare_prompt_inputs = capture
    torch.manual_seed(0)
    batch = _reference_batch(frames, masks)
    try:
        with torch.no_grad():
            outputs = model(batch)
    finally:
        del model.prepare_prompt_inputs
    return outputs, captured, batch


def _plan_from_reference(outputs, captured) -> PromptPlan:
    """What the reference chose, as our PromptPlan (objects n = b * OBJ + o, as in its batch)."""
    n = B * OBJ
    init = np.zeros(T, bool)
    init[captured["init_cond_frames"]] = True
    correct = np.zeros(T, bool)
    correct[captured["frames_to_add_correction_pt"]] = True
    init_coords = np.zeros((n, T, 2, 2), np.float32)
    init_labels = np.zeros((n, T, 2), np.int32)
    init_num = np.zeros(T, np.int32)
    for t, points in captured["point_inputs_per_frame"].items():
        k = points["point_labels"].shape[1]
        init_num[t] = k
        init_coords[:, t, :k] = points["point_coords"].numpy()
        init_labels[:, t, :k] = points["point_labels"].numpy()
    corr_coords = np.zeros((n, T, NUM_CORRECTION, 2), np.float32)
    corr_labels = np.zeros((n, T, NUM_CORRECTION), np.int32)
    for t in np.flatnonzero(correct):
        final = outputs[t]["multistep_point_inputs"][-1]
        corr_coords[:, t] = final["point_coords"][:, init_num[t] :].numpy()
        corr_labels[:, t] = final["point_labels"][:, init_num[t] :].numpy()
    return PromptPlan(
        use_mask=np.asarray(not captured["use_pt_input"]),
        init_cond=init,
        correct=correct,
        init_coords=init_coords,
        init_labels=init_labels,
        init_num_points=init_num,
        correction_coords=corr_coords,
        correction_labels=corr_labels,
    )


@functools.lru_cache(maxsize=1)
def _our_forward():
    _, module, variables = _models()

    @jax.jit
    def run(frames, masks, plan):
        return training_forward(
            module,
            variables,
            frames,
            masks,
            jnp.ones((B, OBJ), bool),
            jax.random.key(0),
            PROMPT_CFG,
            train=False,
            prompts=plan,
        )

    return run


_clip_losses = jax.jit(clip_losses, static_argnames="cfg")  # compiled once for all cases


@pytest.fixture(scope="module")
def clip():
    return _clip()


@pytest.mark.parametrize("case", list(CASES))
def test_training_forward_matches_reference(case, clip):
    frames, masks = clip
    outputs, captured, batch = _run_reference(case, frames, masks)
    plan = _plan_from_reference(outputs, captured)
    ours = jax.tree.map(np.asarray, _our_forward()(frames, masks, plan))

    expected_steps = 1 + NUM_CORRECTION * plan.correct
    np.testing.assert_array_equal(ours.step_valid.sum(1), expected_steps)
    errors = {"logits": 0.0, "ious": 0.0, "scores": 0.0, "final": 0.0}
    present = 0
    for t in range(T):
        out = outputs[t]
        steps = out["multistep_pred_multimasks"]
        assert len(steps) == expected_steps[t]
        for k, their_masks in enumerate(steps):
            m = their_masks.shape[1]
            assert ours.num_masks[t, k] == m, (t, k)
            mine = np.moveaxis(ours.multimask_logits[:, t, k, ..., :m], -1, 1)  # (N, M, h, w)
            their_scores = out["multistep_object_score_logits"][k].numpy()  # (N, 1)
            # Each side gates on its own score > 0 and the scores agree to TOL x max |score|:
            # objects beyond that margin of 0 are on the same side of the gate on both.
            margin = TOL * np.abs(their_scores).max()
            shown = their_scores[:, 0] > margin
            absent = their_scores[:, 0] < -margin  # their logits are all NO_OBJ_SCORE
            np.testing.assert_array_equal(mine[absent], their_masks.numpy()[absent])
            if shown.any():
                err = ref.relative_max_error(mine[shown], their_masks[shown])
                errors["logits"] = max(errors["logits"], err)
            present += int(shown.sum())
            their_ious = out["multistep_pred_ious"][k].numpy()
            errors["ious"] = max(
                errors["ious"], ref.relative_max_error(ours.ious[:, t, k, :m], their_ious)
            )
            errors["scores"] = max(
                errors["scores"],
                ref.relative_max_error(ours.object_score_logits[:, t, k], their_scores),
            )
        # The frame's output is its last step's selected mask (shown: that step's scores).
        final = ref.relative_max_error(ours.pred_masks[shown, t], out["pred_masks"][shown, 0])
        errors["final"] = max(errors["final"], final if shown.any() else 0.0)
    print(case, errors)
    assert present > 0, "every object scored absent: the comparison would be vacuous"
    assert all(e < TOL for e in errors.values()), errors

    # The objective on these outputs equals the reference loss on its outputs.
    from training.loss_fns import MultiStepMultiMasksAndIous

    criterion = MultiStepMultiMasksAndIous(
        weight_dict={"loss_mask": 20, "loss_dice": 1, "loss_iou": 1, "loss_class": 1},
        supervise_all_iou=True,
        iou_use_l1_loss=True,
        pred_obj_scores=True,
    )
    their_loss = criterion(outputs, batch.masks)
    our_loss = _clip_losses(ours, masks, np.ones((B, OBJ), bool), ObjectiveConfig().loss)
    for name in ("loss_mask", "loss_dice", "loss_iou", "loss_class", "core_loss"):
        np.testing.assert_allclose(
            float(our_loss[name]), float(their_loss[name]), rtol=5e-3, err_msg=name
        )


def test_objective_with_sampled_prompts(clip):
    """`loss_fn` as the trainer calls it: sampled prompts (point input, so correction clicks
    come from the prediction errors), dropout on, uint8 frames, one padding object. The loss
    is finite and equals its weighted terms; the padding object's masks change nothing; another
    key draws other prompts."""
    from sam2_jax.train.objective import loss_fn

    _, module, variables = _models()
    frames, masks = clip
    frames_u8 = np.clip(frames * ref.IMAGENET_STD + ref.IMAGENET_MEAN, 0, 1) * 255
    valid = np.array([[True, True], [True, False]])
    batch = {"frames": frames_u8.round().astype(np.uint8), "masks": masks, "object_valid": valid}
    cfg = ObjectiveConfig(
        prompt=TrainPromptConfig(prob_to_use_pt_input=1.0, num_correction_pt_per_frame=2)
    )
    step = jax.jit(lambda p, b, k: loss_fn(p, b, k, module=module, cfg=cfg, train=True))
    loss, metrics = step(variables["params"], batch, jax.random.key(3))
    assert np.isfinite(float(loss)) and float(metrics["mask_prompt"]) == 0.0
    w = cfg.loss
    total = (
        w.weight_mask * metrics["loss_mask"]
        + w.weight_dice * metrics["loss_dice"]
        + w.weight_iou * metrics["loss_iou"]
        + w.weight_class * metrics["loss_class"]
    )
    np.testing.assert_allclose(float(loss), float(total), rtol=1e-6)

    other = dict(batch, masks=masks.copy())
    other["masks"][1, :, 1] = ~other["masks"][1, :, 1]  # the padding object
    loss2, _ = step(variables["params"], other, jax.random.key(3))
    assert float(loss2) == float(loss)
    loss3, _ = step(variables["params"], batch, jax.random.key(4))
    assert float(loss3) != float(loss)


@dataclasses.dataclass(frozen=True)
class _NoRecentMemories(ReferencePolicy):
    """A non-reference policy for the objective: frames never enter the recent memories."""

    def write(self, bank, frame_idx, features, obj_ptr, is_conditioning, enable, step=None, **kw):
        return super().write(
            bank, frame_idx, features, obj_ptr, is_conditioning, enable & is_conditioning, step
        )


def test_objective_honours_the_memory_policy(clip):
    """The training objective takes `ObjectiveConfig.memory_policy`: a policy that writes no
    recent memory changes the loss; an evaluation-only setting (the temporal stride, 1 in
    training as in the reference) leaves it bit-identical."""
    from sam2_jax.train.objective import loss_fn

    _, module, variables = _models()
    frames, masks = clip
    batch = {"frames": frames, "masks": masks, "object_valid": np.ones(masks.shape[:3:2], bool)}
    prompt = TrainPromptConfig(prob_to_use_pt_input=1.0, num_correction_pt_per_frame=1)

    def loss(policy):
        cfg = ObjectiveConfig(prompt=prompt, memory_policy=policy)
        step = jax.jit(lambda p, b, k: loss_fn(p, b, k, module=module, cfg=cfg, train=False))
        return float(step(variables["params"], batch, jax.random.key(5))[0])

    reference = loss(REFERENCE)
    assert loss(reference_policy(memory_temporal_stride=3)) == reference
    assert loss(_NoRecentMemories()) != reference
