"""licensed-vendor keygen, issue and verify, through the real console script."""

from __future__ import annotations

import re
import shutil
import stat
import tomllib
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from licensed.keyring import Keyring, load_private_key, load_public_key
from licensed.licence import LicenceType
from licensed.licence_file import read_licence_file
from licensed.vendor import to_toml
from tests.harness.cli import Result, Server, run
from tests.harness.licences import make_licence

KEY_ID = "vendor-2026"
TRIAL_UNTIL = "2027-01-31"
GENERAL_OPTIONS = (
    *("--company", "ACME Corp", "--system", "ACME PROD"),
    *("--sip-domain", "acme.example", "--sfb-version", "SfB Server 2019"),
    *("--contact", "Jane Doe", "--location", "Zurich"),
)
REQUEST = """\
type = "full"
[general]
system_name = "ACME Assistant PROD"
company = "ACME Corp"
primary_sip_domain = "acme.example"
sfb_server_version = "Skype for Business Server 2019"
contact_person = "Jane Doe"
location = "Zurich"
[components]
SMD = 2
"Core SfB" = 1
[support]
contract = "Premium 24/7"
valid_until = 2027-12-31
[users]
licensed = 500
"""


def vendor(*args: str | Path) -> Result:
    return run("licensed-vendor", *args)


@pytest.fixture
def keys(tmp_path: Path) -> Path:
    """A folder with a freshly generated vendor key pair."""
    folder = tmp_path / "vendor-keys"
    folder.mkdir()
    result = vendor("keygen", "--key-id", KEY_ID, "--out", folder)
    assert result.code == 0, result.stderr
    return folder


def issue_trial(keys: Path, out: Path, *extra: str) -> Result:
    return vendor(
        *("issue", "--key", keys / f"{KEY_ID}.key", "--out", out),
        *("--trial-until", TRIAL_UNTIL, *GENERAL_OPTIONS, "--users", "50", *extra),
    )


# --- keygen ----------------------------------------------------------------------


def test_keygen_makes_a_private_key_0600_and_its_public_half(keys: Path) -> None:
    """If keygen runs, ID.key (0600, PKCS8) and ID.pub (SPKI) hold one key pair."""
    private_path, public_path = keys / f"{KEY_ID}.key", keys / f"{KEY_ID}.pub"

    private, public = load_private_key(private_path), load_public_key(public_path)

    assert stat.S_IMODE(private_path.stat().st_mode) == 0o600
    assert private_path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert public_path.read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")
    public.verify(private.sign(b"x"), b"x")


def test_keygen_prints_both_paths_and_where_the_public_key_goes(
    tmp_path: Path,
) -> None:
    """If keygen succeeds, it names both files and says to copy the .pub."""
    result = vendor("keygen", "--key-id", "k1", "--out", tmp_path)

    assert result.code == 0
    assert str(tmp_path / "k1.key") in result.stdout
    assert str(tmp_path / "k1.pub") in result.stdout
    assert "Copy k1.pub into the keys folder of each server" in result.stdout


def test_keygen_never_overwrites_a_key(keys: Path) -> None:
    """If the key file exists, keygen refuses, exits 5 and leaves it alone."""
    before = (keys / f"{KEY_ID}.key").read_bytes()

    result = vendor("keygen", "--key-id", KEY_ID, "--out", keys)

    assert result.code == 5
    assert "already exists; refusing to overwrite" in result.stderr
    assert (keys / f"{KEY_ID}.key").read_bytes() == before


def test_keygen_leaves_no_private_key_when_the_public_file_exists(
    tmp_path: Path,
) -> None:
    """If only ID.pub exists, keygen refuses and does not leave a lone ID.key."""
    (tmp_path / "k2.pub").write_text("someone else's\n")

    result = vendor("keygen", "--key-id", "k2", "--out", tmp_path)

    assert result.code == 5
    assert not (tmp_path / "k2.key").exists()


def test_keygen_refuses_a_malformed_key_id(tmp_path: Path) -> None:
    """If the key id is not a plain name, keygen exits 3 and says what is allowed."""
    result = vendor("keygen", "--key-id", "../evil", "--out", tmp_path)

    assert result.code == 3
    assert "key id '../evil' is malformed" in result.stderr
    assert list(tmp_path.iterdir()) == []


# --- issue -----------------------------------------------------------------------


