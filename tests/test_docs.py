"""The reference documentation says what the code does.

Examples in ``docs/`` are checked against the code that owns their subject: the
licence file on the page verifies with the key on the page, the quoted refusals
are what the reader says for each damage, the expiry table is what the rule
computes, the status document validates against the shipped schema and is the
decision the example licence leads to, every schema field and message id is
described, and every glossary term is a word the project uses.
"""

from __future__ import annotations

import base64
import json
import re
import tomllib
from collections.abc import Callable, Iterator
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import jsonschema
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from licensed import messages, status
from licensed.config import Config, Database
from licensed.decision import Missing, Rejected, State, evaluate
from licensed.enforcer import SETTLE_SECONDS
from licensed.errors import InvalidLicence
from licensed.expiry import expiry_instant
from licensed.keyring import Keyring
from licensed.licence import Licence, parse_body
from licensed.licence_file import (
    BEGIN,
    MAX_BYTES,
    parse_licence,
    read_licence_file,
    split,
)
from licensed.messages import Audience
from tests.harness.cli import run
from tests.harness.licences import make_trial

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
LICENCE_DOC = DOCS / "licence-file.md"
STATUS_DOC = DOCS / "status-file.md"
GLOSSARY = DOCS / "glossary.md"
CHANGELOG = ROOT / "CHANGELOG.md"
OWN_DOCS = (LICENCE_DOC, STATUS_DOC, GLOSSARY)
PREFIX = "Invalid Licence File: "


# Reading the pages.


def fenced(path: Path, language: str) -> list[str]:
    """The contents of the ``language`` code blocks of ``path``, in order."""
    pattern = rf"^```{re.escape(language)}\n(.*?)^```$"
    return re.findall(pattern, path.read_text(), flags=re.MULTILINE | re.DOTALL)


def block_with(path: Path, language: str, needle: str) -> str:
    """The first ``language`` block of ``path`` that contains ``needle``."""
    found = [block for block in fenced(path, language) if needle in block]
    assert found, f"no {language} block with {needle!r} in {path.name}"
    return found[0]


def table_rows(path: Path, header: str) -> list[list[str]]:
    """The cells of the Markdown table whose header line starts with ``header``."""
    lines = path.read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header))
    rows = []
    for line in lines[start + 2 :]:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip("|").split(" | ")])
    return rows


def unquote(cell: str) -> str:
    return cell.strip().strip("`")


# The example licence and its key.


def example_licence_bytes() -> bytes:
    return block_with(LICENCE_DOC, "toml", BEGIN).encode("utf-8")


def example_keyring() -> Keyring:
    pem = block_with(LICENCE_DOC, "text", "BEGIN PUBLIC KEY").encode("ascii")
    key = serialization.load_pem_public_key(pem)
    assert isinstance(key, Ed25519PublicKey)
    return Keyring(folder=Path("/etc/licensed/keys"), keys={"vendor-2026": key})


def example_licence() -> Licence:
    return parse_licence(example_licence_bytes(), example_keyring()).licence


def test_the_example_licence_file_verifies_with_the_example_key() -> None:
    """If the page's licence file is read with the page's key, it is valid."""
    data = example_licence_bytes()

    signed = parse_licence(data, example_keyring())

    assert signed.key_id == "vendor-2026"
    assert signed.licence.serial == "AST-20261203-0a1b2c3d"
    assert signed.licence.is_trial
    assert f"({len(data)} bytes)" in LICENCE_DOC.read_text()


def test_the_example_request_file_issues_the_full_licence_shown(
    tmp_path: Path,
) -> None:
    """If the page's request file is issued, the body starts as the page shows."""
    request = tmp_path / "acme.toml"
    request.write_text(block_with(LICENCE_DOC, "toml", 'type = "full"\nserial'))
    shown = block_with(LICENCE_DOC, "toml", "\n...\n").split("\n...\n")[0]
    run("licensed-vendor", "keygen", "--key-id", "vendor-2026", "--out", tmp_path)

    result = run(
        "licensed-vendor",
        *("issue", "--key", tmp_path / "vendor-2026.key"),
        *("--out", tmp_path / "acme-full.lic", "--request", request),
    )

    assert result.code == 0, result.stderr
    body, _, _ = split((tmp_path / "acme-full.lic").read_bytes())
    assert shown in body.decode()
    assert parse_body(body).valid_until is None


# Every refusal quoted on the page, reproduced.


