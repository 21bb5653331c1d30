"""tensorflow-datasets builders that write video records (`records`) as ArrayRecord files.

Nothing here needs TensorFlow: the records use only Tensor / Text / Scalar features, which tfds
encodes and decodes with NumPy, and ArrayRecord files are read back with random access by
`tfds.data_source` / `builder.as_data_source(split)` (what `loader.make_loader` does).

- `VosFolder`: DAVIS / YouTube-VOS layout, `<img_folder>/<video>/<frame>.jpg` with palettised
  `<gt_folder>/<video>/<frame>.png` object-id masks (0 background, 255 void). Frames without a
  mask PNG are not annotated and are left out (YouTube-VOS annotates every 5th frame).
- `SavMasklets`: SA-V layout, `<root>/**/<video>.mp4` beside `<video>_manual.json` whose
  "masklet" holds one list of COCO RLE masks per annotated frame (every `ann_every`-th video
  frame, 4 for SA-V's 6 fps annotations of 24 fps videos). Frames where any masklet is null
  are left out, as the reference's `rm_unannotated` does.
- `MovingShapes`: synthetic videos (`shapes_source.moving_shapes_record`), frames as PNG.

Every builder takes `splits` (split name -> its source) and `min_frames`: shorter videos (the
training clip length, 8 by default in the reference) are skipped when preparing, so that the
sampler never meets a video it cannot cut a clip from. Usage:

    builder = VosFolder(splits={"train": (img_dir, gt_dir)}, data_dir=out_dir)
    dataset_dir = prepare(builder)  # <out_dir>/vos_folder/1.0.0, for DataConfig.dataset_dir
    source = builder.as_data_source("train")  # len(source), source[i] -> record dict
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator, Mapping

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from sam2_jax.train.data import records, shapes_source

VOID_ID = 255
_LOG = logging.getLogger(__name__)


class _VideoBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Shared plumbing: ArrayRecord output, `splits`, `min_frames`."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    # No checksums file or bundled metadata beside these builders. (tfds would look for them
    # through `code_path`, which needs the importlib_resources backport on Python >= 3.9.)
    code_path = None

    def __init__(self, *, splits: Mapping[str, object], min_frames: int = 1, **kwargs):
        if not splits:
            raise ValueError("splits is empty: name at least one split and its source")
        self._splits = dict(splits)
        self._min_frames = int(min_frames)
        kwargs.setdefault("file_format", "array_record")
        super().__init__(**kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self, description=self.__doc__, features=records.video_features()
        )

    def _split_generators(self, dl_manager) -> dict[str, Iterator]:
        return {name: self._generate_examples(name, src) for name, src in self._splits.items()}

    def _keep(self, name: str, num_frames: int, num_objects: int) -> bool:
        if num_frames < self._min_frames or num_objects == 0:
            _LOG.warning(
                "skipping video %s: %d annotated frames (min %d), %d objects",
                name,
                num_frames,
                self._min_frames,
                num_objects,
            )
            return False
        return True


def prepare(builder: tfds.core.DatasetBuilder) -> str:
    """Writes the dataset unless already there; -> its folder (<data_dir>/<name>/<version>),
    what `DataConfig.dataset_dir` takes.

    Raises:
      RuntimeError: a split too large for tfds's in-memory shuffle while TensorFlow (which
        tfds needs to shuffle on disk) is not installed.
    """
    try:
        builder.download_and_prepare()
    except ModuleNotFoundError as err:
        if err.name != "tensorflow":
            raise
        from tensorflow_datasets.core import shuffle

        limit_mb = shuffle.MAX_MEM_BUFFER_SIZE >> 20
        raise RuntimeError(
            f"preparing {builder.name!r}: a split holds more than {limit_mb} MB of records, "
            "which tfds shuffles on disk with TensorFlow, and TensorFlow is not installed. "
            "Install tensorflow-cpu for the preparation, or split the data into smaller "
            "splits (fewer videos each)."
        ) from err
    return builder.data_dir


def _sorted_by_stem(names: list[str]) -> list[str]:
    bad = [n for n in names if not os.path.splitext(n)[0].isdigit()]
    if bad:
        raise ValueError(f"frame files must be named by frame number (00000.jpg), got {bad[:3]}")
    return sorted(names, key=lambda n: int(os.path.splitext(n)[0]))


class VosFolder(_VideoBuilder):
    """DAVIS / YouTube-VOS style folders: JPEG frames and palettised PNG masks."""

    def __init__(
        self,
        *,
        splits: Mapping[str, tuple[str, str]],
        videos: Mapping[str, list[str]] | None = None,
        **kwargs,
    ):
        """splits: split -> (img_folder, gt_folder); videos: split -> video names to take
        (default: every folder of gt_folder)."""
        self._videos = dict(videos or {})
        super().__init__(splits=splits, **kwargs)

    def _generate_examples(self, split: str, src: tuple[str, str]):
        img_folder, gt_folder = src
        names = self._videos.get(split)
        if names is None:
            names = sorted(
                d for d in os.listdir(gt_folder) if os.path.isdir(os.path.join(gt_folder, d))
            )
        for name in names:
            png_dir, jpg_dir = os.path.join(gt_folder, name), os.path.join(img_folder, name)
            if not os.path.isdir(jpg_dir):
                raise FileNotFoundError(f"video {name!r}: no frame folder {jpg_dir}")
            pngs = {
                int(os.path.splitext(n)[0]): n for n in os.listdir(png_dir) if n.endswith(".png")
            }
            jpgs = [
                n
                for n in _sorted_by_stem(
                    [n for n in os.listdir(jpg_dir) if n.lower().endswith((".jpg", ".jpeg"))]
                )
                if int(os.path.splitext(n)[0]) in pngs
            ]
            labels = []
            for n in jpgs:
                path = os.path.join(png_dir, pngs[int(os.path.splitext(n)[0])])
                with Image.open(path) as img:
                    if img.mode not in ("P", "L"):
                        raise ValueError(
                            f"{path}: masks must be palettised (or 8-bit grey) object-id PNGs, "
                            f"got mode {img.mode}"
                        )
                    labels.append(np.asarray(img))
            if not labels:
                self._keep(name, 0, 0)
                continue
            labels = np.stack(labels)  # (T, H, W) object ids
            ids = np.unique(labels)
            ids = ids[(ids != 0) & (ids != VOID_ID)]
            if not self._keep(name, len(jpgs), len(ids)):
                continue
            masks = labels[:, None] == ids[None, :, None, None]  # (T, O, H, W)
            frames = []
            for n in jpgs:
                with open(os.path.join(jpg_dir, n), "rb") as f:
                    frames.append(f.read())
            with Image.open(os.path.join(jpg_dir, jpgs[0])) as first:
                if first.size != (labels.shape[2], labels.shape[1]):
                    raise ValueError(
                        f"video {name!r}: frame size {first.size} != mask size "
                        f"{labels.shape[2:0:-1]}"
                    )
            frame_ids = [int(os.path.splitext(n)[0]) for n in jpgs]
            yield (
                name,
                records.make_record(
                    name,
                    frames,
                    frame_ids,
                    ids,
                    records.encode_masks(masks),
                    labels.shape[1],
                    labels.shape[2],
                ),
            )


def _encode_selected(path: str, wanted: set[int]) -> tuple[dict[int, bytes], tuple[int, int]]:
    """The `wanted` frames of a video file (PyAV), JPEG-encoded as they are decoded (a long
    1080p video never sits in memory) -> ({frame index: JPEG bytes}, (height, width))."""
    import av

    out: dict[int, bytes] = {}
    size = (0, 0)
    last = max(wanted) if wanted else -1
    with av.open(path) as container:
        for i, frame in enumerate(container.decode(video=0)):
            if i in wanted:
                rgb = frame.to_ndarray(format="rgb24")
                size = rgb.shape[:2]
                out[i] = records.encode_image(rgb)
            if i >= last:
                break
    return out, size


class SavMasklets(_VideoBuilder):
    """SA-V layout: mp4 videos with `<video>_manual.json` masklets (COCO RLE)."""

    def __init__(self, *, splits: Mapping[str, str], ann_every: int = 4, **kwargs):
        """splits: split -> root folder searched recursively for `*_manual.json`; ann_every:
        video frames per annotated frame."""
        self._ann_every = int(ann_every)
        super().__init__(splits=splits, **kwargs)

    def _generate_examples(self, split: str, root: str):
        found = []
        for dirpath, _, files in os.walk(root):
            found += [os.path.join(dirpath, f) for f in files if f.endswith("_manual.json")]
        if not found:
            raise FileNotFoundError(f"no *_manual.json annotations under {root}")
        for json_path in sorted(found):
            name = os.path.basename(json_path)[: -len("_manual.json")]
            video_path = os.path.join(os.path.dirname(json_path), name + ".mp4")
            if not os.path.exists(video_path):
                raise FileNotFoundError(f"masklets {json_path} have no video {video_path}")
            with open(json_path) as f:
                ann = json.load(f)
            per_frame = ann["masklet"] if "masklet" in ann else ann["masks"]
            num_obj = len(per_frame[0]) if per_frame else 0
            ids = np.asarray(ann.get("masklet_id", list(range(num_obj))), np.int32)
            if len(ids) != num_obj:
                raise ValueError(f"{json_path}: {len(ids)} masklet ids for {num_obj} masklets")
            keep = [
                i for i, objs in enumerate(per_frame) if len(objs) == num_obj and None not in objs
            ]
            if not self._keep(name, len(keep), num_obj):
                continue
            frame_ids = [i * self._ann_every for i in keep]
            encoded, (h, w) = _encode_selected(video_path, set(frame_ids))
            missing = [i for i in frame_ids if i not in encoded]
            if missing:
                raise ValueError(
                    f"{video_path}: annotated frames {missing[:5]} are past the video's end "
                    f"({len(encoded)} of {len(frame_ids)} found; ann_every={self._ann_every})"
                )
            size = per_frame[keep[0]][0]["size"]
            if list(size) != [h, w]:
                raise ValueError(f"{json_path}: masks are {size}, video frames are {[h, w]}")
            table = np.empty((len(keep), num_obj), dtype=object)
            for r, i in enumerate(keep):
                for o, rle in enumerate(per_frame[i]):
                    c = rle["counts"]
                    table[r, o] = c.encode("ascii") if isinstance(c, str) else bytes(c)
            frames = [encoded[i] for i in frame_ids]
            yield name, records.make_record(name, frames, frame_ids, ids, table, h, w)


class MovingShapes(_VideoBuilder):
    """Synthetic moving shapes (occlusions, objects leaving and entering, textures)."""

    def __init__(
        self,
        *,
        splits: Mapping[str, int],
        seed: int = 0,
        num_frames: int = 24,
        height: int = 128,
        width: int = 128,
        num_objects: int = 3,
        **kwargs,
    ):
        """splits: split -> number of videos; each split draws from its own seed stream."""
        self._gen = dict(
            seed=seed, num_frames=num_frames, height=height, width=width, num_objects=num_objects
        )
        super().__init__(splits=splits, **kwargs)

    def _generate_examples(self, split: str, count: int):
        for i in range(count):
            yield f"{split}_{i:06d}", shapes_source.moving_shapes_record(split, i, **self._gen)
