"""The licence file format: body, signature block and every reason to refuse one.

Files are made the way the vendor makes them (``sign`` with a real Ed25519 key) and
then damaged byte by byte. The properties hold the format to its promises: what is
signed reads back unchanged, any change to the file is refused, and nothing but
``InvalidLicence`` ever comes out of the parser.
"""

from __future__ import annotations

import base64
import dataclasses
import re
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from licensed.errors import InvalidLicence
from licensed.keyring import Keyring
from licensed.licence import (
    General,
    Licence,
    LicenceType,
    Support,
    parse_body,
    render_body,
)
from licensed.licence_file import (
    BEGIN,
    END,
    MAX_BYTES,
    _canonical_block,
    _checked_block,
    parse_licence,
    read_licence_file,
)
from tests.harness.licences import Vendor, make_licence, make_trial

PROPERTY = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
FUZZ = settings(PROPERTY, max_examples=400)


@pytest.fixture(scope="module")
def signed(vendor: Vendor) -> bytes:
    """The file bytes of a valid trial licence."""
    return vendor.sign(make_trial(date(2027, 1, 31)))


# -- strategies -------------------------------------------------------------------

# One line of text as the body allows it: no control characters but tab, no lone
# surrogates (not encodable), quotes, backslashes and any other Unicode welcome.
LINE_CHARACTERS = st.characters(
    blacklist_categories=["Cs"],
    blacklist_characters=[chr(c) for c in range(0x20) if c != 0x09],
)
TEXTS = st.text(LINE_CHARACTERS, min_size=1, max_size=40).filter(str.strip)
TRICKY_TEXTS = st.sampled_from(
    [
        'a "quoted" name',
        "back\\slash",
        "tab\there",
        "Zürich ☎ 日本",
        "del\x7f",
        "'",
    ]
)
FIELD_TEXTS = st.one_of(TEXTS, TRICKY_TEXTS)
SERIALS = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", fullmatch=True)
OFFSETS = st.integers(-23 * 60 - 59, 23 * 60 + 59).map(
    lambda minutes: timezone(timedelta(minutes=minutes))
)
ISSUED = st.builds(
    lambda seconds, zone: datetime.fromtimestamp(seconds, UTC).astimezone(zone),
    st.integers(946_684_800, 4_102_444_799),  # 2000 to 2099, whole seconds
    OFFSETS,
)
DATES = st.dates(date(2000, 1, 1), date(2199, 12, 31))
COUNTS = st.integers(0, 2**40)


@st.composite
def licences(draw: st.DrawFn) -> Licence:
    """Any licence the format can carry."""
    users = draw(COUNTS)
    kind = draw(st.sampled_from(LicenceType))
    components = draw(
        st.dictionaries(FIELD_TEXTS, COUNTS, min_size=1, max_size=5).map(
            lambda table: tuple(table.items())
        )
    )
    return Licence(
        serial=draw(SERIALS),
        issued=draw(ISSUED),
        product="Assistant",
        type=kind,
        valid_until=draw(DATES) if kind is LicenceType.TRIAL else None,
        general=General(*(draw(FIELD_TEXTS) for _ in range(6))),
        components=components,
        support=Support(contract=draw(FIELD_TEXTS), valid_until=draw(DATES)),
        users=users,
        over_licence_limit=users + draw(COUNTS),
    )


# -- helpers ----------------------------------------------------------------------


def rejection(data: bytes, keyring: Keyring) -> str:
    """The reason ``parse_licence`` gives for refusing ``data``."""
    with pytest.raises(InvalidLicence) as caught:
        parse_licence(data, keyring)
    return str(caught.value)


def body_of(data: bytes) -> bytes:
    return data[: data.index(BEGIN.encode())]


def resign(vendor: Vendor, body: str) -> bytes:
    """A file whose (hand-written) ``body`` the trusted key really signed."""
    encoded = body.encode("utf-8")
    signature = base64.b64encode(vendor.private_key.sign(encoded)).decode()
    block = f'{BEGIN}\nkey_id = "{vendor.key_id}"\ned25519 = "{signature}"\n{END}\n'
    return encoded + block.encode()