def _resign(body: bytes, key: Ed25519PrivateKey) -> bytes:
    signature = base64.b64encode(key.sign(body)).decode("ascii")
    block = f'{BEGIN}\nkey_id = "vendor-2026"\ned25519 = "{signature}"\n'
    return body + block.encode() + b"-----END LICENCE SIGNATURE-----\n"


def _body(data: bytes) -> bytes:
    return split(data)[0]


_FILE_DAMAGE: dict[str, Callable[[bytes], bytes]] = {
    "a body character": lambda d: d.replace(b"licensed = 60", b"licensed = 61"),
    "CR LF": lambda d: d.replace(b"\n", b"\r\n"),
    "cut short": lambda d: d[:400],
    "an empty line": lambda d: d + b"\n",
    "block spacing": lambda d: d.replace(b"ed25519 = ", b"ed25519  = "),
    "two licences": lambda d: d + d,
    "empty": lambda d: b"",
}

_BODY_CHANGES: dict[str, tuple[bytes, bytes]] = {
    "format 2": (b"format = 1", b"format = 2"),
    "trial without date": (b"valid_until = 2026-12-13\n", b""),
    "full with date": (
        b'type = "trial"\nvalid_until = 2026-12-13',
        b'type = "full"\nvalid_until = 2027-01-31',
    ),
    "limit below licensed": (
        b"licensed = 60\nover_licence_limit = 75",
        b"licensed = 50\nover_licence_limit = 40",
    ),
    "serial": (b'"AST-20261203-0a1b2c3d"', b'"AST 2026/1"'),
    "type": (b'type = "trial"', b'type = "demo"'),
    "unknown field": (b"[users]\n", b"[users]\nseats = 3\n"),
    "date as text": (b"valid_until = 2026-12-13\n", b'valid_until = "2027-01-31"\n'),
    "last date": (b"valid_until = 2026-12-13\n", b"valid_until = 9999-12-31\n"),
    "no components": (b'"SMD" = 1\n"Core" = 1\n"Core SfB" = 1\n', b""),
    "empty company": (b'company = "ACME Corp"', b'company = ""'),
    "other product": (b'product = "Assistant"', b'product = "TM"'),
}


def _refusal(read: Callable[[], object]) -> str:
    with pytest.raises(InvalidLicence) as caught:
        read()
    return PREFIX + str(caught.value)


def _reason_for(data: bytes, keyring: Keyring) -> str:
    return _refusal(lambda: parse_licence(data, keyring))


def _refusals(tmp_path: Path) -> Iterator[str]:
    data = example_licence_bytes()
    keyring = example_keyring()
    for damage in _FILE_DAMAGE.values():
        yield _reason_for(damage(data), keyring)

    other = Keyring(
        folder=keyring.folder,
        keys={"vendor-2027": Ed25519PrivateKey.generate().public_key()},
    )
    yield _refusal(lambda: parse_licence(data, other))
    renamed = tmp_path / "acme.txt"
    renamed.write_bytes(data)
    yield _refusal(lambda: read_licence_file(renamed, keyring))

    key = Ed25519PrivateKey.generate()
    resigning = Keyring(folder=keyring.folder, keys={"vendor-2026": key.public_key()})
    for old, new in _BODY_CHANGES.values():
        changed = _resign(_body(data).replace(old, new, 1), key)
        yield _reason_for(changed, resigning)


def test_every_refusal_quoted_is_what_the_reader_says(tmp_path: Path) -> None:
    """If a file is damaged as the page says, the page quotes the reason given."""
    quoted = set(
        re.findall(r"`(Invalid Licence File: [^`\n]+)`", LICENCE_DOC.read_text())
    )

    produced = set(_refusals(tmp_path))

    assert produced == quoted, (sorted(produced - quoted), sorted(quoted - produced))


# The expiry rule.


def test_the_expiry_examples_are_what_the_rule_computes() -> None:
    """If the rule is asked for each worked example, it gives the table's instant."""
    rows = table_rows(LICENCE_DOC, "| zone |")

    for zone, valid_until, local, utc, _ in rows:
        instant = expiry_instant(date.fromisoformat(valid_until), ZoneInfo(zone))

        assert instant.isoformat() == local, zone
        # In UTC: an instant inside a fold never equals one of another zone.
        assert datetime.fromisoformat(utc) == instant.astimezone(UTC), zone
    assert {"Europe/Zurich", "America/Havana"} <= {row[0] for row in rows}


# The status document.


def example_status() -> dict[str, Any]:
    document: dict[str, Any] = json.loads(fenced(STATUS_DOC, "json")[0])
    return document


