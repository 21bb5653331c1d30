"""The interactive video predictor against the reference `SAM2VideoPredictor`.

One scripted session runs on both predictors (same weights, the first 30 frames of the sample
video at image size 256, objects made present by the harness's object-score bias) and every
output of every step is compared:

  (a) a click on frame 0, propagate;
  (b) a negative correction click on a tracked frame (then one more click on it, which
      feeds the previous logits back in), propagate again;
  (c) a second object by a box on frame 8 after tracking, propagate from frame 8;
  (d) `add_new_mask` on frame 12 (a new conditioning frame of the first object), propagate;
  (e) reverse propagation from frame 11 (its successors tracked in (d));
  (f) `remove_object`, `clear_all_prompts_in_frame` and a new click, propagate;
      `reset_state`, then a new click and a short propagation.

Tolerances are the video core's (tests/tracking_harness.py): masks identical on >= 99 % of
the pixels of every output, logits of prompted outputs within 1e-3 of the reference's largest
|logit| (per object, on the pixels where both sides keep the same object after the
non-overlap step), object scores of every stored output within 1e-2.

Post-processing is on on both sides: non-overlapping masks, and hole filling (area 8). The
reference fills holes with a CUDA extension that CPU installs lack (it then skips the step);
here its connected-components call is replaced by a plain breadth-first search written in
this file, so its own rule (`fill_holes_in_mask_scores`) runs on CPU and is compared with
ours (scipy labelling).
"""

from __future__ import annotations

import collections

import numpy as np
import pytest
import torch

from sam2_jax.build import SAM2Model
from sam2_jax.video.postprocess import fill_holes
from sam2_jax.video.predictor import SAM2VideoPredictor
from tests import reference as ref
from tests import tracking_harness as th

NAME, BIAS = "sam2.1_hiera_t", 2.0
FILLED = collections.Counter()  # hole pixels the reference filled, over the session


