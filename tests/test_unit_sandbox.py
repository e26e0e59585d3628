"""units/licensed.service's sandbox leaves the daemon's duties working.

A probe program runs as the unit's ``ExecStart=`` in a sandboxed systemd 252, with
every other line of the unit unchanged, polkitd and the shipped rule in place (see
``test_polkit_rule.py`` for the set-up). It does what the daemon does: imports its
libraries and verifies an Ed25519 signature (``MemoryDenyWriteExecute=yes``, the
system-call filter), reads the configuration and the licence through the
supplementary group (``PrivateUsers=yes``), writes the status file, the control
socket and its state, watches ``/etc/licensed``, calls systemd over D-Bus and sends
``READY=1``, then records what happened in ``/run/licensed/probe.json``.

The probe runs ``/usr/bin/python3`` with this virtualenv's ``site-packages``,
bind-mounted under ``/run/probe``: a virtualenv's interpreter may live below ``/root``
(pyenv) and a clone below ``/tmp``, which ``ProtectHome=yes`` and ``PrivateTmp=yes``
hide, as they should.
"""

from __future__ import annotations

import json
import sys
import sysconfig
from pathlib import Path

import pytest

from tests.harness.fixtures_systemd import make_systemd_sandbox
from tests.harness.prereq import require
from tests.harness.systemd import SandboxedSystemd, SandboxFactory
from tests.test_polkit_rule import RULE, UNITS, inside, prepared_sandbox

__all__ = ["make_systemd_sandbox"]

pytestmark = pytest.mark.systemd

SYSTEM_PYTHON = Path("/usr/bin/python3")

PROBE = r"""
import json, os, socket, errno

results = {}


def check(name, action):
    try:
        results[name] = action()
    except OSError as error:
        results[name] = errno.errorcode.get(error.errno, str(error))


def crypto():
    import apscheduler, inotify_simple, psycopg, structlog  # noqa: F401
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    key.public_key().verify(key.sign(b"licence"), b"licence")
    return "ok"


def control_socket():
    path = "/run/licensed/control.sock"
    server = socket.socket(socket.AF_UNIX)
    server.bind(path)
    os.chmod(path, 0o660)
    server.listen()
    return oct(os.stat(path).st_mode & 0o7777)


def status():
    path = "/run/licensed/status.json"
    with open(path, "w") as file:
        file.write("{}")
    os.chmod(path, 0o644)
    return oct(os.stat(path).st_mode & 0o7777)


def watch():
    import inotify_simple

    inotify_simple.INotify().add_watch(
        "/etc/licensed/licence", inotify_simple.flags.MOVED_TO
    )
    return "ok"


def stop_component():
    from jeepney import DBusAddress, new_method_call
    from jeepney.io.blocking import open_dbus_connection

    manager = DBusAddress(
        "/org/freedesktop/systemd1",
        bus_name="org.freedesktop.systemd1",
        interface="org.freedesktop.systemd1.Manager",
    )
    with open_dbus_connection(bus="SYSTEM") as conn:
        call = new_method_call(
            manager, "StopUnit", "ss", ("assistant-smd.service", "replace")
        )
        reply = conn.send_and_get_reply(call, timeout=10)
    return reply.header.message_type.name


check("crypto", crypto)
check("read_config", lambda: open("/etc/licensed/licensed.toml").read())
check("read_licence", lambda: open("/etc/licensed/licence/licence.lic").read())
check("write_etc", lambda: open("/etc/licensed/planted", "w").close())
check("status", status)
check("control_socket", control_socket)
check("state", lambda: open("/var/lib/licensed/clock", "w").write("1"))
check("inet", lambda: socket.socket(socket.AF_INET).close())
check("watch", watch)
check("stop_component", stop_component)
with open("/run/licensed/probe.json", "w") as file:
    json.dump(results, file)

from systemd import daemon

daemon.notify("READY=1")
while True:
    os.pause()
"""

# Files the daemon reads, with the owners and modes licensectl and root give them.
INSTALL_FILES = r"""
set -eu
printf 'database = "x"\n' > /etc/licensed/licensed.toml
printf 'licence\n' > /etc/licensed/licence/licence.lic
chmod 0640 /etc/licensed/licensed.toml /etc/licensed/licence/licence.lic
chgrp licensed-admin /etc/licensed/licensed.toml /etc/licensed/licence/licence.lic
mkdir -p /run/probe
cp "$1/probe.py" /run/probe/probe.py
chmod -R a+rX /run/probe
# The virtualenv may lie where the unit hides it (/tmp with PrivateTmp=yes, /root
# with ProtectHome=yes): show its packages to the probe under /run instead.
mkdir -p /run/probe/site-packages
mount --bind "$2" /run/probe/site-packages
mount -o remount,bind,ro /run/probe/site-packages
"""


def _probe_unit() -> str:
    site_packages = "/run/probe/site-packages"
    unit = (UNITS / "licensed.service").read_text()
    exec_start = "ExecStart=/usr/bin/licensed --config /etc/licensed/licensed.toml"
    assert exec_start in unit
    return unit.replace(
        exec_start,
        f"Environment=PYTHONPATH={site_packages}\n"
        f"ExecStart={SYSTEM_PYTHON} /run/probe/probe.py",
    )


def _run_probe(make: SandboxFactory) -> tuple[SandboxedSystemd, dict[str, str]]:
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    require(
        SYSTEM_PYTHON.is_file() and version in SYSTEM_PYTHON.resolve().name,
        f"the probe needs {SYSTEM_PYTHON} {version}",
    )
    sandbox = prepared_sandbox(
        make, RULE.read_text(), {"licensed.service": _probe_unit()}
    )
    assert sandbox.workdir is not None
    (sandbox.workdir / "probe.py").write_text(PROBE)
    site_packages = sysconfig.get_paths()["purelib"]
    script = ["sh", "-c", INSTALL_FILES, "sh", str(sandbox.workdir), site_packages]
    inside(sandbox, script, True)

    started = sandbox.systemctl("start", "licensed.service", check=False)

    assert started.returncode == 0, sandbox.journal("-u", "licensed.service")
    report = inside(sandbox, ["cat", "/run/licensed/probe.json"], True).stdout
    return sandbox, json.loads(report)


def test_sandboxed_daemon_can_do_its_work(
    make_systemd_sandbox: SandboxFactory,
) -> None:
    """If the daemon runs under the unit's sandbox, its duties all work."""
    _sandbox, report = _run_probe(make_systemd_sandbox)

    assert report == {
        "crypto": "ok",
        "read_config": 'database = "x"\n',
        "read_licence": "licence\n",
        "write_etc": "EROFS",
        "status": "0o644",
        "control_socket": "0o660",
        "state": 1,
        "inet": "EAFNOSUPPORT",
        "watch": "ok",
        "stop_component": "method_return",
    }


def test_sandboxed_daemon_files_belong_to_the_admin_group(
    make_systemd_sandbox: SandboxFactory,
) -> None:
    """If the daemon creates its socket and status, they get group licensed-admin."""
    sandbox, _report = _run_probe(make_systemd_sandbox)

    listing = inside(
        sandbox,
        [
            "stat",
            "-c",
            "%n %U %G %a",
            "/run/licensed/control.sock",
            "/run/licensed/status.json",
            "/var/lib/licensed",
        ],
        True,
    ).stdout.splitlines()

    assert listing == [
        "/run/licensed/control.sock licensed licensed-admin 660",
        "/run/licensed/status.json licensed licensed-admin 644",
        "/var/lib/licensed licensed licensed 700",
    ]
