"""What the benchmarks observe with: the status folder, systemd's signals, sd_notify.

Each probe timestamps an observation the moment it is delivered, on
``time.perf_counter``, so that a run's start (taken just before the licence file
is renamed into place) and its end are on one clock:

* ``StatusWatch`` watches the status file's folder with inotify for ``IN_MOVED_TO``
  (every publisher here renames a finished file into place) and reads the new
  document; it never polls.
* ``UnitWatch`` listens on its own D-Bus connection, in a thread, for systemd's
  ``PropertiesChanged`` signals of the units it was given and records every
  ``ActiveState`` change on receipt. systemd sends unit signals only to subscribed
  clients, so it calls ``Subscribe`` first.
* ``NotifySocket`` is the datagram socket ``NOTIFY_SOCKET`` points at.

Limitations: a ``UnitWatch`` records the time the signal reached this process,
which trails systemd's own state change by the bus daemon's forwarding (tens of
microseconds).
"""

from __future__ import annotations

import contextlib
import json
import select
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inotify_simple import INotify, flags
from jeepney import DBusAddress, HeaderFields, MatchRule, new_method_call
from jeepney.bus_messages import message_bus
from jeepney.io.blocking import DBusConnection, open_dbus_connection

_MANAGER = DBusAddress(
    "/org/freedesktop/systemd1",
    bus_name="org.freedesktop.systemd1",
    interface="org.freedesktop.systemd1.Manager",
)
_PROPERTIES = "org.freedesktop.DBus.Properties"
_UNIT_INTERFACE = "org.freedesktop.systemd1.Unit"
_UNIT_PATHS = "/org/freedesktop/systemd1/unit"
_CALL_TIMEOUT_S = 5.0
_LISTEN_SLICE_S = 0.1

Document = dict[str, Any]


class StatusWatch:
    """Notices each status document renamed into place in one folder."""

    def __init__(self, status_file: Path) -> None:
        self.path = status_file
        self._inotify = INotify()
        self._inotify.add_watch(status_file.parent, flags.MOVED_TO)

    def drain(self) -> None:
        """Forget events that happened before the run about to start."""
        while self._inotify.read(timeout=0):
            pass

    def wait_for(
        self, wanted: Callable[[Document], bool], timeout: float = 10.0
    ) -> tuple[float, Document]:
        """The delivery time of the first new document ``wanted`` accepts."""
        deadline = time.monotonic() + timeout
        while True:
            left_ms = int((deadline - time.monotonic()) * 1000)
            if left_ms <= 0:
                raise TimeoutError(
                    f"no wanted status document appeared in {self.path} within "
                    f"{timeout} s; see the daemon's log"
                )
            events = self._inotify.read(timeout=left_ms)
            delivered = time.perf_counter()
            if not any(event.name == self.path.name for event in events):
                continue
            document = self._read()
            if document is not None and wanted(document):
                return delivered, document

    def close(self) -> None:
        self._inotify.close()

    def _read(self) -> Document | None:
        # A later rename may already have replaced the file we were told about.
        try:
            loaded: Document = json.loads(self.path.read_bytes())
        except (FileNotFoundError, ValueError):
            return None
        return loaded


@dataclass(frozen=True)
class Change:
    """One ``ActiveState`` a unit reported, and when the signal arrived."""

    unit: str
    state: str
    at: float
    wall: float


class UnitWatch:
    """Records the ``ActiveState`` changes of some units, in a listener thread."""

    def __init__(self, bus_address: str, units: Iterable[str]) -> None:
        self._conn = open_dbus_connection(bus_address)
        self._call(new_method_call(_MANAGER, "Subscribe"))
        self._paths = {self._unit_path(unit): unit for unit in units}
        # systemd repeats every property in each PropertiesChanged, so a signal
        # about, say, a queued job carries the unchanged ActiveState: only
        # transitions are changes.
        self._last = {
            unit: self._active_state(path) for path, unit in self._paths.items()
        }
        rule = MatchRule(
            type="signal",
            interface=_PROPERTIES,
            member="PropertiesChanged",
            path_namespace=_UNIT_PATHS,
        )
        self._call(message_bus.AddMatch(rule))
        self._changes: list[Change] = []
        self._changed = threading.Condition()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._listen, daemon=True)
        self._thread.start()

    def wait_for(
        self, unit: str, states: frozenset[str], since: float, timeout: float = 10.0
    ) -> Change:
        """The first change of ``unit`` into ``states`` received after ``since``."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = self._find(unit, states, since)
                if found is not None:
                    return found
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(
                        f"{unit} did not become {'/'.join(sorted(states))} within "
                        f"{timeout} s"
                    )
                self._changed.wait(left)

    def close(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=2)
        self._conn.close()

    def _find(self, unit: str, states: frozenset[str], since: float) -> Change | None:
        for change in self._changes:
            if change.unit == unit and change.at >= since and change.state in states:
                return change
        return None

    def _listen(self) -> None:
        while not self._stopping.is_set():
            try:
                message = self._conn.receive(timeout=_LISTEN_SLICE_S)
            except TimeoutError:
                continue
            except (OSError, ValueError):
                return
            at, wall = time.perf_counter(), time.time()
            unit = self._paths.get(message.header.fields.get(HeaderFields.path))
            if unit is None or message.header.fields.get(HeaderFields.member) != (
                "PropertiesChanged"
            ):
                continue
            self._record(unit, message.body, at, wall)

    def _record(self, unit: str, body: Any, at: float, wall: float) -> None:
        _interface, changed, _invalidated = body
        if "ActiveState" not in changed:
            return
        _signature, state = changed["ActiveState"]
        if self._last[unit] == state:
            return
        self._last[unit] = state
        with self._changed:
            self._changes.append(Change(unit, str(state), at, wall))
            self._changed.notify_all()

    def _unit_path(self, unit: str) -> str:
        (path,) = self._call(new_method_call(_MANAGER, "LoadUnit", "s", (unit,)))
        return str(path)

    def _active_state(self, path: str) -> str:
        unit = DBusAddress(path, bus_name=_MANAGER.bus_name, interface=_PROPERTIES)
        get = new_method_call(unit, "Get", "ss", (_UNIT_INTERFACE, "ActiveState"))
        ((_signature, state),) = self._call(get)
        return str(state)

    def _call(self, message: Any) -> Any:
        return _checked_call(self._conn, message)


def _checked_call(conn: DBusConnection, message: Any) -> Any:
    reply = conn.send_and_get_reply(message, timeout=_CALL_TIMEOUT_S)
    if reply.header.message_type.name == "error":
        raise RuntimeError(f"D-Bus call failed: {reply.body}")
    return reply.body


class NotifySocket:
    """The datagram socket a daemon under test sends its sd_notify messages to."""

    def __init__(self, path: Path) -> None:
        self.path = path
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._socket.bind(str(path))

    def wait_ready(self, timeout: float = 10.0) -> float:
        """The delivery time of the next ``READY=1``."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no READY=1 on {self.path} within {timeout} s")
            readable, _, _ = select.select([self._socket], [], [], left)
            delivered = time.perf_counter()
            if readable and b"READY=1" in self._socket.recv(4096).split(b"\n"):
                return delivered

    def close(self) -> None:
        self._socket.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
