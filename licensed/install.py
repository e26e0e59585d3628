"""The installed licence file: reading it, replacing it and removing it.

This module owns what ``licensectl install`` and ``licensectl remove`` do to the
file at ``config.licence_file``; the command line in ``licensed.ctl`` only parses
options, asks and prints. The daemon is not involved: it watches the folder and
reacts to the change by itself.

Installing:

* The new file is validated by ``read_licence_file`` against the trusted keys, the
  same check the daemon makes. Its *Valid until* date is not checked: an expired
  trial installs, and the system then behaves as expired.
* Downgrade protection: while the installed licence is valid and in force (it
  passes validation and the system is licensed by it now), a licence issued
  earlier than it is refused unless forced. Replacing an expired or invalid
  licence is never a downgrade, and re-installing the same serial is allowed.
* The bytes go in with ``write_atomic`` (mode 0640), so the daemon sees the old
  file or the new one, never a mix. The folder must already exist: creating
  ``/etc/licensed`` with the right owner and mode is the package's job.

Both actions append a record to the audit trail (``licensed.audit``) with the same
fields: ``serial`` and ``type`` of what is installed afterwards, ``previous_serial``
and ``previous_type`` of what was installed before (``None`` for nothing, type
``"invalid"`` for a file that failed validation), ``path`` and ``user``. A failed
record does not undo the change; it is returned for the command line to report.

The installed file is given to the admin group (when that group exists), so its
members can read it with ``licensectl show`` while others cannot.

Limitations: the group is set just after the rename, so for a moment the new file
carries the installing process's group; it is complete and read-only either way.
"""

from __future__ import annotations

import dataclasses
import grp
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import structlog

from licensed import audit
from licensed.config import Config
from licensed.decision import Missing, Rejected, State, evaluate
from licensed.errors import InstallError, InvalidLicence, KeyringError
from licensed.expiry import expiry_instant
from licensed.fsio import fsync_folder, write_atomic
from licensed.keyring import Keyring
from licensed.licence import Licence
from licensed.licence_file import SignedLicence, read_licence_file

log = structlog.get_logger(__name__)

LICENCE_MODE = 0o640

InstalledReading = SignedLicence | Missing | Rejected
"""What is installed: a valid signed licence, nothing, or a file that fails."""


@dataclass(frozen=True)
class Installed:
    """The outcome of an install (or, with ``dry_run``, of its preview)."""

    signed: SignedLicence
    previous: InstalledReading
    expires_at: datetime | None
    expired: bool
    dry_run: bool
    audit_error: str | None = None

    @property
    def licence(self) -> Licence:
        return self.signed.licence


@dataclass(frozen=True)
class Removed:
    """The outcome of a removal."""

    previous: SignedLicence | Rejected
    audit_error: str | None = None


def permission_problem(config: Config) -> str | None:
    """Why this process may not change the licence, or None if it may."""
    if os.geteuid() == 0:
        return None

    try:
        gid = grp.getgrnam(config.admin_group).gr_gid
    except KeyError:
        return (
            f"only root may install or remove the licence here: the admin group "
            f"{config.admin_group!r} (config key 'admin_group') does not exist"
        )
    if gid == os.getegid() or gid in os.getgroups():
        return None
    return (
        f"only root or members of the group {config.admin_group!r} may install or "
        f"remove the licence; run it with sudo or ask to be added to that group"
    )


def read_installed(path: Path, keyring: Keyring) -> InstalledReading:
    """Read and validate the installed licence file.

    Nothing at ``path`` (or a dangling symlink) is ``Missing``, as the daemon sees it.
    """
    if not path.exists():
        return Missing()
    try:
        return read_licence_file(path, keyring)
    except InvalidLicence as exc:
        return Rejected(str(exc))


def load_installed(config: Config) -> InstalledReading:
    """``read_installed`` with the configured keys; an unusable keyring rejects."""
    try:
        keyring = Keyring.load(config.keys_dir)
    except KeyringError as exc:
        if not config.licence_file.exists():
            return Missing()
        return Rejected(str(exc))
    return read_installed(config.licence_file, keyring)


