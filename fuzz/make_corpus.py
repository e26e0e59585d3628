"""A deterministic corpus of forged licence files, and the check that refuses them.

Usage (from the repository root)::

    .venv/bin/python -m fuzz.make_corpus /tmp/forgeries --count 10000 --check

writes ``keys/`` (the trusted public key), ``forged/NNNNN-<kind>.lic`` and
``manifest.json`` into the folder, then reads every file back with
``read_licence_file`` and prints a JSON summary. It exits 1 if any file is accepted.
The same seed always gives the same bytes: keys are derived from fixed names and
Ed25519 signatures are deterministic. The corpus is generated, never committed.

Kinds, in turn:

``forged_signature``  a plausible body (more users, a later date) with a random
                      64-byte signature under the trusted key id
``byte_flipped``      a genuine file with one to three bytes changed
``truncated``         a genuine file cut short anywhere
``untrusted_key``     signed by another vendor key under that key's own id
``impostor_key``      signed by another key under the trusted key's id
``other_product``     a TM or LUCS licence signed by the trusted key itself
``unknown_key_id``    a genuine signature whose key id was renamed
``tampered``          a genuine file damaged by ``fuzz.mutations``
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import hashlib
import json
import random
import re
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from fuzz import mutations, oracle
from licensed.errors import InvalidLicence
from licensed.keyring import Keyring
from licensed.licence import General, Licence, LicenceType, Support
from licensed.licence_file import BEGIN, read_licence_file, sign

TRUSTED_ID = "vendor-2026"
OTHER_IDS = ("vendor-2025", "vendor-2027", "other-vendor", "vendor-2026-new")

KINDS = (
    "forged_signature",
    "byte_flipped",
    "truncated",
    "untrusted_key",
    "impostor_key",
    "other_product",
    "unknown_key_id",
    "tampered",
)


@dataclass(frozen=True)
class Forgery:
    """One forged file: its kind and its bytes."""

    number: int
    kind: str
    data: bytes

    @property
    def name(self) -> str:
        return f"{self.number:05d}-{self.kind}.lic"


@dataclass
class Report:
    """What reading a corpus back found."""

    files: int = 0
    accepted: list[str] = dataclasses.field(default_factory=list)
    by_kind: Counter[str] = dataclasses.field(default_factory=Counter)
    reasons: Counter[str] = dataclasses.field(default_factory=Counter)
    seconds: float = 0.0

    def summary(self) -> dict[str, object]:
        return {
            "event": "corpus_checked",
            "files": self.files,
            "accepted": len(self.accepted),
            "accepted_files": self.accepted[:10],
            "seconds": round(self.seconds, 2),
            "by_kind": dict(sorted(self.by_kind.items())),
            "reasons": dict(self.reasons.most_common()),
        }


def derived_key(name: str) -> Ed25519PrivateKey:
    """An Ed25519 key that is the same on every run for the same ``name``."""
    secret = hashlib.sha256(f"licensed-fuzz-corpus:{name}".encode()).digest()
    return Ed25519PrivateKey.from_private_bytes(secret)


def write_keyring(folder: Path, key: Ed25519PrivateKey) -> Path:
    """Trust ``key`` as ``TRUSTED_ID`` in ``folder``; return the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    public = key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    (folder / f"{TRUSTED_ID}.pub").write_bytes(public)
    return folder


def genuine_trial(key: Ed25519PrivateKey) -> bytes:
    """A genuine trial licence file signed by ``key`` as the trusted vendor."""
    return sign(_licence(random.Random(0), trial=True), key, TRUSTED_ID)  # noqa: S311


def genuine_full(key: Ed25519PrivateKey) -> bytes:
    """A genuine full licence file, issued after ``genuine_trial``."""
    licence = dataclasses.replace(
        _licence(random.Random(1), trial=False),  # noqa: S311
        serial="AST-INSTALLED",
        issued=datetime(2026, 12, 10, tzinfo=UTC),
    )
    return sign(licence, key, TRUSTED_ID)


def body_of(file: bytes) -> bytes:
    """The signed body of a licence file: everything before the block."""
    return file[: file.index(f"\n{BEGIN}\n".encode()) + 1]


def forgeries(count: int, seed: int = 0) -> Iterator[Forgery]:
    """``count`` forged files, the kinds in turn, the same for the same ``seed``."""
    rng = random.Random(seed)  # noqa: S311 - reproducible, not secret
    trusted = derived_key("trusted")
    makers = _makers(trusted)
    for number in range(count):
        kind = KINDS[number % len(KINDS)]
        yield Forgery(number, kind, makers[kind](rng))


def write_corpus(folder: Path, count: int, seed: int = 0) -> Path:
    """Write keys, forged files and a manifest into ``folder``; return ``forged/``."""
    write_keyring(folder / "keys", derived_key("trusted"))
    forged = folder / "forged"
    forged.mkdir(parents=True, exist_ok=True)
    kinds: Counter[str] = Counter()
    for forgery in forgeries(count, seed):
        (forged / forgery.name).write_bytes(forgery.data)
        kinds[forgery.kind] += 1
    manifest = {"count": count, "seed": seed, "kinds": dict(sorted(kinds.items()))}
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return forged


