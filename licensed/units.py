"""Stop and mask, or unmask and start, the product's component units via systemd.

This module owns every conversation licensed has with systemd. It speaks D-Bus
(jeepney, blocking) to ``org.freedesktop.systemd1`` on the system bus, whose address
is the constructor's argument, else ``DBUS_SYSTEM_BUS_ADDRESS``, else the default
system bus socket.

``UnitManager.stop_and_mask`` stops a unit first (that is what the enforcement
deadline measures) and only then masks it for this boot (a runtime mask in
``/run/systemd/system``), so nothing can start it again until licensed unmasks it.
``unmask_and_start`` undoes both. Job completion is awaited through systemd's
``JobRemoved`` signal, then confirmed on the unit's ActiveState.

How the mask is set depends on ``mask_helper``:

* a template such as ``licensed-mask@.service`` (production): the instance
  ``licensed-mask@assistant-smd.service`` masks ``assistant-smd.service`` while it
  is active, so masking is starting that instance and unmasking is stopping it.
  The daemon then needs only polkit's start and stop rights on named units;
  ``MaskUnitFiles`` needs rights that cannot be confined to some units (see
  ``docs/security-confinement.md``). The mask counts as set once the instance is
  active *and* the unit's LoadState is ``masked``;
* none: ``MaskUnitFiles``/``UnmaskUnitFiles`` and ``Reload`` directly, which needs
  root. systemd is reloaded only when a mask actually changed, because a reload
  costs about 10 ms.

It never decides *which* units to act on: the caller passes names, and must never
pass Core's own unit. Every failure raises ``UnitControlError(unit, action,
reason)``; no jeepney or socket exception escapes. A broken connection (the bus or
systemd restarted) is dropped and the action retried once on a fresh connection.

Limitations: a ``UnitManager`` is not thread-safe; use one per thread. Connecting
waits at most one second for authentication, but jeepney sends its ``Hello`` without
a time limit, so a bus daemon that accepts connections and then hangs blocks the
caller. The helper template masks ``%i.service``, so through it only ``.service``
units can be masked. A runtime mask has no effect on a unit whose file is in
``/etc/systemd/system``; the helper path reports that as a failed mask, the direct
path does not notice.
"""

from __future__ import annotations

import contextlib
import os
import re
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Final, TypeVar

import structlog
from jeepney import DBusAddress, MatchRule, Message, MessageType, new_method_call
from jeepney.auth import AuthenticationError
from jeepney.bus_messages import message_bus
from jeepney.io.blocking import DBusConnection, open_dbus_connection
from jeepney.wrappers import DBusErrorResponse

from licensed.errors import UnitControlError

__all__ = ["UnitManager", "UnitStatus"]

log = structlog.get_logger(__name__)

DEFAULT_BUS_ADDRESS: Final = "unix:path=/run/dbus/system_bus_socket"
RUNNING_STATES: Final = frozenset({"active", "activating", "reloading"})
STOPPED_STATES: Final = frozenset({"inactive", "failed"})

_SYSTEMD = "org.freedesktop.systemd1"
_MANAGER = DBusAddress(
    "/org/freedesktop/systemd1",
    bus_name=_SYSTEMD,
    interface="org.freedesktop.systemd1.Manager",
)
_UNIT_INTERFACE = "org.freedesktop.systemd1.Unit"
_PROPERTIES_INTERFACE = "org.freedesktop.DBus.Properties"
_ERROR_PREFIX = "org.freedesktop.systemd1."
_JOB_REMOVED = MatchRule(
    type="signal",
    interface=_MANAGER.interface,
    member="JobRemoved",
    path=_MANAGER.object_path,
)
_AUTH_TIMEOUT_S = 1.0
_TEMPLATE = re.compile(r"[A-Za-z0-9:_.\\-]+@\.service")
_SERVICE_SUFFIX = ".service"

T = TypeVar("T")