def components_bfs(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(N, 1, H, W) binary -> (labels, areas) of its 8-connected components, the contract of
    the reference's CUDA `get_connected_components` (0 off-mask)."""
    m = mask.numpy().astype(bool)
    labels = np.zeros(m.shape, np.int32)
    areas = np.zeros(m.shape, np.int32)
    h, w = m.shape[-2:]
    for n in range(m.shape[0]):
        next_label = 0
        for y0 in range(h):
            for x0 in range(w):
                if not m[n, 0, y0, x0] or labels[n, 0, y0, x0]:
                    continue
                next_label += 1
                labels[n, 0, y0, x0] = next_label
                queue, pixels = [(y0, x0)], []
                while queue:
                    y, x = queue.pop()
                    pixels.append((y, x))
                    for dy in (-1, 0, 1):
                        for dx in (-1, 0, 1):
                            yy, xx = y + dy, x + dx
                            if 0 <= yy < h and 0 <= xx < w and m[n, 0, yy, xx]:
                                if not labels[n, 0, yy, xx]:
                                    labels[n, 0, yy, xx] = next_label
                                    queue.append((yy, xx))
                for y, x in pixels:
                    areas[n, 0, y, x] = len(pixels)
    FILLED["pixels"] += int(((labels > 0) & (areas <= 8)).sum())
    return torch.from_numpy(labels), torch.from_numpy(areas)


def test_fill_holes_rule():
    """Our hole filling equals the reference's rule (through the search above) on random
    logits with holes of every size, at and around the area limit, touching the border."""
    from sam2.utils import misc

    rng = np.random.default_rng(0)
    logits = rng.normal(size=(3, 1, 32, 32)).astype(np.float32) + 0.8
    logits[0, 0, :3, :3] = -5  # a 9-pixel corner hole: kept at max_area 8
    logits[1, 0, 10:12, 10:14] = -5  # 8 pixels
    original = misc.get_connected_components
    misc.get_connected_components = components_bfs
    try:
        for area in (1, 8, 9):
            theirs = misc.fill_holes_in_mask_scores(torch.from_numpy(logits), area).numpy()
            ours = fill_holes(logits, area)
            np.testing.assert_array_equal(ours, theirs)
            assert (ours != logits).any()
    finally:
        misc.get_connected_components = original


def _session(h: int, w: int) -> list[tuple[str, str, dict]]:
    """(session label, operation, arguments): the same calls on both predictors."""
    click = np.array([[0.45 * w, 0.6 * h]], np.float32)
    negative = np.array([[0.3 * w, 0.35 * h]], np.float32)
    box = np.array([0.05 * w, 0.1 * h, 0.35 * w, 0.55 * h], np.float32)
    ys, xs = np.mgrid[:h, :w]
    ellipse = ((xs - 0.6 * w) / (0.15 * w)) ** 2 + ((ys - 0.5 * h) / (0.2 * h)) ** 2 <= 1
    one, neg = np.array([1], np.int32), np.array([0], np.int32)
    return [
        ("a", "points", dict(frame_idx=0, obj_id=1, points=click, labels=one)),
        ("a", "propagate", dict(max_frame_num_to_track=8)),
        ("b", "points", dict(frame_idx=6, obj_id=1, points=negative, labels=neg)),
        (
            "b",
            "points",
            dict(frame_idx=6, obj_id=1, points=click, labels=one, clear_old_points=False),
        ),
        ("b", "propagate", dict(max_frame_num_to_track=8)),
        ("c", "points", dict(frame_idx=8, obj_id=7, box=box)),
        ("c", "propagate", dict(start_frame_idx=8, max_frame_num_to_track=4)),
        ("d", "mask", dict(frame_idx=12, obj_id=1, mask=ellipse)),
        ("d", "propagate", dict(start_frame_idx=8, max_frame_num_to_track=6)),
        ("e", "propagate", dict(start_frame_idx=11, max_frame_num_to_track=4, reverse=True)),
        ("f", "remove", dict(obj_id=1)),
        ("f", "clear", dict(frame_idx=8, obj_id=7)),
        ("f", "points", dict(frame_idx=8, obj_id=7, points=click, labels=one)),
        ("f", "propagate", dict(start_frame_idx=8, max_frame_num_to_track=2)),
        ("f", "reset", {}),
        ("f", "points", dict(frame_idx=3, obj_id=2, points=negative, labels=one)),
        ("f", "propagate", dict(max_frame_num_to_track=2)),
    ]


def _run(predictor, state, op: str, args: dict) -> list[tuple[int, list, np.ndarray]]:
    """One operation -> its outputs as [(frame_idx, obj_ids, (N, 1, H, W) logits)]."""
    if op == "points":
        return [predictor.add_new_points_or_box(state, **args)]
    if op == "mask":
        return [predictor.add_new_mask(state, **args)]
    if op == "clear":
        return [predictor.clear_all_prompts_in_frame(state, **args)]
    if op == "propagate":
        return list(predictor.propagate_in_video(state, **args))
    if op == "remove":
        obj_ids, updated = predictor.remove_object(state, **args)
        return [(f, obj_ids, masks) for f, masks in updated]
    if op == "reset":
        predictor.reset_state(state)
        return []
    raise ValueError(op)


def _their_scores(state) -> dict:
    scores = {}
    for obj, outputs in state["output_dict_per_obj"].items():
        for kind in ("cond_frame_outputs", "non_cond_frame_outputs"):
            for f, o in outputs[kind].items():
                scores[(obj, kind[:4], f)] = float(o["object_score_logits"].reshape(()))
    return scores


def _our_scores(state) -> dict:
    scores = {}
    for obj, o in enumerate(state.objects):
        for kind, store in (("cond", o.cond), ("non_", o.non_cond)):
            for f, out in store.items():
                scores[(obj, kind, f)] = out.score
    return scores


@pytest.fixture(scope="module")
def session_results(tmp_path_factory):
    """Runs the session on both sides; per step: (label, op, worst agreement, worst
    prompted logit error, worst score error, outputs compared)."""
    from sam2.utils import misc

    video = th.sample_video(tmp_path_factory)
    theirs, module, variables = th.model_pair(NAME, BIAS)
    ours = SAM2VideoPredictor(
        SAM2Model(module.config, module, variables["params"]),
        fill_hole_area=8,
        non_overlap_masks=True,
        progress=False,
    )
    original = misc.get_connected_components
    misc.get_connected_components = components_bfs
    theirs.non_overlap_masks = True
    FILLED.clear()
    rows = []
    try:
        with torch.inference_mode():
            their_state = theirs.init_state(video_path=str(video.folder))
            our_state = ours.init_state(str(video.folder))
            for label, op, args in _session(*video.hw):
                their_out = _run(theirs, their_state, op, args)
                our_out = _run(ours, our_state, op, args)
                rows.append((label, op, *_compare(their_out, our_out, op), len(their_out)))
                if op == "reset":  # propagating with no object is an error on both sides
                    with pytest.raises(RuntimeError):
                        list(theirs.propagate_in_video(their_state))
                    with pytest.raises(RuntimeError, match="no prompts"):
                        list(ours.propagate_in_video(our_state))
                if op in ("propagate", "reset"):
                    t, o = _their_scores(their_state), _our_scores(our_state)
                    assert t.keys() == o.keys(), (label, op)
                    score_err = max([abs(t[k] - o[k]) for k in t] + [0.0])
                    rows[-1] = rows[-1][:4] + (score_err,) + rows[-1][5:]
    finally:
        misc.get_connected_components = original
        theirs.non_overlap_masks = False
    return rows, FILLED["pixels"]


def _compare(their_out, our_out, op: str) -> tuple[float, float, float]:
    assert len(their_out) == len(our_out), op
    worst, logit_err = 1.0, 0.0
    for (tf, tids, tm), (of, oids, om) in zip(their_out, our_out, strict=True):
        assert tf == of and list(tids) == list(oids), (tf, of, tids, oids)
        tm = tm.float().numpy()
        assert om.shape == tm.shape, (om.shape, tm.shape)
        # With non-overlapping masks each pixel keeps one object's logit; where two objects
        # tie to float precision the two sides may keep different ones (the mask agreement
        # counts those pixels), so logits are compared where the kept object is the same.
        same = np.argmax(om, axis=0) == np.argmax(tm, axis=0)  # (1, H, W)
        for j in range(tm.shape[0]):
            worst = min(worst, float(((om[j] > 0) == (tm[j] > 0)).mean()))
            if op != "propagate":  # prompted outputs
                diff = float(np.abs(om[j] - tm[j])[same].max(initial=0.0))
                logit_err = max(logit_err, diff / max(float(np.abs(tm[j]).max()), 1e-12))
    return worst, logit_err, 0.0


@pytest.mark.slow
def test_session_matches_reference(session_results):
    rows, filled = session_results
    print(f"\nreference hole pixels filled: {filled}")
    for label, op, agreement, logit_err, score_err, n in rows:
        print(
            f"({label}) {op:9s} outputs {n:2d}  worst mask agreement {agreement:.5f}  "
            f"prompted logit err {logit_err:.2e}  score err {score_err:.2e}"
        )
    for label, op, agreement, logit_err, score_err, _ in rows:
        assert agreement >= th.MIN_MASK_AGREEMENT, (label, op, agreement)
        assert logit_err <= th.MAX_PROMPTED_LOGIT_ERROR, (label, op, logit_err)
        assert score_err <= th.MAX_SCORE_ERROR, (label, op, score_err)
    assert filled > 0, "the session never exercised hole filling"


# --- frames, bad input, outputs, streaming, CLI ------------------------------------------------


def test_video_file_matches_jpeg_folder(tmp_path):
    """A video file and the JPEG folder of the same frames give the same model inputs: exactly
    for a lossless encode of the JPEGs, within the codecs' rounding for the sample's mp4."""
    import av

    from sam2_jax.video.frames import VideoFrames
    from sam2_jax.video.io import list_frames

    if not th.VIDEO.is_dir():
        pytest.skip(f"sample video not found at {th.VIDEO}")
    n = 6
    folder = VideoFrames(th.VIDEO, th.SIZE, max_frames=n)
    originals = [f for _, f in zip(range(n), folder.original(), strict=False)]
    lossless = tmp_path / "lossless.mkv"
    with av.open(str(lossless), mode="w") as out:
        stream = out.add_stream("ffv1", rate=10)
        stream.width, stream.height, stream.pix_fmt = folder.width, folder.height, "bgr0"
        for rgb in originals:
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    video = VideoFrames(lossless, th.SIZE)
    assert (video.num_frames, video.height, video.width) == (n, folder.height, folder.width)
    np.testing.assert_array_equal(video.load(np.arange(n)), folder.load(np.arange(n)))
    assert len(list_frames(th.VIDEO)) >= n

    mp4 = th.VIDEO.parent / "bedroom.mp4"
    if not mp4.is_file():
        pytest.skip(f"{mp4} not found")
    decoded = VideoFrames(mp4, th.SIZE, max_frames=n)
    assert (decoded.height, decoded.width) == (folder.height, folder.width)
    diff = np.abs(decoded.resized(np.arange(n)).astype(int) - folder.resized(np.arange(n)))
    print(f"mp4 vs JPEG folder: mean |diff| {diff.mean():.2f}, p99 {np.percentile(diff, 99)}")
    assert diff.mean() < 2.5 and np.percentile(diff, 99) <= 8


@pytest.fixture(scope="module")
def predictor():
    _, module, variables = th.model_pair(NAME, BIAS)
    return SAM2VideoPredictor(
        SAM2Model(module.config, module, variables["params"]), fill_hole_area=0, progress=False
    )


def test_bad_input_is_a_clear_error(predictor, tmp_path, tmp_path_factory):
    video = th.sample_video(tmp_path_factory)
    with pytest.raises(FileNotFoundError, match="video not found"):
        predictor.init_state(tmp_path / "missing.mp4")
    (tmp_path / "corrupt.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    with pytest.raises(ValueError, match="corrupt.mp4"):
        predictor.init_state(tmp_path / "corrupt.mp4")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no JPEG frames"):
        predictor.init_state(tmp_path / "empty")

    state = predictor.init_state(str(video.folder))
    h, w = video.hw
    one = dict(points=[[10.0, 10.0]], labels=[1])
    with pytest.raises(RuntimeError, match="no prompts"):
        list(predictor.propagate_in_video(state))
    with pytest.raises(IndexError, match="out of range: the video has 30 frames"):
        predictor.add_new_points_or_box(state, 30, 1, **one)
    with pytest.raises(IndexError, match="out of range"):
        predictor.add_new_points_or_box(state, -1, 1, **one)
    with pytest.raises(ValueError, match="points is empty"):
        predictor.add_new_points_or_box(state, 0, 1, points=np.zeros((0, 2)), labels=[])
    with pytest.raises(ValueError, match="points or a box|points .with labels. or a box"):
        predictor.add_new_points_or_box(state, 0, 1)
    with pytest.raises(ValueError, match="together"):
        predictor.add_new_points_or_box(state, 0, 1, points=[[1.0, 2.0]])
    outside = r"object 1, frame 0: point \(965, 10\) lies outside the 960x540 video"
    with pytest.raises(ValueError, match=outside):
        predictor.add_new_points_or_box(state, 0, 1, points=[[w + 5.0, 10.0]], labels=[1])
    with pytest.raises(ValueError, match="mask must be"):
        predictor.add_new_mask(state, 0, 1, np.ones((h // 2, w // 2), bool))
    with pytest.raises(KeyError, match="unknown object id 3"):
        predictor.clear_all_prompts_in_frame(state, 0, 3)
    with pytest.raises(KeyError, match="unknown object id 3"):
        predictor.remove_object(state, 3, strict=True)
    assert state.obj_ids == []  # nothing half-added by the failed calls


def test_outputs_round_trip(tmp_path):
    """PNG masks, COCO RLE JSON and overlay videos (mp4, gif) read back as written."""
    import av
    from PIL import Image

    from sam2_jax.video.output import (
        OverlayWriter,
        RLEWriter,
        load_rle_json,
        overlay_frame,
        save_frame_pngs,
    )

    rng = np.random.default_rng(0)
    h, w, n = 37, 50, 3  # odd height: the mp4 writer pads it to an even size
    logits = rng.normal(size=(n, 2, 1, h, w)).astype(np.float32)
    frames = rng.integers(0, 255, (n, h, w, 3), dtype=np.uint8)
    rle = RLEWriter("synthetic", h, w)
    for f in range(n):
        paths = save_frame_pngs(tmp_path / "masks", f, [4, "b"], logits[f])
        for path, m in zip(paths, logits[f, :, 0], strict=True):
            np.testing.assert_array_equal(np.asarray(Image.open(path)) > 0, m > 0)
        rle.add(f, [4, "b"], logits[f])
    assert sorted(p.name for p in (tmp_path / "masks").iterdir()) == ["4", "b"]
    rle.save(tmp_path / "rle.json")
    back = load_rle_json(tmp_path / "rle.json")
    assert sorted(back) == list(range(n))
    for f in range(n):
        np.testing.assert_array_equal(back[f]["4"], logits[f, 0, 0] > 0)
        np.testing.assert_array_equal(back[f]["b"], logits[f, 1, 0] > 0)

    overlay = overlay_frame(frames[0], logits[0])
    assert overlay.shape == (h, w, 3) and (overlay != frames[0]).any()
    for name in ("overlay.mp4", "overlay.gif"):
        with OverlayWriter(tmp_path / name, fps=5) as writer:
            for f in range(n):
                writer.write(overlay_frame(frames[f], logits[f]))
        with av.open(str(tmp_path / name)) as container:
            decoded = [x.to_ndarray(format="rgb24") for x in container.decode(video=0)]
        assert len(decoded) == n, name
        assert decoded[0].shape[:2] in ((h, w), (h + 1, w)), decoded[0].shape
    with pytest.raises(ValueError, match=".mp4 or .gif"):
        OverlayWriter(tmp_path / "x.avi")


@pytest.mark.slow
def test_stream_tracker_matches_predictor(predictor, tmp_path_factory):
    """Frames fed one at a time (bounded memory) give the predictor's propagation outputs."""
    from sam2_jax.video.stream import StreamTracker

    video = th.sample_video(tmp_path_factory)
    h, w = video.hw
    click, one = np.array([[0.45 * w, 0.6 * h]], np.float32), np.array([1], np.int32)
    state = predictor.init_state(str(video.folder))
    predictor.add_new_points_or_box(state, 0, 1, points=click, labels=one)
    expected = list(predictor.propagate_in_video(state, max_frame_num_to_track=4))
    tracker = StreamTracker(predictor.model, video.hw, cond_capacity=2, fill_hole_area=0)
    tracker.add_prompt(1, points=click, labels=one)
    frames = state.frames.original()
    for f, obj_ids, theirs in expected:
        g, ids, ours = tracker.track(next(frames))
        assert (g, ids) == (f, obj_ids)
        agreement = float(((ours > 0) == (theirs > 0)).mean())
        assert agreement >= th.MIN_MASK_AGREEMENT, (f, agreement)
        stored = state.objects[0].cond.get(f) or state.objects[0].non_cond[f]
        assert abs(float(tracker.scores[0]) - stored.score) <= th.MAX_SCORE_ERROR, f
        if f == 0:
            assert ref.relative_max_error(ours, theirs) <= th.MAX_PROMPTED_LOGIT_ERROR
    with pytest.raises(ValueError, match="frame must be"):
        tracker.track(np.zeros((h // 2, w, 3), np.uint8))


@pytest.mark.slow
def test_track_video_cli(tmp_path, tmp_path_factory, capsys):
    """`sam2-jax track-video` on the sample frames (30 frames at 256, random weights): mask
    PNGs, RLE JSON, overlay video and summary."""
    import json

    import av

    from sam2_jax.cli import main

    video = th.sample_video(tmp_path_factory)
    h, w = video.hw
    prompts = {
        "objects": [
            {"id": 1, "prompts": [{"frame": 0, "points": [[0.45 * w, 0.6 * h]], "labels": [1]}]},
            {"id": 2, "prompts": [{"frame": 0, "box": [0.05 * w, 0.1 * h, 0.35 * w, 0.55 * h]}]},
        ]
    }
    (tmp_path / "prompts.json").write_text(json.dumps(prompts))
    out = tmp_path / "out"
    main(
        ["track-video", str(video.folder), "--prompts", str(tmp_path / "prompts.json")]
        + ["--out", str(out), "--config", NAME, "--image-size", str(th.SIZE), "--random-weights"]
    )
    captured = capsys.readouterr()
    assert "RANDOM" in captured.err
    summary = json.loads((out / "summary.json").read_text())
    assert summary["random_weights"] and summary["outputs"] == th.NUM_FRAMES
    assert summary["frames_per_second"] > 0 and summary["peak_rss_mib"] > 0
    rle = json.loads((out / "masks_rle.json").read_text())
    assert len(rle["frames"]) == th.NUM_FRAMES and rle["obj_ids"] == [1, 2]
    assert len(list((out / "masks" / "2").glob("*.png"))) == th.NUM_FRAMES
    with av.open(str(out / "overlay.mp4")) as container:
        assert sum(1 for _ in container.decode(video=0)) == th.NUM_FRAMES

    bad = tmp_path / "bad.json"
    bad.write_text(
        json.dumps({"objects": [{"id": 1, "prompts": [{"frame": 99, "box": [0, 0, 9, 9]}]}]})
    )
    with pytest.raises(SystemExit, match="'frame' 99 out of range: the video has 30 frames"):
        main(
            ["track-video", str(video.folder), "--prompts", str(bad), "--out", str(out)]
            + ["--config", NAME, "--image-size", str(th.SIZE), "--random-weights"]
        )
