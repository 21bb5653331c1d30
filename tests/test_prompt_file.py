"""`track-video` inputs: the prompts file, the frames folder and --out, refused with a message
that names the key / object / frame / file, before any model is built (each test here runs
the CLI but none builds a model, except the last, which tracks 12 small frames)."""

from __future__ import annotations

import json
import re
import types

import numpy as np
import pytest
from PIL import Image

from sam2_jax import cli
from sam2_jax.cli.prompt_file import load_prompts
from sam2_jax.video.frames import VideoFrames
from sam2_jax.video.io import list_frames

H, W = 40, 48
CLICK = {"frame": 0, "points": [[20, 20]], "labels": [1]}


def _frames(folder, n=4, sizes=None):
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        h, w = (sizes or {}).get(i, (H, W))
        pixels = np.zeros((h, w, 3), np.uint8)
        pixels[10:30, 10 + i : 30 + i] = 200
        Image.fromarray(pixels).save(folder / f"{i:05d}.jpg")
    return folder


def _prompts(tmp_path, data) -> str:
    path = tmp_path / "prompts.json"
    path.write_text(data if isinstance(data, str) else json.dumps(data))
    return str(path)


def _track(argv, capsys) -> str:
    """Runs track-video expecting an error; returns its one-line message."""
    with pytest.raises(SystemExit) as exc:
        cli.main(["track-video", *argv])
    message = exc.value.code if isinstance(exc.value.code, str) else capsys.readouterr().err
    assert message.startswith("sam2-jax track-video: error: "), message
    assert "Traceback" not in message and "building" not in capsys.readouterr().out
    return message


BAD_FILES = [
    (
        {"objects": [{"id": 1, "prompts": [{"frame": 0, "points": [[20, 20]], "lables": [0]}]}]},
        r"objects\[0\] \(id 1\), prompts\[0\]: unknown key 'lables' in a prompt "
        r"\(did you mean 'labels'\?\)",
    ),
    (
        {"objects": [{"id": 1, "prompt": [CLICK]}]},
        r"objects\[0\]: unknown key 'prompt' in an object \(did you mean 'prompts'\?\)",
    ),
    (
        {"objects": [{"id": 1, "prompts": [CLICK]}], "objcts": []},
        r"unknown key 'objcts' in the file \(did you mean 'objects'\?\)",
    ),
    (
        {
            "objects": [
                {"id": 1, "prompts": [{"frame": 0, "points": [[float("nan"), 20]], "labels": [1]}]}
            ]
        },
        r"prompts\[0\] \(frame 0\): points must be finite numbers, got nan at index \[0, 0\]",
    ),
    (
        {"objects": [{"id": 1, "prompts": [{"frame": 0, "box": [1, 2, float("inf"), 9]}]}]},
        r"box must be finite numbers, got inf at index \[2\]",
    ),
    (
        {"objects": [{"id": 1, "prompts": [{"frame": 0, "box": [30, 30, 5, 5]}]}]},
        r"box \[30.0, 30.0, 5.0, 5.0\] is reversed",
    ),
    (
        {"objects": [{"id": 1, "prompts": [CLICK]}, {"id": 1, "prompts": [CLICK]}]},
        r"objects\[1\]: id 1 is already used by objects\[0\]: every object needs its own id",
    ),
    (
        {"objects": [{"id": 1, "prompts": [CLICK]}, {"id": "1", "prompts": [CLICK]}]},
        r"objects\[1\]: id '1' is already used by objects\[0\]",
    ),
    (
        {"objects": [{"id": "../../x", "prompts": [CLICK]}]},
        r"objects\[0\]: 'id' must be an int or a name of letters, digits, '_' and '-' "
        r"\(it names the output folder\), got '../../x'",
    ),
    ({"objects": [{"id": True, "prompts": [CLICK]}]}, r"'id' must be an int or a name"),
    (
        {"objects": [{"id": 1, "prompts": [CLICK, {"frame": 0, "box": [1, 1, 9, 9]}]}]},
        r"prompts\[0\] and prompts\[1\] are both on frame 0",
    ),
    (
        {"objects": [{"id": 1, "prompts": [{"frame": 4, "box": [1, 1, 9, 9]}]}]},
        r"prompts\[0\]: 'frame' 4 out of range: the video has 4 frames \(0 to 3\)",
    ),
    (
        {"objects": [{"id": 1, "prompts": [{"frame": "0", "box": [1, 1, 9, 9]}]}]},
        r"'frame' must be an int, got '0'",
    ),
    (
        {"objects": [{"id": 1, "prompts": [{"frame": 0, "points": [[60, 20]], "labels": [1]}]}]},
        r"point \(60, 20\) lies outside the 48x40 video",
    ),
    (
        {"objects": [{"id": 1, "prompts": [{"frame": 0, "points": [[6, 2]], "labels": [1, 0]}]}]},
        r"labels shape \(2,\) does not match points \(1, 2\): one label per point",
    ),
    (
        {"objects": [{"id": 1, "prompts": [{"frame": 0, "labels": [1]}]}]},
        r"'labels' given without 'points'",
    ),
    (
        {"objects": [{"id": 1, "prompts": [{"frame": 0, "points": [[6, 2]], "mask": "m.png"}]}]},
        r"a 'mask' prompt cannot also have points",
    ),
    (
        {"objects": [{"id": 1, "prompts": [{"frame": 0, "mask": "missing.png"}]}]},
        r"prompts\[0\] \(frame 0\): cannot read mask '.*missing.png'",
    ),
    (
        {"objects": [{"id": 1, "prompts": []}]},
        r"objects\[0\] \(id 1\): 'prompts' must be a non-empty list",
    ),
    ({"objects": []}, r"with at least one object"),
    ("{not json", r"cannot read prompts file"),
]