@dataclass(frozen=True)
class UnitStatus:
    """A unit's load and activation state, as systemd reports them."""

    unit: str
    load_state: str
    active_state: str

    @property
    def running(self) -> bool:
        """True while the unit is active, starting or reloading."""
        return self.active_state in RUNNING_STATES

    @property
    def masked(self) -> bool:
        """True if the unit is masked (by licensed or by an administrator)."""
        return self.load_state == "masked"


class _BusLostError(Exception):
    """The connection broke mid-action; worth one retry on a fresh connection."""


class UnitManager:
    """Controls component units through systemd's D-Bus API.

    ``job_timeout`` bounds each step of a public call (stop, mask, unmask, start),
    including waiting for systemd to finish its jobs. ``mask_helper`` names the
    template unit that masks its instance's unit (``licensed-mask@.service``);
    ``None`` or ``""`` masks directly over the bus, which needs root.
    """

    def __init__(
        self,
        bus_address: str | None = None,
        job_timeout: float = 30.0,
        mask_helper: str | None = None,
    ) -> None:
        if mask_helper and not _TEMPLATE.fullmatch(mask_helper):
            raise ValueError(
                f"mask_helper = {mask_helper!r}: expected a template unit name such"
                " as 'licensed-mask@.service', or '' to mask directly"
            )
        self.bus_address = (
            bus_address
            or os.environ.get("DBUS_SYSTEM_BUS_ADDRESS")
            or DEFAULT_BUS_ADDRESS
        )
        self.job_timeout = job_timeout
        self.mask_helper = mask_helper or None
        self._conn: DBusConnection | None = None

    # -- public API -----------------------------------------------------------------

    def status(self, unit: str) -> UnitStatus:
        """Return the unit's LoadState and ActiveState (``not-found`` if missing)."""
        return self._perform(unit, "query", lambda call: _status(call, unit))

    def stop_and_mask(self, unit: str) -> None:
        """Stop the unit and wait until it is down, then mask it until reboot.

        If the stop fails, the unit is masked anyway (so that it cannot be started
        again) and the stop's error is raised.
        """
        try:
            self._perform(unit, "stop", lambda call: self._stop(call, unit))
        except UnitControlError:
            with contextlib.suppress(UnitControlError):
                self._perform(unit, "mask", lambda call: self._mask(call, unit))
            raise
        self._perform(unit, "mask", lambda call: self._mask(call, unit))

    def stop(self, unit: str) -> None:
        """Stop the unit and wait until it is down (no mask)."""
        self._perform(unit, "stop", lambda call: self._stop(call, unit))

    def mask(self, unit: str) -> None:
        """Mask the unit until reboot (it should be stopped already)."""
        self._perform(unit, "mask", lambda call: self._mask(call, unit))

    def unmask_and_start(self, unit: str) -> None:
        """Remove licensed's mask, start the unit and wait until it is active."""
        self._perform(unit, "unmask", lambda call: self._unmask(call, unit))
        self._perform(unit, "start", lambda call: self._start(call, unit))

    def close(self) -> None:
        """Close the bus connection; a later call opens a new one."""
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def __enter__(self) -> UnitManager:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- actions, each given a _Call bound to one connection and one deadline -------

    def _stop(self, call: _Call, unit: str) -> None:
        started = time.perf_counter()
        before = _status(call, unit)
        if before.load_state == "not-found":
            raise call.refused(f"no unit file named {unit!r} is installed")
        if before.active_state in STOPPED_STATES:
            log.debug("unit_already_stopped", unit=unit, state=before.active_state)
            return

        call.run_job("StopUnit", unit)
        call.expect_state(unit, STOPPED_STATES)
        log.info("unit_stopped", unit=unit, elapsed_ms=_ms_since(started))

    def _mask(self, call: _Call, unit: str) -> None:
        if self.mask_helper is not None:
            _mask_through_helper(call, unit, _instance(call, self.mask_helper, unit))
            return

        started = time.perf_counter()
        (changes,) = call.manager("MaskUnitFiles", "asbb", ([unit], True, True))
        if not changes:
            log.debug("unit_already_masked", unit=unit)
            return

        call.manager("Reload", "", ())
        log.info("unit_masked", unit=unit, runtime=True, elapsed_ms=_ms_since(started))

    def _unmask(self, call: _Call, unit: str) -> None:
        if self.mask_helper is not None:
            helper = _instance(call, self.mask_helper, unit)
            _unmask_through_helper(call, unit, helper)
            return

        started = time.perf_counter()
        (changes,) = call.manager("UnmaskUnitFiles", "asb", ([unit], True))
        if not changes:
            log.debug("unit_not_masked_by_licensed", unit=unit)
            return

        call.manager("Reload", "", ())
        log.info("unit_unmasked", unit=unit, elapsed_ms=_ms_since(started))

    def _start(self, call: _Call, unit: str) -> None:
        started = time.perf_counter()
        call.run_job("StartUnit", unit)
        call.expect_state(unit, frozenset({"active"}))
        log.info("unit_started", unit=unit, elapsed_ms=_ms_since(started))

    # -- connection and error handling ----------------------------------------------

    def _perform(self, unit: str, action: str, operation: Callable[[_Call], T]) -> T:
        deadline = time.monotonic() + self.job_timeout
        try:
            return self._with_reconnect(unit, action, deadline, operation)
        except _BusLostError as exc:
            self.close()
            raise UnitControlError(unit, action, self._unreachable(exc)) from None
        except DBusErrorResponse as exc:
            reason = _refusal(unit, exc, self.mask_helper)
            raise UnitControlError(unit, action, reason) from None
        except TimeoutError:
            self.close()
            reason = f"systemd did not finish within {self.job_timeout} s"
            raise UnitControlError(unit, action, reason) from None
        except (OSError, AuthenticationError) as exc:
            self.close()
            raise UnitControlError(unit, action, self._unreachable(exc)) from None
        except (ValueError, RuntimeError) as exc:
            # jeepney's words for an address it cannot parse or a transport it
            # does not speak (only unix: is supported), or for a garbled message.
            self.close()
            raise UnitControlError(unit, action, self._unusable(exc)) from None

    def _with_reconnect(
        self,
        unit: str,
        action: str,
        deadline: float,
        operation: Callable[[_Call], T],
    ) -> T:
        if self._conn is not None:
            try:
                return operation(_Call(self._conn, unit, action, deadline))
            except _BusLostError as exc:
                # A restart of the bus or of systemd kills long-lived connections;
                # every action here is idempotent, so one fresh attempt is safe.
                log.warning("bus_connection_lost", unit=unit, attempt=1, error=str(exc))
                self.close()
        call = _Call(self._connect(), unit, action, deadline)
        try:
            call.subscribe()
        except BaseException:
            call.conn.close()
            raise
        self._conn = call.conn
        return operation(call)

    def _connect(self) -> DBusConnection:
        try:
            conn = open_dbus_connection(self.bus_address, auth_timeout=_AUTH_TIMEOUT_S)
        except ConnectionError as exc:
            raise _BusLostError(str(exc)) from exc
        log.debug("bus_connected", address=self.bus_address)
        return conn

    def _unreachable(self, exc: BaseException) -> str:
        return (
            f"the system bus at {self.bus_address} is unreachable ({exc}); check that"
            " dbus and systemd are running"
        )

    def _unusable(self, exc: BaseException) -> str:
        return (
            f"cannot talk to the system bus at {self.bus_address!r} ({exc}); use a"
            " unix:path= address in DBUS_SYSTEM_BUS_ADDRESS"
        )