def test_a_trial_is_issued_in_one_line_with_defaults(
    keys: Path, tmp_path: Path
) -> None:
    """If a trial is issued from options, the defaults fill what was not given."""
    out = tmp_path / "acme.lic"

    result = issue_trial(keys, out)

    assert result.code == 0, result.stderr
    licence = read_licence_file(out, Keyring.load(keys)).licence
    assert licence.type is LicenceType.TRIAL
    assert licence.valid_until == date(2027, 1, 31)
    assert licence.product == "Assistant"
    assert licence.components == (("SMD", 1), ("Core", 1), ("Core SfB", 1))
    assert (licence.support.contract, licence.support.valid_until) == (
        "Trial",
        date(2027, 1, 31),
    )
    assert (licence.users, licence.over_licence_limit) == (50, 50)
    assert re.fullmatch(r"AST-\d{8}-[0-9a-f]{8}", licence.serial)
    assert abs(datetime.now(UTC) - licence.issued) < timedelta(minutes=1)
    assert licence.serial in result.stdout


def test_issued_serials_are_unique(keys: Path, tmp_path: Path) -> None:
    """If two licences are issued without --serial, their serials differ."""
    first, second = tmp_path / "a.lic", tmp_path / "b.lic"

    issue_trial(keys, first)
    issue_trial(keys, second)

    keyring = Keyring.load(keys)
    serials = {read_licence_file(p, keyring).licence.serial for p in (first, second)}
    assert len(serials) == 2


def test_a_full_licence_takes_every_option(keys: Path, tmp_path: Path) -> None:
    """If a full licence is issued with every option, each lands in the licence."""
    out = tmp_path / "full.lic"

    result = vendor(
        *("issue", "--key", keys / f"{KEY_ID}.key", "--out", out, "--full"),
        *GENERAL_OPTIONS,
        *("--component", "SMD=3", "--component", "Core SfB=2"),
        *("--support-contract", "Premium 24/7", "--support-until", "2028-06-30"),
        *("--users", "200", "--over-limit", "250", "--serial", "AST-CUSTOM-1"),
        *("--issued", "2026-12-03T10:00:00+01:00"),
    )

    assert result.code == 0, result.stderr
    licence = read_licence_file(out, Keyring.load(keys)).licence
    assert licence == make_licence(
        serial="AST-CUSTOM-1",
        issued=datetime(2026, 12, 3, 9, 0, tzinfo=UTC),
        general=licence.general,
        components=(("SMD", 3), ("Core SfB", 2)),
        support=licence.support,
        users=200,
        over_licence_limit=250,
    )
    assert licence.general.system_name == "ACME PROD"
    assert licence.support.valid_until == date(2028, 6, 30)


def test_missing_options_are_named_all_at_once(keys: Path, tmp_path: Path) -> None:
    """If required options are missing, issue lists them, exits 2, writes nothing."""
    out = tmp_path / "x.lic"

    result = vendor(
        *("issue", "--key", keys / f"{KEY_ID}.key", "--out", out),
        *("--full", "--company", "ACME Corp"),
    )

    assert result.code == 2
    for option in ("--system", "--location", "--users", "--support-contract"):
        assert option in result.stderr
    assert "--company" not in result.stderr
    assert result.stderr.count("\n") == 1
    assert not out.exists()


def test_issue_refuses_to_overwrite_without_force(keys: Path, tmp_path: Path) -> None:
    """If --out exists, issue exits 5 unless --force is given."""
    out = tmp_path / "acme.lic"
    out.write_text("old\n")

    refused = issue_trial(keys, out)
    unchanged = out.read_text()
    forced = issue_trial(keys, out, "--force")

    assert refused.code == 5
    assert "--force" in refused.stderr
    assert unchanged == "old\n"
    assert forced.code == 0, forced.stderr
    assert read_licence_file(out, Keyring.load(keys)).licence.is_trial


def test_a_request_file_issues_a_licence(keys: Path, tmp_path: Path) -> None:
    """If --request is given, its fields make the licence and defaults fill the rest."""
    request = tmp_path / "request.toml"
    request.write_text(REQUEST)
    out = tmp_path / "acme.lic"

    result = vendor(
        "issue", "--key", keys / f"{KEY_ID}.key", "--out", out, "--request", request
    )

    assert result.code == 0, result.stderr
    licence = read_licence_file(out, Keyring.load(keys)).licence
    assert licence.type is LicenceType.FULL
    assert licence.components == (("SMD", 2), ("Core SfB", 1))
    assert (licence.users, licence.over_licence_limit) == (500, 500)


@pytest.mark.parametrize(
    ("extra_text", "extra_args", "message"),
    [
        ("bogus = 1\n", (), "unknown field 'bogus' in [users]"),
        ("", ("--users", "3"), "either in --request or as options"),
        ("[general\n", (), "is not valid TOML"),
    ],
)
def test_a_bad_request_is_refused_with_the_reason(
    keys: Path,
    tmp_path: Path,
    extra_text: str,
    extra_args: tuple[str, ...],
    message: str,
) -> None:
    """If the request is malformed or mixed with options, issue exits 2 and says why."""
    request = tmp_path / "request.toml"
    request.write_text(REQUEST + extra_text)
    out = tmp_path / "acme.lic"
    key = keys / f"{KEY_ID}.key"

    result = vendor(
        "issue", "--key", key, "--out", out, "--request", request, *extra_args
    )

    assert result.code == 2
    assert message in result.stderr
    assert not out.exists()


