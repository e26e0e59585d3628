"""A real systemd 252, running as PID 1 of fresh namespaces, for tests and demos.

``SandboxedSystemd`` owns one such systemd: a cgroup2 group of its own under the
host's cgroup2 hierarchy, a work folder (unit folder, console log, init script
state) and the ``unshare`` process whose child becomes the namespace's PID 1. The
child runs ``sandbox-init.sh``, which builds private ``/run``, ``/tmp``, ``/dev``,
``/etc/systemd/system`` and friends, makes ``/`` read-only for the namespace and
execs ``/lib/systemd/systemd``. The system bus (``dbus.socket``/``dbus.service``
from the host's ``/usr/lib/systemd/system``) comes up inside, so code under test
talks to systemd over D-Bus at ``bus_address`` exactly as it would on a real host.

The default target ``assistant.target`` wants the stand-in component units shipped
in ``units/`` (``assistant-core``, ``assistant-core-sfb``, ``assistant-smd``: each a
``sleep infinity``). The project's own ``units/licensed-mask@.service`` is installed
unchanged next to them, as on a production host. Tests add their own units with
``extra_units`` (which may replace it). Host folders named in ``writable_paths``
stay writable inside; everything else of the host is visible read-only.

It must never touch the host's own systemd state: every mount happens in the
private mount namespace, and teardown kills the whole PID namespace at once. This
module imports no pytest: the fixtures live in ``fixtures_systemd.py``.

Measured on a 2-core Debian 12 machine (10 launches each): ready
(``org.freedesktop.systemd1`` on the bus and ``assistant.target`` active) in a median
0.14 s (max 0.16 s) when the machine is idle, 0.30 s (max 0.47 s) at load average 3;
``journald=True`` adds no measurable time. Teardown: median 36 ms idle, 80 ms loaded,
max 135 ms.

Limitations: a writable path under ``/mnt`` cannot be kept (the init script parks
the kept folders there while it mounts). If the Python process is killed with
SIGKILL, the namespace and its cgroup group outlive it; every other exit path,
including normal interpreter exit, tears them down.
"""

from __future__ import annotations

import contextlib
import itertools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import weakref
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from types import TracebackType

from jeepney import DBusAddress, new_method_call
from jeepney.bus_messages import message_bus
from jeepney.io.blocking import DBusConnection, open_dbus_connection

SYSTEMD = Path("/lib/systemd/systemd")
HOST_UNITS = Path("/usr/lib/systemd/system")
UNITS = Path(__file__).with_name("units")
INIT_SCRIPT = Path(__file__).with_name("sandbox-init.sh")
SHIPPED_UNITS = Path(__file__).resolve().parents[2] / "units"
MASK_HELPER = "licensed-mask@.service"
DEFAULT_TARGET = "assistant.target"
COMPONENT_UNITS = (
    "assistant-core.service",
    "assistant-core-sfb.service",
    "assistant-smd.service",
)

_CGROUP2_ROOTS = (Path("/sys/fs/cgroup/unified"), Path("/sys/fs/cgroup"))
_BUS_UNITS = ("dbus.socket", "dbus.service")
_JOURNAL_UNITS = (
    "systemd-journald.service",
    "systemd-journald.socket",
    "systemd-journald-dev-log.socket",
)
_JOURNAL_DROPIN = """\
[Unit]
Wants=systemd-journald.socket systemd-journald-dev-log.socket
After=systemd-journald.service
"""
_START_TIMEOUT_S = 10.0
_STOP_TIMEOUT_S = 10.0
_POLL_S = 0.005
_LOG_TAIL_CHARS = 3000
_UNSHARE = (
    "unshare",
    "--pid",
    "--mount",
    "--uts",
    "--ipc",
    "--net",
    "--cgroup",
    "--fork",
    "--mount-proc",
    "--propagation",
    "private",
)
_MANAGER = DBusAddress(
    "/org/freedesktop/systemd1",
    bus_name="org.freedesktop.systemd1",
    interface="org.freedesktop.systemd1.Manager",
)
_names = itertools.count()

