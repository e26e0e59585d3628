"""The exceptions licensed raises, in one small tree.

    LicensedError                  every error this package raises on purpose
    ├── ConfigError                the configuration file is unusable
    ├── InvalidLicence             a licence file fails validation
    ├── KeyringError               the trusted-key folder or a key is unusable
    ├── InstallError               installing or removing a licence failed
    ├── UnitControlError           systemd refused or failed an action on a unit
    └── UserCountError             the users could not be counted

Every message says what is wrong, with the offending value, and what to do about it.
``InvalidLicence`` carries only the reason; the command line adds the product's
``Invalid Licence File: `` prefix.
"""

from __future__ import annotations


class LicensedError(Exception):
    """Base of every error licensed raises on purpose."""


class ConfigError(LicensedError):
    """The configuration file is missing, malformed or holds a bad value."""


class InvalidLicence(LicensedError):  # noqa: N818 - the product's own term
    """A licence file fails validation; the message is the reason."""


class KeyringError(LicensedError):
    """The folder of trusted public keys, or a key file in it, is unusable."""


class InstallError(LicensedError):
    """Installing or removing a licence failed for a reason outside the file."""


class UnitControlError(LicensedError):
    """systemd refused or failed an action on a component unit."""

    def __init__(self, unit: str, action: str, reason: str) -> None:
        self.unit = unit
        self.action = action
        self.reason = reason
        super().__init__(f"{action} {unit}: {reason}")


class UserCountError(LicensedError):
    """Counting the users in the product database failed."""
