"""licensectl show, through the real console script (status: test_status_cli)."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from licensed.expiry import expiry_instant
from licensed.licence import Licence
from tests.harness.cli import Server
from tests.harness.licences import make_licence, make_trial


@pytest.fixture
def server(tmp_path: Path) -> Server:
    return Server(tmp_path)


def trial(valid_until: date) -> Licence:
    return dataclasses.replace(make_trial(valid_until), users=25, over_licence_limit=30)


def show_json(server: Server) -> tuple[int, dict[str, Any]]:
    result = server.licensectl("show", "--json")
    return result.code, json.loads(result.stdout)


def test_a_full_licence_shows_every_section_of_the_license_information(
    server: Server,
) -> None:
    """If a full licence is installed, show prints its sections in order, exit 0."""
    server.install_directly(make_licence())

    result = server.licensectl("show")

    assert result.code == 0, result.stderr
    lines = [line.strip() for line in result.stdout.splitlines()]
    expected = [
        "General",
        "System                ACME Assistant PROD",
        "Company               ACME Corp",
        "Primary SIP Domain    acme.example",
        "SfB Server Version    Skype for Business Server 2019",
        "Contact Person        Jane Doe",
        "Location              Zurich",
        "License Type          Full",
        "",
        "Components",
        "SMD                   1",
        "Core                  1",
        "Core SfB              1",
        "",
        "Support",
        "Contract              Premium 24/7",
        "Valid until           2027-12-31",
        "",
        "User",
        "Licensed quantity     100",
        "Over License Limit    120",
    ]
    start = lines.index("General")
    assert lines[start : start + len(expected)] == expected
    assert "State                 licensed (full licence AST-0001)" in lines
    assert "Expires               does not expire" in lines


def test_a_trial_shows_valid_until_and_its_expiry_instant(server: Server) -> None:
    """If a trial is installed, General has Valid until and the instant has its zone."""
    valid_until = datetime.now(UTC).date() + timedelta(days=60)
    server.install_directly(trial(valid_until))
    instant = expiry_instant(valid_until, ZoneInfo("Europe/Zurich")).isoformat()

    result = server.licensectl("show")

    assert result.code == 0, result.stderr
    general = result.stdout.split("Components")[0]
    assert "License Type          Trial" in general
    assert f"Valid until           {valid_until.isoformat()}" in general
    assert f"Expires               {instant} (Europe/Zurich)" in result.stdout
    assert "State                 licensed (trial licence AST-T001" in result.stdout


def test_the_expiry_instant_follows_the_configured_zone_across_a_gap(
    tmp_path: Path,
) -> None:
    """If 00:00:01 does not exist locally, show gives the instant the clock jumps."""
    server = Server(tmp_path, zone="America/Sao_Paulo")
    server.install_directly(trial(date(2018, 11, 3)))

    code, view = show_json(server)
    text = server.licensectl("show").stdout

    assert code == 1
    assert view["state"] == "expired"
    assert view["expires_at"] == "2018-11-04T01:00:00-02:00"
    assert "2018-11-04T01:00:00-02:00 (America/Sao_Paulo)" in text


def test_no_licence_shows_missing_and_exits_3(server: Server) -> None:
    """If no licence is installed, show says so, state missing, exit 3."""
    result = server.licensectl("show")
    code, view = show_json(server)

    assert result.code == code == 3
    assert f"No licence installed ({server.licence_file})" in result.stdout
    assert "missing (no licence is installed)" in result.stdout
    assert (view["state"], view["licence"], view["error"]) == ("missing", None, None)
    assert view["components_run"] is False


def test_an_invalid_licence_shows_the_reason_and_exits_3(server: Server) -> None:
    """If the installed file fails validation, show gives the reason, state invalid."""
    data = server.vendor.sign(make_licence())
    server.licence_file.write_bytes(data.replace(b"ACME Corp", b"ACME Corq"))

    result = server.licensectl("show")
    code, view = show_json(server)

    assert result.code == code == 3
    assert "Invalid Licence File: the signature does not match" in result.stdout
    assert "invalid (installed licence: the signature" in result.stdout
    assert view["state"] == "invalid"
    assert view["error"].startswith("the signature does not match")


def test_a_missing_keys_folder_shows_the_licence_as_invalid(server: Server) -> None:
    """If the trusted keys cannot be read, the installed licence cannot be trusted."""
    server.install_directly(make_licence())
    server.write_config(keys_dir=str(server.root / "no-keys"))

    code, view = show_json(server)

    assert code == 3
    assert view["state"] == "invalid"
    assert "trusted-key folder" in view["error"]


def test_an_expired_trial_shows_state_expired_and_exits_1(server: Server) -> None:
    """If the trial has expired, the file is still shown, state expired, exit 1."""
    server.install_directly(trial(date(2020, 1, 31)))

    result = server.licensectl("show")

    assert result.code == 1
    assert "expired (trial licence AST-T001 expired at 2020-02-01T00:00:01+01:00)" in (
        result.stdout
    )
    assert "Your License has expired" in result.stdout


def test_json_carries_the_same_content_with_stable_keys(server: Server) -> None:
    """If --json is given, the document holds every field, snake_case, ISO dates."""
    server.install_directly(make_licence())

    code, view = show_json(server)

    assert code == 0
    checked_at = datetime.fromisoformat(view.pop("checked_at"))
    assert abs(datetime.now(UTC) - checked_at) < timedelta(minutes=1)
    assert view == {
        "licence_file": str(server.licence_file),
        "state": "licensed",
        "reason": "full licence AST-0001",
        "components_run": True,
        "expires_at": None,
        "timezone": "Europe/Zurich",
        "error": None,
        "licence": {
            "serial": "AST-0001",
            "type": "full",
            "issued": "2026-12-01T09:00:00+00:00",
            "product": "Assistant",
            "valid_until": None,
            "key_id": "vendor-test",
            "general": {
                "system": "ACME Assistant PROD",
                "company": "ACME Corp",
                "primary_sip_domain": "acme.example",
                "sfb_server_version": "Skype for Business Server 2019",
                "contact_person": "Jane Doe",
                "location": "Zurich",
                "license_type": "full",
                "valid_until": None,
            },
            "components": [
                {"name": "SMD", "quantity": 1},
                {"name": "Core", "quantity": 1},
                {"name": "Core SfB", "quantity": 1},
            ],
            "support": {"contract": "Premium 24/7", "valid_until": "2027-12-31"},
            "user": {"licensed": 100, "over_licence_limit": 120},
        },
        "messages": view["messages"],
    }
    assert all(set(m) == {"id", "audience", "text"} for m in view["messages"])


def test_a_trial_near_its_end_shows_the_warning_message(server: Server) -> None:
    """If a trial has days left within the warning window, show carries the warning."""
    server.install_directly(trial(datetime.now(UTC).date() + timedelta(days=2)))

    code, view = show_json(server)

    assert code == 0
    assert "trial_ending" in [m["id"] for m in view["messages"]]
