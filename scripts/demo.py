"""Set up a sandboxed Assistant installation and run licensed on it, for real.

Started by ``scripts/demo``; see its header. Nothing outside a temporary folder, a
private systemd namespace and a private PostgreSQL cluster is touched, and all
three are gone when the demo ends.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path

from licensed.users import DEFAULT_SCHEMA, RECOMMENDED_INDEX
from tests.harness.postgres import ThrowawayPostgres
from tests.harness.systemd import SandboxedSystemd

BIN = Path(sys.executable).parent
USERS = 80


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--walkthrough",
        action="store_true",
        help="show a trial expiring and a full licence restoring, then exit",
    )
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("demo: run as root (it starts a sandboxed systemd in namespaces)")
        return 1

    work = Path(tempfile.mkdtemp(prefix="licensed-demo-"))
    work.chmod(0o755)
    try:
        with (
            ThrowawayPostgres() as postgres,
            SandboxedSystemd(writable_paths=[work]) as sandbox,
        ):
            sandbox.start()
            conninfo = prepare_database(postgres)
            config = prepare_installation(work, conninfo)
            return run(work, config, sandbox, args.walkthrough)
    finally:
        shutil.rmtree(work, ignore_errors=True)
        print("demo: sandbox, database and files removed")


def prepare_database(postgres: ThrowawayPostgres) -> str:
    postgres.create_database("assistant")
    rows = ",".join(
        f"({i}, {str(i % 2 == 0).lower()}, {str(i % 3 == 0).lower()})"
        for i in range(1, 121)
    )
    postgres.psql(
        DEFAULT_SCHEMA
        + RECOMMENDED_INDEX
        + f"INSERT INTO persons (id, assistant_enabled, ma_enabled) VALUES {rows};",
        dbname="assistant",
    )
    return postgres.conninfo(dbname="assistant")


def prepare_installation(work: Path, conninfo: str) -> Path:
    for folder in ("etc/keys", "run", "state", "vendor", "licences"):
        (work / folder).mkdir(parents=True)
    vendor = ["licensed-vendor"]
    cli(*vendor, "keygen", "--key-id", "demo-vendor", "--out", str(work / "vendor"))
    shutil.copy(work / "vendor/demo-vendor.pub", work / "etc/keys")

    config = work / "licensed.toml"
    config.write_text(
        f'licence_file = "{work}/etc/licence.lic"\n'
        f'keys_dir = "{work}/etc/keys"\n'
        f'status_file = "{work}/run/status.json"\n'
        f'control_socket = "{work}/run/control.sock"\n'
        f'state_dir = "{work}/state"\n'
        'log_format = "console"\n'
        f"[database]\nconninfo = {json.dumps(conninfo)}\ncount_interval = 30\n"
    )
    issue = [
        *vendor, "issue", "--key", str(work / "vendor/demo-vendor.key"),
        "--company", "Demo AG", "--system", "Demo Assistant",
        "--sip-domain", "demo.example", "--sfb-version", "SfB Server 2019",
        "--contact", "Dana Demo", "--location", "Zurich",
    ]  # fmt: skip
    today = datetime.now(UTC).date()
    licences = work / "licences"
    cli(*issue, "--trial-until", str(today + timedelta(days=10)),
        "--users", "100", "--over-limit", "110",
        "--out", str(licences / "trial.lic"))  # fmt: skip
    cli(*issue, "--trial-until", str(today - timedelta(days=1)),
        "--users", "100", "--out",
        str(licences / "expired.lic"))  # fmt: skip
    cli(*issue, "--full", "--users", "50",
        "--over-limit", "60", "--support-contract", "Premium",
        "--support-until", str(today + timedelta(days=365)),
        "--out", str(licences / "full-too-few-users.lic"))  # fmt: skip
    cli(*issue, "--full", "--users", "500",
        "--support-contract", "Premium",
        "--support-until", str(today + timedelta(days=365)),
        "--out", str(licences / "full.lic"))  # fmt: skip
    cli("licensectl", "--config", str(config), "install", str(licences / "trial.lic"))
    return config


def run(work: Path, config: Path, sandbox: SandboxedSystemd, walkthrough: bool) -> int:
    env = dict(os.environ, LICENSED_CONFIG=str(config))
    env["DBUS_SYSTEM_BUS_ADDRESS"] = sandbox.bus_address
    daemon = subprocess.Popen([str(BIN / "licensed"), "--config", str(config)], env=env)
    try:
        wait_for((work / "run/status.json").exists, 15)
        explain(work, config, sandbox)
        if walkthrough:
            walk(work, config, sandbox)
            return 0
        return daemon.wait()
    except KeyboardInterrupt:
        return 0
    finally:
        if daemon.poll() is None:
            daemon.send_signal(signal.SIGTERM)
            daemon.wait(10)


def explain(work: Path, config: Path, sandbox: SandboxedSystemd) -> None:
    print(
        f"""
licensed is running against a sandboxed systemd (PID 1 = host PID {sandbox.pid}).
  status file : {work}/run/status.json
  licences    : {work}/licences/  (trial, expired, full, full-too-few-users)
Drive it from another terminal:
  export LICENSED_CONFIG={config}
  {BIN}/licensectl status
  {BIN}/licensectl install {work}/licences/expired.lic
  {BIN}/licensectl install {work}/licences/full.lic
  {BIN}/licensectl remove --yes
  nsenter -t {sandbox.pid} -a systemctl status assistant-smd.service
Ctrl-C stops the daemon and removes everything.
""",
        flush=True,
    )


def walk(work: Path, config: Path, sandbox: SandboxedSystemd) -> None:
    status = work / "run/status.json"
    steps = [
        ("expired.lic", "expired", "inactive"),
        ("full.lic", "licensed", "active"),
    ]
    for name, state, smd in steps:
        print(f"\n>>> licensectl install {name}", flush=True)
        cli("licensectl", "--config", str(config), "install", "--force",
            str(work / "licences" / name))  # fmt: skip
        wait_for(partial(reached, status, sandbox, state, smd), 15)
        for unit in ("assistant-smd", "assistant-core-sfb", "assistant-core"):
            print(f"    {unit}: {sandbox.is_active(unit + '.service')}")
        cli("licensectl", "--config", str(config), "status", check=False)


def reached(status: Path, sandbox: SandboxedSystemd, state: str, smd: str) -> bool:
    return bool(
        json.loads(status.read_text())["state"] == state
        and sandbox.is_active("assistant-smd.service") == smd
    )


def cli(*args: str, check: bool = True) -> None:
    subprocess.run([str(BIN / args[0]), *args[1:]], check=check)


def wait_for(predicate: Callable[[], bool], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if predicate():
                return
        except (OSError, ValueError, KeyError):
            pass
        if time.monotonic() > deadline:
            raise TimeoutError("the demo did not reach the expected state")
        time.sleep(0.05)


if __name__ == "__main__":
    sys.exit(main())
