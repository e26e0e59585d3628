"""The configuration file: one TOML file, read strictly.

Where it is: ``--config PATH`` on any command, else ``$LICENSED_CONFIG``, else
``/etc/licensed/licensed.toml``. Only the default location may be absent (then every
key takes its default); a file named explicitly must exist.

Every key is checked: an unknown key, a value of the wrong type or an unknown time
zone raises ``ConfigError`` naming the key, the value and the fix. The commented
example in ``config/licensed.toml`` documents each key.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from licensed.errors import ConfigError
from licensed.fsio import read_bounded

DEFAULT_PATH = Path("/etc/licensed/licensed.toml")
ENVIRONMENT_VARIABLE = "LICENSED_CONFIG"
MAX_BYTES = 1024 * 1024
"""Largest configuration file read; real ones are a few KB."""
PROTECTED_UNITS = ("assistant-core.service",)
"""Units licensed never stops, whatever the configuration says."""

T = TypeVar("T")
_MAX_SECONDS = 365 * 86400.0
_TEMPLATE = re.compile(r"[A-Za-z0-9:_.\\-]+@\.service")


@dataclass(frozen=True)
class Database:
    """Where and how to count the users."""

    conninfo: str = ""
    query: str | None = None
    connect_timeout: float = 5.0
    statement_timeout: float = 5.0
    count_interval: float = 300.0


@dataclass(frozen=True)
class Config:
    """The daemon's and the command lines' settings."""

    licence_file: Path = Path("/etc/licensed/licence/licence.lic")
    keys_dir: Path = Path("/etc/licensed/keys")
    status_file: Path = Path("/run/licensed/status.json")
    state_dir: Path = Path("/var/lib/licensed")
    control_socket: Path = Path("/run/licensed/control.sock")
    metrics_file: Path | None = None
    timezone: str = ""
    check_interval: float = 60.0
    clock_rollback_tolerance: float = 2 * 3600.0
    admin_group: str = "licensed-admin"
    mask_helper: str = "licensed-mask@.service"
    log_format: str = "auto"
    log_level: str = "info"
    components: Mapping[str, str] = field(
        default_factory=lambda: {
            "SMD": "assistant-smd.service",
            "Core SfB": "assistant-core-sfb.service",
        }
    )
    trial_warning_days: tuple[int, ...] = (14, 3)
    support_warning_days: tuple[int, ...] = (30,)
    database: Database | None = None
    source: Path | None = None

    @property
    def zone(self) -> ZoneInfo:
        """The zone expiry is judged in (checked when the file was loaded)."""
        return resolve_zone(self.timezone)


def locate(explicit: Path | None) -> tuple[Path, bool]:
    """The configuration path to use, and whether it must exist."""
    if explicit is not None:
        return explicit, True
    from_environment = os.environ.get(ENVIRONMENT_VARIABLE)
    if from_environment:
        return Path(from_environment), True
    return DEFAULT_PATH, False


def load(explicit: Path | None = None) -> Config:
    """Find, read and check the configuration."""
    path, required = locate(explicit)
    try:
        text = read_bounded(path, MAX_BYTES).decode("utf-8")
    except FileNotFoundError:
        if required:
            raise ConfigError(
                f"configuration file {path} does not exist; create it from "
                f"config/licensed.toml or point --config/{ENVIRONMENT_VARIABLE} "
                f"at the right file"
            ) from None
        return Config()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"configuration file {path} cannot be read: {exc}") from exc
    return parse(text, path)


def parse(text: str, source: Path | None = None) -> Config:
    """Check configuration text; raise ``ConfigError`` naming the bad key."""
    where = str(source) if source else "configuration"
    try:
        document = tomllib.loads(text)
    # Not only TOMLDecodeError: a number past int()'s 4300-digit limit raises a
    # plain ValueError and deep nesting a RecursionError, both out of parse.
    except (ValueError, RecursionError) as exc:
        raise ConfigError(f"{where} is not valid TOML: {exc}") from exc

    reader = _Reader(document, where)
    config = Config(
        licence_file=reader.path("licence_file", Config.licence_file),
        keys_dir=reader.path("keys_dir", Config.keys_dir),
        status_file=reader.path("status_file", Config.status_file),
        state_dir=reader.path("state_dir", Config.state_dir),
        control_socket=reader.path("control_socket", Config.control_socket),
        metrics_file=reader.optional_path("metrics_file"),
        timezone=reader.zone_name("timezone"),
        check_interval=reader.seconds("check_interval", Config.check_interval),
        clock_rollback_tolerance=reader.seconds(
            "clock_rollback_tolerance", Config.clock_rollback_tolerance, minimum=0
        ),
        admin_group=reader.text("admin_group", Config.admin_group),
        mask_helper=reader.template("mask_helper", Config.mask_helper),
        log_format=reader.choice(
            "log_format", Config.log_format, ("auto", "journal", "console", "json")
        ),
        log_level=reader.choice(
            "log_level", Config.log_level, ("debug", "info", "warning", "error")
        ),
        components=reader.components("components"),
        trial_warning_days=reader.days("trial_warning_days", (14, 3)),
        support_warning_days=reader.days("support_warning_days", (30,)),
        database=reader.database("database"),
        source=source,
    )
    reader.refuse_unknown(f.name for f in fields(Config) if f.name != "source")
    return config


def resolve_zone(name: str) -> ZoneInfo:
    """The zone named, or the server's local zone when ``name`` is empty."""
    if name:
        return ZoneInfo(name)
    return local_zone()