def check_corpus(folder: Path) -> Report:
    """Read every forged file in ``folder`` with the trusted keys; count outcomes."""
    keyring = Keyring.load(folder / "keys")
    report = Report()
    started = time.monotonic()
    for path in sorted((folder / "forged").glob("*.lic")):
        kind = path.stem.split("-", 1)[1]
        report.files += 1
        report.by_kind[kind] += 1
        try:
            read_licence_file(path, keyring)
        except InvalidLicence as exc:
            report.reasons[_reason_class(oracle.check_reason(exc))] += 1
            continue
        report.accepted.append(path.name)
    report.seconds = time.monotonic() - started
    return report


def _makers(trusted: Ed25519PrivateKey) -> dict[str, Callable[[random.Random], bytes]]:
    def genuine(rng: random.Random) -> bytes:
        return sign(_licence(rng), trusted, TRUSTED_ID)

    def forged_signature(rng: random.Random) -> bytes:
        data = genuine(rng)
        fake = base64.b64encode(rng.randbytes(64)).decode()
        return _with_block(body_of(data), TRUSTED_ID, fake)

    def byte_flipped(rng: random.Random) -> bytes:
        data = bytearray(genuine(rng))
        for at in rng.sample(range(len(data)), 1 + rng.randrange(3)):
            data[at] ^= 1 + rng.randrange(255)
        return bytes(data)

    def truncated(rng: random.Random) -> bytes:
        data = genuine(rng)
        return data[: rng.randrange(len(data))]

    def untrusted_key(rng: random.Random) -> bytes:
        key_id = rng.choice(OTHER_IDS)
        return sign(_licence(rng), derived_key(key_id), key_id)

    def impostor_key(rng: random.Random) -> bytes:
        other = derived_key(f"impostor-{rng.randrange(16)}")
        return sign(_licence(rng), other, TRUSTED_ID)

    def other_product(rng: random.Random) -> bytes:
        licence = dataclasses.replace(_licence(rng), product=rng.choice(["TM", "LUCS"]))
        return sign(licence, trusted, TRUSTED_ID)

    def unknown_key_id(rng: random.Random) -> bytes:
        data = genuine(rng)
        renamed = f'key_id = "{rng.choice(OTHER_IDS)}"'.encode()
        return data.replace(f'key_id = "{TRUSTED_ID}"'.encode(), renamed)

    def tampered(rng: random.Random) -> bytes:
        data = genuine(rng)
        while True:
            damaged = mutations.mutate(data, rng.randrange, 1 + rng.randrange(3))
            if damaged != data:
                return damaged

    return {
        "forged_signature": forged_signature,
        "byte_flipped": byte_flipped,
        "truncated": truncated,
        "untrusted_key": untrusted_key,
        "impostor_key": impostor_key,
        "other_product": other_product,
        "unknown_key_id": unknown_key_id,
        "tampered": tampered,
    }


def _licence(rng: random.Random, *, trial: bool | None = None) -> Licence:
    """A plausible licence: the kind of thing someone would want to forge."""
    is_trial = rng.random() < 0.5 if trial is None else trial
    issued = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(minutes=rng.randrange(10**6))
    users = rng.choice([10, 100, 500, 1000, 10_000, 99_999])
    return Licence(
        serial=f"AST-{rng.randrange(10**6):06d}",
        issued=issued,
        product="Assistant",
        type=LicenceType.TRIAL if is_trial else LicenceType.FULL,
        valid_until=date(2027, 1, 1) + timedelta(days=rng.randrange(3650))
        if is_trial
        else None,
        general=General(
            system_name="ACME Assistant PROD",
            company=rng.choice(["ACME Corp", "Globex", "Initech AG", "Zürich Ltd"]),
            primary_sip_domain="acme.example",
            sfb_server_version="Skype for Business Server 2019",
            contact_person="Jane Doe",
            location="Zurich",
        ),
        components=(("SMD", 1), ("Core", 1), ("Core SfB", 1)),
        support=Support(contract="Premium 24/7", valid_until=date(2028, 12, 31)),
        users=users,
        over_licence_limit=users + rng.randrange(100),
    )


def _with_block(body: bytes, key_id: str, signature: str) -> bytes:
    block = f'{BEGIN}\nkey_id = "{key_id}"\ned25519 = "{signature}"\n'
    return body + block.encode() + b"-----END LICENCE SIGNATURE-----\n"


def _reason_class(reason: str) -> str:
    """The reason with its variable parts (quoted values, numbers) blanked."""
    text = re.sub(r"(?<![A-Za-z])'[^']*'", "'...'", reason)
    text = re.sub(r"[0-9]+", "N", text)
    return text.split(";")[0].split(" (")[0]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--check", action="store_true", help="read the corpus back")
    options = parser.parse_args(argv)

    started = time.monotonic()
    write_corpus(options.folder, options.count, options.seed)
    print(
        json.dumps(
            {
                "event": "corpus_written",
                "files": options.count,
                "seconds": round(time.monotonic() - started, 2),
                "folder": str(options.folder),
            }
        )
    )
    if not options.check:
        return 0
    report = check_corpus(options.folder)
    print(json.dumps(report.summary(), ensure_ascii=False))
    return 1 if report.accepted else 0


if __name__ == "__main__":
    sys.exit(main())
