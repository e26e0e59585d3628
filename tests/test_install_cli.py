"""licensectl install and remove, through the real console script."""

from __future__ import annotations

import base64
import dataclasses
import grp
import hashlib
import os
import pwd
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from licensed.expiry import expiry_instant
from licensed.licence import Licence, render_body
from licensed.licence_file import BEGIN, END, MAX_BYTES
from tests.harness.cli import Server
from tests.harness.licences import Vendor, make_licence, make_trial
from tests.harness.prereq import require

NOBODY = 65534
FileMaker = Callable[[Server], tuple[Path, list[str]]]


@pytest.fixture
def server(tmp_path: Path) -> Server:
    return Server(tmp_path)


@pytest.fixture
def open_folder() -> Iterator[Path]:
    """A folder other users can traverse (pytest's own are private to root)."""
    folder = Path(tempfile.mkdtemp(prefix="licensed-cli-"))
    folder.chmod(0o755)
    yield folder
    shutil.rmtree(folder)


def trial(valid_until: date, serial: str = "AST-T001") -> Licence:
    return dataclasses.replace(make_trial(valid_until), serial=serial)


def later(days: int) -> date:
    return datetime.now(UTC).date() + timedelta(days=days)


def sign_body(vendor: Vendor, body: str) -> bytes:
    """A licence file around ``body`` with a valid signature, whatever it says."""
    signature = base64.b64encode(vendor.private_key.sign(body.encode())).decode()
    block = f'{BEGIN}\nkey_id = "{vendor.key_id}"\ned25519 = "{signature}"\n{END}\n'
    return (body + block).encode()


def as_nobody(*groups: str) -> list[str]:
    require(
        os.geteuid() == 0 and shutil.which("setpriv") is not None,
        "running a command as another user needs root and setpriv",
    )
    group_options = [f"--groups={','.join(groups)}"] if groups else ["--clear-groups"]
    return ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", *group_options]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- the kinds of invalid file ---------------------------------------------------


def _signed_variant(old: str, new: str, name: str = "bad.lic") -> FileMaker:
    def make(server: Server) -> tuple[Path, list[str]]:
        body = render_body(make_licence(serial="AST-0009"))
        assert old in body
        path = server.root / name
        path.write_bytes(sign_body(server.vendor, body.replace(old, new)))
        return path, []

    return make


def _bytes(data: bytes, name: str = "bad.lic") -> FileMaker:
    def make(server: Server) -> tuple[Path, list[str]]:
        path = server.root / name
        path.write_bytes(data)
        return path, []

    return make


def _wrong_suffix(server: Server) -> tuple[Path, list[str]]:
    return server.licence(make_licence(serial="AST-0009"), "licence.txt"), []


def _folder(server: Server) -> tuple[Path, list[str]]:
    path = server.root / "folder.lic"
    path.mkdir()
    return path, []


def _missing(server: Server) -> tuple[Path, list[str]]:
    return server.root / "absent.lic", []


def _unreadable(server: Server) -> tuple[Path, list[str]]:
    path = server.licence(make_licence(serial="AST-0009"))
    path.chmod(0)
    if os.geteuid() != 0:
        return path, []
    # Root reads any file through CAP_DAC_OVERRIDE; without that capability (and
    # still uid 0, so permitted to install) it meets the permission check.
    require(shutil.which("setpriv") is not None, "dropping capabilities needs setpriv")
    return path, ["setpriv", "--bounding-set", "-dac_override,-dac_read_search"]


def _other_product(server: Server) -> tuple[Path, list[str]]:
    return server.licence(make_licence(serial="AST-0009", product="TM")), []


def _unknown_key(server: Server) -> tuple[Path, list[str]]:
    stranger = Vendor(server.root / "stranger-keys", key_id="stranger")
    path = server.root / "stranger.lic"
    return stranger.write(make_licence(serial="AST-0009"), path), []


def _tampered(server: Server) -> tuple[Path, list[str]]:
    path = server.licence(make_licence(serial="AST-0009"))
    path.write_bytes(path.read_bytes().replace(b"ACME Corp", b"ACME Corq"))
    return path, []