def install(
    config: Config, source: Path, *, now: datetime, force: bool, dry_run: bool
) -> Installed:
    """Validate ``source`` and make it the installed licence.

    Raises ``InvalidLicence`` for a bad file, ``KeyringError`` for an unusable
    trusted-key folder and ``InstallError`` when it may or cannot be installed.
    """
    keyring = Keyring.load(config.keys_dir)
    signed = read_licence_file(source, keyring)
    _check_folder(config.licence_file)
    previous = read_installed(config.licence_file, keyring)
    if not force:
        _refuse_downgrade(signed.licence, previous, config, now)

    expires_at = _expiry(signed.licence, config)
    result = Installed(
        signed=signed,
        previous=previous,
        expires_at=expires_at,
        expired=expires_at is not None and now >= expires_at,
        dry_run=dry_run,
    )
    if dry_run:
        return result

    _write(config.licence_file, signed.data)
    _share_with_admins(config.licence_file, config.admin_group)
    log.info("licence_file_written", path=str(config.licence_file))
    return _with_audit(result, config)


def remove(config: Config, previous: SignedLicence | Rejected) -> Removed:
    """Delete the installed licence file; the system is then unlicensed."""
    path = config.licence_file
    try:
        path.unlink(missing_ok=True)
        fsync_folder(path.parent)
    except OSError as exc:
        raise InstallError(
            f"cannot remove {path}: {exc.strerror or exc}; run as root"
        ) from exc

    before = _describe(previous)
    error = _audit_quietly(
        config,
        "licence_removed",
        serial=None,
        type=None,
        previous_serial=before["serial"],
        previous_type=before["type"],
        path=str(path),
    )
    return Removed(previous=previous, audit_error=error)


def _check_folder(path: Path) -> None:
    if not path.parent.is_dir():
        raise InstallError(
            f"the licence folder {path.parent} does not exist; create it with "
            f"'systemd-tmpfiles --create licensed.conf' (or 'install -d -m 2770 "
            f"-g licensed-admin {path.parent}'), or fix 'licence_file' in the "
            f"configuration, and install again"
        )


def _refuse_downgrade(
    new: Licence, previous: InstalledReading, config: Config, now: datetime
) -> None:
    if not isinstance(previous, SignedLicence):
        return
    old = previous.licence
    if old.serial == new.serial or new.issued >= old.issued:
        return
    if evaluate(old, now, config.zone).state is not State.LICENSED:
        return

    raise InstallError(
        f"licence {new.serial} (issued {_day(new.issued)}) is older than the "
        f"installed licence {old.serial} (issued {_day(old.issued)}), which is "
        f"in force; installing it would downgrade. Repeat with --force if that "
        f"is intended"
    )


def _expiry(licence: Licence, config: Config) -> datetime | None:
    if licence.valid_until is None:
        return None
    return expiry_instant(licence.valid_until, config.zone)


def _write(path: Path, data: bytes) -> None:
    try:
        write_atomic(path, data, mode=LICENCE_MODE)
    except OSError as exc:
        raise InstallError(
            f"cannot write {path}: {exc.strerror or exc}; the installed licence "
            f"is unchanged. Run as root, or check that {path.parent} is writable"
        ) from exc


def _share_with_admins(path: Path, group: str) -> None:
    """Give the file to the admin group, so its members can ``show`` it (0640)."""
    try:
        gid = grp.getgrnam(group).gr_gid
    except KeyError:
        return
    try:
        os.chown(path, -1, gid, follow_symlinks=False)
    except OSError as exc:
        # The licence is installed and the daemon (root) reads it; only the
        # admins' read access is missing, which is worth a warning, not a failure.
        log.warning(
            "licence_group_not_set", path=str(path), group=group, error=str(exc)
        )


def _with_audit(result: Installed, config: Config) -> Installed:
    previous = _describe(result.previous)
    error = _audit_quietly(
        config,
        "licence_installed",
        serial=result.licence.serial,
        type=result.licence.type.value,
        previous_serial=previous["serial"],
        previous_type=previous["type"],
        path=str(config.licence_file),
    )
    return dataclasses.replace(result, audit_error=error)


def _audit_quietly(config: Config, event: str, **fields: object) -> str | None:
    """Record ``event``; return why it failed instead of raising."""
    try:
        audit.record(config.state_dir, event, user=audit.invoking_user(), **fields)
    except OSError as exc:
        return (
            f"the audit record {event!r} was not written to "
            f"{config.state_dir / audit.FILE_NAME}: {exc.strerror or exc}"
        )
    return None


def _describe(reading: InstalledReading) -> dict[str, str | None]:
    if isinstance(reading, SignedLicence):
        return {"serial": reading.licence.serial, "type": reading.licence.type.value}
    if isinstance(reading, Rejected):
        return {"serial": None, "type": "invalid"}
    return {"serial": None, "type": None}


def _day(instant: datetime) -> str:
    return instant.strftime("%Y-%m-%d %H:%M:%SZ")
