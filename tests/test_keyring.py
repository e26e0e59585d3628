"""The keyring: trusted public keys read from a real folder of ``.pub`` files."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import pytest
import time_machine
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ec import SECP256R1, generate_private_key
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from structlog.testing import capture_logs

from licensed.errors import KeyringError
from licensed.keyring import (
    CachedKeyring,
    Keyring,
    check_key_id,
    load_private_key,
    load_public_key,
)
from tests.harness.licences import Vendor


def public_pem(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def private_pem(
    key: Ed25519PrivateKey,
    encryption: serialization.KeySerializationEncryption | None = None,
) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        encryption or serialization.NoEncryption(),
    )


def skipped(logs: Sequence[Mapping[str, object]]) -> dict[str, str]:
    """The skipped key files in captured logs: file name to reason."""
    return {
        Path(str(entry["path"])).name: str(entry["reason"])
        for entry in logs
        if entry["event"] == "trusted_key_skipped"
    }


def test_every_pub_file_is_trusted_under_its_file_name(tmp_path: Path) -> None:
    """If the folder holds two .pub files, both keys load, by file name."""
    old = Vendor(tmp_path, key_id="vendor-2025")
    new = Vendor(tmp_path, key_id="vendor-2026")

    keyring = Keyring.load(tmp_path)

    assert sorted(keyring.keys) == ["vendor-2025", "vendor-2026"]
    assert keyring.folder == tmp_path
    assert keyring.describe() == "vendor-2025, vendor-2026"
    assert keyring.keys["vendor-2025"].public_bytes_raw() == (
        old.private_key.public_key().public_bytes_raw()
    )
    assert keyring.keys["vendor-2026"].public_bytes_raw() == (
        new.private_key.public_key().public_bytes_raw()
    )


def test_files_that_are_not_pub_are_ignored(tmp_path: Path) -> None:
    """If the folder holds a private key and notes, only .pub files are read."""
    vendor = Vendor(tmp_path)
    vendor.private_key_file(tmp_path)
    (tmp_path / "README").write_text("the vendor's keys\n")
    (tmp_path / "vendor-test.pub.bak").write_text("old\n")

    with capture_logs() as logs:
        keyring = Keyring.load(tmp_path)

    assert list(keyring.keys) == ["vendor-test"]
    assert skipped(logs) == {}


def test_an_empty_folder_trusts_nothing(tmp_path: Path) -> None:
    """If the folder holds no keys, the keyring is empty and says 'none'."""
    keyring = Keyring.load(tmp_path)

    assert keyring.keys == {}
    assert keyring.describe() == "none"


def test_corrupt_key_files_are_skipped_with_a_warning(tmp_path: Path) -> None:
    """If some .pub files are unusable, each is logged and the good one loads."""
    Vendor(tmp_path, key_id="good")
    (tmp_path / "garbage.pub").write_text("not a key\n")
    (tmp_path / "empty.pub").write_bytes(b"")
    ec_key = generate_private_key(SECP256R1())
    (tmp_path / "ecdsa.pub").write_bytes(
        ec_key.public_key().public_bytes(
            serialization.Encoding.PEM,
            serialization.PublicFormat.SubjectPublicKeyInfo,
        )
    )
    (tmp_path / "bad id!.pub").write_bytes(public_pem(Ed25519PrivateKey.generate()))
    (tmp_path / "folder.pub").mkdir()
    (tmp_path / "huge.pub").write_bytes(b"-" * (16 * 1024 + 1))

    with capture_logs() as logs:
        keyring = Keyring.load(tmp_path)

    assert list(keyring.keys) == ["good"]
    reasons = skipped(logs)
    assert set(reasons) == {
        "garbage.pub",
        "empty.pub",
        "ecdsa.pub",
        "bad id!.pub",
        "folder.pub",
        "huge.pub",
    }
    assert "not PEM" in reasons["garbage.pub"]
    assert "not an Ed25519 key" in reasons["ecdsa.pub"]
    assert "'bad id!' is malformed" in reasons["bad id!.pub"]
    assert all(entry["log_level"] == "warning" for entry in logs)


def test_a_missing_folder_is_an_error_naming_it(tmp_path: Path) -> None:
    """If the folder does not exist, KeyringError names the folder and the fix."""
    folder = tmp_path / "no-such-keys"

    with pytest.raises(KeyringError) as caught:
        Keyring.load(folder)

    assert str(folder) in str(caught.value)
    assert "create it" in str(caught.value)


def test_a_file_in_place_of_the_folder_is_an_error(tmp_path: Path) -> None:
    """If the folder path is a regular file, KeyringError names it."""
    path = tmp_path / "keys"
    path.write_text("oops\n")

    with pytest.raises(KeyringError, match=re.escape(str(path))):
        Keyring.load(path)


def test_verify_accepts_only_the_signers_signature(tmp_path: Path) -> None:
    """If a body is signed, verify holds for it and fails for any other body."""
    vendor = Vendor(tmp_path)
    keyring = vendor.keyring
    signature = vendor.private_key.sign(b"body")

    assert keyring.verify("vendor-test", signature, b"body")
    assert not keyring.verify("vendor-test", signature, b"bodY")
    assert not keyring.verify("vendor-test", bytes(64), b"body")
    assert not keyring.verify("someone-else", signature, b"body")


@pytest.mark.parametrize("key_id", ["vendor-2026", "a", "A.b_c-1", "x" * 64])
def test_well_formed_key_ids_pass(key_id: str) -> None:
    """If a key id is 1-64 safe characters, check_key_id returns it."""
    assert check_key_id(key_id) == key_id


@pytest.mark.parametrize(
    "key_id", ["", "-lead", ".hidden", "../up", "a b", "x" * 65, "vendor\n"]
)
def test_malformed_key_ids_are_refused(key_id: str) -> None:
    """If a key id could escape the folder or is odd, KeyringError names it."""
    with pytest.raises(KeyringError, match="malformed"):
        check_key_id(key_id)


def test_a_public_key_file_loads(tmp_path: Path) -> None:
    """If a .pub file holds an Ed25519 PEM key, load_public_key returns it."""
    key = Ed25519PrivateKey.generate()
    path = tmp_path / "k.pub"
    path.write_bytes(public_pem(key))

    loaded = load_public_key(path)

    assert loaded.public_bytes_raw() == key.public_key().public_bytes_raw()


def test_a_missing_public_key_names_the_file(tmp_path: Path) -> None:
    """If the key file is missing, KeyringError names it."""
    with pytest.raises(KeyringError, match=r"gone\.pub"):
        load_public_key(tmp_path / "gone.pub")


def test_a_private_key_file_loads(tmp_path: Path) -> None:
    """If a .key file holds an unencrypted Ed25519 PEM key, it loads."""
    vendor = Vendor(tmp_path)
    path = vendor.private_key_file(tmp_path)

    loaded = load_private_key(path)

    assert loaded.public_key().public_bytes_raw() == (
        vendor.private_key.public_key().public_bytes_raw()
    )


def test_an_encrypted_private_key_is_refused(tmp_path: Path) -> None:
    """If the private key is password-protected, KeyringError says unencrypted."""
    path = tmp_path / "locked.key"
    path.write_bytes(
        private_pem(
            Ed25519PrivateKey.generate(),
            serialization.BestAvailableEncryption(b"secret"),
        )
    )

    with pytest.raises(KeyringError, match="unencrypted"):
        load_private_key(path)


def test_a_public_key_is_not_a_private_key(tmp_path: Path) -> None:
    """If a .pub is given where a private key is wanted, KeyringError says so."""
    path = tmp_path / "wrong.key"
    path.write_bytes(public_pem(Ed25519PrivateKey.generate()))

    with pytest.raises(KeyringError, match=r"wrong\.key"):
        load_private_key(path)


# -- the daemon's cached keyring ---------------------------------------------------


@pytest.fixture
def later() -> Iterator[None]:
    """The clock 10 s on: the key files are past the window of racy file times."""
    with time_machine.travel(time.time() + 10, tick=True):
        yield


@pytest.mark.usefixtures("later")
def test_an_unchanged_folder_is_not_read_again(tmp_path: Path) -> None:
    """If no key file changed, the cached keyring is the same one."""
    Vendor(tmp_path, key_id="vendor-2026")
    cached = CachedKeyring(tmp_path)

    first = cached.get()

    assert cached.get() is first
    assert list(first.keys) == ["vendor-2026"]


@pytest.mark.usefixtures("later")
def test_added_and_removed_keys_count_from_the_next_get(tmp_path: Path) -> None:
    """If a key is added or removed, the next get trusts the folder as it is."""
    Vendor(tmp_path, key_id="old")
    cached = CachedKeyring(tmp_path)
    assert list(cached.get().keys) == ["old"]

    Vendor(tmp_path, key_id="new")
    assert sorted(cached.get().keys) == ["new", "old"]

    (tmp_path / "old.pub").unlink()
    assert list(cached.get().keys) == ["new"]


@pytest.mark.usefixtures("later")
def test_a_key_replaced_by_rename_is_read_again(tmp_path: Path) -> None:
    """If a .pub file is replaced by another of the same size, the new key counts."""
    first = Vendor(tmp_path / "first", key_id="vendor")
    second = Vendor(tmp_path / "second", key_id="vendor")
    keys = tmp_path / "keys"
    keys.mkdir()
    (first.keys_dir / "vendor.pub").rename(keys / "vendor.pub")
    cached = CachedKeyring(keys)
    body = b"signed body"
    assert cached.get().verify("vendor", first.private_key.sign(body), body)

    (second.keys_dir / "vendor.pub").rename(keys / "vendor.pub")

    assert cached.get().verify("vendor", second.private_key.sign(body), body)
    assert not cached.get().verify("vendor", first.private_key.sign(body), body)


def test_a_key_rewritten_in_place_at_once_is_read_again(tmp_path: Path) -> None:
    """If a key is overwritten within the file-time tick of the last get, it counts.

    Same size, same inode and possibly the same times: only the window of racy
    file times makes the cache read the folder again.
    """
    first = Vendor(tmp_path, key_id="vendor")
    cached = CachedKeyring(tmp_path)
    body = b"signed body"
    assert cached.get().verify("vendor", first.private_key.sign(body), body)
    second = Ed25519PrivateKey.generate()

    with (tmp_path / "vendor.pub").open("r+b") as file:
        file.write(public_pem(second))

    assert cached.get().verify("vendor", second.sign(body), body)


@pytest.mark.usefixtures("later")
def test_a_bad_key_file_is_reported_once_not_at_every_get(tmp_path: Path) -> None:
    """If a .pub file is unusable, it is logged when it appears, not at every check."""
    Vendor(tmp_path, key_id="good")
    (tmp_path / "garbage.pub").write_text("not a key\n")
    cached = CachedKeyring(tmp_path)

    with capture_logs() as logs:
        for _ in range(3):
            cached.get()

    assert [entry["event"] for entry in logs] == ["trusted_key_skipped"]


def test_a_missing_folder_is_an_error_at_every_get(tmp_path: Path) -> None:
    """If the folder disappears, get raises instead of keeping the old keys."""
    Vendor(tmp_path / "keys", key_id="vendor")
    cached = CachedKeyring(tmp_path / "keys")
    cached.get()
    (tmp_path / "keys" / "vendor.pub").unlink()
    (tmp_path / "keys").rmdir()

    for _ in range(2):
        with pytest.raises(KeyringError, match="does not exist"):
            cached.get()
