"""A slice of the forgery corpus, read from real files: none may be accepted.

``fuzz/make_corpus.py`` generates forged licence files of eight kinds (random
signatures, flipped bytes, truncation, other keys, the trusted key's id on another
key, other products signed by the trusted key, renamed key ids, tampering). The full
10 000 run in ``fuzz/``; the suite writes 2 000 into a temporary folder and reads
each back with ``read_licence_file``, as ``licensectl install`` and the daemon do.
"""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Iterable
from pathlib import Path

import pytest

from fuzz import make_corpus
from licensed.errors import InvalidLicence
from licensed.keyring import Keyring
from licensed.licence_file import read_licence_file
from tests.harness.cli import Server
from tests.harness.licences import make_licence

SLICE = 2_000


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first 2 000 files of the corpus, written to a folder."""
    folder = tmp_path_factory.mktemp("corpus")
    make_corpus.write_corpus(folder, SLICE)
    return folder


@pytest.fixture(scope="module")
def report(corpus: Path) -> make_corpus.Report:
    return make_corpus.check_corpus(corpus)


def test_no_forged_file_is_accepted(report: make_corpus.Report) -> None:
    """If 2 000 forged files are read with the trusted keys, none is accepted."""
    assert report.files == SLICE
    assert report.accepted == []


def test_every_kind_of_forgery_is_in_the_slice(report: make_corpus.Report) -> None:
    """If the slice is read, each of the eight kinds is there in equal share."""
    assert report.by_kind == dict.fromkeys(make_corpus.KINDS, SLICE // 8)


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("forged_signature", "the signature does not match the content"),
        ("impostor_key", "the signature does not match the content"),
        ("untrusted_key", "which is not trusted here"),
        ("unknown_key_id", "which is not trusted here"),
        ("other_product", "this system accepts only 'Assistant'"),
    ],
)
def test_each_forgery_is_refused_for_its_own_reason(
    corpus: Path, kind: str, reason: str
) -> None:
    """If a forgery of one kind is read, the reason names what is wrong with it."""
    keyring = Keyring.load(corpus / "keys")
    paths = sorted((corpus / "forged").glob(f"*-{kind}.lic"))[:25]

    reasons = [_reason(path, keyring) for path in paths]

    assert len(reasons) == 25
    assert all(reason in text for text in reasons), reasons


def test_the_corpus_is_the_same_on_every_run() -> None:
    """If the corpus is generated twice, the bytes are the same: failures replay."""
    first = _digest(make_corpus.forgeries(64))
    second = _digest(make_corpus.forgeries(64))

    assert first == second


def test_genuine_files_from_the_same_keys_are_accepted(corpus: Path) -> None:
    """If the corpus's own genuine licences are read, they pass: refusals mean it."""
    keyring = Keyring.load(corpus / "keys")
    trusted = make_corpus.derived_key("trusted")
    path = corpus / "genuine.lic"

    for data in (make_corpus.genuine_trial(trusted), make_corpus.genuine_full(trusted)):
        path.write_bytes(data)
        assert read_licence_file(path, keyring).data == data


def test_one_forgery_of_each_kind_is_refused_by_licensectl_install(
    corpus: Path, tmp_path: Path
) -> None:
    """If licensectl install is given each kind, it exits 1 and changes nothing."""
    server = Server(tmp_path / "server")
    shutil.copy(corpus / "keys" / f"{make_corpus.TRUSTED_ID}.pub", server.keys_dir)
    server.install_directly(make_licence())
    before = server.installed_digest()

    for kind in make_corpus.KINDS:
        path = next((corpus / "forged").glob(f"*-{kind}.lic"))
        result = server.licensectl("install", path)

        assert result.code == 1, (kind, result.stderr)
        assert result.stderr.startswith("Invalid Licence File: ")
        assert result.stderr.count("\n") == 1
        assert server.installed_digest() == before


def _reason(path: Path, keyring: Keyring) -> str:
    try:
        read_licence_file(path, keyring)
    except InvalidLicence as exc:
        return str(exc)
    return "accepted"


def _digest(forgeries: Iterable[make_corpus.Forgery]) -> str:
    digest = hashlib.sha256()
    for forgery in forgeries:
        digest.update(forgery.name.encode() + forgery.data)
    return digest.hexdigest()
