"""Training data: the three tfds builders read back without TensorFlow, clip sampling and the
reference augmentations, the grain loader's batches, resumption and sharding, and the
synthetic videos' motion, occlusion, exits and entries."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pathlib
import sys
import zlib

import numpy as np
import pytest
import tensorflow_datasets as tfds
from PIL import Image
from pycocotools import mask as mask_utils

from sam2_jax.train.data import AugmentConfig, DataConfig, augment, make_loader, records
from sam2_jax.train.data.builders import MovingShapes, SavMasklets, VosFolder, prepare
from sam2_jax.train.data.loader import data_source
from sam2_jax.train.data.sampler import choose_clip, make_example
from sam2_jax.train.data.synthetic import generate_video

tfds.disable_progress_bar()
# the shared sample data beside the project root (as tests/reference.py, without its torch import)
SHARED_DATA = pathlib.Path(__file__).resolve().parents[2] / "shared" / "data"
BEDROOM = os.path.join(SHARED_DATA, "videos", "bedroom")
NO_AUG = AugmentConfig(
    hflip_p=0.0,
    affine_degrees=0.0,
    affine_shear=0.0,
    clip_jitter=(0.0, 0.0, 0.0),
    grayscale_p=0.0,
    frame_jitter=(0.0, 0.0, 0.0),
)
SYN = dict(seed=3, num_frames=10, height=64, width=64, num_objects=3)


# ---------------------------------------------------------------- fixtures (built once)


@pytest.fixture(scope="module")
def synthetic_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("tfds_syn")
    return prepare(
        MovingShapes(splits={"train": 6, "validation": 2}, min_frames=8, data_dir=str(root), **SYN)
    )


def _davis_labels(t, h, w):
    """Palette ids of frame t: object 1 moves right, object 2 appears at frame 2, void rim."""
    lab = np.zeros((h, w), np.uint8)
    lab[10:30, 5 + 4 * t : 25 + 4 * t] = 1
    if t >= 2:
        lab[35:50, 60:90] = 2
    lab[:2] = 255
    return lab


@pytest.fixture(scope="module")
def davis_dir(tmp_path_factory):
    """JPEGImages/Annotations folders from the bedroom frames: video 'bedroom' (10 frames,
    frame 9 unannotated) and video 'short' (3 frames, below min_frames)."""
    if not os.path.isdir(BEDROOM):
        pytest.skip(f"shared sample data not found at {BEDROOM}")
    root = tmp_path_factory.mktemp("davis")
    img, gt = root / "JPEGImages", root / "Annotations"
    h, w = 68, 120
    for video, n in (("bedroom", 10), ("short", 3)):
        os.makedirs(img / video)
        os.makedirs(gt / video)
        for t in range(n):
            with Image.open(os.path.join(BEDROOM, f"{t:05d}.jpg")) as im:
                im.convert("RGB").resize((w, h), Image.BILINEAR).save(img / video / f"{t:05d}.jpg")
            if t == 9:
                continue  # not annotated: must be left out
            pal = Image.fromarray(_davis_labels(t, h, w), mode="P")
            pal.putpalette([0, 0, 0, 200, 0, 0, 0, 200, 0] + [255] * (253 * 3))
            pal.save(gt / video / f"{t:05d}.png")
    builder = VosFolder(
        splits={"train": (str(img), str(gt))}, min_frames=4, data_dir=str(root / "tfds")
    )
    return prepare(builder), str(img)


@pytest.fixture(scope="module")
def sav_dir(tmp_path_factory):
    """An SA-V style folder: sav_000/sav_000001.mp4 (24 frames, 64x48, h264) with masklets
    for every 4th frame; masklet 1 is null at annotated frame 3."""
    import av

    root = tmp_path_factory.mktemp("sav")
    os.makedirs(root / "sav_000")
    video = generate_video(7, 0, num_frames=24, height=48, width=64, num_objects=2)
    with av.open(str(root / "sav_000" / "sav_000001.mp4"), "w") as out:
        stream = out.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        stream.options = {"crf": "1"}
        for f in video.frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(f, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    masklet = []
    for t in range(0, 24, 4):
        rles = mask_utils.encode(
            np.asfortranarray(video.masks[t].transpose(1, 2, 0).astype(np.uint8))
        )
        masklet.append([{"size": r["size"], "counts": r["counts"].decode()} for r in rles])
    masklet[3][1] = None
    with open(root / "sav_000" / "sav_000001_manual.json", "w") as f:
        json.dump({"video_id": "sav_000001", "masklet": masklet, "masklet_id": [0, 1]}, f)
    builder = SavMasklets(splits={"train": str(root)}, min_frames=4, data_dir=str(root / "tfds"))
    return prepare(builder), video


# ---------------------------------------------------------------- builders


def test_synthetic_records_roundtrip(synthetic_dir):
    source = data_source(synthetic_dir, "train")
    assert len(source) == 6 and len(data_source(synthetic_dir, "validation")) == 2
    rec = source[0]
    name = rec["video_name"].decode()
    video = generate_video(
        zlib.crc32(b"train") ^ SYN["seed"],
        int(name.split("_")[1]),
        **{k: v for k, v in SYN.items() if k != "seed"},
    )
    frames = np.stack([records.decode_image(b) for b in rec["frames"]])
    np.testing.assert_array_equal(frames, video.frames)  # PNG: lossless
    masks = records.decode_masks(records.mask_table(rec), 64, 64)
    np.testing.assert_array_equal(masks, video.masks)
    assert list(rec["object_ids"]) == [1, 2, 3]
    assert "tensorflow" not in sys.modules


def test_davis_records(davis_dir):
    data_dir, img_root = davis_dir
    source = data_source(data_dir, "train")
    assert len(source) == 1  # 'short' has 3 < min_frames frames
    rec = source[0]
    assert rec["video_name"] == b"bedroom"
    assert list(rec["frame_ids"]) == list(range(9))  # frame 9 has no mask
    assert list(rec["object_ids"]) == [1, 2]  # 255 is void, not an object
    with open(os.path.join(img_root, "bedroom", "00004.jpg"), "rb") as f:
        assert rec["frames"][4] == f.read()  # JPEG bytes stored as they are
    masks = records.decode_masks(records.mask_table(rec), 68, 120)
    for t in range(9):
        lab = _davis_labels(t, 68, 120)
        np.testing.assert_array_equal(masks[t, 0], lab == 1)
        np.testing.assert_array_equal(masks[t, 1], lab == 2)


def test_sav_records(sav_dir):
    data_dir, video = sav_dir
    rec = data_source(data_dir, "train")[0]
    assert rec["video_name"] == b"sav_000001"
    assert list(rec["frame_ids"]) == [0, 4, 8, 16, 20]  # frame 12 has a null masklet
    masks = records.decode_masks(records.mask_table(rec), 48, 64)
    np.testing.assert_array_equal(masks, video.masks[[0, 4, 8, 16, 20]])
    frames = np.stack([records.decode_image(b) for b in rec["frames"]]).astype(np.float32)
    err = np.abs(frames - video.frames[[0, 4, 8, 16, 20]]).mean()
    assert err < 6.0, err  # h264 + JPEG, but the same pictures in the same order


def test_sav_annotations_past_the_video_end(sav_dir, tmp_path):
    import shutil

    root = os.path.dirname(os.path.dirname(os.path.dirname(sav_dir[0])))  # <root>/tfds/name/1.0.0
    shutil.copy(os.path.join(root, "sav_000", "sav_000001.mp4"), tmp_path / "v.mp4")
    empty = {"size": [48, 64], "counts": "PP5"}  # not decoded before the check
    with open(tmp_path / "v_manual.json", "w") as f:
        json.dump({"masklet": [[empty]] * 7}, f)  # frame 24 of a 24-frame video
    builder = SavMasklets(splits={"train": str(tmp_path)}, data_dir=str(tmp_path / "o"))
    with pytest.raises(ValueError, match=r"annotated frames \[24\] are past the video's end"):
        prepare(builder)


def test_sav_missing_video(tmp_path):
    with open(tmp_path / "x_manual.json", "w") as f:
        json.dump({"masklet": [[None]]}, f)
    builder = SavMasklets(splits={"train": str(tmp_path)}, data_dir=str(tmp_path / "o"))
    with pytest.raises(FileNotFoundError, match="have no video"):
        prepare(builder)


# ---------------------------------------------------------------- sampling and augmentation


def test_split_too_large_without_tensorflow_is_a_clear_error(tmp_path, monkeypatch):
    """tfds spills a split over its in-memory shuffle limit to disk through TensorFlow; without
    TensorFlow installed that is a clear error naming the cause, not a bare import failure."""
    import importlib.util

    from tensorflow_datasets.core import shuffle

    if importlib.util.find_spec("tensorflow") is not None:
        pytest.skip("TensorFlow is installed: tfds can shuffle on disk")
    monkeypatch.setattr(shuffle, "MAX_MEM_BUFFER_SIZE", 1 << 10)  # 1 KB: any split spills
    builder = MovingShapes(
        splits={"train": 3}, num_frames=2, height=32, width=32, data_dir=str(tmp_path)
    )
    with pytest.raises(RuntimeError, match="TensorFlow is not installed"):
        prepare(builder)


def test_choose_clip_first_frame_objects(synthetic_dir):
    rec = data_source(synthetic_dir, "train")[1]
    table = records.mask_table(rec)
    for s in range(5):
        pos, objs = choose_clip(rec, np.random.default_rng(s), 8, 2, reverse_time_prob=0.5)
        assert len(pos) == 8 and abs(int(pos[-1]) - int(pos[0])) == 7
        assert 1 <= len(objs) <= 2
        first = records.decode_masks(table[pos[:1]][:, objs], 64, 64)
        assert first.any(axis=(2, 3)).all()  # every chosen object is visible in frame 0
    with pytest.raises(ValueError, match="fewer than num_frames=11"):
        choose_clip(rec, np.random.default_rng(0), 11, 2)


def _marked_clip(seed=0):
    """Frames whose red channel is 255 exactly on object 0 (else 0), with texture in green."""
    rng = np.random.default_rng(seed)
    masks = np.zeros((3, 2, 40, 56), bool)
    masks[:, 0, 8:24, 10:30] = True
    masks[:, 1, 25:35, 30:50] = True
    frames = np.zeros((3, 40, 56, 3), np.uint8)
    frames[..., 1] = rng.integers(0, 255, (3, 40, 56))
    frames[..., 0] = masks[:, 0] * 255
    return frames, masks


def test_flip_keeps_masks_aligned():
    frames, masks = _marked_clip()
    cfg = dataclasses.replace(NO_AUG, hflip_p=1.0)
    f, m = augment.augment_clip(frames, masks, np.random.default_rng(0), cfg, 40)
    ref_f, ref_m = augment.resize_square(frames[:, :, ::-1].copy(), masks[..., ::-1].copy(), 40)
    np.testing.assert_array_equal(f, ref_f)
    np.testing.assert_array_equal(m, ref_m)
    np.testing.assert_array_equal(m[:, 0], f[..., 0] >= 128)  # red marks object 0 exactly


def test_affine_keeps_masks_aligned():
    frames, masks = _marked_clip()
    cfg = dataclasses.replace(NO_AUG, affine_degrees=25.0, affine_shear=20.0)
    changed = 0
    for s in range(4):
        f, m = augment.random_affine(frames, masks, np.random.default_rng(s), cfg)
        changed += not np.array_equal(m, masks)
        red = f[..., 0] >= 128
        inter = (red & m[:, 0]).sum()
        assert inter / (red | m[:, 0]).sum() > 0.9  # same geometry (bilinear vs nearest edges)
        assert not (m[:, 0] & m[:, 1]).any()
    assert changed >= 3


def test_augment_deterministic_given_seed():
    frames, masks = _marked_clip()
    cfg = AugmentConfig()
    a = augment.augment_clip(frames, masks, np.random.default_rng(5), cfg, 32)
    b = augment.augment_clip(frames, masks, np.random.default_rng(5), cfg, 32)
    c = augment.augment_clip(frames, masks, np.random.default_rng(6), cfg, 32)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])
    assert a[0].shape == (3, 32, 32, 3) and a[1].shape == (3, 2, 32, 32)


def test_color_jitter_and_grayscale():
    x = np.random.default_rng(0).integers(0, 256, (16, 16, 3)).astype(np.uint8)
    bright = augment.apply_jitter(x, [0, 1, 2], [1.5, 1.0, 1.0]).astype(int)
    assert np.abs(bright - np.clip(x * 1.5, 0, 255)).max() <= 1
    sat0 = augment.apply_jitter(x, [2], [1.0, 1.0, 0.0])  # saturation 0 -> grey
    assert np.abs(sat0[..., 0].astype(int) - sat0[..., 2]).max() <= 1
    con0 = augment.apply_jitter(x, [1], [1.0, 0.0, 1.0])  # contrast 0 -> one flat colour
    assert np.ptp(con0) == 0
    np.testing.assert_array_equal(augment.apply_jitter(x, [0, 1, 2], [1.0, 1.0, 1.0]), x)
    frames, masks = _marked_clip()
    cfg = dataclasses.replace(NO_AUG, grayscale_p=1.0)
    f, _ = augment.augment_clip(frames, masks, np.random.default_rng(0), cfg, 40)
    assert (f[..., 0] == f[..., 1]).all() and (f[..., 1] == f[..., 2]).all()


# ---------------------------------------------------------------- the loader


@pytest.mark.parametrize("which", ["synthetic", "davis", "sav"])
def test_loader_batches(which, request):
    prepared = request.getfixturevalue(f"{which}_dir")
    data_dir = prepared if which == "synthetic" else prepared[0]
    cfg = DataConfig(
        dataset_dir=data_dir,
        image_size=48,
        num_frames=4,
        max_objects=3,
        batch_size=2,
        num_threads=0,
    )
    it = make_loader(cfg, split="train", seed=0)
    for _ in range(2):
        b = next(it)
        assert b["frames"].shape == (2, 4, 48, 48, 3) and b["frames"].dtype == np.uint8
        assert b["masks"].shape == (2, 4, 3, 48, 48) and b["masks"].dtype == np.bool_
        assert b["object_valid"].shape == (2, 3) and b["object_valid"].dtype == np.bool_
        assert b["object_valid"][:, 0].all()  # every clip has a target
        assert not b["masks"][~b["object_valid"][:, None].repeat(4, 1)].any()  # padding empty


def test_loader_resumes_exactly(synthetic_dir):
    cfg = DataConfig(
        dataset_dir=synthetic_dir,
        image_size=32,
        num_frames=4,
        batch_size=2,
        num_threads=2,
    )
    it = make_loader(cfg, split="train", seed=7)
    for _ in range(4):  # past the first epoch (3 batches of 2 from 6 videos)
        next(it)
    state = it.get_state()
    expected = [next(it) for _ in range(3)]
    resumed = make_loader(cfg, split="train", seed=7)
    resumed.set_state(json.loads(json.dumps(state)))  # a state survives serialization
    for want in expected:
        got = next(resumed)
        for k in want:
            np.testing.assert_array_equal(got[k], want[k])
    other = next(make_loader(cfg, split="train", seed=8))
    assert not np.array_equal(other["frames"], expected[0]["frames"])


def test_on_demand_source_gives_the_prepared_videos(synthetic_dir):
    """Video i of `MovingShapesSource` is the prepared split's video i (tfds stores them in
    another order); its loader batches are the same in one process and in grain workers, and
    it goes on past the prepared count."""
    from sam2_jax.train.data.shapes_source import MovingShapesSource

    source = MovingShapesSource(6, **SYN)
    prepared = data_source(synthetic_dir, "train")
    names = set()
    for record in prepared:
        name = record["video_name"]
        name = name.decode() if isinstance(name, bytes) else name
        names.add(name)
        made = source[int(name.split("_")[1])]
        assert made["video_name"] == name
        for key in ("frames", "masks"):
            assert [bytes(b) for b in made[key]] == [bytes(b) for b in record[key]], key
        for key in ("frame_ids", "object_ids", "height", "width"):
            np.testing.assert_array_equal(made[key], record[key])
    assert names == {f"train_{i:06d}" for i in range(6)}

    cfg = DataConfig(dataset_dir="", image_size=32, num_frames=4, batch_size=2, num_threads=0)
    batches = [
        [next(it) for _ in range(4)]  # over an epoch boundary (6 videos)
        for it in (
            make_loader(dataclasses.replace(cfg, num_workers=w), seed=5, source=source)
            for w in (0, 2)
        )
    ]
    for inline, workers in zip(*batches, strict=True):
        assert inline["frames"].shape == (2, 4, 32, 32, 3)
        for k in inline:
            np.testing.assert_array_equal(workers[k], inline[k])
    more = MovingShapesSource(1000, **SYN)
    assert more[999]["video_name"] == "train_000999"
    assert more[999]["frames"][0] != more[0]["frames"][0]
    with pytest.raises(IndexError, match="video 1000 out of range: the source has 1000"):
        more[1000]
    with pytest.raises(ValueError, match="num_videos must be >= 1"):
        MovingShapesSource(0)


def test_synthetic_stream_data_batches():
    from sam2_jax.train.config import TrainConfig
    from sam2_jax.train.task import synthetic_stream_data

    cfg = TrainConfig(image_size=32, num_frames=3, max_objects=2, batch_size=2)
    options = dict(seed=0, shard_index=0, shard_count=1, num_threads=0)
    batch = next(synthetic_stream_data(cfg, video_frames=4, **options))
    assert batch["frames"].shape == (2, 3, 32, 32, 3)
    assert batch["masks"].shape == (2, 3, 2, 32, 32) and batch["object_valid"][:, 0].all()
    with pytest.raises(ValueError, match="video_frames 2 < the clips' num_frames 3"):
        synthetic_stream_data(cfg, video_frames=2, **options)


def _fingerprint(frames):
    return hashlib.sha1(np.ascontiguousarray(frames).tobytes()).hexdigest()


def test_sharding_partitions_videos(synthetic_dir):
    source = data_source(synthetic_dir, "train")
    all_videos = {
        _fingerprint(np.stack([records.decode_image(b) for b in source[i]["frames"]]))
        for i in range(len(source))
    }
    cfg = DataConfig(
        dataset_dir=synthetic_dir,
        image_size=64,  # the native size: frames come back untouched
        num_frames=SYN["num_frames"],
        batch_size=1,
        augment=None,
        num_epochs=1,
        num_threads=0,
    )
    seen = []
    for shard in range(4):
        it = make_loader(cfg, split="train", seed=0, shard_index=shard, shard_count=4)
        seen.append({_fingerprint(b["frames"][0]) for b in it})
    assert [len(s) for s in seen] == [2, 2, 1, 1]
    assert set().union(*seen) == all_videos
    assert sum(len(s) for s in seen) == len(all_videos)  # disjoint
    with pytest.raises(ValueError, match="shard_index 4"):
        make_loader(cfg, shard_index=4, shard_count=4)


def test_loader_errors(tmp_path, synthetic_dir):
    with pytest.raises(FileNotFoundError, match="no prepared tfds dataset"):
        make_loader(DataConfig(dataset_dir=str(tmp_path)))
    with pytest.raises(ValueError, match="split 'test' not in"):
        make_loader(DataConfig(dataset_dir=synthetic_dir), split="test")


def test_clip_without_visible_objects_has_no_valid_object():
    """No start shows an object: the clip keeps its frames and contributes no loss."""
    frames = [records.encode_image(np.full((20, 24, 3), 9 * t, np.uint8), "PNG") for t in range(5)]
    masks = np.zeros((5, 2, 20, 24), bool)
    masks[4, 1, 5:9, 5:9] = True  # visible only in the last frame
    rec = records.make_record(
        "v", frames, np.arange(5), np.array([1, 2]), records.encode_masks(masks), 20, 24
    )
    ex = make_example(rec, np.random.default_rng(0), image_size=16, num_frames=3, max_objects=2)
    assert not ex["object_valid"].any() and not ex["masks"].any()
    assert ex["frames"].shape == (3, 16, 16, 3)
    ex = make_example(
        rec,
        np.random.default_rng(0),
        image_size=16,
        num_frames=3,
        max_objects=2,
        reverse_time_prob=1.0,
    )  # reversed clips end where they start: frame 4 comes first and shows object 2
    assert ex["object_valid"].tolist() == [True, False] and ex["masks"][0, 0].any()


def test_make_example_without_augmentation_is_resize_only(synthetic_dir):
    rec = data_source(synthetic_dir, "train")[2]
    ex = make_example(rec, np.random.default_rng(0), image_size=64, num_frames=10, max_objects=4)
    assert ex["object_valid"].tolist().count(True) in (1, 2, 3) and not ex["object_valid"][3]
    frames = np.stack([records.decode_image(b) for b in rec["frames"]])
    np.testing.assert_array_equal(ex["frames"], frames)


# ---------------------------------------------------------------- synthetic videos


def test_synthetic_videos_move_occlude_leave_enter():
    moved = occluded = left = entered = 0
    for i in range(6):
        v = generate_video(0, i, num_frames=24, height=64, width=64, num_objects=3)
        area = v.masks.sum(axis=(2, 3))  # (T, O)
        assert area[0, 0] > 0  # the first object starts in view
        hidden = (v.amodal & ~v.masks).sum(axis=(2, 3))
        occluded += int(((hidden > 20) & (area > 0)).any())
        for o in range(3):
            present = area[:, o] > 0
            if present[0] and not present[-1]:
                left += 1
            if not present[0] and present[-1]:
                entered += 1
            t_in = np.flatnonzero(present)
            if t_in.size >= 2:
                c0 = np.argwhere(v.amodal[t_in[0], o]).mean(0)
                c1 = np.argwhere(v.amodal[t_in[-1], o]).mean(0)
                moved += int(np.linalg.norm(c1 - c0) > 5)
        background = v.frames[0][~v.amodal[0].any(axis=0)]
        assert background.std(axis=0).min() > 5  # textured, not flat
    assert moved >= 8 and occluded >= 1 and left >= 1 and entered >= 1, (
        moved,
        occluded,
        left,
        entered,
    )
    np.testing.assert_array_equal(generate_video(0, 2).frames, generate_video(0, 2).frames)
    assert not np.array_equal(generate_video(0, 2).frames, generate_video(1, 2).frames)


def test_occluder_hides_the_first_object_and_changes_nothing_else():
    """`occluder_prob`: a static bar in front of everything across the first object's path;
    outside the bar the video is the one without the option, under it no object is visible;
    the first object goes fully behind it while in the frame and, in some videos, comes out."""
    with_bar = hidden = back = 0
    for i in range(40):
        plain = generate_video(4, i, num_frames=8, height=64, width=64)
        v = generate_video(4, i, num_frames=8, height=64, width=64, occluder_prob=0.5)
        changed = (v.frames != plain.frames).any(axis=-1)  # (T, H, W)
        bar = changed.any(axis=0)  # (H, W): the bar, where it differs from what is behind
        np.testing.assert_array_equal(changed, np.broadcast_to(bar, changed.shape))
        np.testing.assert_array_equal(v.masks[..., ~bar], plain.masks[..., ~bar])
        assert not v.masks[..., bar].any()
        np.testing.assert_array_equal(v.amodal, plain.amodal)
        if not bar.any():
            continue
        with_bar += 1
        rows, cols = bar.any(axis=1), bar.any(axis=0)
        assert rows.all() or cols.all()  # a band across the whole frame
        area, inside = v.masks[:, 0].sum(axis=(1, 2)), v.amodal[:, 0].any(axis=(1, 2))
        gone = np.flatnonzero((area == 0) & inside)
        hidden += int(gone.size > 0)
        back += int(gone.size > 0 and (area[gone[-1] + 1 :] > 0).any())
    assert 10 <= with_bar <= 30 and hidden >= with_bar // 2 and back >= 3, (with_bar, hidden, back)
    with pytest.raises(ValueError, match="occluder_prob must be in"):
        generate_video(0, 0, occluder_prob=1.5)


def test_loader_position_saved_with_orbax(synthetic_dir, tmp_path):
    """The iterator position travels in an Orbax checkpoint beside the params."""
    import grain
    import orbax.checkpoint as ocp

    cfg = DataConfig(
        dataset_dir=synthetic_dir, image_size=32, num_frames=4, batch_size=2, num_threads=0
    )
    it = make_loader(cfg, seed=1)
    next(it)
    mgr = ocp.CheckpointManager(str(tmp_path / "ckpt"), item_names=("params", "data"))
    params = {"w": np.arange(3.0)}
    mgr.save(
        1,
        args=ocp.args.Composite(
            params=ocp.args.StandardSave(params), data=grain.checkpoint.CheckpointSave(it)
        ),
    )
    mgr.wait_until_finished()
    want = next(it)
    resumed = make_loader(cfg, seed=1)
    mgr.restore(
        1,
        args=ocp.args.Composite(
            params=ocp.args.StandardRestore(params),
            data=grain.checkpoint.CheckpointRestore(resumed),
        ),
    )
    got = next(resumed)
    for k in want:
        np.testing.assert_array_equal(got[k], want[k])
