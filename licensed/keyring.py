"""The keyring: the folder of public keys whose signatures this server trusts.

Each trusted key is one file ``<key id>.pub`` holding an Ed25519 public key in PEM
form; the file name (without ``.pub``) is the key id that licences name in their
signature block. Only public keys ever live on a server; the vendor keeps the
private keys (``<key id>.key``) to itself.

Rotating the vendor key is: add the new ``.pub`` to every server, issue licences
with the new key, and remove the old ``.pub`` once no installed licence uses it.
"""

from __future__ import annotations

import re
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