class _Call:
    """One action's calls on one connection, all bounded by one deadline."""

    def __init__(
        self, conn: DBusConnection, unit: str, action: str, deadline: float
    ) -> None:
        self.conn = conn
        self.unit = unit
        self.action = action
        self.deadline = deadline

    def remaining(self) -> float:
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError
        return left

    def send(self, message: Message) -> tuple[Any, ...]:
        try:
            reply = self.conn.send_and_get_reply(message, timeout=self.remaining())
        except ConnectionError as exc:
            raise _BusLostError(str(exc)) from exc
        return _checked(reply)

    def manager(self, method: str, signature: str, body: tuple[Any, ...]) -> Any:
        return self.send(new_method_call(_MANAGER, method, signature or None, body))

    def unit_property(self, path: str, name: str) -> str:
        props = DBusAddress(path, bus_name=_SYSTEMD, interface=_PROPERTIES_INTERFACE)
        get = new_method_call(props, "Get", "ss", (_UNIT_INTERFACE, name))
        ((_signature, value),) = self.send(get)
        return str(value)

    def subscribe(self) -> None:
        """Ask for JobRemoved signals; needed once per connection."""
        # Without Subscribe systemd emits no job signals at all; the match rule
        # makes the bus daemon route them to this connection.
        self.manager("Subscribe", "", ())
        self.send(message_bus.AddMatch(_JOB_REMOVED))

    def refused(self, reason: str) -> UnitControlError:
        return UnitControlError(self.unit, self.action, reason)

    def run_job(self, method: str, unit: str) -> None:
        """Queue a start or stop job and wait for systemd to remove it."""
        with self._job_removed() as removed:
            (job,) = self.manager(method, "ss", (unit, "replace"))
            result = self._wait_for_job(removed, job)
        if result != "done":
            raise self.refused(_job_failure(method, unit, result))

    def expect_state(self, unit: str, states: frozenset[str]) -> None:
        # JobRemoved says the job ended, not that the unit stayed there: a service
        # may have died right after starting, or something may have started it again.
        # LoadUnit, not GetUnit: a stopped unit may already have been unloaded.
        (path,) = self.manager("LoadUnit", "s", (unit,))
        state = self.unit_property(path, "ActiveState")
        if state not in states:
            expected = " or ".join(sorted(states))
            raise self.refused(
                f"unit is {state} after the job, expected {expected}; see"
                f" `journalctl -u {unit}`"
            )

    @contextmanager
    def _job_removed(self) -> Iterator[deque[Message]]:
        # Registered before the job is queued: the signal may arrive before the reply.
        with self.conn.filter(_JOB_REMOVED, queue=deque()) as queue:
            yield queue

    def _wait_for_job(self, removed: deque[Message], job: str) -> str:
        while True:
            try:
                signal = self.conn.recv_until_filtered(
                    removed, timeout=self.remaining()
                )
            except ConnectionError as exc:
                raise _BusLostError(str(exc)) from exc
            _id, path, _unit, result = signal.body
            if path == job:
                return str(result)


