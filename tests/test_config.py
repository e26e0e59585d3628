"""The configuration file: defaults, each key's checks, lookup and the local zone."""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from datetime import UTC, date, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from licensed import config as config_module
from licensed.config import (
    Config,
    Database,
    load,
    local_zone,
    locate,
    parse,
    resolve_zone,
)
from licensed.errors import ConfigError

PROPERTY = settings(max_examples=300, deadline=None)
NEW_YEAR = datetime(2027, 1, 1, 12, tzinfo=UTC)


def refusal(text: str) -> str:
    """The message ``parse`` gives for refusing ``text``."""
    with pytest.raises(ConfigError) as caught:
        parse(text)
    return str(caught.value)


@pytest.fixture
def no_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No LICENSED_CONFIG, and a default location that holds no file."""
    missing = tmp_path / "etc" / "licensed.toml"
    monkeypatch.setattr(config_module, "DEFAULT_PATH", missing)
    monkeypatch.delenv("LICENSED_CONFIG", raising=False)
    return missing


# -- defaults and good values -----------------------------------------------------


def test_an_empty_file_gives_every_default() -> None:
    """If the file is empty, every key takes its documented default."""
    result = parse("")

    assert result == Config()
    assert result.licence_file == Path("/etc/licensed/licence/licence.lic")
    assert result.mask_helper == "licensed-mask@.service"
    assert result.keys_dir == Path("/etc/licensed/keys")
    assert result.status_file == Path("/run/licensed/status.json")
    assert result.metrics_file is None
    assert result.timezone == ""
    assert result.check_interval == 60.0
    assert result.log_format == "auto"
    assert result.log_level == "info"
    assert result.components == {
        "SMD": "assistant-smd.service",
        "Core SfB": "assistant-core-sfb.service",
    }
    assert result.trial_warning_days == (14, 3)
    assert result.support_warning_days == (30,)
    assert result.database is None


def test_every_key_is_read() -> None:
    """If every key is set to a good value, the Config carries each one."""
    text = """
        licence_file = "/srv/lic/licence.lic"
        keys_dir = "/srv/lic/keys"
        status_file = "/srv/run/status.json"
        state_dir = "/srv/state"
        control_socket = "/srv/run/control.sock"
        metrics_file = "/srv/metrics/licensed.prom"
        timezone = "Europe/Zurich"
        check_interval = 30
        clock_rollback_tolerance = 0
        admin_group = "wheel"
        log_format = "json"
        log_level = "debug"
        trial_warning_days = [3, 14, 7]
        support_warning_days = [60]

        [components]
        SMD = "smd.service"

        [database]
        conninfo = "host=/run/postgresql dbname=assistant"
        query = "SELECT count(*) FROM users"
        connect_timeout = 2.5
        statement_timeout = 0.5
        count_interval = 60
    """

    result = parse(text, Path("/srv/licensed.toml"))

    assert result.licence_file == Path("/srv/lic/licence.lic")
    assert result.keys_dir == Path("/srv/lic/keys")
    assert result.status_file == Path("/srv/run/status.json")
    assert result.state_dir == Path("/srv/state")
    assert result.control_socket == Path("/srv/run/control.sock")
    assert result.metrics_file == Path("/srv/metrics/licensed.prom")
    assert result.zone == ZoneInfo("Europe/Zurich")
    assert result.check_interval == 30.0
    assert isinstance(result.check_interval, float)
    assert result.clock_rollback_tolerance == 0.0
    assert result.admin_group == "wheel"
    assert (result.log_format, result.log_level) == ("json", "debug")
    assert result.trial_warning_days == (14, 7, 3)
    assert result.support_warning_days == (60,)
    assert result.components == {"SMD": "smd.service"}
    assert result.database == Database(
        conninfo="host=/run/postgresql dbname=assistant",
        query="SELECT count(*) FROM users",
        connect_timeout=2.5,
        statement_timeout=0.5,
        count_interval=60.0,
    )
    assert result.source == Path("/srv/licensed.toml")


def test_an_empty_database_table_takes_database_defaults() -> None:
    """If [database] is present but empty, its keys take their defaults."""
    result = parse("[database]\n")

    assert result.database == Database()
    assert result.database.query is None


def test_an_empty_query_means_the_built_in_one() -> None:
    """If query is empty text, it is None (the built-in count)."""
    result = parse('[database]\nquery = ""\n')

    assert result.database is not None
    assert result.database.query is None


def test_an_empty_path_means_the_default() -> None:
    """If a path key is empty text, the default applies."""
    result = parse('licence_file = ""\nmetrics_file = ""\n')

    assert result.licence_file == Config().licence_file
    assert result.metrics_file is None


# -- bad values are named ---------------------------------------------------------


@pytest.mark.parametrize(
    ("line", "key", "shown"),
    [
        ("licence_file = 5", "licence_file", "5"),
        ("keys_dir = true", "keys_dir", "True"),
        ("status_file = ['/a']", "status_file", "['/a']"),
        ("state_dir = 1.5", "state_dir", "1.5"),
        ("control_socket = {}", "control_socket", "{}"),
        ("metrics_file = 0", "metrics_file", "0"),
        ("timezone = 1", "timezone", "1"),
        ("check_interval = '60'", "check_interval", "'60'"),
        ("check_interval = true", "check_interval", "True"),
        ("clock_rollback_tolerance = []", "clock_rollback_tolerance", "[]"),
        ("admin_group = 0", "admin_group", "0"),
        ("log_format = 1", "log_format", "1"),
        ("log_level = false", "log_level", "False"),
        ("components = 'SMD'", "components", "'SMD'"),
        ("trial_warning_days = 14", "trial_warning_days", "14"),
        ("support_warning_days = '30'", "support_warning_days", "'30'"),
        ("database = 'postgres://'", "database", "'postgres://'"),
        ("timezone = 2027-01-31", "timezone", "datetime.date(2027, 1, 31)"),
    ],
)
def test_a_value_of_the_wrong_type_names_key_and_value(
    line: str, key: str, shown: str
) -> None:
    """If a key holds a value of the wrong type, the error names both."""
    message = refusal(line)

    assert f"key {key!r}" in message
    assert shown in message
    assert "expected" in message


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ("check_interval = 0", ["'check_interval' = 0", "at least 1"]),
        ("check_interval = -5", ["'check_interval' = -5", "at least 1"]),
        ("clock_rollback_tolerance = -1", ["-1", "at least 0"]),
        ("log_format = 'xml'", ["'xml'", "auto, journal, console, json"]),
        ("log_level = 'loud'", ["'loud'", "debug, info, warning, error"]),
        ("trial_warning_days = [0]", ["'trial_warning_days'", "at least 1"]),
        ("trial_warning_days = [true]", ["'trial_warning_days'", "[True]"]),
        ("trial_warning_days = [14.0]", ["'trial_warning_days'", "[14.0]"]),
        ("support_warning_days = ['30']", ["'support_warning_days'", "['30']"]),
        (
            "licence_file = 'etc/licence.lic'",
            ["'licence_file'", "'etc/licence.lic'", "absolute path"],
        ),
        ("state_dir = './state'", ["'state_dir'", "'./state'", "absolute path"]),
        ("metrics_file = 'm.prom'", ["'metrics_file'", "'m.prom'", "absolute"]),
        (
            "timezone = 'Mars/Base'",
            ["'timezone'", "'Mars/Base'", "unknown zone", "Europe/Zurich"],
        ),
        ("timezone = '../etc/passwd'", ["'timezone'", "unknown zone"]),
        ("timezone = '/etc/localtime'", ["'timezone'", "unknown zone"]),
        ("timezone = 'zone.tab'", ["'timezone'", "unknown zone"]),
        ("timezone = 'America'", ["'timezone'", "unknown zone"]),
        (
            "mask_helper = 'licensed-mask.service'",
            ["'mask_helper'", "'licensed-mask.service'", "licensed-mask@.service"],
        ),
        (
            "[components]\nCore = 'assistant-core.service'",
            ["'Core'", "'assistant-core.service'", "Core itself"],
        ),
        (
            "[components]\nSMD = 'assistant-smd'",
            ["'SMD'", "'assistant-smd'", "systemd unit name"],
        ),
        ("[components]\nSMD = 1", ["'SMD'", "= 1", "systemd unit name"]),
        ("[database]\nconninfo = 5", ["[database]", "'conninfo'", "5"]),
        ("[database]\nconnect_timeout = 0", ["'connect_timeout'", "at least 1"]),
        ("[database]\nstatement_timeout = 0", ["'statement_timeout'", "0.001"]),
    ],
)
def test_a_bad_value_names_key_value_and_fix(line: str, words: list[str]) -> None:
    """If a key holds a wrong value, the error names the key, the value and why."""
    message = refusal(line)

    for word in words:
        assert word in message


@pytest.mark.parametrize(
    "line",
    [
        "check_interval = nan",
        "check_interval = inf",
        "clock_rollback_tolerance = +inf",
        "check_interval = 1e300",
        f"check_interval = {9_223_372_036_854_775_807}",
        "[database]\ncount_interval = nan",
        "[database]\nconnect_timeout = inf",
    ],
)
def test_a_number_of_seconds_must_be_usable(line: str) -> None:
    """If a number of seconds is nan, infinite or absurdly large, it is refused."""
    message = refusal(line)

    assert "expected a number of seconds" in message or "at most" in message


def test_an_unknown_top_level_key_is_named() -> None:
    """If a top-level key is misspelt, the error names it and lists known keys."""
    message = refusal('licence_fil = "/etc/licensed/licence.lic"')

    assert "unknown key 'licence_fil'" in message
    assert "licence_file" in message
    assert "spelling" in message


def test_an_unknown_database_key_is_named_with_its_table() -> None:
    """If a [database] key is misspelt, the error names it and the table."""
    message = refusal("[database]\nconn_info = 'x'\n")

    assert "[database]" in message
    assert "unknown key 'conn_info'" in message
    assert "conninfo" in message


def test_a_syntax_error_names_the_file(tmp_path: Path) -> None:
    """If the file is not TOML, the error names the file."""
    path = tmp_path / "licensed.toml"
    path.write_text("check_interval = = 5\n")

    with pytest.raises(ConfigError, match="not valid TOML") as caught:
        load(path)

    assert str(path) in str(caught.value)


@pytest.mark.parametrize(
    "text",
    [
        f"check_interval = {'1' * 5000}",
        "trial_warning_days = " + "[" * 20000 + "]" * 20000,
    ],
    ids=["5000-digit number", "arrays nested 20000 deep"],
)
def test_toml_python_cannot_load_is_refused_not_crashed(text: str) -> None:
    """If the file holds TOML beyond Python's limits, ConfigError says it is invalid."""
    assert "not valid TOML" in refusal(text)