@pytest.mark.parametrize("data, message", BAD_FILES)
def test_bad_prompts_file_is_refused_before_the_model(data, message, tmp_path, capsys):
    frames = _frames(tmp_path / "frames")
    text = data if isinstance(data, str) else json.dumps(data)  # json writes NaN / Infinity
    path = _prompts(tmp_path, text)
    got = _track([str(frames), "--prompts", path, "--out", str(tmp_path / "out")], capsys)
    assert path in got and re.search(message, got), got
    assert not (tmp_path / "out").exists()


def test_mask_prompt_of_the_wrong_size(tmp_path, capsys):
    Image.fromarray(np.full((H, W + 2), 255, np.uint8)).save(tmp_path / "m.png")
    data = {"objects": [{"id": 1, "prompts": [{"frame": 2, "mask": "m.png"}]}]}
    got = _track(
        [str(_frames(tmp_path / "f")), "--prompts", _prompts(tmp_path, data), "--out", "o"], capsys
    )
    assert "prompts[0] (frame 2): mask 'm.png' must be (H, W) = (40, 48) (the video), got" in got


def test_good_file_reads_back(tmp_path):
    Image.fromarray(np.pad(np.full((4, 4), 255, np.uint16) * 200, 18)).save(tmp_path / "m.png")
    data = {
        "source": "a note",
        "objects": [
            {"id": "car-1", "prompts": [{"frame": 1, "box": [1, 2, 9, 9], "points": [[5, 5]]}]},
            {"id": 7, "prompts": [{"frame": 0, "mask": "m.png"}]},
        ],
    }
    got = load_prompts(_prompts(tmp_path, data), num_frames=2, video_hw=(40, 40))
    assert [(p["obj_id"], p["frame"]) for p in got] == [(7, 0), ("car-1", 1)]
    assert got[0]["mask"].sum() == 16  # a 16-bit mask PNG reads as its non-zero pixels
    np.testing.assert_array_equal(got[1]["box"], [1, 2, 9, 9])
    np.testing.assert_array_equal(got[1]["labels"], [1])  # clicks without labels are positive


def test_frames_folder_errors_name_the_frame_and_file(tmp_path, capsys):
    prompts = _prompts(tmp_path, {"objects": [{"id": 1, "prompts": [CLICK]}]})
    mixed = _frames(tmp_path / "mixed", 4, sizes={2: (80, 96)})
    got = _track([str(mixed), "--prompts", prompts, "--out", str(tmp_path / "o")], capsys)
    assert "frame 2 (" in got and "00002.jpg) is 96x80 but frame 0 (" in got
    assert "every frame of a video must have the same size" in got
    with pytest.raises(ValueError, match=r"frame 2 \(.*00002.jpg\) is 96x80"):
        VideoFrames(str(mixed), 64)

    copy = _frames(tmp_path / "copy")
    Image.open(copy / "00001.jpg").save(copy / "00001 (copy).jpg")
    got = _track([str(copy), "--prompts", prompts, "--out", str(tmp_path / "o")], capsys)
    assert "frame file '00001 (copy).jpg' is not named by its frame number" in got
    (copy / "00001 (copy).jpg").rename(copy / "1.jpg")
    with pytest.raises(ValueError, match=r"frame files '00001.jpg' and '1.jpg' have the same"):
        list_frames(copy)

    corrupt = _frames(tmp_path / "corrupt")
    (corrupt / "00003.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    got = _track([str(corrupt), "--prompts", prompts, "--out", str(tmp_path / "o")], capsys)
    assert "cannot read frame 3 (" in got and "00003.jpg)" in got
    assert not (tmp_path / "o").exists()


def test_out_and_flags_are_checked_first(tmp_path, capsys):
    frames = _frames(tmp_path / "frames")
    prompts = _prompts(tmp_path, {"objects": [{"id": 1, "prompts": [CLICK]}]})
    base = [str(frames), "--prompts", prompts, "--out"]
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "summary.json").write_text("{}")
    got = _track([*base, str(tmp_path / "old")], capsys)
    assert (
        "--out '" in got and "old' is not empty (1 entries: summary.json): give --overwrite" in got
    )
    got = _track([*base, str(tmp_path / "prompts.json")], capsys)
    assert "prompts.json' is a file, not a folder" in got
    got = _track([*base, str(tmp_path / "o"), "--overlay", "../escape.mp4"], capsys)
    assert "--overlay must be a file name ending in .mp4 or .gif, got '../escape.mp4'" in got
    got = _track([*base, str(tmp_path / "o"), "--overlay", "x.avi"], capsys)
    assert "--overlay must be a file name ending in .mp4 or .gif" in got
    assert "--fps must be a number > 0, got 0.0" in _track([*base, "o", "--fps", "0"], capsys)
    assert "--max-frames must be >= 1" in _track([*base, "o", "--max-frames", "0"], capsys)


