"""Fuzzing in the suite: bad input reaches only InvalidLicence or ConfigError.

The reader and verifier are fed arbitrary bytes, valid licence files damaged every
way ``fuzz.mutations`` knows, and generated TOML bodies signed with the trusted key,
so that the body parser is fuzzed behind a valid signature too. The outcome is
always a licence or an ``InvalidLicence`` whose reason is one non-empty line; a
damaged file is never accepted. The configuration parser is held to the same
promise with ``ConfigError``. ``fuzz/fuzz_licence.py`` runs the same checks for
millions of inputs; ``docs/security.md`` records its figures.
"""

from __future__ import annotations

import base64
import dataclasses
import tomllib
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from fuzz import mutations, oracle, toml_text
from licensed import config as config_module
from licensed.config import Config
from licensed.errors import ConfigError, InstallError, InvalidLicence
from licensed.install import install
from licensed.keyring import Keyring
from licensed.licence import Licence, LicenceType, render_body
from licensed.licence_file import BEGIN, END, SignedLicence, parse_licence
from tests.harness.licences import Vendor, make_licence, make_trial

FAST = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
WIDE = settings(FAST, max_examples=300)


@pytest.fixture(scope="module")
def genuine(vendor: Vendor) -> bytes:
    """A valid trial licence file, as the vendor issues it."""
    return vendor.sign(make_trial(date(2027, 1, 31)))


def picker(data: st.DataObject) -> mutations.Pick:
    """A ``Pick`` that draws its choices from Hypothesis, so failures shrink."""
    return lambda n: data.draw(st.integers(0, n - 1)) if n > 1 else 0


def body_of(file: bytes) -> bytes:
    return file[: file.index(f"\n{BEGIN}\n".encode()) + 1]


def resign(vendor: Vendor, body: bytes) -> bytes:
    """``body`` signed by the trusted key, in the block ``sign`` writes."""
    signed = vendor.sign(make_licence())
    block = signed[len(body_of(signed)) :]
    signature = vendor.private_key.sign(body)
    encoded = base64.b64encode(signature).decode()
    lines = block.decode().splitlines()
    lines[2] = f'ed25519 = "{encoded}"'
    return body + ("\n".join(lines) + "\n").encode()


# -- generated TOML ---------------------------------------------------------------

OFFSETS = st.integers(-23 * 60 - 59, 23 * 60 + 59).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
TEXTS = st.one_of(
    st.text(max_size=20),
    st.sampled_from(mutations.CONFUSABLE_PRODUCTS),
    st.sampled_from(["Assistant", "TM", "LUCS", "full", "trial", "AST-0001", ""]),
)
SCALARS = st.one_of(
    TEXTS,
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.sampled_from([0, 1, -1, 2**63 - 1, -(2**63)]),
    st.floats(),
    st.dates(),
    st.datetimes(timezones=st.one_of(st.none(), st.just(UTC), OFFSETS)),
    st.times(),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=6,
)

LICENCE_KEYS = {
    "": ["format", "serial", "issued", "product", "type", "valid_until"],
    "general": [
        "system_name",
        "company",
        "primary_sip_domain",
        "sfb_server_version",
        "contact_person",
        "location",
    ],
    "components": ["SMD", "Core", "Core SfB", ""],
    "support": ["contract", "valid_until"],
    "users": ["licensed", "over_licence_limit"],
}


def document_of(licence: Licence) -> dict[str, Any]:
    return tomllib.loads(render_body(licence))


@st.composite
def near_valid_bodies(draw: st.DrawFn) -> bytes:
    """A valid licence document with a few keys set, removed or added at random."""
    base = draw(st.sampled_from([make_licence(), make_trial(date(2027, 1, 31))]))
    document = document_of(base)
    for _ in range(draw(st.integers(1, 3))):
        table_name = draw(st.sampled_from(sorted(LICENCE_KEYS)))
        table = document if not table_name else document.setdefault(table_name, {})
        if not isinstance(table, dict):
            continue
        name = draw(st.sampled_from(LICENCE_KEYS[table_name]) | st.text(max_size=6))
        action = draw(st.sampled_from(["set", "delete", "set"]))
        if action == "delete":
            table.pop(name, None)
        else:
            table[name] = draw(VALUES)
    return toml_text.dumps(document).encode("utf-8", "surrogatepass")


BODIES = st.one_of(
    near_valid_bodies(),
    st.dictionaries(st.text(max_size=10), VALUES, max_size=6).map(
        lambda d: toml_text.dumps(d).encode("utf-8", "surrogatepass")
    ),
    st.binary(max_size=512),
)


# -- the reader and verifier ------------------------------------------------------


@WIDE
@given(data=st.binary(max_size=4096))
def test_arbitrary_bytes_are_refused_with_a_one_line_reason(
    keyring: Keyring, data: bytes
) -> None:
    """If arbitrary bytes are read, they are refused with a one-line reason."""
    oracle.refuse(data, keyring)


