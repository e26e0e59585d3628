"""Run the real console scripts against a server laid out in a folder.

``make_server`` builds what a server has in ``/etc/licensed`` and ``/var/lib``, in
a test's folder: a configuration file, a trusted-keys folder with the test vendor's
public key, a licence folder and a state folder. ``run`` starts the installed
console scripts (``.venv/bin/licensectl``, ``.venv/bin/licensed-vendor``) as real
processes with ``LICENSED_CONFIG`` pointing at that configuration.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from licensed.licence import Licence
from tests.harness.licences import Vendor

_REPOSITORY = Path(__file__).resolve().parents[2]


def script(name: str) -> Path:
    """The installed console script ``name`` of the project's virtualenv."""
    candidate = _REPOSITORY / ".venv" / "bin" / name
    if candidate.exists():
        return candidate
    return Path(sys.executable).parent / name


@dataclass(frozen=True)
class Result:
    """How a command-line process ended."""

    code: int
    stdout: str
    stderr: str


def run(
    program: str,
    *args: str | Path,
    env: Mapping[str, str] | None = None,
    prefix: Sequence[str] = (),
    stdin: int | None = subprocess.DEVNULL,
    timeout: float = 30,
) -> Result:
    """Run console script ``program`` with ``args``; ``prefix`` wraps it (setpriv)."""
    command = [*prefix, str(script(program)), *map(str, args)]
    completed = subprocess.run(
        command,
        env=dict(env) if env is not None else None,
        stdin=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return Result(completed.returncode, completed.stdout, completed.stderr)


@dataclass
class Server:
    """A server's licensed files in a folder, and a vendor whose key it trusts."""

    root: Path
    zone: str = "Europe/Zurich"
    admin_group: str = "licensed-admin"
    extra_env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.config_path = self.root / "licensed.toml"
        self.licence_file = self.root / "etc" / "licence.lic"
        self.keys_dir = self.root / "etc" / "keys"
        self.state_dir = self.root / "state"
        self.control_socket = self.root / "run" / "control.sock"
        self.licence_file.parent.mkdir(parents=True, exist_ok=True)
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.vendor = Vendor(self.keys_dir)
        self.write_config()

    def write_config(self, **overrides: str) -> None:
        """Write the configuration file, with ``overrides`` of its text keys."""
        values = {
            "licence_file": str(self.licence_file),
            "keys_dir": str(self.keys_dir),
            "state_dir": str(self.state_dir),
            "status_file": str(self.root / "run" / "status.json"),
            "control_socket": str(self.control_socket),
            "timezone": self.zone,
            "admin_group": self.admin_group,
            **overrides,
        }
        text = "".join(
            f"{key} = {json.dumps(value)}\n" for key, value in values.items()
        )
        self.config_path.write_text(text, encoding="utf-8")

    @property
    def env(self) -> dict[str, str]:
        """The environment for the scripts: this server's configuration."""
        environment = {
            key: value for key, value in os.environ.items() if key != "SUDO_USER"
        }
        environment["LICENSED_CONFIG"] = str(self.config_path)
        environment.update(self.extra_env)
        return environment

    def licensectl(
        self,
        *args: str | Path,
        prefix: Sequence[str] = (),
        stdin: int | None = subprocess.DEVNULL,
    ) -> Result:
        """Run ``licensectl`` against this server."""
        return run("licensectl", *args, env=self.env, prefix=prefix, stdin=stdin)

    def vendor_tool(self, *args: str | Path) -> Result:
        """Run ``licensed-vendor`` with this server's configuration."""
        return run("licensed-vendor", *args, env=self.env)

    def licence(self, licence: Licence, name: str = "new.lic") -> Path:
        """Sign ``licence`` into a file ``name`` ready to install."""
        return self.vendor.write(licence, self.root / name)

    def install_directly(self, licence: Licence) -> bytes:
        """Put ``licence`` in place as the installed one, bypassing licensectl."""
        data = self.vendor.sign(licence)
        self.licence_file.write_bytes(data)
        return data

    def installed_digest(self) -> str | None:
        """SHA-256 of the installed licence file, or None when there is none."""
        try:
            return hashlib.sha256(self.licence_file.read_bytes()).hexdigest()
        except FileNotFoundError:
            return None

    def audit(self) -> list[dict[str, object]]:
        """The records of this server's audit trail."""
        path = self.state_dir / "audit.jsonl"
        if not path.exists():
            return []
        lines = path.read_text(encoding="utf-8").splitlines()
        return [json.loads(line) for line in lines]
