"""Files licensed writes and reads cannot be redirected, blown up or made to block.

Writes: the status file, the clock mark in the state folder, the installed licence,
the metrics file and the audit trail are written so that a symlink or a file
planted in their folder (at the target, or at a name a temporary file might get)
cannot redirect the write: the planted link's target is left untouched. Reads: a
licence file larger than the limit (a sparse file), a FIFO, ``/dev/zero`` and
``/dev/urandom`` are refused without being read whole or even opened, and
``licensectl install`` does not block on them, nor on a FIFO as the configuration.

The metrics file matters most: its folder is node_exporter's textfile folder,
which other writers share, so a link planted there is a real possibility.
"""

from __future__ import annotations

import os
import random
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import inotify_simple
import pytest

from licensed import audit, metrics, status
from licensed.clockmark import ClockMark
from licensed.config import Config
from licensed.errors import InvalidLicence
from licensed.install import install
from licensed.keyring import Keyring
from licensed.licence_file import MAX_BYTES, read_licence_file
from tests.harness.cli import Server, run
from tests.harness.licences import Vendor, make_licence
from tests.harness.prereq import require

NOW = datetime(2026, 12, 15, 12, 0, tzinfo=UTC)
PRECIOUS = b"precious: must never be written through a planted link\n"


@dataclass(frozen=True)
class Writer:
    """One file licensed writes: its name in its folder and how to write it."""

    name: str
    file_name: str
    write: Callable[[Path, Vendor], None]

    def __str__(self) -> str:
        return self.name


def _publish_status(folder: Path, vendor: Vendor) -> None:
    status.publish(folder / "status.json", {"schema": 1, "state": "licensed"})


def _advance_clock_mark(folder: Path, vendor: Vendor) -> None:
    ClockMark(folder, 7200).advance(NOW)


def _write_metrics(folder: Path, vendor: Vendor) -> None:
    metrics.write(folder / "licensed.prom", {"state": "licensed"}, metrics.Counters())


def _install_licence(folder: Path, vendor: Vendor) -> None:
    source = vendor.write(make_licence(), folder.parent / "offered.lic")
    config = Config(
        licence_file=folder / "licence.lic",
        keys_dir=vendor.keys_dir,
        state_dir=folder.parent,
        timezone="Europe/Zurich",
    )
    install(config, source, now=NOW, force=False, dry_run=False)


WRITERS = [
    Writer("status file", "status.json", _publish_status),
    Writer("clock mark", "clock.json", _advance_clock_mark),
    Writer("installed licence", "licence.lic", _install_licence),
    Writer("metrics", "licensed.prom", _write_metrics),
]


@pytest.fixture
def vendor(tmp_path: Path) -> Vendor:
    return Vendor(tmp_path / "keys")


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    """The folder the file is written in, where links get planted."""
    path = tmp_path / "target"
    path.mkdir()
    return path


@pytest.fixture
def precious(tmp_path: Path) -> Path:
    """A file outside the folder that planted links point at."""
    path = tmp_path / "elsewhere" / "precious"
    path.parent.mkdir()
    path.write_bytes(PRECIOUS)
    return path


def likely_temporary_names(name: str) -> Iterator[str]:
    """Names an editor, a naive writer or ``mkstemp`` might use next to ``name``."""
    yield from (f"{name}.tmp", f".{name}.tmp", f"{name}~", f".{name}", f"{name}.new")
    yield from (f".{name}.swp", f"#{name}#", f"{name}.part", f".#{name}")
    # mkstemp names are ``.<name>.`` plus eight characters; plant a spread of them.
    rng = random.Random(0)  # noqa: S311 - names to plant, not secrets
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789_"
    for _ in range(64):
        yield f".{name}." + "".join(rng.choices(alphabet, k=8))


# -- writes -----------------------------------------------------------------------


@pytest.mark.parametrize("writer", WRITERS, ids=str)
def test_a_symlink_at_the_target_is_replaced_and_its_target_untouched(
    writer: Writer, folder: Path, precious: Path, vendor: Vendor
) -> None:
    """If a symlink is planted where the file goes, it is replaced, not followed."""
    target = folder / writer.file_name
    target.symlink_to(precious)

    writer.write(folder, vendor)

    assert precious.read_bytes() == PRECIOUS
    assert not target.is_symlink()
    assert stat.S_ISREG(target.lstat().st_mode)


@pytest.mark.parametrize("writer", WRITERS, ids=str)
def test_links_at_likely_temporary_names_are_not_followed(
    writer: Writer, folder: Path, precious: Path, vendor: Vendor
) -> None:
    """If links sit at every likely temporary name, none is written through."""
    planted = [folder / name for name in likely_temporary_names(writer.file_name)]
    for link in planted:
        link.symlink_to(precious)

    writer.write(folder, vendor)

    assert precious.read_bytes() == PRECIOUS
    assert all(link.is_symlink() for link in planted)
    assert stat.S_ISREG((folder / writer.file_name).lstat().st_mode)


@pytest.mark.parametrize("writer", WRITERS, ids=str)
def test_a_hard_link_at_the_target_is_replaced_not_written_through(
    writer: Writer, folder: Path, precious: Path, vendor: Vendor
) -> None:
    """If the target is a pre-created hard link to another file, that file is kept."""
    target = folder / writer.file_name
    os.link(precious, target)

    writer.write(folder, vendor)

    assert precious.read_bytes() == PRECIOUS
    assert target.stat().st_ino != precious.stat().st_ino