@WIDE
@given(data=st.data())
def test_a_damaged_licence_file_is_always_refused(
    genuine: bytes, keyring: Keyring, data: st.DataObject
) -> None:
    """If a valid file is damaged in up to four ways, it is refused (or unchanged)."""
    rounds = data.draw(st.integers(1, 4))

    damaged = mutations.mutate(genuine, picker(data), rounds)

    outcome = oracle.read(damaged, keyring)
    assert isinstance(outcome, InvalidLicence) or damaged == genuine


@FAST
@pytest.mark.parametrize("mutation", mutations.MUTATIONS, ids=mutations.names())
@given(data=st.data())
def test_each_kind_of_damage_is_refused(
    genuine: bytes,
    keyring: Keyring,
    mutation: mutations.Mutation,
    data: st.DataObject,
) -> None:
    """If one kind of damage changes the file, it is refused with a reason."""
    damaged = mutation(genuine, picker(data))

    outcome = oracle.read(damaged, keyring)

    assert isinstance(outcome, InvalidLicence) or damaged == genuine


@WIDE
@given(data=st.data())
def test_a_damaged_body_signed_by_the_trusted_key_reads_or_is_refused(
    vendor: Vendor, genuine: bytes, keyring: Keyring, data: st.DataObject
) -> None:
    """If a damaged body is re-signed, the body parser gives a licence or a reason."""
    body = mutations.mutate(
        body_of(genuine), picker(data), data.draw(st.integers(1, 3))
    )

    oracle.read(resign(vendor, body), keyring)


@WIDE
@given(body=BODIES)
def test_a_generated_body_signed_by_the_trusted_key_reads_or_is_refused(
    vendor: Vendor, keyring: Keyring, body: bytes
) -> None:
    """If any TOML body is signed by the trusted key, only a licence or a reason."""
    oracle.read(resign(vendor, body), keyring)


@pytest.mark.parametrize("lookalike", mutations.CONFUSABLE_PRODUCTS)
def test_a_lookalike_product_name_is_refused_even_when_signed(
    vendor: Vendor, keyring: Keyring, lookalike: str
) -> None:
    """If the signed product only looks like 'Assistant', the licence is refused."""
    body = render_body(make_licence()).replace(
        '"Assistant"', toml_text.string(lookalike.replace("\\u0000", "\x00")), 1
    )

    outcome = oracle.read(resign(vendor, body.encode()), keyring)

    assert isinstance(outcome, InvalidLicence)


@pytest.mark.parametrize("product", ["TM", "LUCS"])
def test_another_product_signed_by_the_trusted_key_is_refused(
    vendor: Vendor, keyring: Keyring, product: str
) -> None:
    """If the vendor's own key signed a licence for TM or LUCS, it is refused."""
    data = vendor.sign(make_licence(product=product))

    with pytest.raises(InvalidLicence, match="accepts only 'Assistant'"):
        parse_licence(data, keyring)


NASTY_VALUES = {
    "a 5000-digit number": "1" * 5000,
    "arrays nested 20000 deep": "[" * 20000 + "]" * 20000,
    "inline tables nested 10000 deep": "{a=" * 10000 + "1" + "}" * 10000,
}


@pytest.mark.parametrize("value", NASTY_VALUES.values(), ids=NASTY_VALUES.keys())
def test_a_pathological_signature_block_is_refused_not_crashed(
    genuine: bytes, keyring: Keyring, value: str
) -> None:
    """If the unsigned block holds TOML that Python cannot load, it is refused."""
    block = f'key_id = "vendor-test"\ned25519 = {value}\n'
    data = body_of(genuine) + f"{BEGIN}\n{block}{END}\n".encode()

    oracle.refuse(data, keyring)


@pytest.mark.parametrize("value", NASTY_VALUES.values(), ids=NASTY_VALUES.keys())
def test_a_pathological_signed_body_is_refused_not_crashed(
    vendor: Vendor, keyring: Keyring, value: str
) -> None:
    """If a signed body holds TOML that Python cannot load, it is refused."""
    body = render_body(make_licence()).replace("licensed = 100", f"licensed = {value}")

    oracle.refuse(resign(vendor, body.encode()), keyring)


def test_a_trial_valid_until_the_last_representable_day_is_refused(
    vendor: Vendor, keyring: Keyring
) -> None:
    """If a trial is valid until 9999-12-31, it is refused: its expiry cannot exist."""
    body = render_body(make_trial(date(2027, 1, 31))).replace(
        "valid_until = 2027-01-31", "valid_until = 9999-12-31", 1
    )

    with pytest.raises(InvalidLicence, match="valid_until = 9999-12-31"):
        parse_licence(resign(vendor, body.encode()), keyring)


