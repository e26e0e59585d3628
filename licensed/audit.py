"""The audit trail: who changed the licence, and what the daemon did about it.

Each record is one JSON object on one line of ``<state_dir>/audit.jsonl``, with the
event name, the UTC ``time`` and the caller's fields, and is also logged as a
structlog event of the same name. The file is only ever appended to: it is opened
with ``O_APPEND`` (so concurrent writers, the daemon and a command line, never
overwrite each other), created with mode 0600 (records name users), and opened
with ``O_NOFOLLOW`` so a symlink planted in its place is refused rather than
followed. Each record goes out in a single ``write()`` followed by ``fsync``, so a
reader sees whole lines only and a record that was reported written survives a
crash.

``record`` raises ``OSError`` when the record cannot be written. Callers decide
what that means: an install that already happened is not undone, the command line
reports the failure on stderr instead.

Limitations: the state folder is not created here; the package (or systemd's
``StateDirectory=``) provides it, and until then records fail to be written. The
file is not rotated; at a few hundred bytes per licence change it grows slowly.
"""

from __future__ import annotations

import enum
import json
import os
import pwd
from datetime import UTC, date, datetime
from pathlib import Path

import structlog

log = structlog.get_logger(__name__)

FILE_NAME = "audit.jsonl"
_RESERVED = frozenset({"event", "time"})


def record(state_dir: Path, event: str, **fields: object) -> None:
    """Append one ``event`` with ``fields`` to the audit trail in ``state_dir``."""
    reserved = _RESERVED & set(fields)
    if reserved:
        raise ValueError(f"audit field names {sorted(reserved)} are reserved")

    entry = {"time": datetime.now(UTC).isoformat(), "event": event, **fields}
    line = json.dumps(entry, default=_plain, ensure_ascii=False) + "\n"
    log.info(event, **fields)
    _append(state_dir / FILE_NAME, line.encode("utf-8"))


def invoking_user() -> str:
    """The person behind a command line: ``$SUDO_USER``, else the real uid's name."""
    sudo_user = os.environ.get("SUDO_USER")
    if sudo_user:
        return sudo_user

    uid = os.getuid()
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def read(state_dir: Path) -> list[dict[str, object]]:
    """Every record in the audit trail, oldest first (empty when there is none)."""
    try:
        text = (state_dir / FILE_NAME).read_text(encoding="utf-8")
    except FileNotFoundError:
        return []
    return [json.loads(line) for line in text.splitlines() if line]


def _append(path: Path, data: bytes) -> None:
    flags = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(path, flags, 0o600)
    try:
        # O_NOFOLLOW stops a planted symlink; a planted hard link would still be
        # appended to, and through it another file, so refuse a shared inode.
        if os.fstat(fd).st_nlink != 1:
            raise OSError(f"{path} has other hard links; refusing to append to it")
        # One write keeps the line whole next to other appenders; a short write
        # (disk full) is reported rather than completed by a second write that
        # could land after someone else's record.
        written = os.write(fd, data)
        if written != len(data):
            raise OSError(
                f"{path}: only {written} of {len(data)} bytes of the record were "
                f"written (disk full?)"
            )
        os.fsync(fd)
    finally:
        os.close(fd)


def _plain(value: object) -> object:
    """JSON form of the values records carry: times, dates, paths and enums."""
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, enum.Enum):
        return value.value
    return str(value)
