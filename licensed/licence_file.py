"""Licence files: the signed envelope around a licence body.

A licence file is the body text (see ``licensed.licence``) followed by a signature
block::

    -----BEGIN LICENCE SIGNATURE-----
    key_id = "vendor-2026"
    ed25519 = "<base64 of the 64-byte signature>"
    -----END LICENCE SIGNATURE-----

The Ed25519 signature covers the exact bytes of the body, from the first byte of the
file up to and including the newline before the ``BEGIN`` line. The block is not
signed, so it is accepted only exactly as ``sign`` writes it, and the ``END`` line
with its newline ends the file: any changed, added or removed byte is refused.

``read_licence_file`` is the one validation path: the command line, the daemon and
the vendor's ``verify`` all use it, so they cannot disagree about a file. Its checks
run cheapest first, and the body is parsed only once the signature holds.
"""

from __future__ import annotations

import base64
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from licensed.errors import InvalidLicence
from licensed.fsio import NotRegularFile, TooLarge, read_bounded
from licensed.keyring import KEY_ID, Keyring
from licensed.licence import PRODUCT, Licence, parse_body, render_body

SUFFIX = ".lic"
MAX_BYTES = 64 * 1024
"""Largest licence file accepted. Real ones are about 1 KB."""

BEGIN = "-----BEGIN LICENCE SIGNATURE-----"
END = "-----END LICENCE SIGNATURE-----"
_SIGNATURE_BYTES = 64
_CONTROL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")


@dataclass(frozen=True)
class SignedLicence:
    """A licence whose signature a trusted key has verified, with its file bytes."""

    licence: Licence
    key_id: str
    data: bytes


def sign(licence: Licence, private_key: Ed25519PrivateKey, key_id: str) -> bytes:
    """The bytes of a licence file for ``licence``, signed with ``private_key``."""
    body = render_body(licence).encode("utf-8")
    signature = base64.b64encode(private_key.sign(body)).decode("ascii")
    block = f'{BEGIN}\nkey_id = "{key_id}"\ned25519 = "{signature}"\n{END}\n'
    return body + block.encode("ascii")


def read_licence_file(
    path: Path, keyring: Keyring, *, follow_symlinks: bool = True
) -> SignedLicence:
    """Read and fully validate a licence file; raise ``InvalidLicence`` with why.

    The daemon reads the installed licence with ``follow_symlinks=False``: it is
    only ever put in place by a rename, and a link planted there could make it
    read (and publish reasons about) some other file.
    """
    return parse_licence(read_licence_bytes(path, follow_symlinks), keyring)


def read_licence_bytes(path: Path, follow_symlinks: bool = True) -> bytes:
    """The bytes of a licence file, read safely; raise ``InvalidLicence`` if not.

    Checks the name and that it is a regular file of sensible size, nothing of
    the content (``parse_licence`` does that).
    """
    if path.suffix != SUFFIX:
        raise InvalidLicence(
            f"file name {path.name!r} does not end in {SUFFIX!r}; "
            f"licence files are named like 'company.lic'"
        )
    return _read(path, follow_symlinks)


def parse_licence(data: bytes, keyring: Keyring) -> SignedLicence:
    """Validate licence file bytes against ``keyring``; raise ``InvalidLicence``."""
    _check_text(data)
    body, key_id, signature = split(data)
    if key_id not in keyring.keys:
        raise InvalidLicence(
            f"signed by key {key_id!r}, which is not trusted here (trusted keys in "
            f"{keyring.folder}: {keyring.describe()}); install the vendor's "
            f"{key_id}.pub there or ask the vendor for a licence signed with a "
            f"trusted key"
        )
    if not keyring.verify(key_id, signature, body):
        raise InvalidLicence(
            f"the signature does not match the content (key {key_id!r}); the file "
            f"was changed or damaged after signing: obtain an unmodified copy"
        )

    licence = parse_body(body)
    if licence.product != PRODUCT:
        raise InvalidLicence(
            f"product is {licence.product!r}; this system accepts only {PRODUCT!r}"
        )
    return SignedLicence(licence=licence, key_id=key_id, data=data)


def split(data: bytes) -> tuple[bytes, str, bytes]:
    """Split file bytes into (signed body, key id, signature bytes)."""
    marker = b"\n" + BEGIN.encode("ascii") + b"\n"
    start = data.find(marker)
    if start < 0:
        if b"\r\n" + BEGIN.encode("ascii") in data:
            raise InvalidLicence(
                "the line endings were changed to Windows (CRLF) ones, which "
                "breaks the signature; use the file exactly as the vendor sent "
                "it, or convert it back with dos2unix"
            )
        raise InvalidLicence(
            f"no signature block ('{BEGIN}' line) found; this is not a "
            f"licence file, or it is truncated"
        )
    # Said apart from the missing block: "not found" misled readers of a file
    # that holds two licences pasted one after the other.
    if data.find(marker, start + 1) >= 0:
        raise InvalidLicence(
            f"more than one signature block ('{BEGIN}' line); a licence file "
            f"holds exactly one licence"
        )
    body = data[: start + 1]
    block, end_marker, rest = data[start + len(marker) :].partition(END.encode("ascii"))
    if not end_marker:
        raise InvalidLicence(
            f"the signature block has no '{END}' line; the file is truncated"
        )
    if rest.strip():
        raise InvalidLicence(f"unexpected text after the '{END}' line")
    # Whitespace used to pass here, so a file could be changed (or cut short by
    # its last newline) and still be accepted. The file is exactly as issued.
    if rest != b"\n":
        raise InvalidLicence(
            f"the '{END}' line must end the file with a single newline, as "
            f"issued; the file was changed: obtain an unmodified copy"
        )

    key_id, signature = _parse_block(block)
    return body, key_id, signature