def edited_body(licence: Licence, edit: Callable[[str], str]) -> str:
    """The canonical body of ``licence`` with ``edit`` applied to its text."""
    body = render_body(licence)
    changed = edit(body)
    assert changed != body, "the edit did not apply"
    return changed


def replace_line(key: str, line: str) -> Callable[[str], str]:
    """An edit that replaces the first ``key = ...`` line with ``line``."""
    pattern = re.compile(rf"^{re.escape(key)} = .*$", re.MULTILINE)
    return lambda body: pattern.sub(line.replace("\\", "\\\\"), body, count=1)


def drop_line(key: str) -> Callable[[str], str]:
    pattern = re.compile(rf"^{re.escape(key)} = .*\n", re.MULTILINE)
    return lambda body: pattern.sub("", body, count=1)


def single_byte_changes(data: bytes) -> Iterator[tuple[int, int]]:
    """Every position, each with a few replacement bytes likely to slip through.

    Whitespace swaps, a low bit flipped (base64 padding bits), and case.
    """
    for index, old in enumerate(data):
        for new in {old ^ 0x01, old ^ 0x02, old ^ 0x20, 0x20, 0x09, 0x0A, 0x0D}:
            if new != old:
                yield index, new


# -- round trip -------------------------------------------------------------------


def test_a_signed_licence_reads_back_equal(vendor: Vendor, keyring: Keyring) -> None:
    """If the vendor signs a licence, parsing the file gives the same licence."""
    licence = make_trial(date(2027, 1, 31))

    result = parse_licence(vendor.sign(licence), keyring)

    assert result.licence == licence
    assert result.key_id == vendor.key_id


def test_the_file_is_readable_text_with_the_documented_block(signed: bytes) -> None:
    """If a licence is signed, the file is body text then the four-line block."""
    text = signed.decode("utf-8")

    lines = text.splitlines()

    assert lines[-4] == BEGIN
    assert lines[-3] == 'key_id = "vendor-test"'
    assert re.fullmatch(r'ed25519 = "[A-Za-z0-9+/]{86}=="', lines[-2])
    assert lines[-1] == END
    assert text.endswith(END + "\n")
    assert 'serial = "AST-T001"' in text


@PROPERTY
@given(licence=licences())
def test_any_licence_round_trips_through_a_signed_file(
    vendor: Vendor, keyring: Keyring, licence: Licence
) -> None:
    """If any licence within the rules is signed, it reads back equal."""
    data = vendor.sign(licence)

    result = parse_licence(data, keyring)

    assert result.licence == licence
    assert result.data == data


@PROPERTY
@given(licence=licences())
def test_rendering_is_canonical(licence: Licence) -> None:
    """If a body is parsed and rendered again, the text is the same."""
    body = render_body(licence)

    again = render_body(parse_body(body.encode("utf-8")))

    assert again == body


def test_a_licence_file_is_read_from_disk(vendor: Vendor, tmp_path: Path) -> None:
    """If a .lic file holds a signed licence, read_licence_file returns it."""
    licence = make_licence()
    path = vendor.write(licence, tmp_path / "acme.lic")

    result = read_licence_file(path, vendor.keyring)

    assert result.licence == licence


# -- any change is refused --------------------------------------------------------


def test_every_single_byte_change_is_refused(signed: bytes, keyring: Keyring) -> None:
    """If any one byte of the file is changed, the file is refused."""
    accepted = []

    for index, new in single_byte_changes(signed):
        damaged = signed[:index] + bytes([new]) + signed[index + 1 :]
        try:
            parse_licence(damaged, keyring)
        except InvalidLicence:
            continue
        accepted.append((index, chr(signed[index]), chr(new)))

    assert accepted == []


@FUZZ
@given(data=st.data())
def test_a_random_byte_change_anywhere_is_refused(
    signed: bytes, keyring: Keyring, data: st.DataObject
) -> None:
    """If a random byte anywhere is replaced, InvalidLicence and nothing else."""
    index = data.draw(st.integers(0, len(signed) - 1))
    new = data.draw(st.integers(0, 255).filter(lambda b: b != signed[index]))
    damaged = signed[:index] + bytes([new]) + signed[index + 1 :]

    with pytest.raises(InvalidLicence):
        parse_licence(damaged, keyring)


