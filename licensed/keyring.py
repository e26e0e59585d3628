"""The keyring: the folder of public keys whose signatures this server trusts.

Each trusted key is one file ``<key id>.pub`` holding an Ed25519 public key in PEM
form; the file name (without ``.pub``) is the key id that licences name in their
signature block. Only public keys ever live on a server; the vendor keeps the
private keys (``<key id>.key``) to itself.

Rotating the vendor key is: add the new ``.pub`` to every server, issue licences
with the new key, and remove the old ``.pub`` once no installed licence uses it.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

import structlog
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from licensed.errors import KeyringError
from licensed.fsio import read_bounded

log = structlog.get_logger(__name__)

KEY_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
PUBLIC_SUFFIX = ".pub"
PRIVATE_SUFFIX = ".key"
_MAX_KEY_BYTES = 16 * 1024
_RACY_NS = 2_000_000_000


@dataclass(frozen=True)
class Keyring:
    """The trusted public keys, by key id."""

    folder: Path
    keys: dict[str, Ed25519PublicKey]

    @classmethod
    def load(cls, folder: Path) -> Keyring:
        """Read every ``*.pub`` in ``folder``; a bad key file is logged and skipped."""
        if not folder.is_dir():
            raise KeyringError(
                f"trusted-key folder {folder} does not exist or is not a folder; "
                f"create it and put the vendor's .pub key files in it"
            )
        try:
            paths = sorted(folder.glob(f"*{PUBLIC_SUFFIX}"))
        except OSError as exc:
            raise KeyringError(
                f"trusted-key folder {folder} cannot be read ({exc.strerror or exc}); "
                f"check its permissions"
            ) from exc

        keys: dict[str, Ed25519PublicKey] = {}
        for path in paths:
            key = _load_public_key_quietly(path)
            if key is not None:
                keys[path.name.removesuffix(PUBLIC_SUFFIX)] = key
        return cls(folder=folder, keys=keys)

    def verify(self, key_id: str, signature: bytes, body: bytes) -> bool:
        """Whether ``signature`` over ``body`` is valid for the trusted ``key_id``."""
        key = self.keys.get(key_id)
        if key is None:
            return False
        try:
            key.verify(signature, body)
        except InvalidSignature:
            return False
        return True

    def describe(self) -> str:
        """The key ids, for error messages."""
        return ", ".join(sorted(self.keys)) or "none"


class CachedKeyring:
    """``Keyring.load`` for a daemon that needs the keyring at every check.

    The folder is read again only when it or one of its ``.pub`` files has changed
    since the last load (a different inode, size, mtime or ctime), so a key added,
    removed, replaced or edited counts from the next check on, as with a fresh
    load, while an unchanged folder costs a few ``stat`` calls instead of opening
    and parsing every key. A bad key file is therefore reported once per change
    rather than at every check. Errors are never cached.
    """

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._seen: tuple[object, ...] | None = None
        self._keyring: Keyring | None = None

    def get(self) -> Keyring:
        """The keyring as the folder holds it now; raises ``KeyringError``."""
        # Taken before loading: a change made during the load makes the next
        # fingerprint differ, so it is picked up at the next check.
        seen = _fingerprint(self.folder)
        if self._keyring is None or seen is None or seen != self._seen:
            self._keyring = Keyring.load(self.folder)
            self._seen = seen
        return self._keyring


def _fingerprint(folder: Path) -> tuple[object, ...] | None:
    """What changes whenever a key is added, removed, replaced or edited.

    ``None`` (load again) while anything changed less than ``_RACY_NS`` ago: file
    times advance in clock ticks, so a key rewritten in place within the tick of
    the last load would otherwise keep its size, inode and times.
    """
    try:
        folder_stamp = _stamp(folder.stat())
        with os.scandir(folder) as entries:
            keys = sorted(
                (entry.name, _stamp(entry.stat()))
                for entry in entries
                if entry.name.endswith(PUBLIC_SUFFIX)
            )
    except OSError:
        return None  # Keyring.load says what is wrong.
    latest = max(stamp[-1] for stamp in (folder_stamp, *(s for _, s in keys)))
    if latest > time.time_ns() - _RACY_NS:
        return None
    return (folder_stamp, *keys)


def _stamp(info: os.stat_result) -> tuple[int, ...]:
    return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)


def check_key_id(key_id: str) -> str:
    """Return ``key_id`` if well formed, else raise ``KeyringError`` saying why."""
    if not KEY_ID.fullmatch(key_id):
        raise KeyringError(
            f"key id {key_id!r} is malformed; use 1-64 letters, digits, '.', '_' or "
            f"'-', starting with a letter or digit, e.g. 'vendor-2026'"
        )
    return key_id


def load_public_key(path: Path) -> Ed25519PublicKey:
    """Read one PEM Ed25519 public key file, or raise ``KeyringError``."""
    try:
        data = read_bounded(path, _MAX_KEY_BYTES)
        key = serialization.load_pem_public_key(data)
    except (OSError, ValueError) as exc:
        raise KeyringError(
            f"public key {path} is unreadable or not PEM ({exc}); "
            f"copy the vendor's .pub file again"
        ) from exc
    if not isinstance(key, Ed25519PublicKey):
        raise KeyringError(f"public key {path} is not an Ed25519 key")
    return key


def load_private_key(path: Path) -> Ed25519PrivateKey:
    """Read one unencrypted PEM Ed25519 private key file, or raise ``KeyringError``."""
    try:
        data = read_bounded(path, _MAX_KEY_BYTES)
        key = serialization.load_pem_private_key(data, password=None)
    except (OSError, ValueError, TypeError) as exc:
        raise KeyringError(
            f"private key {path} is unreadable or not an unencrypted PEM key ({exc})"
        ) from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyringError(f"private key {path} is not an Ed25519 key")
    return key


def _load_public_key_quietly(path: Path) -> Ed25519PublicKey | None:
    name = path.name.removesuffix(PUBLIC_SUFFIX)
    try:
        check_key_id(name)
        return load_public_key(path)
    except KeyringError as exc:
        log.warning("trusted_key_skipped", path=str(path), reason=str(exc))
        return None
