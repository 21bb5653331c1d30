"""Output folders and files: a non-empty --out (or an existing export target, eval scores
file or training export folder) is refused before any model is built unless --overwrite;
results are written atomically; `sam2-jax eval` reads grey 0/255 masks as binary and reports
bad folders and mask files not named by their frame number in one line."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
from PIL import Image

from sam2_jax import cli, output_files
from sam2_jax.evaluation import evaluate_folders
from sam2_jax.evaluation.vos import BinaryMasksWarning, read_video_masks
from tests.train_standin import damage_checkpoint


def _error(argv: list[str], capsys) -> str:
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    message = exc.value.code if isinstance(exc.value.code, str) else capsys.readouterr().err
    assert "Traceback" not in message and "building the model" not in capsys.readouterr().out
    return message


@pytest.fixture
def image(tmp_path) -> str:
    path = tmp_path / "small.png"
    Image.fromarray(np.full((40, 60, 3), 90, np.uint8)).save(path)
    return str(path)


def test_non_empty_out_is_refused_before_the_model(image, tmp_path, capsys):
    out = tmp_path / "out"
    out.mkdir()
    (out / "mask_0.png").write_bytes(b"earlier")
    for command in (["segment-image", image, "--point", "5,5"], ["generate-masks", image]):
        got = _error([*command, "--out", str(out)], capsys)
        name = command[0]
        assert got == (
            f"sam2-jax {name}: error: --out '{out}' is not empty (1 entries: mask_0.png): give "
            "--overwrite to replace the results of an earlier run there, or a new folder"
        )
        got = _error([*command, "--out", image], capsys)
        assert got == f"sam2-jax {name}: error: --out '{image}' is a file, not a folder"
    assert (out / "mask_0.png").read_bytes() == b"earlier"


def test_export_refuses_an_existing_file_before_loading(tmp_path, capsys):
    target = tmp_path / "existing.pt"
    target.write_bytes(b"keep me")
    missing = str(tmp_path / "no_such_checkpoint")  # never read: the --out check comes first
    got = _error(["export", missing, "--out", str(target)], capsys)
    assert got == f"sam2-jax export: error: --out '{target}' exists: give --overwrite to replace it"
    got = _error(["export", missing, "--out", str(tmp_path)], capsys)
    assert got == f"sam2-jax export: error: --out '{tmp_path}' is a folder, not a file"
    got = _error(["export", missing, "--out", str(target), "--overwrite"], capsys)
    assert got.startswith("sam2-jax export: error: ") and missing in got
    assert target.read_bytes() == b"keep me"


def test_atomic_write_leaves_the_old_file_on_failure(tmp_path):
    path = tmp_path / "summary.json"
    output_files.write_text(path, "complete")
    with pytest.raises(RuntimeError), output_files.atomic(path) as temporary:
        temporary.write_text("half")
        raise RuntimeError("crash mid-write")
    assert path.read_text() == "complete" and [p.name for p in tmp_path.iterdir()] == [path.name]


def test_segment_image_overwrite_removes_stale_results(tmp_path, capsys):
    """A 16-bit PNG, segmented with the default model into a folder holding an earlier run's
    3 masks: --overwrite leaves only this run's results (and the user's own file)."""
    ramp = (np.arange(48 * 64).reshape(48, 64) * 20).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "deep.png")
    out = tmp_path / "out"
    out.mkdir()
    for name in ("mask_0.png", "mask_1.png", "mask_2.png", "scores.json", "notes.txt"):
        (out / name).write_text("old")
    argv = ["segment-image", str(tmp_path / "deep.png"), "--point", "30,20", "--out", str(out)]
    cli.main([*argv, "--no-multimask", "--overwrite"])
    assert sorted(p.name for p in out.iterdir()) == [
        "mask_0.png",
        "notes.txt",
        "overlay.png",
        "scores.json",
    ]
    assert json.loads((out / "scores.json").read_text())["image_hw"] == [48, 64]
    overlay = np.asarray(Image.open(out / "overlay.png"))
    assert overlay[:10, :10].mean() < 100  # the dark corner of the ramp, not white


def _masks(folder, frames, mode="L"):
    folder.mkdir(parents=True)
    for i, mask in enumerate(frames):
        image = Image.fromarray(mask.astype(np.uint8))
        if mode == "P":
            image = image.convert("P")
            image.putpalette([0, 0, 0, 255, 0, 0] + [128] * (3 * 254))
        image.save(folder / f"{i:05d}.png")


def test_eval_reads_grey_0_255_masks_as_binary(tmp_path, capsys):
    frames = [np.zeros((20, 20), np.uint8) for _ in range(4)]
    for i, f in enumerate(frames):
        f[5 : 12 + i, 5:12] = 255
    _masks(tmp_path / "gt" / "v", frames)
    _masks(tmp_path / "pred" / "v", frames)
    with pytest.warns(BinaryMasksWarning, match=r"grey PNGs holding only 0 and 255 are read as"):
        masks = read_video_masks(str(tmp_path / "gt" / "v"))
    assert masks.object_ids == (1,) and masks.void is None and masks.masks.sum() > 0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BinaryMasksWarning)
        assert evaluate_folders(str(tmp_path / "gt"), str(tmp_path / "pred"))["J&F-Mean"] == 1.0
    cli.main(["eval", "--gt", str(tmp_path / "gt"), "--pred", str(tmp_path / "pred")])
    captured = capsys.readouterr()
    assert "sam2-jax eval: warning: " in captured.err and "255 = object 1" in captured.err
    assert "1.0000" in captured.out

    # palettised: 255 stays void (DAVIS), with no warning; ids from the palette indices
    palettised = [np.where(f == 255, 1, 0) for f in frames]
    palettised[1][0, :] = 255
    _masks(tmp_path / "davis" / "v", palettised, mode="P")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        masks = read_video_masks(str(tmp_path / "davis" / "v"))
    assert masks.object_ids == (1,) and masks.void is not None and masks.void[1, 0].all()


def test_eval_errors_are_one_line(tmp_path, capsys):
    got = _error(["eval", "--gt", str(tmp_path / "none"), "--pred", str(tmp_path)], capsys)
    assert got == f"sam2-jax eval: error: '{tmp_path / 'none'}' is not a folder"
    _masks(tmp_path / "gt" / "v", [np.zeros((8, 8))] * 3)
    (tmp_path / "pred").mkdir()
    got = _error(["eval", "--gt", str(tmp_path / "gt"), "--pred", str(tmp_path / "pred")], capsys)
    assert got.startswith("sam2-jax eval: error: ") and "no predictions for video 'v'" in got
    _masks(tmp_path / "pred" / "v", [np.zeros((8, 8)), np.zeros((9, 8)), np.zeros((8, 8))])
    got = _error(["eval", "--gt", str(tmp_path / "gt"), "--pred", str(tmp_path / "pred")], capsys)
    assert "mask 00001.png is 8x9 but 00000.png is 8x8" in got
    (tmp_path / "pred" / "v" / "00002.png").unlink()  # a frame fewer than the ground truth
    got = _error(["eval", "--gt", str(tmp_path / "gt"), "--pred", str(tmp_path / "pred")], capsys)
    assert got.endswith(f"{tmp_path / 'pred' / 'v'}: missing masks for frames ['00002.png']")
    gt_video = tmp_path / "gt" / "v"
    (gt_video / "00001 (copy).png").write_bytes((gt_video / "00001.png").read_bytes())
    got = _error(["eval", "--gt", str(tmp_path / "gt"), "--pred", str(tmp_path / "pred")], capsys)
    assert got.endswith(
        f"{gt_video}: frame file '00001 (copy).png' is not named by its frame number "
        "(00000.png, 00001.png, ...): rename it or move it out of the folder"
    )


def test_eval_and_eval_synthetic_refuse_an_existing_out_file(tmp_path, capsys):
    frames = [np.zeros((8, 8), np.uint8) for _ in range(3)]
    for f in frames:
        f[2:6, 2:6] = 1  # object 1
    _masks(tmp_path / "gt" / "v", frames, mode="P")
    _masks(tmp_path / "pred" / "v", frames, mode="P")
    out = tmp_path / "scores.json"
    out.write_text("keep me")
    folders = ["--gt", str(tmp_path / "gt"), "--pred", str(tmp_path / "pred")]
    refused = f"--out '{out}' exists: give --overwrite to replace it"
    got = _error(["eval", *folders, "--out", str(out)], capsys)
    assert got == f"sam2-jax eval: error: {refused}"
    got = _error(["eval-synthetic", "--videos", "1", "--out", str(out)], capsys)
    assert got == f"sam2-jax eval-synthetic: error: {refused}"  # before the model is built
    got = _error(["eval", *folders, "--out", str(tmp_path)], capsys)
    assert got == f"sam2-jax eval: error: --out '{tmp_path}' is a folder, not a file"
    assert out.read_text() == "keep me"
    cli.main(["eval", *folders, "--out", str(out), "--overwrite"])
    assert json.loads(out.read_text())["videos"]["v"]["1"]["J&F"] == 1.0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gt", "pred", "scores.json"]


def _run_checkpoint(workdir, step: int) -> None:
    """A training run's checkpoint as train-export reads it: random sam2.1_hiera_nano params."""
    import jax
    import orbax.checkpoint as ocp

    from sam2_jax.config import get_config
    from sam2_jax.modeling.sam2_base import SAM2, quick_random_params

    model = SAM2(get_config("sam2.1_hiera_nano", image_size=64))
    params = jax.device_get(quick_random_params(model, 0))
    with ocp.StandardCheckpointer() as checkpointer:
        checkpointer.save(
            (workdir / "checkpoints" / str(step) / "state").absolute(), {"params": params}
        )