def test_the_example_status_document_validates_against_the_schema() -> None:
    """If the page's status document is checked, the shipped schema accepts it."""
    document = example_status()

    validator = jsonschema.Draft202012Validator(
        status.schema(), format_checker=jsonschema.FormatChecker()
    )

    assert list(validator.iter_errors(document)) == []


def test_the_example_status_is_the_decision_for_the_example_licence() -> None:
    """If the example licence is evaluated as the example says, it decides alike."""
    document = example_status()
    licence = example_licence()

    decision = evaluate(
        licence,
        datetime.fromisoformat(document["checked_at"]),
        ZoneInfo(document["timezone"]),
        users=document["users"]["actual"],
    )

    assert document["state"] == decision.state.value
    assert document["reason"] == decision.reason
    assert decision.expires_at is not None
    assert document["expires_at"] == decision.expires_at.isoformat()
    assert document["messages"] == [status.message_view(m) for m in decision.messages]
    assert document["licence"] == status.licence_view(licence, "vendor-2026")


def test_the_python_reader_shows_administrators_every_message(
    tmp_path: Path,
) -> None:
    """If the example is read with read_status, audiences filter as described."""
    path = tmp_path / "status.json"
    path.write_bytes(status.encode(example_status()))

    read = status.read_status(path)

    assert read.licensed
    assert [m.id for m in read.messages_for(Audience.EVERYONE)] == [
        "users_over_licence"
    ]
    assert len(read.messages_for(Audience.ADMINISTRATORS)) == 3


def _schema_paths(node: dict[str, Any], defs: dict[str, Any], prefix: str) -> set[str]:
    node = _resolve(node, defs)
    paths = set()
    for name, property_node in node.get("properties", {}).items():
        path = f"{prefix}{name}"
        paths.add(path)
        child = _resolve(property_node, defs)
        if "items" in child:
            paths |= _schema_paths(child["items"], defs, f"{path}[].")
        else:
            paths |= _schema_paths(child, defs, f"{path}.")
    return paths


