"""What every fuzzing run asserts: the only outcomes, and how a refusal reads.

The reader and verifier (``parse_licence``) may return a ``SignedLicence`` or raise
``InvalidLicence``; the configuration parser may return a ``Config`` or raise
``ConfigError``. Anything else escaping is a bug. A refusal's reason is printed after
``Invalid Licence File: `` on one line, so it must be non-empty and one line by
every definition Python knows (``str.splitlines``).
"""

from __future__ import annotations

from pathlib import Path

from licensed import config as config_module
from licensed.errors import ConfigError, InvalidLicence, LicensedError
from licensed.keyring import Keyring
from licensed.licence import PRODUCT
from licensed.licence_file import SignedLicence, parse_licence


class BadReasonError(AssertionError):
    """A refusal whose reason is empty or spans more than one line."""


class AcceptedError(AssertionError):
    """A forged or damaged file that was accepted."""


def check_reason(error: LicensedError) -> str:
    """The reason of ``error``, after checking it is one non-empty line."""
    reason = str(error)
    if not reason.strip() or len(reason.splitlines()) != 1:
        kind = type(error).__name__
        raise BadReasonError(f"{kind} reason is not one line: {reason!r}")
    return reason


def read(data: bytes, keyring: Keyring) -> SignedLicence | InvalidLicence:
    """Validate ``data``: the signed licence, or the refusal (its reason checked)."""
    try:
        signed = parse_licence(data, keyring)
    except InvalidLicence as exc:
        check_reason(exc)
        return exc
    if signed.licence.product != PRODUCT:
        product = signed.licence.product
        raise AcceptedError(f"accepted a licence for product {product!r}")
    return signed


def refuse(data: bytes, keyring: Keyring) -> InvalidLicence:
    """Validate ``data`` that must be refused; raise ``AcceptedError`` if not."""
    outcome = read(data, keyring)
    if isinstance(outcome, SignedLicence):
        serial = outcome.licence.serial
        raise AcceptedError(f"accepted licence {serial}: {data[:80]!r}...")
    return outcome


def read_config(text: str) -> config_module.Config | ConfigError:
    """Parse configuration text: the config, or the refusal (its reason checked)."""
    try:
        return config_module.parse(text, Path("/etc/licensed/licensed.toml"))
    except ConfigError as exc:
        check_reason(exc)
        return exc