def local_zone() -> ZoneInfo:
    """The server's zone: ``$TZ`` if it names one, else ``/etc/localtime``, else UTC."""
    from_environment = os.environ.get("TZ", "").removeprefix(":")
    if from_environment:
        try:
            return ZoneInfo(from_environment)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    localtime = Path("/etc/localtime")
    try:
        target = localtime.readlink()
    except OSError:
        target = None
    if target is not None and "zoneinfo/" in str(target):
        name = str(target).split("zoneinfo/", 1)[1]
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    try:
        with localtime.open("rb") as handle:
            return ZoneInfo.from_file(handle, key="localtime")
    except (OSError, ValueError):
        return ZoneInfo("UTC")


class _Reader:
    """Takes keys out of a parsed document, checking each one."""

    def __init__(self, document: Mapping[str, Any], where: str) -> None:
        self._document = document
        self._where = where
        self._seen: set[str] = set()

    def refuse_unknown(self, known: Iterable[str]) -> None:
        unknown = sorted(set(self._document) - self._seen)
        if unknown:
            raise ConfigError(
                f"{self._where}: unknown key {unknown[0]!r}; known keys: "
                f"{', '.join(sorted(known))} (check the spelling)"
            )

    def _get(self, key: str, kind: type[T], expected: str) -> T | None:
        self._seen.add(key)
        value = self._document.get(key)
        if value is None:
            return None
        if not isinstance(value, kind) or isinstance(value, bool) != (kind is bool):
            raise ConfigError(
                f"{self._where}: key {key!r} = {value!r}: expected {expected}"
            )
        return value

    def text(self, key: str, default: str) -> str:
        value = self._get(key, str, "text in quotes")
        return default if value is None else value

    def path(self, key: str, default: Path) -> Path:
        return self.optional_path(key) or default

    def optional_path(self, key: str) -> Path | None:
        value = self._get(key, str, "an absolute path in quotes")
        if value is None or value == "":
            return None
        if not value.startswith("/"):
            raise ConfigError(
                f"{self._where}: key {key!r} = {value!r}: expected an absolute path, "
                f"such as '/etc/licensed/licence/licence.lic'"
            )
        return Path(value)

    def template(self, key: str, default: str) -> str:
        value = self.text(key, default)
        if value and not _TEMPLATE.fullmatch(value):
            raise ConfigError(
                f"{self._where}: key {key!r} = {value!r}: expected a template unit "
                f"name such as 'licensed-mask@.service', or \"\" to mask directly "
                f"(needs root)"
            )
        return value

    def zone_name(self, key: str) -> str:
        name = self.text(key, "")
        if not name:
            return ""
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            raise ConfigError(
                f"{self._where}: key {key!r} = {name!r}: unknown zone; use an IANA "
                f"name such as 'Europe/Zurich', or leave it out for the server's zone"
            ) from None
        return name

    def seconds(self, key: str, default: float, minimum: float = 1) -> float:
        self._seen.add(key)
        value = self._document.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(
                f"{self._where}: key {key!r} = {value!r}: expected a number of seconds"
            )
        if value < minimum:
            raise ConfigError(
                f"{self._where}: key {key!r} = {value!r}: must be at least {minimum}"
            )
        # TOML has nan and inf, which passed the check above, and integers too big
        # for a float, which raised OverflowError here; a huge finite value later
        # overflowed datetime arithmetic in the daemon. Bound it at a year.
        if not value <= _MAX_SECONDS:
            raise ConfigError(
                f"{self._where}: key {key!r} = {value!r}: expected a number of seconds "
                f"of at most {_MAX_SECONDS:.0f} (a year)"
            )
        return float(value)

    def choice(self, key: str, default: str, choices: tuple[str, ...]) -> str:
        value = self.text(key, default)
        if value not in choices:
            raise ConfigError(
                f"{self._where}: key {key!r} = {value!r}: expected one of "
                f"{', '.join(choices)}"
            )
        return value

    def days(self, key: str, default: tuple[int, ...]) -> tuple[int, ...]:
        value = self._get(key, list, "a list of whole days, such as [14, 3]")
        if value is None:
            return default
        if not all(type(day) is int and day >= 1 for day in value):
            raise ConfigError(
                f"{self._where}: key {key!r} = {value!r}: expected a list of whole "
                f"days of at least 1, such as [14, 3]"
            )
        return tuple(sorted(value, reverse=True))

    def components(self, key: str) -> Mapping[str, str]:
        table = self._get(key, dict, "a table of component name = unit name")
        if table is None:
            return Config().components
        for name, unit in table.items():
            _check_unit(self._where, key, name, unit)
        return dict(table)

    def database(self, key: str) -> Database | None:
        table = self._get(key, dict, "a table of database settings")
        if table is None:
            return None
        reader = _Reader(table, f"{self._where} [{key}]")
        database = Database(
            conninfo=reader.text("conninfo", ""),
            query=reader.text("query", "") or None,
            connect_timeout=reader.seconds("connect_timeout", 5.0),
            statement_timeout=reader.seconds("statement_timeout", 5.0, minimum=0.001),
            count_interval=reader.seconds("count_interval", 300.0),
        )
        reader.refuse_unknown(f.name for f in fields(Database))
        return database


def _check_unit(where: str, key: str, name: str, unit: object) -> None:
    if not isinstance(unit, str) or not unit.endswith(".service"):
        raise ConfigError(
            f"{where}: [{key}] {name!r} = {unit!r}: expected a systemd unit name "
            f"such as 'assistant-smd.service'"
        )
    if unit in PROTECTED_UNITS:
        raise ConfigError(
            f"{where}: [{key}] {name!r} = {unit!r}: {unit} is Core itself, which "
            f"keeps running when the licence ends; list only SMD and Core's SfB unit"
        )