def test_truncation_at_any_offset_is_refused(signed: bytes, keyring: Keyring) -> None:
    """If the file is cut short anywhere, even by its last newline, it is refused."""
    accepted = []

    for length in range(len(signed)):
        try:
            parse_licence(signed[:length], keyring)
        except InvalidLicence:
            continue
        accepted.append(length)

    assert accepted == []


def test_a_signature_with_other_padding_bits_is_refused(
    signed: bytes, keyring: Keyring
) -> None:
    """If the base64 signature is re-spelt with other unused bits, it is refused."""
    text = signed.decode()
    encoded = re.search(r'ed25519 = "([^"]+)"', text)
    assert encoded is not None
    value = encoded.group(1)
    # 64 bytes fill 85⅓ base64 digits: the 86th carries 2 unused bits.
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    last = alphabet.index(value[85])
    respelt = value[:85] + alphabet[last ^ 0x01] + value[86:]
    assert base64.b64decode(respelt) == base64.b64decode(value)

    reason = rejection(text.replace(value, respelt).encode(), keyring)

    assert "signature" in reason


@pytest.mark.parametrize(
    "edit",
    [
        pytest.param(lambda t: t.replace("key_id = ", "key_id\t= "), id="tab"),
        pytest.param(lambda t: t.replace("key_id = ", "key_id  = "), id="spaces"),
        pytest.param(lambda t: t.replace('"vendor-test"', "'vendor-test'"), id="quote"),
        pytest.param(
            lambda t: t.replace(f"{BEGIN}\n", f"{BEGIN}\n# note\n"), id="comment"
        ),
        pytest.param(lambda t: t + "\n", id="extra-newline"),
        pytest.param(lambda t: t[:-1] + " \n", id="trailing-space"),
        pytest.param(lambda t: t[:-1], id="no-final-newline"),
    ],
)
def test_a_reformatted_signature_block_is_refused(
    signed: bytes, keyring: Keyring, edit: Callable[[str], str]
) -> None:
    """If the block is re-spelt in other valid TOML or whitespace, it is refused."""
    damaged = edit(signed.decode()).encode()

    reason = rejection(damaged, keyring)

    assert "signature" in reason or END in reason


BLOCK_KEY_IDS = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}", fullmatch=True)


@st.composite
def blocks(draw: st.DrawFn) -> bytes:
    """Canonical signature blocks, and blocks one small edit away from one."""
    signature = base64.b64encode(draw(st.binary(min_size=64, max_size=64)))
    block = b'key_id = "' + draw(BLOCK_KEY_IDS).encode() + b'"\ned25519 = "'
    block += signature + b'"\n'
    if draw(st.booleans()):
        at = draw(st.integers(0, len(block)))
        cut = draw(st.integers(0, 2))
        block = block[:at] + draw(st.binary(max_size=3)) + block[at + cut :]
    return block


@given(blocks())
@settings(max_examples=2000)
def test_the_fast_block_reading_accepts_only_what_the_full_checks_accept(
    block: bytes,
) -> None:
    """If a block is near-canonical, the shortcut and the full checks agree on it.

    Both refuse it, or both read the same key id and signature.
    """
    fast = _canonical_block(block)
    try:
        checked = _checked_block(block)
    except InvalidLicence:
        assert fast is None
    else:
        assert fast == checked


# -- each reason is named ---------------------------------------------------------


def test_an_empty_file_is_refused_as_empty(keyring: Keyring) -> None:
    """If the file is empty or blank, the reason says it is empty."""
    for data in (b"", b"\n  \n"):
        assert "empty" in rejection(data, keyring)


def test_a_file_with_a_nul_byte_is_not_text(signed: bytes, keyring: Keyring) -> None:
    """If the file holds a NUL byte, the reason says it is not a text file."""
    reason = rejection(signed[:10] + b"\x00" + signed[10:], keyring)

    assert "not a text file" in reason
    assert "0x00" in reason