class _StubPredictor:
    """Stands in for the video predictor: reads the real frames in chunks of 8 as
    propagation does, and gives empty masks (no model is built or run)."""

    def __init__(self, *args, **kwargs):
        model = types.SimpleNamespace(name="stub", image_size=32)
        self.model = types.SimpleNamespace(
            config=model, checkpoint=None, random_weights=True, memory_policy=None
        )

    def init_state(self, video, max_frames=None):
        frames = VideoFrames(video, 32, max_frames=max_frames)
        return types.SimpleNamespace(
            frames=frames, obj_ids=[], num_frames=frames.num_frames,
            video_height=frames.height, video_width=frames.width,
        )  # fmt: skip

    def add_new_points_or_box(self, state, frame_idx, obj_id, **prompt):
        state.obj_ids.append(obj_id)

    def propagate_in_video(self, state, start, reverse=False):
        order = list(range(start, -1, -1) if reverse else range(start, state.num_frames))
        for i in range(0, len(order), 8):
            state.frames.load(np.array(order[i : i + 8]))
            for f in order[i : i + 8]:
                shape = (len(state.obj_ids), 1, state.video_height, state.video_width)
                yield f, list(state.obj_ids), np.ones(shape, np.float32)


@pytest.mark.parametrize("real_model", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_corrupt_frame_mid_video_keeps_the_tracked_frames(
    real_model, tmp_path, capsys, monkeypatch
):
    """10 frames, frame 9 truncated: the first chunk (frames 0-7) is kept, summary.json says
    "complete": false, and no overlay (nor a temporary file) is left. The stand-in predictor
    runs in a second; the real default model (slow) takes ~20-30 s on a busy CPU."""
    if not real_model:
        monkeypatch.setattr("sam2_jax.video.predictor.build_sam2_video_predictor", _StubPredictor)
    frames = _frames(tmp_path / "frames", 10)
    noise = np.random.default_rng(0).integers(0, 255, (H, W, 3)).astype(np.uint8)
    Image.fromarray(noise).save(frames / "00009.jpg", quality=95)
    data = (frames / "00009.jpg").read_bytes()
    (frames / "00009.jpg").write_bytes(data[: len(data) // 2])
    prompts = _prompts(tmp_path, {"objects": [{"id": 1, "prompts": [CLICK]}]})
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exc:
        cli.main(["track-video", str(frames), "--prompts", prompts, "--out", str(out)])
    got = exc.value.code
    assert got.startswith("sam2-jax track-video: error: cannot decode frame 9 ("), got
    assert "00009.jpg): image file is truncated" in got
    assert "the 8 frames tracked before it (frames 0-7) are kept in" in got
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] is False and summary["frames_done"] == "0-7"
    assert "cannot decode frame 9" in summary["error"]
    rle = json.loads((out / "masks_rle.json").read_text())
    assert sorted(rle["frames"], key=int) == [str(f) for f in range(8)]
    assert len(list((out / "masks" / "1").glob("*.png"))) == 8
    assert not (out / "overlay.mp4").exists()
    assert not [p for p in out.rglob("*") if ".partial" in p.name]  # no temporary left


def test_overwrite_replaces_an_earlier_run(tmp_path, capsys, monkeypatch):
    """--overwrite deletes the earlier run's results (a stale object folder among them) and
    keeps other files; the new summary says "complete": true."""
    monkeypatch.setattr("sam2_jax.video.predictor.build_sam2_video_predictor", _StubPredictor)
    frames = _frames(tmp_path / "frames", 3)
    prompts = _prompts(tmp_path, {"objects": [{"id": 1, "prompts": [CLICK]}]})
    out = tmp_path / "out"
    (out / "masks" / "old_object").mkdir(parents=True)
    (out / "summary.json").write_text('{"complete": true, "stale": true}')
    (out / "notes.txt").write_text("mine")
    cli.main(["track-video", str(frames), "--prompts", prompts, "--out", str(out), "--overwrite"])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["complete"] is True and "stale" not in summary
    assert sorted(p.name for p in (out / "masks").iterdir()) == ["1"]
    assert (out / "notes.txt").read_text() == "mine" and (out / "overlay.mp4").exists()