@pytest.mark.parametrize("writer", WRITERS, ids=str)
def test_a_dangling_symlink_at_the_target_creates_nothing_elsewhere(
    writer: Writer, folder: Path, tmp_path: Path, vendor: Vendor
) -> None:
    """If a planted link points nowhere, the write does not create its target."""
    absent = tmp_path / "elsewhere-absent" / "created"
    absent.parent.mkdir()
    (folder / writer.file_name).symlink_to(absent)

    writer.write(folder, vendor)

    assert not absent.exists()


def test_a_symlink_at_the_audit_trail_is_refused_not_followed(
    folder: Path, precious: Path
) -> None:
    """If the audit trail is a planted symlink, the record fails; the target is kept."""
    (folder / audit.FILE_NAME).symlink_to(precious)

    with pytest.raises(OSError, match="Too many levels of symbolic links"):
        audit.record(folder, "licence_installed", serial="AST-0001")

    assert precious.read_bytes() == PRECIOUS


def test_a_clock_mark_that_is_a_symlink_is_not_trusted(
    folder: Path, tmp_path: Path
) -> None:
    """If clock.json is a planted symlink to a mark, it is not read as the mark."""
    elsewhere = tmp_path / "mark.json"
    elsewhere.write_text('{"high_water": "2020-01-01T00:00:00+00:00"}\n')
    (folder / "clock.json").symlink_to(elsewhere)

    mark = ClockMark(folder, 7200)

    assert mark.high_water is None


# -- reads ------------------------------------------------------------------------


@pytest.fixture
def server(tmp_path: Path) -> Server:
    """A server laid out in a folder, with a genuine licence installed."""
    laid_out = Server(tmp_path / "server")
    laid_out.install_directly(make_licence())
    return laid_out


@pytest.fixture
def keyring(server: Server) -> Keyring:
    return server.vendor.keyring


def test_a_sparse_huge_file_is_refused_without_being_read(server: Server) -> None:
    """If the file claims a terabyte, install refuses it at once by its size."""
    huge = server.root / "huge.lic"
    with huge.open("wb") as handle:
        handle.truncate(1 << 40)
    before = server.installed_digest()

    result = server.licensectl("install", huge)

    assert result.code == 1
    assert f"larger than {MAX_BYTES // 1024} KiB" in result.stderr
    assert server.installed_digest() == before


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom", "/dev/null"])
def test_a_link_to_a_character_device_is_refused(server: Server, device: str) -> None:
    """If the .lic file is a link to an endless or empty device, install refuses it."""
    link = server.root / "device.lic"
    link.symlink_to(device)
    before = server.installed_digest()

    result = server.licensectl("install", link)

    assert result.code == 1
    assert "is not a regular file" in result.stderr
    assert server.installed_digest() == before


def test_a_fifo_does_not_block_install(server: Server) -> None:
    """If the file is a FIFO nobody writes to, install refuses it at once."""
    fifo = server.root / "pipe.lic"
    os.mkfifo(fifo)
    before = server.installed_digest()

    result = server.licensectl("install", fifo)

    assert result.code == 1
    assert "is not a regular file" in result.stderr
    assert server.installed_digest() == before


def test_a_fifo_planted_as_the_installed_licence_blocks_nothing(server: Server) -> None:
    """If a FIFO sits where the licence is installed, show and install still finish."""
    server.licence_file.unlink()
    os.mkfifo(server.licence_file)
    source = server.licence(make_licence(serial="AST-0009"))

    shown = server.licensectl("show")
    installed = server.licensectl("install", source)

    assert shown.code == 3
    assert installed.code == 0, installed.stderr
    assert stat.S_ISREG(server.licence_file.lstat().st_mode)


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom"])
def test_a_device_is_refused_in_process_too(
    tmp_path: Path, keyring: Keyring, device: str
) -> None:
    """If read_licence_file is given an endless device, it refuses without reading."""
    link = tmp_path / "device.lic"
    link.symlink_to(device)

    with pytest.raises(InvalidLicence, match="not a regular file"):
        read_licence_file(link, keyring)


def _special_file(kind: str, path: Path) -> None:
    if kind == "fifo":
        os.mkfifo(path)
        return
    require(os.geteuid() == 0, "creating a device node needs root")
    os.mknod(path, stat.S_IFCHR | 0o600, os.makedev(1, 3))  # a /dev/null node


@pytest.mark.parametrize("kind", ["fifo", "character device"])
def test_a_special_file_is_refused_without_being_opened(
    tmp_path: Path, keyring: Keyring, kind: str
) -> None:
    """If the licence path names a FIFO or a device, it is refused unopened."""
    path = tmp_path / "special.lic"
    _special_file(kind, path)
    watcher = inotify_simple.INotify()
    watcher.add_watch(path, inotify_simple.flags.OPEN)

    with pytest.raises(InvalidLicence, match="not a regular file"):
        read_licence_file(path, keyring)

    assert watcher.read(timeout=100) == []


def test_a_fifo_as_the_configuration_does_not_block(server: Server) -> None:
    """If the configuration file is a FIFO, licensectl refuses it at once."""
    fifo = server.root / "config-pipe.toml"
    os.mkfifo(fifo)
    env = {**server.env, "LICENSED_CONFIG": str(fifo)}

    result = run("licensectl", "show", env=env, timeout=5)

    assert result.code == 2
