"""Video frames for the video predictor: a JPEG folder, a video file (mp4, ...) or an array.

Every source gives the same model inputs for the same pixels: each frame is PIL-resized to
S x S with the bicubic filter (aspect ratio not kept), /255, ImageNet mean / std, as the
reference's JPEG loader does (`video.io.load_frames`). Video files are decoded with PyAV
(FFmpeg) at their own resolution first; the reference decodes them with decord straight at
S x S, whose scaler differs slightly.

JPEG folders are read on demand (only a chunk of frames is in memory at a time). Video files
are decoded on demand, in order, as far as the furthest frame asked for; decoded frames are
kept as S x S uint8 (3 S^2 bytes a frame) in a scratch file, not in memory, so going back
(reverse tracking, a later click) reads them without decoding again. Arrays are held as
S x S uint8 frames in memory.
"""

from __future__ import annotations

import os
import pathlib
from collections.abc import Iterator

import numpy as np
from PIL import Image

from sam2_jax.image.io import to_rgb8
from sam2_jax.video.io import IMAGENET_MEAN, IMAGENET_STD, list_frames
from sam2_jax.video.scratch_file import ScratchFile


def _resize(rgb: np.ndarray | Image.Image, size: int) -> np.ndarray:
    """(H, W, 3) uint8 -> (S, S, 3) uint8, PIL bicubic."""
    image = rgb if isinstance(rgb, Image.Image) else Image.fromarray(rgb)
    return np.asarray(image.convert("RGB").resize((size, size), Image.BICUBIC))


class FrameError(ValueError):
    """A frame that cannot be read, or whose size differs from the video's."""


def frame_sizes(paths: list[str]) -> tuple[int, int]:
    """(height, width) of every frame file (headers only), checked to be the same.

    Raises:
      FrameError: naming the first frame (index and file) that cannot be opened or whose size
        differs from frame 0's.
    """
    first = None
    for i, path in enumerate(paths):
        try:
            with Image.open(path) as image:
                size = image.size
        except (OSError, SyntaxError) as err:
            raise FrameError(f"cannot read frame {i} ({path}): {err}") from err
        if first is None:
            first = size
        elif size != first:
            raise FrameError(
                f"frame {i} ({path}) is {size[0]}x{size[1]} but frame 0 ({paths[0]}) is "
                f"{first[0]}x{first[1]}: every frame of a video must have the same size"
            )
    return first[1], first[0]


def read_frame(path: str, index: int, hw: tuple[int, int] | None = None) -> Image.Image:
    """Frame `index` of a JPEG folder, decoded, as an 8-bit RGB image.

    Raises:
      FrameError: naming the frame and the file (corrupt, truncated, or not of size `hw`).
    """
    try:
        with Image.open(path) as image:
            image.load()
            rgb = to_rgb8(image, f"frame {index} ({path})")
    except (OSError, SyntaxError) as err:
        raise FrameError(f"cannot decode frame {index} ({path}): {err}") from err
    if hw is not None and (rgb.height, rgb.width) != tuple(hw):
        raise FrameError(
            f"frame {index} ({path}) is {rgb.width}x{rgb.height} but the video is "
            f"{hw[1]}x{hw[0]}: every frame of a video must have the same size"
        )
    return rgb


def probe(source: str | os.PathLike, max_frames: int | None = None) -> tuple[int, int, int]:
    """(frames, height, width) of a JPEG folder or video file, cheaply (no frame decoded but
    for folders' headers), to check prompts before a model is built.

    Raises:
      FileNotFoundError, ValueError: as `VideoFrames`.
    """
    path = pathlib.Path(source)
    if not path.exists():
        raise FileNotFoundError(f"video not found: {os.fspath(source)!r}")
    if path.is_dir():
        paths = list_frames(path)[:max_frames]
        if not paths:
            raise ValueError(f"no JPEG frames (00000.jpg, ...) in folder {str(path)!r}")
        return (len(paths), *frame_sizes(paths))
    import av

    try:
        with av.open(os.fspath(path)) as container:
            if not container.streams.video:
                raise ValueError(f"{os.fspath(path)!r} has no video stream")
            stream = container.streams.video[0]
            h, w = stream.codec_context.height, stream.codec_context.width
            count = sum(1 for packet in container.demux(stream) if packet.size)
    except (av.error.FFmpegError, UnicodeDecodeError) as err:
        raise ValueError(f"cannot open video {os.fspath(path)!r}: {err}") from err
    if count == 0:
        raise ValueError(f"video {str(path)!r} has no frames")
    return (count if max_frames is None else min(count, max_frames)), h, w


def normalize(frames: np.ndarray) -> np.ndarray:
    """(..., 3) uint8 -> float32 model inputs ((x / 255 - mean) / std)."""
    return (np.asarray(frames, np.float32) / 255.0 - IMAGENET_MEAN) / IMAGENET_STD


def decode_video(path: str | os.PathLike, max_frames: int | None = None) -> Iterator[np.ndarray]:
    """The frames of a video file as (H, W, 3) uint8 RGB arrays, in order.

    Raises:
      ValueError: the file cannot be opened or decoded as a video.
    """
    import av

    try:
        container = av.open(os.fspath(path))
    except (av.error.FFmpegError, UnicodeDecodeError) as err:
        raise ValueError(f"cannot open video {os.fspath(path)!r}: {err}") from err
    decode_error = av.error.FFmpegError  # bound here: a generator closed at exit still has it
    with container:
        if not container.streams.video:
            raise ValueError(f"{os.fspath(path)!r} has no video stream")
        count = 0
        try:
            for frame in container.decode(video=0):
                yield frame.to_ndarray(format="rgb24")
                count += 1
                if max_frames is not None and count >= max_frames:
                    return
        except decode_error as err:
            raise ValueError(f"cannot decode video {os.fspath(path)!r}: {err}") from err