def test_a_binary_file_is_not_text(keyring: Keyring) -> None:
    """If the file is binary (a PNG header), the reason says it is not text."""
    reason = rejection(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR", keyring)

    assert "not a text file" in reason


def test_invalid_utf8_is_named(signed: bytes, keyring: Keyring) -> None:
    """If the file is not UTF-8 (Latin-1 umlaut), the reason names the byte."""
    reason = rejection(signed.replace(b"ACME Corp", b"ACME K\xf6rp"), keyring)

    assert "not UTF-8" in reason
    assert "0xf6" in reason


def test_a_body_without_signature_block_is_refused(
    signed: bytes, keyring: Keyring
) -> None:
    """If the signature block is missing, the reason names the BEGIN line."""
    reason = rejection(body_of(signed), keyring)

    assert "signature block" in reason
    assert BEGIN in reason


def test_two_signature_blocks_are_refused(signed: bytes, keyring: Keyring) -> None:
    """If the file holds two signature blocks, the reason says so."""
    block = signed[len(body_of(signed)) :]

    reason = rejection(signed + block, keyring)

    assert "signature block" in reason
    assert "two" in reason or "more than one" in reason


def test_a_block_without_end_line_is_truncated(signed: bytes, keyring: Keyring) -> None:
    """If the END line is missing, the reason says the file is truncated."""
    reason = rejection(signed.replace(END.encode(), b""), keyring)

    assert END in reason
    assert "truncated" in reason


def test_text_after_the_end_line_is_refused(signed: bytes, keyring: Keyring) -> None:
    """If text follows the END line, the reason says so."""
    reason = rejection(signed + b"-- \nSent from my phone\n", keyring)

    assert "after" in reason
    assert END in reason


def test_bad_base64_is_named(signed: bytes, keyring: Keyring) -> None:
    """If the signature is not base64, the reason says so."""
    damaged = re.sub(rb'ed25519 = "[^"]+"', b'ed25519 = "not*base64!"', signed)

    assert "base64" in rejection(damaged, keyring)


def test_non_ascii_in_the_signature_is_bad_base64(
    signed: bytes, keyring: Keyring
) -> None:
    """If the signature holds an escaped non-ASCII letter, it is refused as base64."""
    damaged = re.sub(rb'ed25519 = "[^"]+"', rb'ed25519 = "\\u00e9AAA"', signed)

    assert "base64" in rejection(damaged, keyring)


def test_a_short_signature_names_its_length(signed: bytes, keyring: Keyring) -> None:
    """If the signature decodes to 63 bytes, the reason names both lengths."""
    short = base64.b64encode(bytes(63)).decode()
    damaged = re.sub(rb'ed25519 = "[^"]+"', f'ed25519 = "{short}"'.encode(), signed)

    reason = rejection(damaged, keyring)

    assert "63 bytes" in reason
    assert "64" in reason


def test_an_unknown_key_id_is_named(signed: bytes, keyring: Keyring) -> None:
    """If the block names a key the keyring lacks, the reason names it and the fix."""
    damaged = signed.replace(b'"vendor-test"', b'"vendor-1999"')

    reason = rejection(damaged, keyring)

    assert "'vendor-1999'" in reason
    assert "not trusted" in reason
    assert "vendor-test" in reason


def test_a_malformed_key_id_is_named(signed: bytes, keyring: Keyring) -> None:
    """If the key id has a slash in it, the reason says it is malformed."""
    damaged = signed.replace(b'"vendor-test"', b'"../etc/key"')

    reason = rejection(damaged, keyring)

    assert "key_id" in reason
    assert "malformed" in reason


def test_a_licence_signed_by_another_key_is_refused(
    signed: bytes, tmp_path: Path
) -> None:
    """If another key with the same id signed the file, the signature fails."""
    impostor = Vendor(tmp_path / "other-keys")

    reason = rejection(signed, impostor.keyring)

    assert "signature does not match" in reason


def test_a_changed_body_fails_the_signature(signed: bytes, keyring: Keyring) -> None:
    """If the user count is raised after signing, the signature no longer matches."""
    damaged = signed.replace(b"licensed = 100", b"licensed = 900")

    reason = rejection(damaged, keyring)

    assert "signature does not match" in reason
    assert "changed" in reason


@pytest.mark.parametrize("product", ["TM", "LUCS"])
def test_a_licence_for_another_product_is_refused(
    vendor: Vendor, keyring: Keyring, product: str
) -> None:
    """If the vendor's licence is for TM or LUCS, the reason names the product."""
    data = vendor.sign(make_licence(product=product))

    reason = rejection(data, keyring)

    assert f"{product!r}" in reason
    assert "'Assistant'" in reason


@pytest.mark.parametrize(
    ("edit", "words"),
    [
        (replace_line("format", "format = 2"), ["format version 2", "upgrade"]),
        (replace_line("format", 'format = "1"'), ["format version '1'"]),
        (replace_line("format", "format = true"), ["format version True"]),
        (drop_line("format"), ["missing field 'format'"]),
        (
            replace_line("type", 'type = "full"'),
            ["full licence never expires", "2027-01-31"],
        ),
        (drop_line("valid_until"), ["trial licence needs 'valid_until'"]),
        (
            replace_line("type", 'type = "perpetual"'),
            ["'perpetual'", "'full' or 'trial'"],
        ),
        (
            replace_line("valid_until", "valid_until = 2027-01-31T00:00:00"),
            ["'valid_until'", "must be a date"],
        ),
        (drop_line("serial"), ["missing field 'serial'"]),
        (drop_line("issued"), ["missing field 'issued'"]),
        (drop_line("product"), ["missing field 'product'"]),
        (drop_line("type"), ["missing field 'type'"]),
        (drop_line("company"), ["missing field 'company'", "[general]"]),
        (drop_line("contact_person"), ["missing field 'contact_person'"]),
        (drop_line("contract"), ["missing field 'contract'", "[support]"]),
        (drop_line("over_licence_limit"), ["missing field 'over_licence_limit'"]),
        (drop_line("licensed"), ["missing field 'licensed'", "[users]"]),
        (
            lambda body: body.replace("[general]", "color = 'blue'\n\n[general]"),
            ["unknown field 'color'", "the licence"],
        ),
        (
            lambda body: body.replace("[users]\n", "[users]\nguests = 5\n"),
            ["unknown field 'guests'", "[users]"],
        ),
        (
            lambda body: body.replace("[general]\n", "[general]\nfax = 'x'\n"),
            ["unknown field 'fax'", "[general]"],
        ),
        (
            lambda body: body.replace("[support]\n", "[support]\nlevel = 3\n"),
            ["unknown field 'level'", "[support]"],
        ),
        (
            replace_line("over_licence_limit", "over_licence_limit = 99"),
            ["over_licence_limit = 99", "below", "licensed = 100"],
        ),
        (
            replace_line("licensed", "licensed = true"),
            ["'licensed'", "whole number", "True"],
        ),
        (
            replace_line("licensed", "licensed = 100.0"),
            ["'licensed'", "whole number", "100.0"],
        ),
        (
            replace_line('"SMD"', '"SMD" = false'),
            ["'SMD'", "[components]", "whole number"],
        ),
        (
            replace_line("licensed", "licensed = -1"),
            ["'licensed'", "at least 0", "-1"],
        ),
        (
            replace_line('"Core"', '"Core" = -2'),
            ["'Core'", "at least 0", "-2"],
        ),
        (
            replace_line("serial", 'serial = "AST 0001/x"'),
            ["serial 'AST 0001/x' is malformed"],
        ),
        (
            replace_line("serial", 'serial = "-AST"'),
            ["serial '-AST' is malformed", "starting with a letter or digit"],
        ),
        (
            replace_line("issued", "issued = 2026-12-01T09:00:00"),
            ["'issued'", "with offset"],
        ),
        (
            replace_line("company", 'company = "  "'),
            ["'company'", "empty"],
        ),
        (
            replace_line("company", 'company = "two\\nlines"'),
            ["'company'", "one line"],
        ),
        (
            replace_line("company", f'company = "{"x" * 257}"'),
            ["'company'", "256 characters"],
        ),
        (
            lambda body: re.sub(r'^"[^"]+" = \d+\n', "", body, flags=re.MULTILINE),
            ["[components] is empty"],
        ),
        (
            lambda body: body.replace("\n[support]\n", "\n[nope]\n"),
            ["unknown field 'nope'"],
        ),
        (
            lambda body: body + "licensed = 3\n",
            ["not valid licence text"],
        ),
    ],
)
def test_each_body_problem_is_named(
    vendor: Vendor, keyring: Keyring, edit: Callable[[str], str], words: list[str]
) -> None:
    """If a correctly signed body breaks a rule, the reason names the rule."""
    data = resign(vendor, edited_body(make_trial(date(2027, 1, 31)), edit))

    reason = rejection(data, keyring)

    for word in words:
        assert word in reason


REQUIRED_FIELDS = [
    (None, "format"),
    (None, "serial"),
    (None, "issued"),
    (None, "product"),
    (None, "type"),
    *(("general", key) for key in General.__dataclass_fields__),
    ("support", "contract"),
    ("support", "valid_until"),
    ("users", "licensed"),
    ("users", "over_licence_limit"),
]


def without_field(body: str, section: str | None, key: str) -> str:
    """``body`` without the line of ``key`` in ``section`` (None: the top level)."""
    lines, current = [], None
    for line in body.splitlines(keepends=True):
        if line.startswith("["):
            current = line.strip()[1:-1]
        if current == section and line.startswith(f"{key} = "):
            continue
        lines.append(line)
    assert len(lines) == body.count("\n") - 1, f"{key} not found in [{section}]"
    return "".join(lines)


@pytest.mark.parametrize(("section", "key"), REQUIRED_FIELDS)
def test_each_missing_required_field_is_named(
    vendor: Vendor, keyring: Keyring, section: str | None, key: str
) -> None:
    """If any required field is left out, the reason names the field (and table)."""
    body = without_field(render_body(make_trial(date(2027, 1, 31))), section, key)

    reason = rejection(resign(vendor, body), keyring)

    assert f"missing field {key!r}" in reason
    if section is not None:
        assert f"[{section}]" in reason


def test_a_section_that_is_a_value_is_named(vendor: Vendor, keyring: Keyring) -> None:
    """If [users] is a plain value, the reason says it must be a section."""
    body = render_body(make_licence()).split("[users]")[0]
    body = body.replace("[general]", "users = 5\n\n[general]")

    reason = rejection(resign(vendor, body), keyring)

    assert "[users] must be a section" in reason


def test_a_missing_section_is_named(vendor: Vendor, keyring: Keyring) -> None:
    """If [support] is missing, the reason names the section."""
    body = re.sub(r"\[support\]\n(.*\n)*?\n", "", render_body(make_licence()))

    reason = rejection(resign(vendor, body), keyring)

    assert "missing section [support]" in reason


def test_a_full_licence_needs_no_valid_until(vendor: Vendor, keyring: Keyring) -> None:
    """If a full licence has no valid_until, it is accepted."""
    licence = make_licence()

    result = parse_licence(vendor.sign(licence), keyring)

    assert result.licence.valid_until is None
    assert result.licence.type is LicenceType.FULL


def test_escalation_equal_to_users_is_accepted(
    vendor: Vendor, keyring: Keyring
) -> None:
    """If over_licence_limit equals licensed, the licence is valid."""
    licence = make_licence(users=50, over_licence_limit=50)

    assert parse_licence(vendor.sign(licence), keyring).licence == licence


def test_inconsistent_licences_cannot_even_be_built() -> None:
    """If code builds an inconsistent Licence, the constructor refuses it."""
    base = make_licence()

    with pytest.raises(InvalidLicence, match="below"):
        dataclasses.replace(base, over_licence_limit=base.users - 1)
    with pytest.raises(InvalidLicence, match="needs 'valid_until'"):
        dataclasses.replace(base, type=LicenceType.TRIAL)
    with pytest.raises(InvalidLicence, match="never expires"):
        dataclasses.replace(base, valid_until=date(2027, 1, 1))
    with pytest.raises(InvalidLicence, match="empty"):
        dataclasses.replace(base, components=())


# -- reading files ----------------------------------------------------------------


def test_a_file_not_named_lic_is_refused(signed: bytes, tmp_path: Path) -> None:
    """If the file name does not end in .lic, the reason names the file."""
    path = tmp_path / "acme.txt"
    path.write_bytes(signed)

    with pytest.raises(InvalidLicence, match=r"'acme\.txt'.*'\.lic'"):
        read_licence_file(path, Keyring(tmp_path, {}))


def test_a_missing_file_is_named(tmp_path: Path, keyring: Keyring) -> None:
    """If the file does not exist, the reason names it."""
    with pytest.raises(InvalidLicence, match="does not exist"):
        read_licence_file(tmp_path / "gone.lic", keyring)


def test_a_folder_is_not_a_licence(tmp_path: Path, keyring: Keyring) -> None:
    """If the path is a folder, the reason says it is not a regular file."""
    folder = tmp_path / "folder.lic"
    folder.mkdir()

    with pytest.raises(InvalidLicence, match="not a regular file"):
        read_licence_file(folder, keyring)


def test_an_oversized_file_is_refused_unread(tmp_path: Path, keyring: Keyring) -> None:
    """If the file is larger than the limit, the reason names the limit."""
    path = tmp_path / "huge.lic"
    with path.open("wb") as handle:
        handle.truncate(MAX_BYTES + 1)

    with pytest.raises(InvalidLicence, match="larger than 64 KiB"):
        read_licence_file(path, keyring)


# -- nothing but InvalidLicence ---------------------------------------------------


@FUZZ
@given(data=st.binary(max_size=2048))
def test_arbitrary_bytes_raise_only_invalid_licence(
    keyring: Keyring, data: bytes
) -> None:
    """If arbitrary bytes are parsed, the only outcome is InvalidLicence."""
    with pytest.raises(InvalidLicence):
        parse_licence(data, keyring)


@FUZZ
@given(tail=st.text(max_size=300))
def test_arbitrary_signature_blocks_raise_only_invalid_licence(
    signed: bytes, keyring: Keyring, tail: str
) -> None:
    """If the text after a real body is arbitrary, only InvalidLicence comes out."""
    data = body_of(signed) + f"{BEGIN}\n{tail}".encode("utf-8", "surrogatepass")

    with pytest.raises(InvalidLicence):
        parse_licence(data, keyring)


@FUZZ
@given(
    lines=st.lists(
        st.sampled_from(
            [
                'key_id = "vendor-test"',
                'ed25519 = "AAAA"',
                f'ed25519 = "{base64.b64encode(bytes(64)).decode()}"',
                'ed25519 = "\\u00e9"',
                "ed25519 = 12",
                "key_id = 1",
                "[x]",
                "key_id = []",
                '"" = ""',
                "# comment",
                "",
            ]
        ),
        max_size=5,
    )
)
def test_near_miss_signature_blocks_raise_only_invalid_licence(
    signed: bytes, keyring: Keyring, lines: list[str]
) -> None:
    """If the block mixes plausible lines, the only outcome is InvalidLicence."""
    block = "".join(f"{line}\n" for line in lines)
    data = body_of(signed) + f"{BEGIN}\n{block}{END}\n".encode()

    with pytest.raises(InvalidLicence):
        parse_licence(data, keyring)


@FUZZ
@given(body=st.binary(max_size=1024))
def test_arbitrary_bodies_raise_only_invalid_licence(body: bytes) -> None:
    """If arbitrary bytes are parsed as a body, the only outcome is InvalidLicence."""
    with pytest.raises(InvalidLicence):
        parse_body(body)


@pytest.mark.parametrize(
    "issued",
    ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00"],
)
def test_an_issued_time_out_of_range_is_invalid(vendor: Vendor, issued: str) -> None:
    """If 'issued' cannot be expressed in UTC, the body is refused, not crashed."""
    body = edited_body(make_licence(), replace_line("issued", f"issued = {issued}"))

    with pytest.raises(InvalidLicence, match="'issued'"):
        parse_body(body.encode())