INVALID_FILES = [
    pytest.param(_wrong_suffix, "does not end in '.lic'", id="wrong-suffix"),
    pytest.param(_bytes(b""), "the file is empty", id="empty"),
    pytest.param(_bytes(b"#" * (MAX_BYTES + 1)), "larger than 64 KiB", id="oversized"),
    pytest.param(_bytes(b"\x00\xff\xfe binary"), "not a text file", id="binary"),
    pytest.param(_folder, "is not a regular file", id="folder"),
    pytest.param(_unreadable, "permission denied", id="unreadable"),
    pytest.param(_missing, "does not exist", id="missing"),
    pytest.param(
        _signed_variant('type = "full"\n', 'type = "full"\nvalid_until = 2027-01-31\n'),
        "a full licence never expires",
        id="full-with-valid-until",
    ),
    pytest.param(
        _signed_variant('type = "full"', 'type = "trial"'),
        "a trial licence needs 'valid_until'",
        id="trial-without-valid-until",
    ),
    pytest.param(
        _signed_variant('location = "Zurich"\n', ""),
        "missing field 'location' in [general]",
        id="missing-field",
    ),
    pytest.param(
        _signed_variant("over_licence_limit = 120", "over_licence_limit = 99"),
        "is below licensed = 100",
        id="escalation-below-users",
    ),
    pytest.param(
        _signed_variant("format = 1", "format = 2"),
        "unknown format version 2",
        id="unknown-format-version",
    ),
    pytest.param(_other_product, "product is 'TM'", id="other-product"),
    pytest.param(_unknown_key, "'stranger', which is not trusted", id="unknown-key"),
    pytest.param(_tampered, "the signature does not match", id="tampered-byte"),
]


@pytest.mark.parametrize(("make_file", "reason"), INVALID_FILES)
def test_an_invalid_file_is_refused_and_the_installed_licence_stays_byte_identical(
    server: Server, make_file: FileMaker, reason: str
) -> None:
    """If the file fails validation, install prints why, exits 1, changes nothing."""
    server.install_directly(make_licence())
    before = server.installed_digest()
    path, prefix = make_file(server)

    result = server.licensectl("install", path, prefix=prefix)

    assert (result.code, result.stdout) == (1, "")
    assert result.stderr.startswith("Invalid Licence File: ")
    assert reason in result.stderr
    assert result.stderr.count("\n") == 1
    assert server.installed_digest() == before
    assert server.audit() == []


# --- installing ------------------------------------------------------------------


def test_a_full_licence_installs_atomically_and_reports_what_it_replaced(
    server: Server,
) -> None:
    """If a valid full licence is installed, its bytes land with mode 0640."""
    source = server.licence(make_licence())

    result = server.licensectl("install", source)

    assert result.code == 0, result.stderr
    assert "Installed: full licence AST-0001 for ACME Corp" in result.stdout
    assert "Users: 100 licensed, Over License Limit 120" in result.stdout
    assert "Expires: does not expire" in result.stdout
    assert "Replaces: nothing" in result.stdout
    assert "applies the new licence by itself" in result.stdout
    assert digest(server.licence_file) == digest(source)
    assert stat.S_IMODE(server.licence_file.stat().st_mode) == 0o640
    leftovers = sorted(p.name for p in server.licence_file.parent.iterdir())
    assert leftovers == ["keys", "licence.lic"]


def test_a_trial_reports_its_expiry_instant_with_offset_and_zone(
    server: Server,
) -> None:
    """If a trial replaces a full licence, its expiry instant and the old one show."""
    server.install_directly(make_licence())
    valid_until = later(40)
    expected = expiry_instant(valid_until, ZoneInfo("Europe/Zurich"))

    result = server.licensectl("install", server.licence(trial(valid_until)))

    assert result.code == 0, result.stderr
    assert "Installed: trial licence AST-T001" in result.stdout
    assert f"Expires: {expected.isoformat()} (Europe/Zurich)" in result.stdout
    assert "Replaces: full licence AST-0001 (issued 2026-12-01)" in result.stdout
    assert result.stderr == ""


def test_an_expired_trial_installs_with_a_warning(server: Server) -> None:
    """If the trial's Valid until has passed, it installs and warns it acts expired."""
    source = server.licence(trial(date(2020, 1, 31)))

    result = server.licensectl("install", source)

    assert result.code == 0, result.stderr
    assert (
        "Warning: this trial expired at 2020-02-01T00:00:01+01:00 (Europe/Zurich)"
        in result.stderr
    )
    assert "behaves as expired" in result.stderr
    assert digest(server.licence_file) == digest(source)


def test_an_older_licence_is_refused_while_the_installed_one_is_in_force(
    server: Server,
) -> None:
    """If the new licence was issued earlier, install names both and exits 5."""
    server.install_directly(make_licence(serial="AST-0002"))
    before = server.installed_digest()
    older = make_licence(serial="AST-0001", issued=datetime(2026, 11, 1, tzinfo=UTC))

    result = server.licensectl("install", server.licence(older))

    assert result.code == 5
    assert "AST-0001 (issued 2026-11-01 00:00:00Z)" in result.stderr
    assert "AST-0002 (issued 2026-12-01 09:00:00Z)" in result.stderr
    assert "--force" in result.stderr
    assert server.installed_digest() == before


