"""The audit trail: append-only JSON lines, whole records, private file."""

from __future__ import annotations

import json
import os
import pwd
import stat
import subprocess
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from licensed import audit
from licensed.licence import LicenceType

WRITER = """
import sys
from pathlib import Path
from licensed import audit
name, count = sys.argv[2], int(sys.argv[3])
for number in range(count):
    audit.record(Path(sys.argv[1]), "stress", writer=name, number=number,
                 padding="x" * 3000)
"""


def test_each_record_is_one_json_line_with_time_and_event(tmp_path: Path) -> None:
    """If two events are recorded, the file holds two lines in order, UTC-stamped."""
    audit.record(tmp_path, "licence_installed", serial="AST-1", user="jane")
    audit.record(tmp_path, "licence_removed", previous_serial="AST-1")

    lines = (tmp_path / "audit.jsonl").read_text().splitlines()

    first, second = (json.loads(line) for line in lines)
    assert first["event"] == "licence_installed"
    assert (first["serial"], first["user"]) == ("AST-1", "jane")
    assert second == {
        "time": second["time"],
        "event": "licence_removed",
        "previous_serial": "AST-1",
    }
    stamp = datetime.fromisoformat(first["time"])
    assert stamp.utcoffset() == timedelta(0)
    assert abs(datetime.now(UTC) - stamp) < timedelta(minutes=1)


def test_paths_dates_and_enums_are_written_as_plain_json(tmp_path: Path) -> None:
    """If fields hold a path, a date, a datetime or an enum, they become strings."""
    audit.record(
        tmp_path,
        "values",
        path=Path("/etc/licensed/licence.lic"),
        day=date(2027, 1, 31),
        at=datetime(2027, 2, 1, 0, 0, 1, tzinfo=UTC),
        type=LicenceType.TRIAL,
        nothing=None,
    )

    [entry] = audit.read(tmp_path)

    assert entry["path"] == "/etc/licensed/licence.lic"
    assert entry["day"] == "2027-01-31"
    assert entry["at"] == "2027-02-01T00:00:01+00:00"
    assert entry["type"] == "trial"
    assert entry["nothing"] is None


def test_the_file_is_created_private_and_only_appended_to(tmp_path: Path) -> None:
    """If the file exists, records go after its content; a new file is mode 0600."""
    audit.record(tmp_path, "first")
    path = tmp_path / "audit.jsonl"
    before = path.read_bytes()

    audit.record(tmp_path, "second")

    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_bytes().startswith(before)
    assert [e["event"] for e in audit.read(tmp_path)] == ["first", "second"]


def test_a_symlink_in_place_of_the_file_is_refused(tmp_path: Path) -> None:
    """If audit.jsonl is a symlink, record raises and the link target is untouched."""
    target = tmp_path / "elsewhere"
    target.write_text("precious\n")
    (tmp_path / "audit.jsonl").symlink_to(target)

    with pytest.raises(OSError, match="Too many levels of symbolic links"):
        audit.record(tmp_path, "licence_installed")

    assert target.read_text() == "precious\n"


def test_a_missing_state_folder_raises_and_creates_nothing(tmp_path: Path) -> None:
    """If the state folder does not exist, record raises FileNotFoundError."""
    missing = tmp_path / "absent"

    with pytest.raises(FileNotFoundError):
        audit.record(missing, "licence_installed")

    assert not missing.exists()


def test_reserved_field_names_are_refused(tmp_path: Path) -> None:
    """If a field is named time or event, record refuses rather than overwrite it."""
    with pytest.raises(ValueError, match="reserved"):
        audit.record(tmp_path, "x", time="now")

    assert audit.read(tmp_path) == []


def test_records_from_concurrent_processes_stay_whole(tmp_path: Path) -> None:
    """If four processes append at once, every line is a whole record."""
    writers = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(tmp_path), f"w{n}", "150"],
            cwd=Path(__file__).resolve().parents[1],
        )
        for n in range(4)
    ]

    codes = [writer.wait(timeout=60) for writer in writers]

    assert codes == [0, 0, 0, 0]
    entries = audit.read(tmp_path)
    assert len(entries) == 600
    for name in ("w0", "w1", "w2", "w3"):
        numbers = [e["number"] for e in entries if e["writer"] == name]
        assert numbers == list(range(150))


def test_each_record_is_also_a_structlog_event(tmp_path: Path) -> None:
    """If an event is recorded, structlog sees the same event and fields."""
    with capture_logs() as logs:
        audit.record(tmp_path, "licence_installed", serial="AST-1", user="jane")

    assert logs == [
        {
            "event": "licence_installed",
            "log_level": "info",
            "serial": "AST-1",
            "user": "jane",
        }
    ]


def test_the_invoking_user_is_sudo_user_when_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """If SUDO_USER is set, it names the person behind the command."""
    monkeypatch.setenv("SUDO_USER", "jane")

    assert audit.invoking_user() == "jane"


def test_the_invoking_user_is_the_real_uids_name_without_sudo(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """If SUDO_USER is not set, the real uid's account name is used."""
    monkeypatch.delenv("SUDO_USER", raising=False)

    assert audit.invoking_user() == pwd.getpwuid(os.getuid()).pw_name