def test_errors_name_the_source_file() -> None:
    """If a bad value comes from a file, the error starts with its path."""
    with pytest.raises(ConfigError) as caught:
        parse("log_level = 'loud'", Path("/etc/licensed/licensed.toml"))

    assert str(caught.value).startswith("/etc/licensed/licensed.toml: ")


# -- where the file is ------------------------------------------------------------


def test_a_missing_default_file_gives_defaults(no_default: Path) -> None:
    """If no file is named and the default is absent, the defaults apply."""
    result = load()

    assert result == Config()
    assert locate(None) == (no_default, False)


def test_an_existing_default_file_is_read(no_default: Path) -> None:
    """If no file is named and the default exists, it is read."""
    no_default.parent.mkdir(parents=True)
    no_default.write_text("check_interval = 5\n")

    result = load()

    assert result.check_interval == 5.0
    assert result.source == no_default


def test_an_explicit_file_is_read(tmp_path: Path, no_default: Path) -> None:
    """If a file is named, it is read and recorded as the source."""
    path = tmp_path / "mine.toml"
    path.write_text('log_level = "debug"\n')

    result = load(path)

    assert result.log_level == "debug"
    assert result.source == path


def test_a_missing_explicit_file_is_an_error(tmp_path: Path, no_default: Path) -> None:
    """If a file is named but absent, ConfigError names it and the way out."""
    path = tmp_path / "absent.toml"

    with pytest.raises(ConfigError) as caught:
        load(path)

    assert str(path) in str(caught.value)
    assert "does not exist" in str(caught.value)