def _read(path: Path, follow_symlinks: bool) -> bytes:
    try:
        return read_bounded(path, MAX_BYTES, follow_symlinks=follow_symlinks)
    except TooLarge:
        raise InvalidLicence(
            f"{path} is larger than {MAX_BYTES // 1024} KiB; this is not a licence file"
        ) from None
    except (NotRegularFile, IsADirectoryError):
        raise InvalidLicence(f"{path} is not a regular file") from None
    except FileNotFoundError:
        raise InvalidLicence(f"{path} does not exist") from None
    except PermissionError:
        raise InvalidLicence(
            f"{path} cannot be read (permission denied); run as root or fix the "
            f"file's permissions"
        ) from None
    except OSError as exc:
        raise InvalidLicence(f"{path} cannot be read: {exc.strerror or exc}") from None


def _check_text(data: bytes) -> None:
    if not data.strip():
        raise InvalidLicence("the file is empty")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidLicence(
            f"not a text file (byte {data[exc.start]:#04x} at offset {exc.start} is "
            f"not UTF-8); a licence file is the text the vendor sent"
        ) from None
    control = _CONTROL.search(text)
    if control is not None:
        raise InvalidLicence(
            f"not a text file (control character {ord(control.group()):#04x} at "
            f"character {control.start()}); a licence file is the text the vendor "
            f"sent"
        )


_CANONICAL_BLOCK = re.compile(
    rb'key_id = "(' + KEY_ID.pattern.encode("ascii") + rb')"\n'
    rb'ed25519 = "([A-Za-z0-9+/]{86}==)"\n'
)


def _parse_block(block: bytes) -> tuple[str, bytes]:
    # Every daemon check reads the block; the canonical one is read without a
    # TOML parser. Anything else goes through the full checks, which accept
    # nothing more and say what is wrong.
    return _canonical_block(block) or _checked_block(block)


def _canonical_block(block: bytes) -> tuple[str, bytes] | None:
    """The key id and signature of a block exactly as ``sign`` writes it."""
    match = _CANONICAL_BLOCK.fullmatch(block)
    if match is None:
        return None
    signature = base64.b64decode(match[2], validate=True)
    if base64.b64encode(signature) != match[2]:  # unused padding bits set
        return None
    return match[1].decode("ascii"), signature


def _checked_block(block: bytes) -> tuple[str, bytes]:
    try:
        fields = tomllib.loads(block.decode("ascii"))
    # Not only TOMLDecodeError: int()'s digit limit raises a plain ValueError and
    # deep nesting a RecursionError, both from this unsigned text.
    except (ValueError, RecursionError):
        raise InvalidLicence("the signature block is malformed") from None
    key_id = fields.get("key_id")
    encoded = fields.get("ed25519")
    if set(fields) != {"key_id", "ed25519"}:
        raise InvalidLicence(
            "the signature block must hold exactly 'key_id' and 'ed25519'"
        )
    if not isinstance(key_id, str) or not KEY_ID.fullmatch(key_id):
        raise InvalidLicence(f"the signature block's key_id {key_id!r} is malformed")
    if not isinstance(encoded, str):
        raise InvalidLicence("the signature block's ed25519 value must be text")
    try:
        signature = base64.b64decode(encoded, validate=True)
    except ValueError:  # binascii.Error, or non-ASCII text from a TOML escape
        raise InvalidLicence("the signature is not valid base64") from None
    if len(signature) != _SIGNATURE_BYTES:
        raise InvalidLicence(
            f"the signature is {len(signature)} bytes; an Ed25519 signature is 64"
        )
    # The block is not signed, so TOML's leeway (other spacing, quotes, comments)
    # and base64's unused padding bits would let a changed file through. Accept
    # only the block exactly as ``sign`` writes it.
    respelt = base64.b64encode(signature).decode("ascii")
    if block != f'key_id = "{key_id}"\ned25519 = "{respelt}"\n'.encode("ascii"):
        raise InvalidLicence(
            "the signature block is not exactly as issued (its spacing, quoting "
            "or base64 spelling was changed); obtain an unmodified copy"
        )
    return key_id, signature
