"""Atomic writes and bounded reads, on real files, links, FIFOs and sparse files."""

from __future__ import annotations

import os
import stat
import tempfile
import time
from pathlib import Path

import pytest

from licensed.fsio import (
    NotRegularFile,
    TooLarge,
    fsync_folder,
    read_bounded,
    write_atomic,
)


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


# -- write_atomic -----------------------------------------------------------------


def test_a_new_file_gets_the_data_and_mode(tmp_path: Path) -> None:
    """If the target does not exist, it is created with the data and mode."""
    target = tmp_path / "status.json"

    write_atomic(target, b'{"state": "licensed"}\n', mode=0o640)

    assert target.read_bytes() == b'{"state": "licensed"}\n'
    assert mode_of(target) == 0o640


def test_an_existing_file_is_replaced_in_content_and_mode(tmp_path: Path) -> None:
    """If the target exists, its content and mode are replaced, as a new inode."""
    target = tmp_path / "licence.lic"
    target.write_bytes(b"old licence, longer than the new one\n")
    target.chmod(0o600)
    old_inode = target.stat().st_ino

    write_atomic(target, b"new\n", mode=0o644)

    assert target.read_bytes() == b"new\n"
    assert mode_of(target) == 0o644
    assert target.stat().st_ino != old_inode


def test_the_umask_does_not_change_the_mode(tmp_path: Path) -> None:
    """If the process umask is strict, the file still gets the mode asked for."""
    target = tmp_path / "metrics.prom"
    previous = os.umask(0o077)
    try:
        write_atomic(target, b"x", mode=0o644)
    finally:
        os.umask(previous)

    assert mode_of(target) == 0o644


def test_no_temporary_file_is_left_behind(tmp_path: Path) -> None:
    """If writes succeed, the folder holds only the target afterwards."""
    target = tmp_path / "status.json"

    for number in range(5):
        write_atomic(target, f"{number}\n".encode())

    assert [p.name for p in tmp_path.iterdir()] == ["status.json"]
    assert target.read_bytes() == b"4\n"


def test_a_large_write_is_complete(tmp_path: Path) -> None:
    """If the data is several megabytes, all of it lands."""
    target = tmp_path / "big"
    data = os.urandom(3 * 1024 * 1024 + 7)

    write_atomic(target, data)

    assert target.read_bytes() == data


def test_a_failed_rename_leaves_no_temporary_file(tmp_path: Path) -> None:
    """If the target is a folder, the write fails and leaves nothing behind."""
    target = tmp_path / "occupied"
    target.mkdir()
    (target / "keep").write_text("x")

    with pytest.raises(OSError, match="occupied"):
        write_atomic(target, b"data")

    assert sorted(p.name for p in tmp_path.iterdir()) == ["occupied"]


def test_a_missing_folder_is_an_error(tmp_path: Path) -> None:
    """If the target's folder does not exist, FileNotFoundError is raised."""
    with pytest.raises(FileNotFoundError):
        write_atomic(tmp_path / "absent" / "file", b"data")


def test_a_symlink_at_the_target_is_replaced_not_followed(tmp_path: Path) -> None:
    """If a symlink is planted at the target, it is replaced; its target is intact."""
    victim = tmp_path / "elsewhere" / "passwd"
    victim.parent.mkdir()
    victim.write_bytes(b"root:x:0:0\n")
    folder = tmp_path / "run"
    folder.mkdir()
    target = folder / "status.json"
    target.symlink_to(victim)

    write_atomic(target, b"{}\n")

    assert not target.is_symlink()
    assert target.read_bytes() == b"{}\n"
    assert victim.read_bytes() == b"root:x:0:0\n"


@pytest.mark.parametrize(
    "name", [".status.json.tmp", "status.json.tmp", "status.json~", ".status.json."]
)
def test_a_planted_temp_like_link_does_not_redirect(tmp_path: Path, name: str) -> None:
    """If a link with a temp-like name is planted, the write does not go through it."""
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious\n")
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / name).symlink_to(victim)
    target = folder / "status.json"

    write_atomic(target, b"{}\n")

    assert victim.read_bytes() == b"precious\n"
    assert target.read_bytes() == b"{}\n"
    assert (folder / name).is_symlink()


