"""The Prometheus metrics file: its text, its escaping and the daemon writing it.

The text is read back with prometheus_client's parser (what a scraper does) and
with a strict line check of our own, since that parser forgives some mistakes.
The daemon tests run the real ``licensed`` against real files with no systemd and
no database reachable, so that both failure counters move.
"""

from __future__ import annotations

import json
import re
import stat
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import jsonschema
import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families

from licensed import metrics, status
from licensed.control import ask
from licensed.decision import LicenceReading, Missing, evaluate
from licensed.licence import Licence
from licensed.metrics import Counters
from tests.harness.daemon import Daemon, Installation, wait_until
from tests.harness.licences import make_licence, make_trial

ZONE = ZoneInfo("Europe/Zurich")
NOW = datetime(2026, 12, 3, 16, 0, tzinfo=UTC)
_NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
_LABEL = rf'{_NAME}="(?:[^"\\\n]|\\[\\"n])*"'
SAMPLE = re.compile(rf"^({_NAME})(\{{{_LABEL}(?:,{_LABEL})*\}})? (\S+)$")


def build(
    reading: LicenceReading,
    users: status.UsersView | None = None,
    components: tuple[status.ComponentView, ...] = (),
) -> dict[str, Any]:
    decision = evaluate(reading, NOW, ZONE)
    snapshot = status.Snapshot(
        decision=decision,
        licence=reading if isinstance(reading, Licence) else None,
        key_id=None,
        checked_at=NOW,
        next_check=NOW + timedelta(minutes=1),
        timezone="Europe/Zurich",
        users=users or status.UsersView(counting=True, actual=42, counted_at=NOW),
        components=components,
    )
    return status.build(snapshot)


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of ``text``, keyed by name and sorted labels, strictly checked."""
    check_strictly(text)
    found = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            found[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return found


def check_strictly(text: str) -> None:
    """Each family: HELP, then TYPE, then its samples; every sample line well formed."""
    assert text.endswith("\n")
    declared: str | None = None
    # Lines end at "\n" only; str.splitlines would also split at "\x1e" and others.
    for line in text.split("\n")[:-1]:
        if line.startswith("# HELP "):
            declared = line.split(" ")[2]
        elif line.startswith("# TYPE "):
            name, kind = line.split(" ")[2:4]
            assert name == declared, line
            assert kind in ("gauge", "counter"), line
        else:
            match = SAMPLE.match(line)
            assert match is not None, line
            assert match.group(1) == declared, line
            float(match.group(3))


def value(text: str, name: str, **labels: str) -> float | None:
    return samples(text).get((name, tuple(sorted(labels.items()))))


def test_a_full_licence_gives_every_figure_but_an_expiry() -> None:
    """If a full licence is installed, the state is licensed and nothing expires."""
    text = metrics.render(build(make_licence()), Counters())

    found = samples(text)

    assert value(text, "licensed_state", state="licensed") == 1
    for state in ("expired", "missing", "invalid"):
        assert value(text, "licensed_state", state=state) == 0
    assert not any(n == "licensed_licence_expiry_timestamp_seconds" for n, _ in found)
    support_end = datetime(2028, 1, 1, tzinfo=ZONE).timestamp()
    assert value(text, "licensed_support_end_timestamp_seconds") == support_end
    assert value(text, "licensed_users_licensed") == 100
    assert value(text, "licensed_users_over_licence_limit") == 120
    assert value(text, "licensed_users_actual") == 42
    assert value(text, "licensed_users_stale") == 0
    assert value(text, "licensed_last_check_timestamp_seconds") == NOW.timestamp()
    assert value(text, "licensed_enforcement_errors_total") == 0
    assert value(text, "licensed_database_errors_total") == 0
    assert value(text, "licensed_clock_set_back") == 0


def test_a_trial_gives_its_expiry_instant() -> None:
    """If a trial is installed, the expiry is 00:00:01 after its last day, local."""
    text = metrics.render(build(make_trial(date(2026, 12, 20))), Counters())

    expiry = value(text, "licensed_licence_expiry_timestamp_seconds")

    assert expiry == datetime(2026, 12, 21, 0, 0, 1, tzinfo=ZONE).timestamp()


def test_no_licence_gives_the_state_but_no_licence_figures() -> None:
    """If no licence is installed, state missing is 1 and no limits are given."""
    text = metrics.render(build(Missing()), Counters())

    names = {name for name, _ in samples(text)}

    assert value(text, "licensed_state", state="missing") == 1
    assert "licensed_users_licensed" not in names
    assert "licensed_support_end_timestamp_seconds" not in names
    assert "licensed_licence_expiry_timestamp_seconds" not in names


def test_an_unknown_user_count_is_absent_and_a_stale_one_flagged() -> None:
    """If the users were never counted, the figure is absent, not 0."""
    unknown = status.UsersView(counting=True, stale=True, error="refused")

    text = metrics.render(build(make_licence(), users=unknown), Counters(0, 3))

    names = {name for name, _ in samples(text)}
    assert "licensed_users_actual" not in names
    assert value(text, "licensed_users_stale") == 1
    assert value(text, "licensed_database_errors_total") == 3


def test_components_are_labelled_with_their_name_and_unit() -> None:
    """If components are configured, each has running and required-running gauges."""
    components = (
        status.ComponentView("SMD", "assistant-smd.service", "stopped", "masked"),
        status.ComponentView("Core SfB", "sfb.service", "running", "running"),
    )

    text = metrics.render(build(make_licence(), components=components), Counters())

    smd = {"component": "SMD", "unit": "assistant-smd.service"}
    sfb = {"component": "Core SfB", "unit": "sfb.service"}
    assert value(text, "licensed_component_running", **smd) == 0
    assert value(text, "licensed_component_required_running", **smd) == 0
    assert value(text, "licensed_component_running", **sfb) == 1
    assert value(text, "licensed_component_required_running", **sfb) == 1


def test_every_metric_is_documented() -> None:
    """If a metric is written, it has a HELP and a TYPE line before its samples."""
    text = metrics.render(build(make_trial(date(2026, 12, 20))), Counters(1, 2))

    families = list(text_string_to_metric_families(text))

    assert len(families) == 11  # no component, no error: those families are absent
    assert all(f.documentation and f.type in ("gauge", "counter") for f in families)
    check_strictly(text)


@given(st.text(st.characters(exclude_categories=["Cs"]), max_size=40))
def test_any_component_name_survives_the_label_escaping(name: str) -> None:
    """If a component name holds quotes, backslashes or newlines, it reads back."""
    components = (status.ComponentView(name, "x.service", "running", "running"),)

    text = metrics.render(build(make_licence(), components=components), Counters())

    labels = {"component": name, "unit": "x.service"}
    assert value(text, "licensed_component_running", **labels) == 1


def test_write_replaces_the_file_world_readable(tmp_path: Path) -> None:
    """If the metrics are written, the file holds the text, mode 0644, no leftovers."""
    path = tmp_path / "licensed.prom"
    path.write_text("old\n")
    document = build(make_licence())

    metrics.write(path, document, Counters())

    assert path.read_text() == metrics.render(document, Counters())
    assert stat.S_IMODE(path.stat().st_mode) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["licensed.prom"]


# --- the daemon writing them --------------------------------------------------------


UNREACHABLE_BUS = {"DBUS_SYSTEM_BUS_ADDRESS": "unix:path=/nonexistent/bus"}


@pytest.fixture
def installation(tmp_path: Path) -> Installation:
    (tmp_path / "metrics").mkdir()
    extra = (
        f'metrics_file = "{tmp_path / "metrics" / "licensed.prom"}"\n'
        "[database]\n"
        f'conninfo = "host={tmp_path / "no-database"} dbname=assistant"\n'
        "connect_timeout = 1\n"
    )
    installation = Installation(tmp_path, extra=extra)
    installation.install(make_licence())
    return installation


def metrics_text(installation: Installation) -> str:
    try:
        return (installation.root / "metrics" / "licensed.prom").read_text()
    except FileNotFoundError:
        return ""


def test_the_daemon_counts_what_failed_in_its_metrics(
    installation: Installation,
) -> None:
    """If systemd and the database are unreachable, both counters rise, licensed."""
    daemon = Daemon(installation, env=UNREACHABLE_BUS)
    try:
        daemon.wait_started()

        def failed_both() -> bool:
            text = metrics_text(installation)
            return bool(
                text
                and (value(text, "licensed_enforcement_errors_total") or 0) > 0
                and (value(text, "licensed_database_errors_total") or 0) > 0
            )

        wait_until(lambda: _checked(installation) and failed_both(), timeout=15)
    finally:
        daemon.stop()

    text = metrics_text(installation)
    assert value(text, "licensed_state", state="licensed") == 1
    assert value(text, "licensed_users_stale") == 1
    assert value(text, "licensed_errors", source="systemd") == 1


def _checked(installation: Installation) -> bool:
    # Each check reads the count the worker thread left; ask for checks until the
    # failed count has been seen.
    try:
        ask(installation.control_socket, "check", timeout=5)
    except OSError:
        return False
    return True


def test_an_unwritable_metrics_file_is_an_error_in_the_status(
    tmp_path: Path,
) -> None:
    """If the metrics folder is missing, the status lists a 'metrics' error."""
    extra = f'metrics_file = "{tmp_path / "missing" / "licensed.prom"}"\n'
    installation = Installation(tmp_path, extra=extra)
    installation.install(make_licence())
    daemon = Daemon(installation, env=UNREACHABLE_BUS)
    try:
        daemon.wait_started()
        wait_until(lambda: _error_sources(installation) >= {"metrics"}, timeout=15)
    finally:
        daemon.stop()

    document = installation.status()
    jsonschema.validate(document, status.schema())
    assert daemon.logged("metrics_write_failed")


def _error_sources(installation: Installation) -> set[str]:
    try:
        document = json.loads(installation.status_file.read_text())
    except (FileNotFoundError, ValueError):
        return set()
    return {e["source"] for e in document["errors"]}
