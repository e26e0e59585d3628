"""One check: read the licence, decide, publish, and bring the units in line.

``Enforcer.check`` is the whole of what the daemon does at each trigger (start, a
licence change, the expiry instant, 00:00:01, the safety interval, a signal or
``licensectl check``). It runs in the daemon's main thread only, one at a time.

Its order is chosen for speed where it matters and for safety everywhere:

1. Read and validate the installed licence, judge the time (clock high-water mark),
   and evaluate. This is the licence decision, and nothing after it changes it.
2. Publish the status file, so front ends learn the decision before anything slow.
3. Reconcile each component with systemd: stop and mask what must not run, unmask
   and start what must, correct drift. A systemd failure is recorded and retried
   with backoff; it never alters the decision.
4. Publish again if what systemd reports has changed.

"The checker failed" is kept apart from "the licence is invalid": a database, bus or
status-folder failure becomes an entry in ``errors``, never a state.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Protocol

import structlog

from licensed import audit, metrics, status
from licensed.clockmark import ClockMark, Judgement
from licensed.config import Config
from licensed.decision import (
    Decision,
    LicenceReading,
    Missing,
    Rejected,
    Warnings,
    days_left,
    evaluate,
)
from licensed.errors import InvalidLicence, KeyringError, UnitControlError
from licensed.expiry import next_daily_check
from licensed.keyring import CachedKeyring, Keyring
from licensed.licence import Licence
from licensed.licence_file import SignedLicence, parse_licence, read_licence_bytes
from licensed.status import ComponentView, ErrorView, Snapshot, UsersView

log = structlog.get_logger(__name__)

SETTLE_SECONDS = 2.0
"""How long a just-written licence that fails validation is given to complete."""
_RETRY_FIRST = 1.0
_RETRY_CAP = 60.0


class Units(Protocol):
    """What the enforcer needs of systemd (``licensed.units.UnitManager``)."""

    def status(self, unit: str) -> Any: ...
    def stop(self, unit: str) -> None: ...
    def mask(self, unit: str) -> None: ...
    def unmask_and_start(self, unit: str) -> None: ...


class Users(Protocol):
    """What the enforcer needs of the user counting (``UserCountTracker``)."""

    @property
    def current(self) -> Any: ...


@dataclass(frozen=True)
class _Facts:
    """What one check found before deciding."""

    now: datetime
    reading: LicenceReading
    signed: SignedLicence | None
    set_back: bool
    next_check: datetime


@dataclass
class Outcome:
    """What one check decided and when the next one is due."""

    decision: Decision
    document: dict[str, Any]
    wake_at: list[tuple[str, datetime]] = field(default_factory=list)


class Enforcer:
    """Holds what persists between checks and performs them."""

    def __init__(
        self,
        config: Config,
        units: Units,
        users: Users | None = None,
        clock: Any = None,
    ) -> None:
        self.config = config
        self.units = units
        self.users = users
        self._now = clock or (lambda: datetime.now(UTC))
        self.mark = ClockMark(config.state_dir, config.clock_rollback_tolerance)
        self._keyring = CachedKeyring(config.keys_dir)
        self._last_valid: tuple[Keyring, SignedLicence] | None = None
        self.decision: Decision | None = None
        self.serial: str | None = None
        self._components: dict[str, ComponentView] = {}
        self._errors: dict[str, ErrorView] = {}
        self._retry_attempt = 0
        self._status_attempt = 0
        self._started_at = self._now()
        self._last_document: dict[str, Any] = {}
        self._previous_reading: LicenceReading | None = None
        self.counters = metrics.Counters()
        self._count_attempt = 0
        self._warned: set[tuple[str, int, date]] = set()

    # The check itself.

    def check(self, trigger: str) -> Outcome:
        """Decide, publish and reconcile once."""
        now = self._now()
        signed, reading = self._read_licence()
        reading, settle_at = self._settle(reading, now)
        judged = self._judge(now, reading)
        users = self.users.current if self.users is not None else None
        decision = evaluate(
            reading,
            judged.at,
            self.config.zone,
            users=users.actual if users is not None else None,
            warnings=Warnings(
                self.config.trial_warning_days, self.config.support_warning_days
            ),
        )
        wake_at = self._wake_times(now, decision, settle_at)
        facts = _Facts(
            now=now,
            reading=reading,
            signed=signed,
            set_back=judged.set_back,
            next_check=min(when for _, when in wake_at),
        )
        self._publish(facts, decision)
        # Logged (and audited, with an fsync) after publishing: the status file
        # is what front ends wait for, the log loses nothing by a millisecond.
        self._log_decision(trigger, decision, reading, judged.set_back)
        self._log_warnings(decision, reading, judged.at)

        if self._reconcile(decision):
            self._publish(facts, decision)
        retry = self._retry_time(now)
        if retry is not None:
            wake_at.append(("retry", retry))

        self.decision = decision
        return Outcome(decision, self._last_document, wake_at)

    @property
    def document(self) -> dict[str, Any]:
        """The status document published last."""
        return self._last_document

    def summary(self) -> str:
        """A one-line status for ``systemctl status``."""
        if self.decision is None:
            return "starting"
        line = f"{self.decision.state.value}: {self.decision.reason}"
        if self._errors:
            line += f" ({len(self._errors)} error(s): see licensectl status)"
        return line

    # Reading and judging.

    def _read_licence(self) -> tuple[SignedLicence | None, LicenceReading]:
        path = self.config.licence_file
        if not path.exists():
            self._clear_error("licence")
            return None, Missing()
        try:
            if self._keyring.folder != self.config.keys_dir:  # reloaded config
                self._keyring = CachedKeyring(self.config.keys_dir)
            keyring = self._keyring.get()
            data = read_licence_bytes(path, follow_symlinks=False)
            signed = self._parsed(data, keyring)
        except (InvalidLicence, KeyringError) as exc:
            return None, Rejected(str(exc))
        return signed, signed.licence

    def _parsed(self, data: bytes, keyring: Keyring) -> SignedLicence:
        """``parse_licence``, skipped when bytes and keyring are those of last time.

        Validation is a pure function of the two, and most checks find the
        licence unchanged: this spares them the signature check and the parse.
        """
        last = self._last_valid
        if last is not None and last[0] is keyring and last[1].data == data:
            return last[1]
        signed = parse_licence(data, keyring)
        self._last_valid = (keyring, signed)
        return signed

    def _settle(
        self, reading: LicenceReading, now: datetime
    ) -> tuple[LicenceReading, datetime | None]:
        """Give a licence that is still being written time to complete.

        A licence copied in place rather than renamed is invalid while the copy is
        under way. Acting on it would stop the components only to start them again
        a moment later, so a just-modified invalid file keeps the previous reading
        until it has been still for ``SETTLE_SECONDS``.
        """
        if not isinstance(reading, Rejected) or self._previous_reading is None:
            self._previous_reading = reading
            return reading, None
        try:
            modified = self.config.licence_file.stat().st_mtime
        except OSError:
            return reading, None
        settled = datetime.fromtimestamp(modified, UTC) + timedelta(
            seconds=SETTLE_SECONDS
        )
        if now < settled and not isinstance(self._previous_reading, Rejected):
            log.info(
                "licence_settling", reason=reading.reason, until=settled.isoformat()
            )
            return self._previous_reading, settled
        self._previous_reading = reading
        return reading, None

    def _judge(self, now: datetime, reading: LicenceReading) -> Judgement:
        if isinstance(reading, Licence):
            try:
                self.mark.reset(now, reading.issued)
            except OSError as exc:
                self._set_error("clock", f"cannot save the clock mark: {exc}", now)
        judged = self.mark.judge(now)
        if judged.set_back:
            log.warning(
                "clock_set_back",
                clock=now.isoformat(),
                mark=judged.at.isoformat(),
                tolerance_s=self.config.clock_rollback_tolerance,
            )
            return judged
        try:
            self.mark.advance(now)
        except OSError as exc:
            self._set_error("clock", f"cannot save the clock mark: {exc}", now)
        else:
            self._clear_error("clock")
        return judged

    def _wake_times(
        self, now: datetime, decision: Decision, settle_at: datetime | None
    ) -> list[tuple[str, datetime]]:
        wake = [
            ("interval", now + timedelta(seconds=self.config.check_interval)),
            ("daily", next_daily_check(now, self.config.zone)),
        ]
        if decision.expires_at is not None and decision.expires_at > now:
            wake.append(("expiry", decision.expires_at))
        if settle_at is not None:
            wake.append(("settle", settle_at))
        return wake

    def _log_decision(
        self,
        trigger: str,
        decision: Decision,
        reading: LicenceReading,
        set_back: bool,
    ) -> None:
        serial = reading.serial if isinstance(reading, Licence) else None
        previous = self.decision
        fields = {
            "trigger": trigger,
            "state": decision.state.value,
            "serial": serial,
            "reason": decision.reason,
        }
        if previous is None or previous.state is not decision.state:
            # The audit trail logs the event as well.
            self._audit(
                "licence_state_changed",
                previous=_state(previous),
                clock_set_back=set_back,
                **fields,
            )
        elif serial != self.serial:
            log.info("licence_changed", previous_serial=self.serial, **fields)
        else:
            log.debug("licence_checked", **fields)
        self._log_messages(previous, decision)
        self.serial = serial

    def _log_messages(self, previous: Decision | None, decision: Decision) -> None:
        before = {(m.id, m.audience) for m in previous.messages} if previous else set()
        for message in decision.messages:
            if (message.id, message.audience) not in before:
                log.info(
                    "message_published",
                    id=message.id,
                    audience=message.audience.value,
                    text=message.text,
                )

    def _log_warnings(
        self, decision: Decision, reading: LicenceReading, at: datetime
    ) -> None:
        """Log each warning once per threshold crossed, not at every check."""
        if not isinstance(reading, Licence):
            return
        today = at.astimezone(self.config.zone).date()
        for message in decision.messages:
            found = _warning(message.id, reading, today, self.config)
            if found is None or found[0] in self._warned:
                continue
            (_, threshold, end), left = found
            self._warned.add(found[0])
            log.warning(
                "licence_warning",
                id=message.id,
                serial=reading.serial,
                days_left=left,
                threshold=threshold,
                date=end.isoformat(),
                text=message.text,
            )

    # Publishing.

    def _publish(self, facts: _Facts, decision: Decision) -> None:
        now = facts.now
        snapshot = Snapshot(
            decision=decision,
            licence=facts.reading if isinstance(facts.reading, Licence) else None,
            key_id=facts.signed.key_id if facts.signed else None,
            checked_at=now,
            next_check=facts.next_check,
            timezone=str(self.config.zone.key),
            users=self._users_view(),
            components=self._component_views(decision),
            # A status file that could be written proves the folder works again:
            # the file never carries a stale "cannot write the status file".
            errors=[e for e in self._sorted_errors() if e.source != "status"],
            clock=status.ClockView(
                high_water=self.mark.high_water, set_back=facts.set_back
            ),
            daemon={
                "pid": os.getpid(),
                "started_at": self._started_at.isoformat(),
                "version": _version(),
            },
        )
        document = status.build(snapshot)
        try:
            _ensure_folder(self.config.status_file.parent)
            status.publish(self.config.status_file, document)
        except OSError as exc:
            # The old status stays in place, whole; the next check tries again.
            self._status_attempt += 1
            log.error(
                "status_publish_failed",
                path=str(self.config.status_file),
                reason=str(exc),
                attempt=self._status_attempt,
            )
            self._set_error("status", f"cannot write the status file: {exc}", now)
            # licensectl status and the metrics still learn of the failure.
            document = status.build(replace(snapshot, errors=self._sorted_errors()))
        else:
            self._status_attempt = 0
            self._clear_error("status")
        self._last_document = document
        self._write_metrics(document, now)

    def _sorted_errors(self) -> list[ErrorView]:
        return sorted(self._errors.values(), key=lambda e: e.source)

    def _write_metrics(self, document: dict[str, Any], now: datetime) -> None:
        path = self.config.metrics_file
        if path is None:
            return
        try:
            metrics.write(path, document, self.counters)
        except OSError as exc:
            log.error("metrics_write_failed", path=str(path), reason=str(exc))
            self._set_error("metrics", f"cannot write the metrics file: {exc}", now)
        else:
            self._clear_error("metrics")

    def _users_view(self) -> UsersView:
        if self.users is None:
            return UsersView(counting=False)
        current = self.users.current
        self._count_failures(current.attempt)
        return UsersView(
            counting=True,
            actual=current.actual,
            counted_at=current.counted_at,
            stale=current.stale,
            error=current.error,
        )

    def _count_failures(self, attempt: int) -> None:
        # The tracker numbers consecutive failures and restarts at 0 on success;
        # a lower number than last seen means it restarted in between.
        failed = (
            attempt - self._count_attempt if attempt >= self._count_attempt else attempt
        )
        self.counters.database_errors += failed
        self._count_attempt = attempt

    def _component_views(self, decision: Decision) -> list[ComponentView]:
        required = "running" if decision.components_run else "stopped"
        views = []
        for name, unit in self.config.components.items():
            known = self._components.get(unit)
            views.append(
                ComponentView(
                    name=name,
                    unit=unit,
                    required=required,
                    actual=known.actual if known else "unknown",
                    active_state=known.active_state if known else None,
                    load_state=known.load_state if known else None,
                    error=known.error if known else None,
                )
            )
        return views

    # Reconciling.

    def _reconcile(self, decision: Decision) -> bool:
        """Bring every component in line; whether any view changed."""
        before = dict(self._components)
        if decision.components_run:
            views = [
                self._bring_up(name, unit, decision)
                for name, unit in self.config.components.items()
            ]
        else:
            views = self._bring_down(decision)
        failures = []
        for view in views:
            self._components[view.unit] = view
            if view.error is not None:
                failures.append(f"{view.unit}: {view.error}")

        now = self._now()
        if failures:
            self._retry_attempt += 1
            self._set_error("systemd", "; ".join(failures), now)
        else:
            self._retry_attempt = 0
            self._clear_error("systemd")
        return before != self._components or bool(failures)

    def _bring_up(self, name: str, unit: str, decision: Decision) -> ComponentView:
        try:
            current = self.units.status(unit)
            if current.masked or not current.running:
                self.units.unmask_and_start(unit)
                self._action("component_started", name, unit, current, decision)
                current = self.units.status(unit)
        except UnitControlError as exc:
            return self._failed(name, unit, "running", exc)
        return _view(name, unit, "running", current)

    def _bring_down(self, decision: Decision) -> list[ComponentView]:
        """Stop every component, then mask them.

        All stops come first: they are what the enforcement deadline is about,
        while each mask costs a systemd reload that would hold up the next stop.
        A component whose stop fails is masked anyway, so nothing can start it.
        """
        found: dict[str, Any] = {}
        failed: dict[str, ComponentView] = {}
        for name, unit in self.config.components.items():
            try:
                current = self.units.status(unit)
                if current.running and _must_stop(current):
                    self.units.stop(unit)
                    self._action("component_stopped", name, unit, current, decision)
                found[unit] = current
            except UnitControlError as exc:
                failed[unit] = self._failed(name, unit, "stopped", exc)

        views = []
        for name, unit in self.config.components.items():
            view = failed.get(unit)
            try:
                if view is not None or _must_stop(found[unit]):
                    self.units.mask(unit)
                if view is None:
                    view = _view(name, unit, "stopped", self.units.status(unit))
            except UnitControlError as exc:
                view = view or self._failed(name, unit, "stopped", exc)
            views.append(view)
        return views

    def _failed(
        self, name: str, unit: str, required: str, exc: UnitControlError
    ) -> ComponentView:
        self.counters.enforcement_errors += 1
        log.warning(
            "component_action_failed",
            component=name,
            unit=unit,
            required=required,
            action=exc.action,
            reason=exc.reason,
            attempt=self._retry_attempt + 1,
        )
        return ComponentView(name, unit, required, "unknown", error=exc.reason)

    def _action(
        self, event: str, name: str, unit: str, before: Any, decision: Decision
    ) -> None:
        # A component found running while the licence had already ended (at the
        # previous check) was started by someone else: say so, it is the
        # operator's business to know.
        drift = (
            event == "component_stopped"
            and self.decision is not None
            and not self.decision.components_run
        )
        fields = {
            "component": name,
            "unit": unit,
            "was": before.active_state,
            "state": decision.state.value,
        }
        if drift:
            log.warning("component_drift_corrected", **fields)
        self._audit(event, drift=drift, **fields)

    def _retry_time(self, now: datetime) -> datetime | None:
        attempt = max(self._retry_attempt, self._status_attempt)
        if attempt == 0:
            return None
        delay = min(_RETRY_FIRST * 2 ** (attempt - 1), _RETRY_CAP)
        return now + timedelta(seconds=delay)

    # Errors and the audit trail.

    def _set_error(self, source: str, message: str, now: datetime) -> None:
        previous = self._errors.get(source)
        since = previous.since if previous else now
        self._errors[source] = ErrorView(source=source, message=message, since=since)

    def _clear_error(self, source: str) -> None:
        if self._errors.pop(source, None) is not None:
            log.info("error_cleared", source=source)

    def set_error(self, source: str, message: str | None) -> None:
        """Record (or with ``None`` clear) a failure found outside the check."""
        if message is None:
            self._clear_error(source)
        else:
            self._set_error(source, message, self._now())

    def _audit(self, event: str, **fields: Any) -> None:
        try:
            audit.record(self.config.state_dir, event, **fields)
        except OSError as exc:
            log.error("audit_write_failed", event=event, reason=str(exc))


def _warning(
    message_id: str, licence: Licence, today: date, config: Config
) -> tuple[tuple[str, int, date], int] | None:
    """The (id, threshold, date) a warning message stands for, and the days left.

    The threshold is the smallest configured one the days left are within, so a
    trial with 2 days left is the 3-day warning, not the 14-day one; an ended
    support contract is threshold 0. The date makes a renewed licence warn anew.
    """
    if message_id == "trial_ending" and licence.valid_until is not None:
        end, thresholds = licence.valid_until, config.trial_warning_days
    elif message_id in ("support_ending", "support_ended"):
        end, thresholds = licence.support.valid_until, config.support_warning_days
    else:
        return None
    # As in the decision: until 00:00:01 after its last day a trial has 1 day left.
    left = max(days_left(end, today), 1 if message_id == "trial_ending" else 0)
    if message_id == "support_ended":
        return (message_id, 0, end), left
    threshold = min((days for days in thresholds if days >= left), default=0)
    return (message_id, threshold, end), left


def _view(name: str, unit: str, required: str, current: Any) -> ComponentView:
    return ComponentView(
        name,
        unit,
        required,
        _actual(current),
        active_state=current.active_state,
        load_state=current.load_state,
    )


def _must_stop(current: Any) -> bool:
    # A unit that does not exist cannot run; leave it alone rather than fail.
    if current.load_state == "not-found":
        return False
    return bool(current.running or not current.masked)


def _actual(current: Any) -> str:
    if current.load_state == "not-found":
        return "missing"
    if current.running:
        return "running"
    if current.masked:
        return "masked"
    return "stopped"


def _state(decision: Decision | None) -> str | None:
    return decision.state.value if decision else None


def _ensure_folder(folder: Path) -> None:
    if not folder.is_dir():
        folder.mkdir(mode=0o755, parents=True)


@cache
def _version() -> str:
    try:
        return version("licensed")
    except PackageNotFoundError:
        return "unknown"