def test_train_export_refuses_a_non_empty_out_before_reading_the_run(tmp_path, capsys):
    (tmp_path / "run" / "checkpoints" / "4").mkdir(parents=True)  # not read by the refusals
    out = tmp_path / "export"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    argv = ["train-export", "--workdir", str(tmp_path / "run"), "--model", "sam2.1_hiera_nano"]
    argv += ["--image-size", "64", "--out", str(out)]
    assert _error(argv, capsys) == (
        f"sam2-jax train-export: error: --out '{out}' is not empty (1 entries: notes.txt): give "
        "--overwrite to replace the results of an earlier run there, or a new folder"
    )
    got = _error([*argv, "--step", "2"], capsys)  # the step is checked first
    assert got.startswith("sam2-jax train-export: error: no checkpoint of step 2 in ")
    assert got.endswith("(have [4])") and [p.name for p in out.iterdir()] == ["notes.txt"]

    # --overwrite replaces an earlier export there and keeps the user's file
    (tmp_path / "run" / "checkpoints" / "4").rmdir()
    _run_checkpoint(tmp_path / "run", 4)
    (out / "params").mkdir()
    (out / "params" / "stale").write_text("an earlier export")
    (out / "config.json").write_text("{}")
    got = _error([*argv, "--overwrite", "--memory-policy", "dam5sam"], capsys)
    assert got.startswith("sam2-jax train-export: error: unknown memory policy 'dam5sam'")
    assert (out / "params" / "stale").exists()  # refused before anything was written
    cli.main([*argv, "--overwrite", "--dtype", "float16", "--memory-policy", "dam4sam"])
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "notes.txt", "params"]
    assert not (out / "params" / "stale").exists()
    meta = json.loads((out / "config.json").read_text())
    assert meta["name"] == "sam2.1_hiera_nano" and meta["source"].endswith("step 4 (float16)")
    assert meta["memory_policy"] == "dam4sam"

    # a damaged run checkpoint is one line too
    damage_checkpoint(tmp_path / "run" / "checkpoints" / "4")
    got = _error([*argv, "--overwrite"], capsys)
    assert got.startswith(
        f"sam2-jax train-export: error: checkpoint step 4 in {tmp_path / 'run' / 'checkpoints'}"
        " is unreadable ("
    )
    assert "\n" not in got