class VideoFrames:
    """The frames of one video at the model input size.

    Attributes:
      num_frames: T.
      height, width: the original (video) resolution.
      image_size: S.
    """

    def __init__(
        self,
        source: str | os.PathLike | np.ndarray,
        image_size: int,
        *,
        max_frames: int | None = None,
    ):
        """Args:
        source: a folder of JPEG frames named by integer (00000.jpg, ...), a video file
          readable by FFmpeg (mp4, mov, avi, webm, ...), or a (T, H, W, 3) uint8 array.
        image_size: S.
        max_frames: keep only the first frames.

        Raises:
          FileNotFoundError: the path does not exist.
          ValueError: no frames, an unreadable video, or an array of the wrong shape / type.
          FrameError (a ValueError): a frame file whose size differs from frame 0's, or
            whose header cannot be read; corrupt frame data, and a video file's frames of
            another size, are found when the frame is read (`resized`, `load`, `original`),
            with the same error.
        """
        self.image_size = image_size
        self._paths: list[str] | None = None
        self._resized: np.ndarray | None = None
        self._array: np.ndarray | None = None
        self._video: str | None = None
        if isinstance(source, np.ndarray):
            if source.ndim != 4 or source.shape[-1] != 3 or source.dtype != np.uint8:
                raise ValueError(
                    f"video array must be (T, H, W, 3) uint8, got {source.shape} {source.dtype}"
                )
            self._array = source[:max_frames]
            self.height, self.width = source.shape[1:3]
            self._resized = np.stack([_resize(f, image_size) for f in self._array])
        else:
            path = pathlib.Path(source)
            if not path.exists():
                raise FileNotFoundError(f"video not found: {os.fspath(source)!r}")
            if path.is_dir():
                self._paths = list_frames(path)[:max_frames]
                if not self._paths:
                    raise ValueError(f"no JPEG frames (00000.jpg, ...) in folder {str(path)!r}")
                self.height, self.width = frame_sizes(self._paths)
            else:
                self._video = str(path)
                count, self.height, self.width = probe(path, max_frames)
                self._decoder: Iterator[np.ndarray] | None = None
                self._decoded = ScratchFile()
                self._num_decoded = 0
        if self._paths is not None:
            self.num_frames = len(self._paths)
        elif self._video is not None:
            self.num_frames = count
        else:
            self.num_frames = len(self._resized)

    def _decode_until(self, stop: int) -> None:
        """Decodes the video file's frames up to `stop` (exclusive) into the scratch file."""
        if self._decoder is None:
            self._decoder = decode_video(self._video, self.num_frames)
        while self._num_decoded < stop:
            i = self._num_decoded
            rgb = next(self._decoder, None)
            if rgb is None:
                raise FrameError(
                    f"video {self._video!r}: frame {i} cannot be decoded (the file lists "
                    f"{self.num_frames} frames)"
                )
            if rgb.shape[:2] != (self.height, self.width):
                raise FrameError(
                    f"video {self._video!r}: frame {i} is {rgb.shape[1]}x{rgb.shape[0]} "
                    f"but frame 0 is {self.width}x{self.height}"
                )
            self._decoded.write(self._decoded.allocate(), _resize(rgb, self.image_size).tobytes())
            self._num_decoded += 1

    def __len__(self) -> int:
        return self.num_frames

    def _check(self, idx: np.ndarray) -> np.ndarray:
        idx = np.asarray(idx, np.int64).reshape(-1)
        bad = idx[(idx < 0) | (idx >= self.num_frames)]
        if len(bad):
            raise IndexError(f"frame {int(bad[0])} out of range for {self.num_frames} frames")
        return idx

    def resized(self, idx: np.ndarray) -> np.ndarray:
        """(n,) frame indices -> (n, S, S, 3) uint8."""
        idx = self._check(idx)
        if self._resized is not None:
            return self._resized[idx]
        if self._video is not None:
            self._decode_until(int(idx.max()) + 1 if len(idx) else 0)
            shape = (self.image_size, self.image_size, 3)
            return np.stack(
                [np.frombuffer(self._decoded.read(int(f)), np.uint8).reshape(shape) for f in idx]
            ).reshape(len(idx), *shape)
        out = np.empty((len(idx), self.image_size, self.image_size, 3), np.uint8)
        for i, f in enumerate(idx):
            frame = read_frame(self._paths[f], int(f), (self.height, self.width))
            out[i] = _resize(frame, self.image_size)
        return out

    def load(self, idx: np.ndarray) -> np.ndarray:
        """(n,) frame indices -> (n, S, S, 3) float32 normalized model inputs."""
        return normalize(self.resized(idx))

    def original(self) -> Iterator[np.ndarray]:
        """Every frame at video resolution, (H, W, 3) uint8 RGB, in order."""
        if self._array is not None:
            yield from self._array
        elif self._paths is not None:
            for i, p in enumerate(self._paths):
                yield np.asarray(read_frame(p, i, (self.height, self.width)))
        else:
            yield from decode_video(self._video, self.num_frames)