def test_force_installs_an_older_licence(server: Server) -> None:
    """If --force is given, the downgrade happens."""
    server.install_directly(make_licence(serial="AST-0002"))
    older = make_licence(serial="AST-0001", issued=datetime(2026, 11, 1, tzinfo=UTC))
    source = server.licence(older)

    result = server.licensectl("install", "--force", source)

    assert result.code == 0, result.stderr
    assert digest(server.licence_file) == digest(source)


def test_an_older_licence_may_replace_an_expired_trial(server: Server) -> None:
    """If the installed trial has expired, an earlier-issued licence is no downgrade."""
    server.install_directly(trial(date(2020, 1, 31)))
    older = make_licence(issued=datetime(2026, 11, 1, tzinfo=UTC))

    result = server.licensectl("install", server.licence(older))

    assert result.code == 0, result.stderr
    assert "Replaces: trial licence AST-T001" in result.stdout


def test_reinstalling_the_same_serial_succeeds(server: Server) -> None:
    """If the same licence is installed twice, both succeed and both are audited."""
    source = server.licence(make_licence())

    first = server.licensectl("install", source)
    second = server.licensectl("install", source)

    assert (first.code, second.code) == (0, 0)
    assert "Replaces: full licence AST-0001" in second.stdout
    assert [r["serial"] for r in server.audit()] == ["AST-0001", "AST-0001"]


def test_an_invalid_installed_licence_is_replaced(server: Server) -> None:
    """If the installed file is invalid, a valid one replaces it and says so."""
    server.licence_file.write_text("garbage\n")

    result = server.licensectl("install", server.licence(make_licence()))

    assert result.code == 0, result.stderr
    assert "Replaces: an invalid licence file" in result.stdout
    assert server.audit()[0]["previous_type"] == "invalid"


def test_dry_run_previews_and_changes_nothing(server: Server) -> None:
    """If --dry-run is given, install validates and previews but writes nothing."""
    server.install_directly(make_licence())
    before = server.installed_digest()
    source = server.licence(trial(later(10)))

    result = server.licensectl("install", "--dry-run", source)

    assert result.code == 0, result.stderr
    assert "Would install: trial licence AST-T001" in result.stdout
    assert "Replaces: full licence AST-0001" in result.stdout
    assert "Dry run: nothing was installed." in result.stdout
    assert server.installed_digest() == before
    assert server.audit() == []


def test_a_missing_licence_folder_is_reported_with_the_fix(server: Server) -> None:
    """If the licence folder does not exist, install says how to create it."""
    absent = server.root / "absent"
    server.write_config(licence_file=str(absent / "licence.lic"))

    result = server.licensectl("install", server.licence(make_licence()))

    assert result.code == 5
    assert f"install -d -m 2770 -g licensed-admin {absent}" in result.stderr
    assert not absent.exists()


def test_install_records_who_installed_what_in_the_audit_trail(
    server: Server,
) -> None:
    """If a licence is installed, the audit trail names it, the old one and the user."""
    server.install_directly(make_licence(serial="AST-0000"))
    server.extra_env["SUDO_USER"] = "jane"

    result = server.licensectl("install", server.licence(trial(later(5))))

    assert result.code == 0, result.stderr
    [entry] = server.audit()
    assert entry["event"] == "licence_installed"
    assert entry["serial"] == "AST-T001"
    assert entry["type"] == "trial"
    assert entry["previous_serial"] == "AST-0000"
    assert entry["previous_type"] == "full"
    assert entry["path"] == str(server.licence_file)
    assert entry["user"] == "jane"
    assert datetime.fromisoformat(str(entry["time"])).utcoffset() == timedelta(0)


def test_a_failed_audit_record_is_reported_but_keeps_the_install(
    server: Server,
) -> None:
    """If the audit trail cannot be written, the licence installs with a warning."""
    server.write_config(state_dir=str(server.root / "no-state"))
    source = server.licence(make_licence())

    result = server.licensectl("install", source)

    assert result.code == 0
    assert "Warning: the audit record 'licence_installed' was not written" in (
        result.stderr
    )
    assert digest(server.licence_file) == digest(source)


def test_a_missing_keys_folder_is_a_configuration_error(server: Server) -> None:
    """If the trusted-key folder is missing, install exits 2 and names it."""
    server.write_config(keys_dir=str(server.root / "no-keys"))

    result = server.licensectl("install", server.licence(make_licence()))

    assert result.code == 2
    assert "trusted-key folder" in result.stderr
    assert not server.licence_file.exists()


# --- permission ------------------------------------------------------------------


def test_other_users_may_not_install_or_remove(open_folder: Path) -> None:
    """If the user is neither root nor in the admin group, install/remove exit 4."""
    server = Server(open_folder)
    server.install_directly(make_licence())
    before = server.installed_digest()
    source = server.licence(make_licence(serial="AST-0002"))
    nobody = as_nobody()

    install = server.licensectl("install", source, prefix=nobody)
    remove = server.licensectl("remove", "--yes", prefix=nobody)

    for result in (install, remove):
        assert result.code == 4, result.stderr
        assert "only root" in result.stderr
        assert "Traceback" not in result.stderr
    assert server.installed_digest() == before


