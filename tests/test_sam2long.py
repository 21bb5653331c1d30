"""SAM2Long's pathways (`sam2_jax.memory.policies.sam2long`).

There is no packaged SAM2Long to run. Its two rules are checked against a line-by-line
transcription of its Python (the hypothesis choice of `_run_single_frame_inference`, the key
weights of `_forward_ca`), on random cases that reach every branch; the pathways' plumbing in
the compiled step is checked by a case whose answer is known without SAM2Long: when every
object is confident, the pathways stay copies of one, so 3 pathways give the masks of 1.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import pytest

from sam2_jax import build_sam2, build_sam2_video_predictor
from sam2_jax.cli.common import bundled
from sam2_jax.cli.prompt_file import load_prompts
from sam2_jax.memory import get_policy
from sam2_jax.memory.policies.sam2long import PathwayRow, _rank_weights
from sam2_jax.video.frames import VideoFrames
from sam2_jax.video.offline import ObjectPrompt, track_video

FRAMES = bundled("shapes_clip/frames")


def _their_choice(cumulative, ious, object_scores, num_pathway, uncertainty):
    """SAM2Long's choice of the new pathways for one object, as its Python loop does it:
    (parent pathway, candidate, new cumulative score) of each new pathway, best first."""
    all_scores = []
    for p in range(num_pathway):
        for j in range(3):
            score_j = cumulative[p] + np.log(ious[p, j] + 1e-5)
            iou_with_object = ious[p, j] if object_scores[p] > 0 else -ious[p, j]
            all_scores.append((p, j, score_j, float(iou_with_object)))
    sorted_scores = sorted(all_scores, key=lambda x: x[2], reverse=True)
    topk = []
    if max(abs(s) for s in object_scores) > uncertainty:
        topk = sorted_scores[:num_pathway]
    else:
        seen = set()
        for score in sorted_scores:
            rounded = round(score[3] * 100)  # ours: round-half-even of IoU x 100
            if rounded not in seen:
                topk.append(score)
                seen.add(rounded)
            if len(topk) == num_pathway:
                break
        if len(topk) < num_pathway:
            memory = {score[0] for score in topk}
            for i in range(num_pathway):
                if i not in memory:
                    for score in sorted_scores:
                        if score[0] == i:
                            topk.append(score)
                            break
                if len(topk) == num_pathway:
                    break
    return [(p, j, s) for p, j, s, _ in topk]


def _state(cumulative: np.ndarray, since: int) -> PathwayRow:
    """Per-row state with the given cumulative scores (the choice reads nothing else)."""
    rows = cumulative.shape[0]
    return PathwayRow(
        flags=None,
        memory_score=jnp.zeros((rows, 1)),
        pointer_score=jnp.zeros((rows, 1)),
        cumulative=jnp.asarray(cumulative, jnp.float32),
        since_prompt=jnp.full((rows,), since, jnp.int32),
    )


@pytest.mark.parametrize("paths", [1, 2, 3, 4])
def test_pathway_choice_follows_sam2long(paths):
    rng = np.random.default_rng(paths)
    policy = get_policy("sam2long", pathways=paths)
    objects = 64
    cumulative = rng.normal(0, 1, (objects, paths)).astype(np.float32)
    ious = rng.uniform(0.05, 1, (objects, paths, 3)).astype(np.float32)
    # duplicate IoUs (pathways that are copies, candidates that agree) reach the corner case
    copies = rng.random(objects) < 0.5
    ious[copies] = ious[copies, :1]
    cumulative[copies] = cumulative[copies, :1]
    ious[rng.random((objects, paths, 3)) < 0.2] = 0.5
    scores = rng.normal(0, 3, (objects, paths)).astype(np.float32)  # both sides of 2
    state = _state(cumulative.reshape(-1), since=1)
    eligible = jnp.ones((objects * paths,), bool)
    parent, candidate, new = policy.choose_pathways(
        state, jnp.asarray(ious.reshape(-1, 3)), jnp.asarray(scores.reshape(-1)), eligible
    )
    parent, candidate = np.asarray(parent).reshape(objects, paths), np.asarray(candidate)
    candidate = candidate.reshape(objects, paths)
    new_cumulative = np.asarray(new.cumulative).reshape(objects, paths)
    branches = set()
    for o in range(objects):
        # float32 scores as ours are computed (SAM2Long: Python floats of float32 IoUs)
        theirs = _their_choice(
            cumulative[o].astype(np.float64), ious[o].astype(np.float64), scores[o], paths, 2.0
        )
        assert [(p, j) for p, j, _ in theirs] == [
            (parent[o, k] - o * paths, candidate[o, k]) for k in range(paths)
        ], o
        np.testing.assert_allclose(new_cumulative[o], [s for _, _, s in theirs], rtol=1e-5)
        branches.add(max(abs(scores[o])) > 2.0)
    assert branches == {True, False}  # both the confident and the uncertain rule ran


def test_pathways_wait_one_frame_after_a_prompt_and_skip_ineligible_objects():
    policy = get_policy("sam2long")
    state = _state(np.zeros(6, np.float32), since=0)
    ious = jnp.asarray(np.random.default_rng(0).uniform(0, 1, (6, 3)), jnp.float32)
    parent, candidate, new = policy.choose_pathways(
        state, ious, jnp.full((6,), 5.0), jnp.ones((6,), bool)
    )
    np.testing.assert_array_equal(parent, np.arange(6))  # each row keeps its own output
    np.testing.assert_array_equal(candidate, -1)
    state = _state(np.zeros(6, np.float32), since=3)
    eligible = jnp.asarray([True] * 3 + [False] * 3)
    parent, candidate, _ = policy.choose_pathways(state, ious, jnp.full((6,), 5.0), eligible)
    np.testing.assert_array_equal(np.asarray(parent)[3:], [3, 4, 5])
    assert (np.asarray(candidate)[:3] >= 0).all() and (np.asarray(candidate)[3:] == -1).all()


def test_key_weights_follow_sam2long():
    rng = np.random.default_rng(0)
    for n_read in [1, 2, 5, 9]:
        scores = rng.normal(0, 3, (4, 12)).astype(np.float32)
        read = np.zeros((4, 12), bool)
        for row in read:
            row[rng.choice(12, n_read, replace=False)] = True
        ours = np.asarray(_rank_weights(jnp.asarray(scores), jnp.asarray(read), 0.95, 1.05))
        for b in range(4):
            # SAM2Long: linspace(low, high, n) scattered to the entries in ascending score order
            s = scores[b, read[b]]
            weights = np.zeros(n_read)
            weights[np.argsort(s)] = np.linspace(0.95, 1.05, n_read)
            np.testing.assert_allclose(ours[b, read[b]], weights, rtol=1e-6)
            assert (ours[b, ~read[b]] == 1).all()


def _session(policy) -> np.ndarray:
    predictor = build_sam2_video_predictor(memory_policy=policy, progress=False)
    state = predictor.init_state(FRAMES, max_frames=16)
    # the clip's own clicks (one inside each shape on frame 0), so both objects exist to track
    for prompt in load_prompts(bundled("shapes_clip/prompts.json")):
        predictor.add_new_points_or_box(
            state, prompt["frame"], prompt["obj_id"], points=prompt["points"],
            labels=prompt["labels"],
        )  # fmt: skip
    out = {f: np.asarray(m)[:, 0] for f, _, m in predictor.propagate_in_video(state)}
    return np.stack([out[f] for f in range(16)])


@pytest.mark.slow
def test_confident_pathways_stay_copies_of_one():
    """Every object confident on every frame (uncertainty below 0): the P best of 3P
    hypotheses are P copies of one pathway's best candidate, so 3 pathways track as 1."""
    one = _session(get_policy("sam2long", pathways=1, uncertainty=-1.0))
    three = _session(get_policy("sam2long", pathways=3, uncertainty=-1.0))
    assert (one > 0).any(axis=(2, 3)).all()  # both objects tracked on every frame
    # another compiled program (3x the rows): float32 results differ in the last bits
    assert ((one > 0) == (three > 0)).mean(axis=(2, 3)).min() >= 0.999
    np.testing.assert_allclose(three, one, atol=1e-3 * np.abs(one).max())


@pytest.mark.slow
def test_uncertain_pathways_diverge_and_the_best_leads():
    """Every object uncertain (uncertainty above any score): the pathways take distinct
    candidates, and the output follows the one with the best cumulative score."""
    model = build_sam2()
    size = model.config.image_size
    frames = VideoFrames(FRAMES, size).load(np.arange(12))
    prompts = [ObjectPrompt(0, 0, np.array([[40.0, 40.0]]) * size / 128, np.array([1]))]

    def track(policy):
        return track_video(model.module, model.variables, frames, 12, prompts, memory_policy=policy)

    uncertain = track(get_policy("sam2long", uncertainty=1e9))
    cumulative = np.asarray(uncertain.bank.policy_state.rows.cumulative)[0]  # (P,)
    assert len(set(cumulative.round(4).tolist())) == 3, cumulative
    assert cumulative[0] == cumulative.max()
