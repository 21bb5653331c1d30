"""Property tests of the prompt validators (`sam2_jax.validation`, the prompts file): every
finite in-range prompt is accepted unchanged; every other is refused with a message that
names what is wrong."""

from __future__ import annotations

import json
import math
import string

import numpy as np
import pytest

pytest.importorskip("hypothesis")
from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from sam2_jax import validation  # noqa: E402
from sam2_jax.cli.prompt_file import PROMPT_KEYS, load_prompts  # noqa: E402

settings.register_profile("sam2_jax", max_examples=150, deadline=None)
settings.load_profile("sam2_jax")

sizes = st.tuples(st.integers(1, 4000), st.integers(1, 4000))  # (h, w)
BAD_NUMBERS = st.sampled_from([math.nan, math.inf, -math.inf])


@st.composite
def prompts(draw, pixels: bool = True):
    """(video_hw, points (N, 2) | None, labels | None, box | None), all finite and in range."""
    h, w = draw(sizes)
    limit = (w, h) if pixels else (1, 1)
    coord = lambda i: st.floats(0, limit[i], allow_nan=False, width=32)  # noqa: E731
    n = draw(st.integers(0, 6))
    points = [[draw(coord(0)), draw(coord(1))] for _ in range(n)]
    labels = [draw(st.sampled_from([0, 1])) for _ in range(n)]
    box = None
    if n == 0 or draw(st.booleans()):
        xs = sorted([draw(coord(0)), draw(coord(0))])
        ys = sorted([draw(coord(1)), draw(coord(1))])
        box = [xs[0], ys[0], xs[1], ys[1]]
    return (h, w), (points if n else None), (labels if n else None), box


@given(prompts())
def test_finite_in_range_prompts_are_accepted_unchanged(prompt):
    hw, points, labels, box = prompt
    coords, labs = validation.video_prompt(points, labels, box, video_hw=hw)
    expected = ([box[:2], box[2:]] if box else []) + (points or [])
    np.testing.assert_array_equal(coords, np.asarray(expected, np.float32).reshape(-1, 2))
    assert labs.tolist() == ([2, 3] if box else []) + (labels or [])


@given(prompts(pixels=False))
def test_normalised_prompts_are_accepted(prompt):
    hw, points, labels, box = prompt
    validation.video_prompt(points, labels, box, video_hw=hw, pixels=False)


@given(prompts(), st.data())
def test_a_non_finite_number_is_refused(prompt, data):
    hw, points, labels, box = prompt
    bad = data.draw(BAD_NUMBERS)
    if box is not None and (points is None or data.draw(st.booleans())):
        box[data.draw(st.integers(0, 3))] = bad
        name = "box"
    else:
        points[data.draw(st.integers(0, len(points) - 1))][data.draw(st.integers(0, 1))] = bad
        name = "points"
    with pytest.raises(ValueError, match=rf"^ctx: {name} must be finite numbers, got (nan|-?inf)"):
        validation.video_prompt(points, labels, box, video_hw=hw, context="ctx")


@given(prompts(), st.data())
def test_a_point_outside_is_refused(prompt, data):
    (h, w), points, labels, box = prompt
    if points is None:
        return
    i, axis = data.draw(st.integers(0, len(points) - 1)), data.draw(st.integers(0, 1))
    limit = (w, h)[axis]
    points[i][axis] = data.draw(
        st.one_of(st.floats(-1e6, -0.01), st.floats(limit + 0.01, limit + 1e6))
    )
    with pytest.raises(ValueError, match=rf"point \(.*\) lies outside the {w}x{h} video"):
        validation.video_prompt(points, labels, box, video_hw=(h, w))


@given(prompts(), st.data())
def test_a_reversed_box_is_refused(prompt, data):
    hw, points, labels, box = prompt
    if box is None:
        return
    axis = data.draw(st.integers(0, 1))
    if box[axis] == box[axis + 2]:
        return
    box[axis], box[axis + 2] = box[axis + 2], box[axis]
    with pytest.raises(ValueError, match=r"box \[.*\] is reversed: corners must satisfy x0 <= x1"):
        validation.video_prompt(points, labels, box, video_hw=hw)


@given(prompts(), st.data())
def test_a_bad_label_is_refused(prompt, data):
    hw, points, labels, box = prompt
    if points is None:
        return
    bad = data.draw(
        st.one_of(st.integers().filter(lambda v: v not in (0, 1)), st.floats(0.01, 0.99))
    )
    labels[data.draw(st.integers(0, len(labels) - 1))] = bad
    with pytest.raises(ValueError, match=r"labels must be 1 \(positive\) or 0 \(negative\); got"):
        validation.video_prompt(points, labels, box, video_hw=hw)


@given(prompts(), st.integers(-3, 3).filter(bool))
def test_a_label_count_that_differs_is_refused(prompt, extra):
    hw, points, labels, box = prompt
    if points is None or len(labels) + extra < 0:
        return
    labels = (labels + [1] * 6)[: len(labels) + extra]
    with pytest.raises(ValueError, match=r"does not match points .*: one label per point"):
        validation.video_prompt(points, labels, box, video_hw=hw)


names = st.text(string.ascii_letters + string.digits + "_-", min_size=1, max_size=12)
ids = st.one_of(st.integers(-(10**6), 10**6), names)


@given(ids)
def test_safe_ids_are_accepted(obj_id):
    assert validation.object_id(obj_id) == obj_id


@given(st.text(min_size=0, max_size=12).filter(lambda s: not validation.SAFE_NAME.fullmatch(s)))
def test_unsafe_ids_are_refused(obj_id):
    with pytest.raises(ValueError, match="it names the output folder"):
        validation.object_id(obj_id)


@given(
    prompt=prompts(), obj_ids=st.lists(ids, min_size=1, max_size=4, unique_by=str), data=st.data()
)
def test_prompts_files_round_trip_and_unknown_keys_are_named(
    prompt, obj_ids, data, tmp_path_factory
):
    hw, points, labels, box = prompt
    entry = {"frame": 0}
    if points is not None:
        entry.update(points=points, labels=labels)
    if box is not None:
        entry["box"] = box
    objects = [{"id": i, "prompts": [entry]} for i in obj_ids]
    path = tmp_path_factory.mktemp("p") / "prompts.json"
    path.write_text(json.dumps({"objects": objects}))
    got = load_prompts(path, num_frames=1, video_hw=hw)
    assert [p["obj_id"] for p in got] == obj_ids

    key = data.draw(st.text(string.ascii_lowercase, min_size=1, max_size=8))
    if key in PROMPT_KEYS:
        return
    k = data.draw(st.integers(0, len(objects) - 1))
    objects[k]["prompts"][0] = {**entry, key: 1}
    path.write_text(json.dumps({"objects": objects}))
    with pytest.raises(ValueError, match=rf"objects\[{k}\] .*prompts\[0\]: unknown key '{key}'"):
        load_prompts(path, num_frames=1, video_hw=hw)