def _instance(call: _Call, template: str, unit: str) -> str:
    """The helper instance that masks ``unit``: its name without ``.service``."""
    if not unit.endswith(_SERVICE_SUFFIX):
        raise call.refused(
            f'{template} masks only .service units; set mask_helper = "" in'
            " licensed.toml to mask other units directly (needs root)"
        )
    prefix, _at, suffix = template.partition("@")
    return f"{prefix}@{unit.removesuffix(_SERVICE_SUFFIX)}{suffix}"


def _mask_through_helper(call: _Call, unit: str, helper: str) -> None:
    started = time.perf_counter()
    before = _status(call, helper)
    if before.load_state == "not-found":
        raise call.refused(_helper_missing(helper))
    if before.active_state == "active" and _status(call, unit).masked:
        log.debug("unit_already_masked", unit=unit, helper=helper)
        return

    if before.active_state in RUNNING_STATES:
        # Active, yet the unit is not masked: someone unmasked it by hand. Starting
        # an active instance does nothing, and polkit grants no restart, so stop
        # it (which only unmasks again) and start it afresh.
        call.run_job("StopUnit", helper)
    call.run_job("StartUnit", helper)
    call.expect_state(helper, frozenset({"active"}))
    if not _status(call, unit).masked:
        raise call.refused(_mask_ineffective(unit, helper))
    log.info(
        "unit_masked",
        unit=unit,
        runtime=True,
        helper=helper,
        elapsed_ms=_ms_since(started),
    )