#: What the ``make_systemd_sandbox`` fixture returns: ``SandboxedSystemd``'s keyword
#: arguments in, a started sandbox out.
SandboxFactory = Callable[..., "SandboxedSystemd"]


class SystemdHarnessError(RuntimeError):
    """The sandboxed systemd could not be started, reached or torn down."""


def cgroup2_root() -> Path | None:
    """Return the host's cgroup2 hierarchy (hybrid or unified layout), if any."""
    for root in _CGROUP2_ROOTS:
        if (root / "cgroup.controllers").is_file():
            return root
    return None


def prerequisites() -> tuple[bool, str]:
    """Say whether a sandboxed systemd can run here, and if not, why."""
    if os.geteuid() != 0:
        return False, "a sandboxed systemd needs root (namespaces, mounts, cgroups)"

    missing = [tool for tool in ("unshare", "nsenter") if shutil.which(tool) is None]
    if missing:
        return False, f"util-linux tools {missing} not found on PATH"
    if not SYSTEMD.is_file():
        return False, f"{SYSTEMD} not found; install the systemd package"
    if cgroup2_root() is None:
        return False, "no cgroup2 hierarchy at /sys/fs/cgroup or /sys/fs/cgroup/unified"
    return True, ""


def wait_until(
    predicate: Callable[[], bool], timeout: float, what: str, poll: float = _POLL_S
) -> None:
    """Poll ``predicate`` until it is true; raise naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise SystemdHarnessError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(poll)


class _Namespace:
    """The running processes and the cgroup group; torn down by a finalizer."""

    def __init__(self, launcher: subprocess.Popen[bytes], cgroup: Path) -> None:
        self.launcher = launcher
        self.cgroup = cgroup
        self.pid = 0

    def find_pid1(self, timeout: float) -> int:
        def found() -> bool:
            if not self.alive():
                raise SystemdHarnessError("unshare exited before PID 1 started")
            self.pid = self._child()
            return self.pid != 0

        wait_until(found, timeout, "the namespace's PID 1")
        return self.pid

    def alive(self) -> bool:
        return self.launcher.poll() is None

    def teardown(self) -> None:
        if self.alive() and not self.pid:
            self.pid = self._child()
        if self.alive() and self.pid:
            # The kernel then kills every process of the PID namespace, and unshare
            # reaps PID 1 and exits: killing unshare first would leave PID 1 a
            # zombie wherever the host's init does not reap orphans.
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.pid, signal.SIGKILL)
        elif self.alive():
            self.launcher.kill()
        self.launcher.wait(timeout=_STOP_TIMEOUT_S)
        _remove_cgroup(self.cgroup)

    def _child(self) -> int:
        pid = self.launcher.pid
        try:
            words = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except FileNotFoundError:
            return 0
        return int(words[0]) if words else 0


def _remove_cgroup(group: Path) -> None:
    """Remove a cgroup2 group and its children once their processes are gone."""
    if not group.exists():
        return

    for child in sorted(group.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if child.is_dir():
            _rmdir_when_empty(child)
    _rmdir_when_empty(group)


def _rmdir_when_empty(group: Path) -> None:
    def removed() -> bool:
        try:
            group.rmdir()
        except FileNotFoundError:
            return True
        except OSError:
            # EBUSY while the killed processes are still leaving the group.
            return False
        return True

    wait_until(removed, _STOP_TIMEOUT_S, f"cgroup {group} to empty")


class SandboxedSystemd:
    """One real systemd as PID 1 of fresh namespaces; a context manager.

    ``extra_units`` maps unit names to their file contents, written next to the
    shipped units before start. ``writable_paths`` are host folders that stay
    writable inside (created if missing). ``journald`` also brings up journald.
    """

    def __init__(
        self,
        *,
        extra_units: Mapping[str, str] | None = None,
        writable_paths: Iterable[Path | str] = (),
        journald: bool = False,
        target: str = DEFAULT_TARGET,
    ) -> None:
        self.extra_units = dict(extra_units or {})
        self.writable_paths = [Path(p).resolve() for p in writable_paths]
        self.journald = journald
        self.target = target
        self.workdir: Path | None = None
        self._ns: _Namespace | None = None
        self._finalizer: weakref.finalize[[], SandboxedSystemd] | None = None

    # -- lifecycle ------------------------------------------------------------------

    def start(self, timeout: float = _START_TIMEOUT_S) -> SandboxedSystemd:
        """Launch systemd and return once it is ready (see ``wait_ready``).

        Starting a running sandbox does nothing, so ``with SandboxedSystemd() as s:``
        followed by ``s.start()`` is harmless.
        """
        if self._ns is not None and self._ns.alive():
            return self

        self.workdir = Path(tempfile.mkdtemp(prefix="licensed-systemd-"))
        state = _Leftovers(self.workdir)
        # Runs on close(), on garbage collection and at interpreter exit.
        self._finalizer = weakref.finalize(self, state.remove)
        try:
            units = self._write_units(self.workdir / "units")
            self._ns = state.ns = self._launch(units)
            self._ns.find_pid1(timeout)
            self.wait_ready(timeout)
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Kill the namespace, remove its cgroup group and the work folder."""
        if self._finalizer is not None:
            self._finalizer()
        self._ns = None

    def __enter__(self) -> SandboxedSystemd:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- what tests use -------------------------------------------------------------

    @property
    def pid(self) -> int:
        """The namespace's PID 1 (systemd), as seen from the host."""
        if self._ns is None or not self._ns.pid:
            raise SystemdHarnessError("the sandbox is not running; call start()")
        return self._ns.pid

    @property
    def cgroup(self) -> Path:
        """The sandbox's cgroup2 group on the host."""
        if self._ns is None:
            raise SystemdHarnessError("the sandbox is not running; call start()")
        return self._ns.cgroup

    @property
    def bus_address(self) -> str:
        """The D-Bus address of the sandbox's system bus, usable from the host."""
        return f"unix:path={self.bus_socket}"

    @property
    def bus_socket(self) -> Path:
        return Path(f"/proc/{self.pid}/root/run/dbus/system_bus_socket")

    def systemctl(
        self, *args: str, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run ``systemctl ARGS`` inside the sandbox's namespaces.

        With ``check``, a non-zero exit raises ``SystemdHarnessError`` quoting
        systemctl's stderr (``CalledProcessError`` would hide it).
        """
        done = subprocess.run(
            ["nsenter", "-t", str(self.pid), "-a", "systemctl", "--no-pager", *args],
            capture_output=True,
            text=True,
            check=False,
            timeout=_START_TIMEOUT_S,
        )
        if check and done.returncode != 0:
            raise SystemdHarnessError(
                f"systemctl {' '.join(args)} exited {done.returncode}: {done.stderr}"
            )
        return done

    def is_active(self, unit: str) -> str:
        """Return the unit's ActiveState as ``systemctl is-active`` prints it."""
        return self.systemctl("is-active", unit, check=False).stdout.strip()

    def wait_ready(self, timeout: float = _START_TIMEOUT_S) -> None:
        """Wait until systemd owns its bus name and the default target is active."""
        deadline = time.monotonic() + timeout
        wait_until(self._bus_socket_ready, timeout, f"the system bus {self.bus_socket}")
        with open_dbus_connection(bus=self.bus_address) as conn:
            remaining = max(deadline - time.monotonic(), 0.0)
            wait_until(lambda: _has_systemd(conn), remaining, "systemd on the bus")
            remaining = max(deadline - time.monotonic(), 0.0)
            wait_until(
                lambda: _active_state(conn, self.target) == "active",
                remaining,
                f"{self.target} to become active",
            )

    def journal(self, *args: str) -> str:
        """Return ``journalctl ARGS`` output from inside (needs ``journald=True``)."""
        command = ["nsenter", "-t", str(self.pid), "-a", "journalctl", "--no-pager"]
        done = subprocess.run(
            [*command, *args],
            capture_output=True,
            text=True,
            check=False,
            timeout=_START_TIMEOUT_S,
        )
        return done.stdout + done.stderr

    def console_log(self) -> str:
        """Return the tail of what was written to the sandbox's ``/dev/console``."""
        if self.workdir is None:
            return ""
        log = self.workdir / "console.log"
        text = log.read_text(errors="replace") if log.exists() else ""
        return text[-_LOG_TAIL_CHARS:]

    # -- internals ------------------------------------------------------------------

    def _write_units(self, folder: Path) -> Path:
        shutil.copytree(UNITS, folder)
        linked = _BUS_UNITS + (_JOURNAL_UNITS if self.journald else ())
        for name in linked:
            (folder / name).symlink_to(HOST_UNITS / name)
        if self.journald:
            dropin = folder / f"{self.target}.d"
            dropin.mkdir(exist_ok=True)
            (dropin / "journald.conf").write_text(_JOURNAL_DROPIN)
        shutil.copyfile(SHIPPED_UNITS / MASK_HELPER, folder / MASK_HELPER)
        for name, content in self.extra_units.items():
            (folder / name).write_text(content)
        return folder

    def _launch(self, units: Path) -> _Namespace:
        assert self.workdir is not None
        root = cgroup2_root()
        if root is None:
            raise SystemdHarnessError("no cgroup2 hierarchy on this host")

        cgroup = root / f"licensed-sandbox-{os.getpid()}-{next(_names)}"
        cgroup.mkdir()
        (self.workdir / "console.log").touch()
        for path in self.writable_paths:
            path.mkdir(parents=True, exist_ok=True)
        init_log = (self.workdir / "init.log").open("wb")
        # The shell moves itself into the new group before exec'ing unshare, so the
        # cgroup namespace (and systemd's view of its hierarchy) starts there.
        command = [
            "/bin/sh",
            "-c",
            'echo $$ > "$1" && shift && exec "$@"',
            "sh",
            str(cgroup / "cgroup.procs"),
            *_UNSHARE,
            "/bin/sh",
            str(INIT_SCRIPT),
            str(self.workdir),
            str(units),
            self.target,
            "journal" if self.journald else "console",
            *(str(p) for p in self.writable_paths),
        ]
        env = dict(os.environ, SANDBOX_READONLY_PATHS="\n".join(_hidden_code()))
        with init_log:
            launcher = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=init_log,
                stderr=init_log,
                env=env,
            )
        return _Namespace(launcher, cgroup)

    def _bus_socket_ready(self) -> bool:
        if self._ns is not None and not self._ns.alive():
            init_log = self.workdir / "init.log" if self.workdir else None
            detail = init_log.read_text() if init_log and init_log.exists() else ""
            raise SystemdHarnessError(
                f"the sandbox died during start-up:\n{detail}\n{self.console_log()}"
            )
        return self.bus_socket.exists()