def test_a_bad_option_value_is_one_line_exit_2(keys: Path, tmp_path: Path) -> None:
    """If an option value is malformed, issue says which in one line, exit 2."""
    result = issue_trial(keys, tmp_path / "x.lic", "--component", "SMD")

    assert result.code == 2
    assert "'SMD' is not NAME=QTY" in result.stderr
    assert result.stderr.count("\n") == 1


def test_another_product_is_issued_and_verifies_but_does_not_install(
    keys: Path, tmp_path: Path
) -> None:
    """If a TM licence is issued, verify says OK for TM and licensectl refuses it."""
    server = Server(tmp_path / "server")
    shutil.copy(keys / f"{KEY_ID}.pub", server.keys_dir)
    out = tmp_path / "tm.lic"

    issued = issue_trial(keys, out, "--product", "TM")
    verified = vendor("verify", out, "--keys-dir", keys)
    installed = server.licensectl("install", out)

    assert issued.code == 0, issued.stderr
    assert "TM-" in issued.stdout
    assert verified.code == 0
    assert "product TM" in verified.stdout
    assert "Assistant servers refuse it" in verified.stdout
    assert installed.code == 1
    assert "product is 'TM'" in installed.stderr


# --- verify ----------------------------------------------------------------------


def test_verify_reports_ok_with_the_licence_summary(keys: Path, tmp_path: Path) -> None:
    """If the file is valid, verify prints OK, serial, type, company and expiry."""
    out = tmp_path / "acme.lic"
    issue_trial(keys, out, "--serial", "AST-42")

    by_key = vendor("verify", out, "--public-key", keys / f"{KEY_ID}.pub")
    by_folder = vendor("verify", out, "--keys-dir", keys)

    for result in (by_key, by_folder):
        assert result.code == 0, result.stderr
        assert result.stdout.startswith(
            "OK: serial AST-42, trial, ACME Corp, valid until 2027-01-31"
        )


def test_verify_names_the_reason_for_an_invalid_file(
    keys: Path, tmp_path: Path
) -> None:
    """If the file was tampered with, verify prints the reason and exits 1."""
    out = tmp_path / "acme.lic"
    issue_trial(keys, out)
    out.write_bytes(out.read_bytes().replace(b"ACME Corp", b"ACME Corq"))

    result = vendor("verify", out, "--keys-dir", keys)

    assert result.code == 1
    assert result.stderr.startswith(
        "Invalid Licence File: the signature does not match"
    )


def test_verify_uses_the_configured_keys_by_default(tmp_path: Path) -> None:
    """If no key option is given, verify trusts the configuration's keys folder."""
    server = Server(tmp_path)
    trusted = server.licence(make_licence())

    result = server.vendor_tool("verify", trusted)

    assert result.code == 0, result.stderr
    assert "OK: serial AST-0001, full, ACME Corp, does not expire" in result.stdout


# --- the whole path --------------------------------------------------------------


def test_a_licence_goes_from_keygen_to_show(keys: Path, tmp_path: Path) -> None:
    """If the vendor's .pub is trusted, an issued trial installs and shows."""
    server = Server(tmp_path / "server")
    shutil.copy(keys / f"{KEY_ID}.pub", server.keys_dir)
    out = tmp_path / "acme.lic"

    issued = issue_trial(keys, out)
    installed = server.licensectl("install", out)
    shown = server.licensectl("show")

    assert (issued.code, installed.code, shown.code) == (0, 0, 0)
    assert "Company               ACME Corp" in shown.stdout
    assert "Valid until           2027-01-31" in shown.stdout
    assert "Contract              Trial" in shown.stdout


def test_help_documents_exit_codes_and_the_request_format() -> None:
    """If issue --help is asked for, it shows the request format and exit codes."""
    result = vendor("issue", "--help")

    assert result.code == 0
    assert "request file format (--request):" in result.stdout
    assert "over_licence_limit = 120" in result.stdout
    assert "exit codes:" in result.stdout


# --- the request writer ------------------------------------------------------------

_SCALARS = (
    st.text(max_size=20)
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.booleans()
    | st.dates()
    | st.datetimes(timezones=st.just(UTC))
)


@given(
    st.dictionaries(
        st.text(max_size=10),
        _SCALARS | st.dictionaries(st.text(max_size=10), _SCALARS, max_size=4),
        max_size=6,
    )
)
def test_the_request_writer_round_trips_through_tomllib(
    document: dict[str, Any],
) -> None:
    """If a request document is written as TOML, tomllib reads the same back."""
    text = to_toml(document)

    assert tomllib.loads(text) == document