def _unmask_through_helper(call: _Call, unit: str, helper: str) -> None:
    started = time.perf_counter()
    if _status(call, helper).active_state in STOPPED_STATES:
        log.debug("unit_not_masked_by_licensed", unit=unit, helper=helper)
        return

    call.run_job("StopUnit", helper)
    call.expect_state(helper, STOPPED_STATES)
    # A persistent mask by an administrator is reported by the start that follows;
    # a runtime mask left behind means the helper's unmask failed.
    if _unit_file_state(call, unit) == "masked-runtime":
        raise call.refused(
            f"{unit} is still masked for this boot after {helper} stopped; see"
            f" `journalctl -u {helper}`, or run `systemctl unmask --runtime {unit}`"
        )
    log.info("unit_unmasked", unit=unit, helper=helper, elapsed_ms=_ms_since(started))


def _unit_file_state(call: _Call, unit: str) -> str:
    (path,) = call.manager("LoadUnit", "s", (unit,))
    return call.unit_property(path, "UnitFileState")


def _helper_missing(helper: str) -> str:
    return (
        f"the mask helper {helper} is not installed; install"
        " units/licensed-mask@.service in /etc/systemd/system and"
        ' units/50-licensed.rules, or set mask_helper = "" in licensed.toml when'
        " licensed runs as root"
    )


def _mask_ineffective(unit: str, helper: str) -> str:
    return (
        f"{helper} is active but {unit} is not masked; a runtime mask has no effect"
        f" on a unit file in /etc/systemd/system: install {unit} below"
        f" /usr/lib/systemd/system (see `journalctl -u {helper}`)"
    )


def _status(call: _Call, unit: str) -> UnitStatus:
    # One round trip instead of LoadUnit and two property reads: like LoadUnit,
    # ListUnitsByNames loads a unit that is not loaded (a stopped unit may have
    # been unloaded), and it answers "not-found" for one that does not exist.
    ((listed,),) = call.manager("ListUnitsByNames", "as", ([unit],))
    _name, _description, load_state, active_state, *_rest = listed
    return UnitStatus(unit=unit, load_state=load_state, active_state=active_state)


def _checked(reply: Message) -> tuple[Any, ...]:
    """Return a method reply's body; raise DBusErrorResponse for an error reply."""
    if reply.header.message_type is MessageType.error:
        raise DBusErrorResponse(reply)
    body: tuple[Any, ...] = reply.body
    return body


def _refusal(unit: str, exc: DBusErrorResponse, helper: str | None) -> str:
    name = str(exc.name)
    detail = str(exc.data[0]) if exc.data else ""
    if name == f"{_ERROR_PREFIX}UnitMasked":
        return (
            f"the unit is masked persistently by an administrator ({detail}); run"
            f" `systemctl unmask {unit}` to let licensed start it"
        )
    if name == f"{_ERROR_PREFIX}NoSuchUnit":
        return f"no such unit ({detail}); check the unit name and its unit file"
    if name == "org.freedesktop.DBus.Error.AccessDenied":
        return _access_denied(unit, detail, helper)
    if name == "org.freedesktop.DBus.Error.ServiceUnknown":
        return f"systemd is not on the system bus ({detail}); is PID 1 systemd?"
    return f"systemd refused: {name}: {detail}"


def _access_denied(unit: str, detail: str, helper: str | None) -> str:
    if helper is None:
        return (
            f"systemd denied access ({detail}); masking directly needs root: run"
            f" licensed as root or set mask_helper = 'licensed-mask@.service'"
        )
    return (
        f"systemd denied access ({detail}); install units/50-licensed.rules with"
        f" {unit} in its COMPONENT_UNITS, or run licensed as root"
    )


def _job_failure(method: str, unit: str, result: str) -> str:
    verb = "start" if method == "StartUnit" else "stop"
    return (
        f"the {verb} job ended with result {result!r} instead of 'done'; see"
        f" `systemctl status {unit}` and `journalctl -u {unit}`"
    )


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)