# -- installing -------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, vendor: Vendor) -> Config:
    """A licence folder with the genuine full licence installed, and its config."""
    root = tmp_path_factory.mktemp("server")
    (root / "etc").mkdir()
    (root / "state").mkdir()
    config = Config(
        licence_file=root / "etc" / "licence.lic",
        keys_dir=vendor.keys_dir,
        state_dir=root / "state",
        timezone="Europe/Zurich",
    )
    config.licence_file.write_bytes(vendor.sign(make_licence()))
    return config


@FAST
@given(data=st.data())
def test_a_damaged_file_never_changes_the_installed_licence(
    server: Config, genuine: bytes, tmp_path: Path, data: st.DataObject
) -> None:
    """If install is given a damaged file, it refuses; the licence stays as it was."""
    before = server.licence_file.read_bytes()
    source = tmp_path / "candidate.lic"
    damaged = mutations.mutate(genuine, picker(data), 2)
    assume(damaged != genuine)
    source.write_bytes(damaged)
    now = datetime(2026, 12, 2, tzinfo=UTC)

    with pytest.raises((InvalidLicence, InstallError)) as refused:
        install(server, source, now=now, force=False, dry_run=False)

    assert server.licence_file.read_bytes() == before
    oracle.check_reason(refused.value)


# -- the configuration ------------------------------------------------------------

CONFIG_TEXTS = st.one_of(
    st.sampled_from(
        [
            "/etc/licensed/licence.lic",
            "relative/path",
            "Europe/Zurich",
            "America",
            "Etc/GMT+5",
            "../../etc/passwd",
            "zone1970.tab",
            "assistant-smd.service",
            "assistant-core.service",
            "auto",
            "debug",
        ]
    ),
    TEXTS,
)
CONFIG_VALUES = st.one_of(
    CONFIG_TEXTS,
    VALUES,
    st.lists(st.integers(-5, 40), max_size=4),
    st.dictionaries(CONFIG_TEXTS, st.one_of(CONFIG_TEXTS, SCALARS), max_size=3),
)
CONFIG_KEYS = st.one_of(
    st.sampled_from([f.name for f in dataclasses.fields(Config)]),
    st.text(max_size=8),
)


@WIDE
@given(document=st.dictionaries(CONFIG_KEYS, CONFIG_VALUES, max_size=8))
def test_any_configuration_document_loads_or_names_its_problem(
    document: dict[str, Any],
) -> None:
    """If any TOML document is the configuration, the outcome is Config or a reason."""
    text = toml_text.dumps(document).encode("utf-8", "surrogatepass")

    oracle.read_config(text.decode("utf-8", "replace"))


@WIDE
@given(text=st.text(max_size=2048))
def test_any_configuration_text_loads_or_names_its_problem(text: str) -> None:
    """If arbitrary text is the configuration, the outcome is Config or a reason."""
    oracle.read_config(text)


@WIDE
@given(data=st.data())
def test_a_damaged_configuration_loads_or_names_its_problem(
    data: st.DataObject,
) -> None:
    """If a real configuration is damaged, the outcome is Config or a reason."""
    text = (
        b'licence_file = "/etc/licensed/licence.lic"\ntimezone = "Europe/Zurich"\n'
        b'check_interval = 60\ntrial_warning_days = [14, 3]\n[components]\n"SMD" = '
        b'"assistant-smd.service"\n[database]\nconninfo = "dbname=assistant"\n'
    )

    damaged = mutations.mutate(text, picker(data), data.draw(st.integers(1, 4)))

    oracle.read_config(damaged.decode("utf-8", "replace"))


PATHOLOGICAL_CONFIGS: dict[str, str] = {
    "a 5000-digit number": f"check_interval = {'1' * 5000}",
    "arrays nested 20000 deep": "trial_warning_days = " + "[" * 20000 + "]" * 20000,
}


@pytest.mark.parametrize(
    "text", PATHOLOGICAL_CONFIGS.values(), ids=PATHOLOGICAL_CONFIGS.keys()
)
def test_a_pathological_configuration_is_refused_not_crashed(text: str) -> None:
    """If the configuration holds TOML Python cannot load, ConfigError says so."""
    with pytest.raises(ConfigError) as refused:
        config_module.parse(text)

    oracle.check_reason(refused.value)


@pytest.mark.parametrize("value", ["nan", "inf", "+inf", "9" * 400, "1e300"])
@pytest.mark.parametrize("key", ["check_interval", "clock_rollback_tolerance"])
def test_a_duration_that_is_not_a_sane_number_is_refused(key: str, value: str) -> None:
    """If a duration is nan, infinite or beyond a float, the config is refused."""
    with pytest.raises(ConfigError, match=key) as refused:
        config_module.parse(f"{key} = {value}\n")

    oracle.check_reason(refused.value)


def test_the_fuzz_oracle_accepts_the_genuine_file(
    genuine: bytes, keyring: Keyring
) -> None:
    """If the genuine file is read, the oracle returns it: the checks can pass."""
    outcome = oracle.read(genuine, keyring)

    assert isinstance(outcome, SignedLicence)
    assert outcome.licence.type is LicenceType.TRIAL
