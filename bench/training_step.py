"""One training step's forward + backward: ours against the reference trainer's `SAM2Train`.

The same clip batch and prompts on both sides, as `tests/test_train_forward.py` sets them up
(where the two forwards are checked equal): sam2.1_hiera_t built as the reference trainer's
`SAM2Train` (re-randomized, converted), 2 clips x 2 objects x 4 frames, a click on frame 0 and
3 correction clicks on two frames, dropout off on both sides. Timed: the reference's
`model(batch)` + `MultiStepMultiMasksAndIous` + `backward()`, and our compiled
`value_and_grad` of the same objective (`training_forward` + `clip_losses`) with the prompts
the reference drew. Alternating calls, medians.

`python -m bench.training_step [--repeats 3]` (256 px, the size of the parity test).
"""

from __future__ import annotations

import argparse

import jax
import jax.numpy as jnp
import numpy as np
import torch

from bench.harness import measure_alternating, print_comparison
from sam2_jax.train.forward import training_forward
from sam2_jax.train.objective import ObjectiveConfig, clip_losses
from tests import test_train_forward as setup

CASE = "click_and_extra_corrected_frame"


def run(repeats: int = 3) -> dict:
    frames, masks = setup._clip()
    model, module, variables = setup._models()
    outputs, captured, batch = setup._run_reference(CASE, frames, masks)
    plan = setup._plan_from_reference(outputs, captured)
    from training.loss_fns import MultiStepMultiMasksAndIous

    criterion = MultiStepMultiMasksAndIous(
        weight_dict={"loss_mask": 20, "loss_dice": 1, "loss_iou": 1, "loss_class": 1},
        supervise_all_iou=True,
        iou_use_l1_loss=True,
        pred_obj_scores=True,
    )
    valid = np.ones((setup.B, setup.OBJ), bool)
    loss_cfg = ObjectiveConfig().loss

    def theirs():
        model.rng = setup.ScriptedRng(**setup.CASES[CASE])
        torch.manual_seed(0)
        model.zero_grad(set_to_none=True)
        loss = criterion(model(batch), batch.masks)["core_loss"]
        loss.backward()
        return float(loss)

    @jax.jit
    def step(params, frames, masks, plan):
        def loss(params):
            out = training_forward(
                module, {"params": params}, frames, masks, jnp.ones(valid.shape, bool),
                jax.random.key(0), setup.PROMPT_CFG, train=False, prompts=plan,
            )  # fmt: skip
            return clip_losses(out, masks, valid, loss_cfg)["core_loss"]

        return jax.value_and_grad(loss)(params)

    def ours():
        value, grads = step(variables["params"], frames, masks, plan)
        jax.block_until_ready(grads)
        return float(value)

    # A benchmark of a different computation is worthless: the same loss on both sides.
    mine, reference = ours(), theirs()
    assert abs(mine - reference) <= 5e-3 * abs(reference), (mine, reference)
    times = measure_alternating({"ours": ours, "theirs": theirs}, repeats=repeats)
    title = (
        f"training step (forward + backward) sam2.1_hiera_t @ {setup.SIZE}, "
        f"{setup.B} clips x {setup.OBJ} objects x {setup.T} frames"
    )
    result = print_comparison(title, times["ours"], times["theirs"])
    result["loss"] = {"ours": mine, "reference": reference}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    run(args.repeats)


if __name__ == "__main__":
    main()
