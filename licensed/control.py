"""The control socket: ``licensectl check`` asks the running daemon to check now.

A Unix stream socket (``control_socket``, default ``/run/licensed/control.sock``),
mode 0660 and owned by the admin group, so only root and administrators can ask.
The protocol is one request line (``check`` or ``status``) and one answer: the
status document as JSON, after which the daemon closes the connection.

The daemon serves it from its main loop. A client gets a bounded time to send its
line, so a stuck client cannot hold up enforcement.
"""

from __future__ import annotations

import contextlib
import grp
import json
import os
import socket
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

COMMANDS = ("check", "status")
_REQUEST_TIMEOUT = 0.5
_MAX_ANSWER = 4 * 1024 * 1024


class ControlServer:
    """The daemon's listening end."""

    def __init__(self, path: Path, admin_group: str) -> None:
        self.path = path
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._socket.setblocking(False)
        _remove_stale(path)
        path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
        self._socket.bind(str(path))
        _restrict(path, admin_group)
        self._socket.listen(8)

    def fileno(self) -> int:
        return self._socket.fileno()

    def serve(self, answer: Callable[[str], dict[str, Any] | None]) -> None:
        """Accept one waiting client and answer its request."""
        try:
            client, _ = self._socket.accept()
        except BlockingIOError:
            return
        with client:
            client.settimeout(_REQUEST_TIMEOUT)
            try:
                command = _read_line(client)
                document = answer(command) if command in COMMANDS else None
                if document is None:
                    reply = {"error": f"unknown command {command!r}; use {COMMANDS}"}
                    client.sendall(json.dumps(reply).encode() + b"\n")
                else:
                    client.sendall(json.dumps(document).encode() + b"\n")
            except OSError as exc:
                _log_failure(exc)

    def close(self) -> None:
        self._socket.close()
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def ask(path: Path, command: str, timeout: float) -> dict[str, Any]:
    """Send ``command`` to the daemon and return its answer; raises ``OSError``."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as client:
        client.settimeout(timeout)
        client.connect(str(path))
        client.sendall(command.encode() + b"\n")
        chunks = []
        size = 0
        while chunk := client.recv(65536):
            chunks.append(chunk)
            size += len(chunk)
            if size > _MAX_ANSWER:
                raise OSError("the daemon's answer is too large")
    answer: dict[str, Any] = json.loads(b"".join(chunks))
    return answer


def _log_failure(exc: OSError) -> None:
    # structlog is imported here, on the daemon's rare failure path, because the
    # client half of this module is what `licensectl status` loads, and structlog
    # (which pulls in asyncio) would cost it about a third of its start-up.
    import structlog  # noqa: PLC0415

    structlog.get_logger(__name__).warning("control_client_failed", reason=str(exc))


def _read_line(client: socket.socket) -> str:
    data = b""
    while b"\n" not in data and len(data) < 64:
        chunk = client.recv(64)
        if not chunk:
            break
        data += chunk
    return data.split(b"\n", 1)[0].decode("ascii", "replace").strip()


def _remove_stale(path: Path) -> None:
    # Only ever remove a socket: a regular file at this path is someone's data.
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISSOCK(path.lstat().st_mode):
            path.unlink()


def _restrict(path: Path, admin_group: str) -> None:
    try:
        gid = grp.getgrnam(admin_group).gr_gid
    except KeyError:
        gid = -1
    if gid >= 0:
        with contextlib.suppress(PermissionError):
            os.chown(path, -1, gid)
    path.chmod(0o660)
