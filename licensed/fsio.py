"""Crash-safe file writes and size-bounded reads.

Every file licensed publishes (the installed licence, the status document, the
clock mark, metrics) is replaced atomically: the bytes go to a fresh temporary file
in the same folder, are flushed to disk, renamed over the target, and the folder is
flushed too. A reader therefore sees the old document or the new one, never a mix,
and a crash at any point leaves one of the two on disk.

The temporary file is created with ``O_EXCL`` under a random name, and ``rename``
replaces a symlink rather than following it, so a file or link planted in the folder
cannot redirect a write. Reads check the size with ``fstat`` before reading, so an
oversized input is refused without being read whole.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from pathlib import Path


class TooLarge(OSError):  # noqa: N818 - reads as a condition at the call site
    """The file is larger than the caller's limit."""


class NotRegularFile(OSError):  # noqa: N818
    """The path names a folder, a device or another non-regular file."""


def write_atomic(path: Path, data: bytes, mode: int = 0o644) -> None:
    """Replace ``path`` with ``data`` so that readers never see a partial file."""
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        _write_all(fd, data)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        _unlink_quietly(tmp_name)
        raise
    os.close(fd)

    try:
        Path(tmp_name).replace(path)
    except BaseException:
        _unlink_quietly(tmp_name)
        raise
    fsync_folder(path.parent)


def fsync_folder(folder: Path) -> None:
    """Flush a folder's entries, so a rename or unlink in it survives a crash."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def read_bounded(path: Path, limit: int, *, follow_symlinks: bool = True) -> bytes:
    """Read a regular file of at most ``limit`` bytes.

    Raises ``TooLarge`` before reading when the file is bigger, ``NotRegularFile``
    for folders and special files, and the usual ``OSError`` otherwise.
    """
    fd = _open_regular(path, follow_symlinks)
    try:
        size = os.fstat(fd).st_size
        if size > limit:
            raise TooLarge(f"{path} is {size} bytes; the limit is {limit}")

        # The file may grow between fstat and read: read one byte past the limit so
        # such growth is caught too.
        data = _read_up_to(fd, limit + 1)
    finally:
        os.close(fd)

    if len(data) > limit:
        raise TooLarge(f"{path} grew past {limit} bytes while being read")
    return data


def _open_regular(path: Path, follow_symlinks: bool) -> int:
    """Open ``path`` for reading only once it is known to be a regular file.

    Opening a FIFO blocks and opening a device can have effects (a tty may become
    the controlling terminal, a watchdog device arms itself), so the path is first
    opened with ``O_PATH``, which opens nothing, and checked; the readable
    descriptor is then taken from that same inode through ``/proc/self/fd``.
    """
    flags = os.O_PATH | os.O_CLOEXEC
    if not follow_symlinks:
        flags |= os.O_NOFOLLOW
    handle = os.open(path, flags)
    try:
        if not stat.S_ISREG(os.fstat(handle).st_mode):
            raise NotRegularFile(f"{path} is not a regular file")
        return os.open(f"/proc/self/fd/{handle}", os.O_RDONLY | os.O_CLOEXEC)
    finally:
        os.close(handle)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _read_up_to(fd: int, size: int) -> bytes:
    chunks: list[bytes] = []
    remaining = size
    while remaining > 0:
        chunk = os.read(fd, remaining)
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


def _unlink_quietly(name: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        Path(name).unlink()
