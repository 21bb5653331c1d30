"""Result files: output folders that never mix two runs, and files written atomically.

- `prepare_out_dir`: an --out folder must be new or empty, unless --overwrite, which first
  deletes the results an earlier run of the same command left there (other files are kept).
  Checked (and the folder created, and tried for writing) before any model is built.
- `atomic`, `write_text`, `save_image`: a result is written under a temporary name in its
  folder and renamed into place (`os.replace`) only when complete, so a crash never leaves a
  half-written file under the real name.
"""

from __future__ import annotations

import contextlib
import os
import pathlib
import secrets
import shutil
import tempfile
from collections.abc import Iterator, Sequence

from PIL import Image


def prepare_out_dir(
    out: str | os.PathLike,
    *,
    overwrite: bool,
    results: Sequence[str],
    option: str = "--out",
) -> pathlib.Path:
    """Checks (and creates) an output folder.

    Args:
      out: the folder.
      overwrite: allow a non-empty folder; the entries matching `results` are deleted first.
      results: glob patterns of what the command writes there ("mask_*.png", "masks", ...).

    Returns:
      the folder, existing, empty of earlier results and writable.

    Raises:
      ValueError: `out` is a file, not empty without `overwrite`, or not writable.
    """
    path = pathlib.Path(out)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{option} {str(path)!r} is a file, not a folder")
    if path.is_dir():
        entries = sorted(p.name for p in path.iterdir())
        if entries and not overwrite:
            shown = ", ".join(entries[:4]) + (", ..." if len(entries) > 4 else "")
            raise ValueError(
                f"{option} {str(path)!r} is not empty ({len(entries)} entries: {shown}): give "
                "--overwrite to replace the results of an earlier run there, or a new folder"
            )
        for pattern in results if overwrite else ():
            for old in path.glob(pattern):
                shutil.rmtree(old) if old.is_dir() and not old.is_symlink() else old.unlink()
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as err:
        raise ValueError(f"{option} {str(path)!r} cannot be written: {err}") from err
    return path


def check_new_file(
    out: str | os.PathLike, *, overwrite: bool, option: str = "--out"
) -> pathlib.Path:
    """An output file: refused if it exists (unless `overwrite`) or is a folder."""
    path = pathlib.Path(out)
    if path.is_dir():
        raise ValueError(f"{option} {str(path)!r} is a folder, not a file")
    if path.exists() and not overwrite:
        raise ValueError(f"{option} {str(path)!r} exists: give --overwrite to replace it")
    return path


@contextlib.contextmanager
def atomic(path: str | os.PathLike) -> Iterator[pathlib.Path]:
    """Yields a temporary path beside `path` (same suffix); renamed to `path` when the block
    ends without an error, deleted otherwise."""
    path = pathlib.Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # the writer creates it (so it gets the usual permissions); the name is unique
    temporary = path.with_name(f".{path.stem}.{os.getpid()}-{secrets.token_hex(4)}.partial")
    temporary = temporary.with_name(temporary.name + path.suffix)
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def write_text(path: str | os.PathLike, text: str) -> pathlib.Path:
    """Writes a text file atomically."""
    with atomic(path) as temporary:
        temporary.write_text(text)
    return pathlib.Path(path)


def save_image(image: Image.Image, path: str | os.PathLike) -> pathlib.Path:
    """Saves a PIL image atomically (format from the suffix of `path`)."""
    path = pathlib.Path(path)
    with atomic(path) as temporary:
        image.save(temporary, format=Image.registered_extensions()[path.suffix.lower()])
    return path
