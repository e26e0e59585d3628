"""Test material: a vendor key pair, a trusted keyring folder and signed licences.

Everything here is real: keys are generated with cryptography, licences are signed
the way ``licensed-vendor issue`` signs them, and files land in a real folder.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from licensed.keyring import Keyring
from licensed.licence import General, Licence, LicenceType, Support
from licensed.licence_file import sign

GENERAL = General(
    system_name="ACME Assistant PROD",
    company="ACME Corp",
    primary_sip_domain="acme.example",
    sfb_server_version="Skype for Business Server 2019",
    contact_person="Jane Doe",
    location="Zurich",
)


def make_licence(**changes: Any) -> Licence:
    """A valid full licence, with ``changes`` applied to its fields."""
    base = Licence(
        serial="AST-0001",
        issued=datetime(2026, 12, 1, 9, 0, tzinfo=UTC),
        product="Assistant",
        type=LicenceType.FULL,
        valid_until=None,
        general=GENERAL,
        components=(("SMD", 1), ("Core", 1), ("Core SfB", 1)),
        support=Support(contract="Premium 24/7", valid_until=date(2027, 12, 31)),
        users=100,
        over_licence_limit=120,
    )
    return dataclasses.replace(base, **changes)


def make_trial(valid_until: date, **changes: Any) -> Licence:
    """A valid trial licence through ``valid_until``."""
    fields: dict[str, Any] = {"serial": "AST-T001", **changes}
    return make_licence(type=LicenceType.TRIAL, valid_until=valid_until, **fields)


@dataclass
class Vendor:
    """A vendor key pair whose public half is trusted in ``keys_dir``."""

    keys_dir: Path
    key_id: str = "vendor-test"

    def __post_init__(self) -> None:
        self.private_key = Ed25519PrivateKey.generate()
        self.keys_dir.mkdir(parents=True, exist_ok=True)
        public = self.private_key.public_key().public_bytes(
            serialization.Encoding.PEM,
            serialization.PublicFormat.SubjectPublicKeyInfo,
        )
        (self.keys_dir / f"{self.key_id}.pub").write_bytes(public)

    @property
    def keyring(self) -> Keyring:
        return Keyring.load(self.keys_dir)

    def private_key_file(self, folder: Path) -> Path:
        """Write the private key where ``licensed-vendor`` can use it."""
        path = folder / f"{self.key_id}.key"
        path.write_bytes(
            self.private_key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        path.chmod(0o600)
        return path

    def sign(self, licence: Licence) -> bytes:
        return sign(licence, self.private_key, self.key_id)

    def write(self, licence: Licence, path: Path) -> Path:
        """Sign ``licence`` into the file ``path``."""
        path.write_bytes(self.sign(licence))
        return path