def test_the_environment_names_the_file(
    tmp_path: Path, no_default: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If LICENSED_CONFIG names a file, it is read and must exist."""
    path = tmp_path / "from-env.toml"
    path.write_text("check_interval = 7\n")
    monkeypatch.setenv("LICENSED_CONFIG", str(path))

    result = load()

    assert result.check_interval == 7.0
    assert locate(None) == (path, True)


def test_a_missing_file_named_by_the_environment_is_an_error(
    tmp_path: Path, no_default: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If LICENSED_CONFIG names an absent file, ConfigError names it."""
    monkeypatch.setenv("LICENSED_CONFIG", str(tmp_path / "nope.toml"))

    with pytest.raises(ConfigError, match=r"nope\.toml"):
        load()


def test_an_explicit_file_beats_the_environment(
    tmp_path: Path, no_default: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If both --config and LICENSED_CONFIG are given, --config wins."""
    explicit = tmp_path / "explicit.toml"
    explicit.write_text("check_interval = 3\n")
    monkeypatch.setenv("LICENSED_CONFIG", str(tmp_path / "ignored.toml"))

    result = load(explicit)

    assert result.check_interval == 3.0


def test_a_folder_or_binary_file_is_an_error(tmp_path: Path, no_default: Path) -> None:
    """If the named path is a folder or not UTF-8, ConfigError says it is unreadable."""
    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"timezone = '\xff'\n")

    with pytest.raises(ConfigError, match="cannot be read"):
        load(tmp_path)
    with pytest.raises(ConfigError, match="cannot be read"):
        load(binary)


# -- zones ------------------------------------------------------------------------


def test_local_zone_honours_tz(monkeypatch: pytest.MonkeyPatch) -> None:
    """If TZ names a zone, with or without a leading colon, it is the local zone."""
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    assert local_zone() == ZoneInfo("Asia/Tokyo")

    monkeypatch.setenv("TZ", ":Europe/Zurich")
    assert local_zone() == ZoneInfo("Europe/Zurich")


def test_an_unusable_tz_falls_back_to_the_system_zone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """If TZ is not a zone name, the zone comes from /etc/localtime (or UTC)."""
    monkeypatch.delenv("TZ", raising=False)
    system = local_zone()

    for value in ("Mars/Base", "CET-1CEST,M3.5.0,M10.5.0/3", "../../etc/passwd"):
        monkeypatch.setenv("TZ", value)
        assert local_zone().utcoffset(NEW_YEAR) == system.utcoffset(NEW_YEAR)


def test_an_empty_timezone_means_the_local_zone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """If timezone is left out, Config.zone is the local zone from TZ."""
    monkeypatch.setenv("TZ", "America/Havana")

    assert parse("").zone == ZoneInfo("America/Havana")
    assert resolve_zone("") == ZoneInfo("America/Havana")
    assert parse("timezone = 'Asia/Tokyo'").zone == ZoneInfo("Asia/Tokyo")


# -- random documents -------------------------------------------------------------

ANY_TEXT = st.text(max_size=20)
ANY_SCALAR = st.one_of(
    ANY_TEXT,
    st.integers(-(2**63), 2**63 - 1),
    st.sampled_from([10**400, -(10**400), 2**63, 1e300]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.dates(),
)
ANY_VALUE = st.recursive(
    ANY_SCALAR,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.sampled_from(["conninfo", "SMD", "Core", "x"]), inner),
    ),
    max_leaves=6,
)
PATHS = st.sampled_from(["", "/etc/licensed/licence.lic", "/x", "relative", "./r"])
SECONDS = st.one_of(
    st.integers(0, 10**6),
    st.floats(0, 10**6),
    st.sampled_from([math.nan, math.inf, -math.inf, 1e300, 10**400, -1]),
)
ZONES = st.sampled_from(
    ["", "UTC", "Europe/Zurich", "Mars/Base", "America", "zone.tab", "../etc"]
)
UNITS = st.sampled_from(
    ["assistant-smd.service", "assistant-core.service", "x.socket", "a.service"]
)
DAYS = st.lists(st.one_of(st.integers(-1, 60), st.booleans()), max_size=4)
GOOD_OR_BAD = {
    "licence_file": PATHS,
    "keys_dir": PATHS,
    "status_file": PATHS,
    "state_dir": PATHS,
    "control_socket": PATHS,
    "metrics_file": PATHS,
    "timezone": ZONES,
    "check_interval": SECONDS,
    "clock_rollback_tolerance": SECONDS,
    "admin_group": ANY_TEXT,
    "mask_helper": st.sampled_from(["", "licensed-mask@.service", "x.service", "@"]),
    "log_format": st.sampled_from(["auto", "journal", "console", "json", "xml"]),
    "log_level": st.sampled_from(["debug", "info", "warning", "error", "loud"]),
    "components": st.dictionaries(ANY_TEXT, UNITS, max_size=3),
    "trial_warning_days": DAYS,
    "support_warning_days": DAYS,
    "database": st.fixed_dictionaries(
        {},
        optional={
            "conninfo": ANY_TEXT,
            "query": ANY_TEXT,
            "connect_timeout": SECONDS,
            "statement_timeout": SECONDS,
            "count_interval": SECONDS,
            "pasword": ANY_TEXT,
        },
    ),
    "licence_fil": PATHS,
}


@st.composite
def documents(draw: st.DrawFn) -> dict[str, object]:
    """A configuration document: each key's value plausible or anything at all.

    Mostly plausible values, so that one bad value is often the only one.
    """
    keys = draw(st.lists(st.sampled_from(sorted(GOOD_OR_BAD)), unique=True))
    return {
        key: draw(st.one_of(GOOD_OR_BAD[key], GOOD_OR_BAD[key], ANY_VALUE))
        for key in keys
    }


def toml_value(value: object) -> str:
    """``value`` as a TOML value (inline tables for tables)."""
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    if isinstance(value, Mapping):
        items = (f"{toml_string(k)} = {toml_value(v)}" for k, v in value.items())
        return "{" + ", ".join(items) + "}"
    return toml_scalar(value)


def toml_scalar(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return "nan" if math.isnan(value) else repr(value)
    if isinstance(value, str):
        return toml_string(value)
    assert isinstance(value, int | date)
    return value.isoformat() if isinstance(value, date) else str(value)


def toml_string(text: str) -> str:
    # JSON escapes are TOML escapes, except that TOML wants DEL escaped too.
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


@PROPERTY
@given(document=documents())
def test_any_document_gives_a_config_or_a_config_error(
    document: dict[str, object],
) -> None:
    """If a document mixes good and bad values, the result is Config or ConfigError."""
    text = "".join(f"{toml_string(k)} = {toml_value(v)}\n" for k, v in document.items())

    try:
        result = parse(text)
    except ConfigError:
        return

    assert isinstance(result, Config)
    seconds = [result.check_interval, result.clock_rollback_tolerance]
    if result.database is not None:
        database = result.database
        seconds += [
            database.connect_timeout,
            database.statement_timeout,
            database.count_interval,
        ]
    assert all(math.isfinite(value) and value >= 0 for value in seconds)
    assert all(unit.endswith(".service") for unit in result.components.values())
    assert "assistant-core.service" not in result.components.values()
    assert all(path.is_absolute() for path in (result.licence_file, result.keys_dir))
    result.zone  # noqa: B018 - the zone must resolve for any accepted document
