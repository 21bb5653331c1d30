"""Fixed-size records in an unnamed temporary file: what grows with a long video (decoded
frames of a video file, tracked frames' outputs) kept outside the process's memory."""

from __future__ import annotations

import os
import tempfile


class ScratchFile:
    """Fixed-size records in an unnamed temporary file, read and written by position (the
    data stays in the page cache or on disk, outside the process's resident memory)."""

    def __init__(self):
        self._file = tempfile.TemporaryFile(prefix="sam2_jax_session_")
        self._fd = self._file.fileno()
        self._free: list[int] = []
        self._count = 0
        self.record_size: int | None = None

    def allocate(self) -> int:
        if self._free:
            return self._free.pop()
        self._count += 1
        return self._count - 1

    def release(self, record: int) -> None:
        self._free.append(record)

    def write(self, record: int, data: bytes) -> None:
        if self.record_size is None:
            self.record_size = len(data)
        if len(data) != self.record_size:
            raise ValueError(f"record of {len(data)} bytes, the file holds {self.record_size}")
        os.pwrite(self._fd, data, record * self.record_size)

    def read(self, record: int) -> bytes:
        data = os.pread(self._fd, self.record_size, record * self.record_size)
        if len(data) != self.record_size:
            raise OSError(f"session scratch file: record {record} is cut short")
        return data

    @property
    def disk_bytes(self) -> int:
        return self._count * (self.record_size or 0)