def _resolve(node: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in node:
        return _resolve(defs[node["$ref"].rsplit("/", 1)[1]], defs)
    for choice in node.get("oneOf", []):
        if "$ref" in choice:
            return _resolve(choice, defs)
    return node


def _enum_values(node: object) -> set[str]:
    if isinstance(node, dict):
        found = {str(v) for v in node.get("enum", [])}
        for child in node.values():
            found |= _enum_values(child)
        return found
    found = set()
    if isinstance(node, list):
        for child in node:
            found |= _enum_values(child)
    return found


def test_every_field_of_the_schema_is_described() -> None:
    """If the schema has a field, the page names it by its full path."""
    schema = status.schema()
    text = STATUS_DOC.read_text()

    paths = _schema_paths(schema, schema["$defs"], "")

    assert "users.actual" in paths
    assert "licence.general.license_type" in paths
    assert "components[].load_state" in paths
    assert sorted(p for p in paths if f"`{p}`" not in text) == []


def test_every_enumerated_value_of_the_schema_is_described() -> None:
    """If the schema allows a value (a state, an audience ...), the page names it."""
    text = STATUS_DOC.read_text()

    values = _enum_values(status.schema())

    assert {"licensed", "masked", "administrators", "database"} <= values
    assert sorted(v for v in values if f"`{v}`" not in text) == []


def _message_ids_of_the_code() -> set[str]:
    source = (ROOT / "licensed" / "messages.py").read_text()
    literal = set(re.findall(r'Message\(\s*"(\w+)"', source))
    expired = make_trial(date(2026, 1, 31))
    after = datetime.fromisoformat("2026-03-01T12:00:00+01:00")
    zone = ZoneInfo("Europe/Zurich")
    ended = {
        message.id
        for reading in (Missing(), Rejected("damaged"), expired)
        for message in evaluate(reading, after, zone).messages
    }
    return literal | ended


def test_every_message_id_the_code_can_produce_is_listed() -> None:
    """If the code can publish a message id, the page's table lists it, and no more."""
    listed = {unquote(row[0]) for row in table_rows(STATUS_DOC, "| id | audience |")}

    ids = _message_ids_of_the_code()

    assert {"licence_expired", "licence_missing", "licence_invalid"} <= ids
    assert {"users_over_licence", "support_ended"} <= ids
    assert listed == ids


def test_the_message_texts_listed_are_the_codes() -> None:
    """If the page lists a message text, the code produces it verbatim."""
    rows = {
        unquote(row[0]): row[3] for row in table_rows(STATUS_DOC, "| id | audience |")
    }
    over = messages.users_over_limit(60, 80, Audience.EVERYONE).text

    expected = {
        "licence_expired": messages.EXPIRED_TEXT,
        "users_over_licence": "`<br>`".join(over.split("\n")),
        "support_ended": messages.support_ended(date(2026, 12, 31)).text,
    }

    for message_id, text in expected.items():
        assert f"`{text}`" in rows[message_id], message_id


def test_the_reasons_quoted_for_each_state_are_the_decisions() -> None:
    """If the system has no licence or a bad one, the reason is the page's."""
    rows = {
        unquote(row[0]): row[3] for row in table_rows(STATUS_DOC, "| `state` | when |")
    }
    zone = ZoneInfo("Europe/Zurich")
    now = datetime.fromisoformat("2026-12-03T18:00:00+01:00")

    missing = evaluate(Missing(), now, zone)
    invalid = evaluate(Rejected("the file is empty"), now, zone)

    assert f"`{missing.reason}`" in rows["missing"]
    assert invalid.reason.startswith("installed licence: ")
    assert "`installed licence: " in rows["invalid"]
    assert set(rows) == {state.value for state in State}


# Figures the pages quote from the code.


def test_the_defaults_quoted_are_the_codes() -> None:
    """If a page quotes a default path or limit, it is the code's default."""
    licence_doc = LICENCE_DOC.read_text()
    status_doc = STATUS_DOC.read_text()
    glossary = GLOSSARY.read_text()
    defaults = Config()

    assert f"`{defaults.keys_dir}`" in licence_doc
    assert f"{MAX_BYTES // 1024} KiB" in licence_doc
    assert f"default {defaults.check_interval:.0f} s" in licence_doc
    assert f"default {defaults.clock_rollback_tolerance / 3600:.0f} hours" in (
        licence_doc
    )
    assert f"`{defaults.status_file}`" in status_doc
    assert f"default {Database().count_interval:.0f} s" in status_doc
    assert status.read_status.__defaults__ == (defaults.status_file,)
    assert f"`{defaults.licence_file}`" in glossary
    assert f"`{defaults.control_socket}`" in glossary
    assert f"({SETTLE_SECONDS:.0f} s)" in glossary


def _anchor(heading: str) -> str:
    slug = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return slug.replace(" ", "-")


@pytest.mark.parametrize("page", OWN_DOCS, ids=lambda p: p.name)
def test_every_link_between_the_pages_resolves(page: Path) -> None:
    """If a page links to a file or a heading, that file and heading exist."""
    links = re.findall(r"\]\(([^)\s]+)\)", page.read_text())

    for link in (link for link in links if "://" not in link):
        target, _, anchor = link.partition("#")
        path = (page.parent / target).resolve() if target else page
        assert path.exists(), link
        if anchor:
            headings = re.findall(r"^#+ (.+)$", path.read_text(), re.MULTILINE)
            assert anchor in {_anchor(h) for h in headings}, link


# The glossary.


def _glossary_terms() -> list[str]:
    return re.findall(r"^(?:- )?\*\*([^*]+)\*\*", GLOSSARY.read_text(), re.MULTILINE)


def _project_text() -> str:
    paths = [
        *(ROOT / "licensed").glob("*.py"),
        ROOT / "licensed" / "status.schema.json",
        ROOT / "config" / "licensed.toml",
        ROOT / "README.md",
        *(ROOT / "units").iterdir(),
        *(path for path in DOCS.glob("*.md") if path != GLOSSARY),
    ]
    return "\n".join(path.read_text() for path in paths if path.is_file())


def test_every_glossary_term_is_used_in_the_code_or_the_other_docs() -> None:
    """If the glossary defines a term, the project uses that very word elsewhere."""
    text = _project_text()
    terms = _glossary_terms()

    unused = []
    for term in terms:
        words = r"[\s_-]+".join(re.escape(word) for word in term.split())
        flags = 0 if term != term.lower() else re.IGNORECASE
        if not re.search(rf"\b{words}\b", text, flags):
            unused.append(term)

    assert len(terms) >= 40
    assert unused == []


def test_each_glossary_term_is_defined_once() -> None:
    """If a term is in the glossary, it has exactly one entry."""
    terms = _glossary_terms()

    assert sorted(t for t in set(terms) if terms.count(t) > 1) == []


# The changelog.


def test_the_changelog_names_the_packaged_version() -> None:
    """If the package has a version, the changelog has a section for it."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    text = CHANGELOG.read_text()

    headings = re.findall(r"^## \[([^\]]+)\]", text, re.MULTILINE)

    assert text.startswith("# Changelog")
    assert project["version"] in headings
    assert "### Added" in text