def _hidden_code() -> list[str]:
    """Folders of the code under test that the sandbox's private mounts would hide.

    A clone in /tmp (as CI may make) and its virtualenv must stay visible inside,
    read-only, or units there could not run the daemon.
    """
    hidden = ("/tmp/", "/var/tmp/", "/run/")
    code = {Path(__file__).resolve().parents[2], Path(sys.prefix).resolve()}
    return sorted(str(p) for p in code if str(p).startswith(hidden))


def _has_systemd(conn: DBusConnection) -> bool:
    reply = conn.send_and_get_reply(
        message_bus.NameHasOwner("org.freedesktop.systemd1"), timeout=1.0
    )
    return bool(reply.body[0])


def _active_state(conn: DBusConnection, unit: str) -> str:
    load = new_method_call(_MANAGER, "LoadUnit", "s", (unit,))
    path = conn.send_and_get_reply(load, timeout=1.0).body[0]
    props = DBusAddress(path, bus_name=_MANAGER.bus_name)
    get = new_method_call(
        props.with_interface("org.freedesktop.DBus.Properties"),
        "Get",
        "ss",
        ("org.freedesktop.systemd1.Unit", "ActiveState"),
    )
    _signature, value = conn.send_and_get_reply(get, timeout=1.0).body[0]
    return str(value)


class _Leftovers:
    """What a sandbox leaves on the host until it is torn down."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.ns: _Namespace | None = None

    def remove(self) -> None:
        if self.ns is not None:
            self.ns.teardown()
        shutil.rmtree(self.workdir, ignore_errors=True)