def test_a_member_of_the_admin_group_may_install(open_folder: Path) -> None:
    """If the user is in the admin group, install works and the audit names them."""
    group = grp.getgrgid(100).gr_name
    server = Server(open_folder, admin_group=group)
    for folder in (server.licence_file.parent, server.state_dir):
        os.chown(folder, 0, 100)
        folder.chmod(0o2775)
    source = server.licence(make_licence())

    result = server.licensectl("install", source, prefix=as_nobody("100"))

    assert result.code == 0, result.stderr
    assert digest(server.licence_file) == digest(source)
    assert server.audit()[0]["user"] == pwd.getpwuid(NOBODY).pw_name


def test_the_installed_licence_is_readable_by_the_admin_group(
    open_folder: Path,
) -> None:
    """If root installs, the file belongs to the admin group, whose members show it."""
    server = Server(open_folder, admin_group=grp.getgrgid(100).gr_name)

    installed = server.licensectl("install", server.licence(make_licence()))
    shown = server.licensectl("show", prefix=as_nobody("100"))

    assert installed.code == 0, installed.stderr
    assert server.licence_file.stat().st_gid == 100
    assert shown.code == 0, shown.stderr
    assert "licensed (full licence AST-0001)" in shown.stdout


# --- remove ----------------------------------------------------------------------


def test_remove_with_yes_deletes_the_licence_and_says_the_system_is_unlicensed(
    server: Server,
) -> None:
    """If remove --yes runs, the file is gone, audited, and the effect explained."""
    server.install_directly(make_licence())

    result = server.licensectl("remove", "--yes")

    assert result.code == 0, result.stderr
    assert "Removed: full licence AST-0001" in result.stdout
    assert "The system is now unlicensed" in result.stdout
    assert not server.licence_file.exists()
    [entry] = server.audit()
    assert (entry["event"], entry["previous_serial"], entry["serial"]) == (
        "licence_removed",
        "AST-0001",
        None,
    )


def test_remove_without_yes_refuses_when_stdin_is_not_a_terminal(
    server: Server,
) -> None:
    """If stdin is not a terminal and --yes is missing, remove exits 5 and keeps it."""
    data = server.install_directly(make_licence())

    result = server.licensectl("remove")

    assert result.code == 5
    assert "--yes" in result.stderr
    assert server.licence_file.read_bytes() == data


@pytest.mark.parametrize(("answer", "removed"), [(b"y\n", True), (b"\n", False)])
def test_remove_asks_on_a_terminal(
    server: Server, answer: bytes, removed: bool
) -> None:
    """If stdin is a terminal, remove asks; only yes removes."""
    server.install_directly(make_licence())
    controller, terminal = os.openpty()
    os.write(controller, answer)

    try:
        result = server.licensectl("remove", stdin=terminal)
    finally:
        os.close(terminal)
        os.close(controller)

    assert "Remove the installed licence AST-0001? [y/N]" in result.stderr
    assert result.code == (0 if removed else 5)
    assert server.licence_file.exists() is not removed


def test_remove_with_nothing_installed_succeeds_quietly(server: Server) -> None:
    """If no licence is installed, remove says there is nothing to remove."""
    result = server.licensectl("remove", "--yes")

    assert result.code == 0
    assert "nothing to remove" in result.stdout
    assert server.audit() == []


# --- configuration and help ------------------------------------------------------


@pytest.mark.parametrize("command", [["install", "x.lic"], ["remove"], ["show"]])
def test_an_unusable_configuration_exits_2_with_one_line(
    server: Server, command: list[str]
) -> None:
    """If the configuration is missing or broken, a command exits 2 with why."""
    broken = server.root / "broken.toml"
    broken.write_text("timezone = 'Mars/Base'\n")

    absent = server.licensectl(*command, "--config", server.root / "absent.toml")
    bad = server.licensectl("--config", broken, *command)

    assert (absent.code, bad.code) == (2, 2)
    assert "absent.toml does not exist" in absent.stderr
    assert "'Mars/Base': unknown zone" in bad.stderr
    assert absent.stderr.count("\n") == bad.stderr.count("\n") == 1


@pytest.mark.parametrize("command", ["install", "remove", "show"])
def test_help_documents_the_exit_codes(server: Server, command: str) -> None:
    """If --help is asked for, the epilog lists every exit code."""
    result = server.licensectl(command, "--help")

    assert result.code == 0
    assert "exit codes:" in result.stdout
    for code in ("0  done", "1  the licence file is invalid", "4  not permitted"):
        assert code in result.stdout