def test_a_link_planted_under_the_chosen_temporary_name_is_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If the exact temporary name is taken by a link, another name is used."""
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious\n")
    folder = tmp_path / "run"
    folder.mkdir()
    planted = folder / ".status.json.guessed"
    planted.symlink_to(victim)
    # Make tempfile's random names predictable: the first is the planted one.
    monkeypatch.setattr(tempfile, "_name_sequence", iter(["guessed", "fresh"]))
    target = folder / "status.json"

    write_atomic(target, b"{}\n")

    assert victim.read_bytes() == b"precious\n"
    assert planted.is_symlink()
    assert target.read_bytes() == b"{}\n"
    assert sorted(p.name for p in folder.iterdir()) == [
        ".status.json.guessed",
        "status.json",
    ]


def test_fsync_folder_accepts_a_folder(tmp_path: Path) -> None:
    """If given a folder, fsync_folder flushes it without error."""
    fsync_folder(tmp_path)


# -- read_bounded -----------------------------------------------------------------


def test_a_small_file_is_read_whole(tmp_path: Path) -> None:
    """If the file is within the limit, all of it is returned."""
    path = tmp_path / "key.pub"
    path.write_bytes(b"0123456789")

    assert read_bounded(path, 10) == b"0123456789"
    assert read_bounded(path, 1000) == b"0123456789"


def test_one_byte_over_the_limit_is_too_large(tmp_path: Path) -> None:
    """If the file is one byte over the limit, TooLarge names size and limit."""
    path = tmp_path / "key.pub"
    path.write_bytes(b"0123456789")

    with pytest.raises(TooLarge, match="10 bytes; the limit is 9"):
        read_bounded(path, 9)


def test_a_sparse_10_gb_file_is_refused_without_reading(tmp_path: Path) -> None:
    """If a file claims 10 GB, it is refused at once rather than read."""
    path = tmp_path / "huge.lic"
    with path.open("wb") as handle:
        handle.truncate(10 * 1024**3)
    started = time.monotonic()

    with pytest.raises(TooLarge):
        read_bounded(path, 64 * 1024)

    assert time.monotonic() - started < 0.5


def test_a_file_growing_past_its_size_is_caught() -> None:
    """If a file yields more than fstat promised (/proc), TooLarge is raised."""
    # /proc files report size 0 and then produce text: the growth case, for real.
    path = Path("/proc/self/status")
    assert path.stat().st_size == 0

    with pytest.raises(TooLarge, match="grew past"):
        read_bounded(path, 16)


def test_a_folder_is_not_a_regular_file(tmp_path: Path) -> None:
    """If the path is a folder, NotRegularFile is raised."""
    with pytest.raises(NotRegularFile, match="not a regular file"):
        read_bounded(tmp_path, 1024)


@pytest.mark.timeout(10)
def test_a_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    """If the path is a FIFO with no writer, it is refused at once, not waited on."""
    fifo = tmp_path / "licence.lic"
    os.mkfifo(fifo)
    started = time.monotonic()

    with pytest.raises(NotRegularFile):
        read_bounded(fifo, 1024)

    assert time.monotonic() - started < 1.0


def test_a_device_is_not_a_regular_file() -> None:
    """If the path is a device (/dev/zero), NotRegularFile is raised."""
    with pytest.raises(NotRegularFile):
        read_bounded(Path("/dev/zero"), 1024)


def test_a_symlink_is_refused_when_not_followed(tmp_path: Path) -> None:
    """If symlinks are not to be followed, a link is an error; else it is read."""
    real = tmp_path / "real"
    real.write_bytes(b"data")
    link = tmp_path / "link"
    link.symlink_to(real)

    assert read_bounded(link, 10) == b"data"
    with pytest.raises(OSError, match="link"):
        read_bounded(link, 10, follow_symlinks=False)


def test_a_missing_file_is_file_not_found(tmp_path: Path) -> None:
    """If the file does not exist, FileNotFoundError is raised."""
    with pytest.raises(FileNotFoundError):
        read_bounded(tmp_path / "absent", 10)


def test_errors_are_os_errors() -> None:
    """If callers catch OSError, they catch TooLarge and NotRegularFile too."""
    assert issubclass(TooLarge, OSError)
    assert issubclass(NotRegularFile, OSError)
