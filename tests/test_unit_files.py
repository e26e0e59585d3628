"""The shipped systemd unit, its drop-in example, sysusers.d and tmpfiles.d files.

Checks run against the real tools: ``systemd-analyze verify`` and ``security
--offline=yes`` (no running systemd needed), ``systemd-sysusers`` and
``systemd-tmpfiles`` in a scratch root folder. The comment lint is ours: every
setting that is weaker than the strictest value, and every penalty the security
analysis still reports, must be explained by a comment in the unit.

``systemd-analyze verify`` refuses a unit whose ExecStart= binary does not exist,
and ``/usr/bin/licensed`` exists only once the package is installed, so the verify
test checks a copy whose ExecStart= runs ``/usr/bin/true``; nothing else changes.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.harness.prereq import require

REPO = Path(__file__).resolve().parent.parent
UNITS = REPO / "units"
SERVICE = UNITS / "licensed.service"
REMOTE_DROPIN = UNITS / "remote-database.conf.example"
MASK_HELPER = UNITS / "licensed-mask@.service"
CHECK_SCRIPT = REPO / "scripts" / "check-unit-security"
MAX_EXPOSURE = 1.5

FALSE_WORDS = {"no", "false", "off", "0"}
STRICT_BOOLEANS = {
    "NoNewPrivileges",
    "PrivateTmp",
    "PrivateDevices",
    "PrivateMounts",
    "PrivateNetwork",
    "PrivateUsers",
    "ProtectKernelTunables",
    "ProtectKernelModules",
    "ProtectKernelLogs",
    "ProtectControlGroups",
    "ProtectClock",
    "ProtectHostname",
    "RestrictRealtime",
    "RestrictSUIDSGID",
    "LockPersonality",
    "MemoryDenyWriteExecute",
    "RemoveIPC",
}


def _any_value(_value: str) -> bool:
    return True


def _umask_opens_group_or_other(value: str) -> bool:
    return int(value, 8) & 0o077 != 0o077


def _syscall_allow_list_widened(value: str) -> bool:
    return not value.startswith("~") and value.split() != ["@system-service"]


RELAXED: dict[str, Callable[[str], bool]] = {
    "ProtectSystem": lambda v: v != "strict",
    "ProtectHome": lambda v: v not in {"yes", "true"},
    "ProtectProc": lambda v: v != "invisible",
    "ProcSubset": lambda v: v != "pid",
    "RestrictNamespaces": lambda v: v not in {"yes", "true"},
    "RestrictAddressFamilies": lambda v: v != "none",
    "CapabilityBoundingSet": lambda v: v != "",
    "AmbientCapabilities": lambda v: v != "",
    "User": lambda v: v in {"", "root", "0"},
    "DevicePolicy": lambda v: v not in {"closed", "strict"},
    "DeviceAllow": _any_value,
    "IPAddressDeny": lambda v: v != "any",
    "IPAddressAllow": _any_value,
    "ReadWritePaths": _any_value,
    "BindPaths": _any_value,
    "SupplementaryGroups": _any_value,
    "SystemCallArchitectures": lambda v: v != "native",
    "SystemCallFilter": _syscall_allow_list_widened,
    "SystemCallErrorNumber": _any_value,
    "UMask": _umask_opens_group_or_other,
    "KeyringMode": lambda v: v != "private",
    "NotifyAccess": lambda v: v == "all",
    "Delegate": lambda v: v not in FALSE_WORDS,
    **{key: lambda v: v in FALSE_WORDS for key in STRICT_BOOLEANS},
}


def uncommented_relaxations(text: str) -> list[str]:
    """Return the settings in ``text`` that are relaxed but not commented.

    A setting is relaxed when ``RELAXED`` says its value is weaker than the
    strictest one; it counts as commented when the line right above it is a
    comment.
    """
    found = []
    previous = ""
    for raw in text.splitlines():
        line = raw.strip()
        key, sep, value = line.partition("=")
        relaxed = RELAXED.get(key.strip())
        if sep and relaxed and relaxed(value.strip()) and not previous.startswith("#"):
            found.append(line)
        previous = line
    return found


def security_report(unit: Path) -> list[dict[str, object]]:
    """Return ``systemd-analyze security --offline=yes``'s checks for ``unit``."""
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", "--json=short", str(unit)],
        capture_output=True,
        text=True,
        check=True,
    )
    checks: list[dict[str, object]] = json.loads(result.stdout)
    return checks


def overall_exposure(unit: Path) -> float:
    """Return the overall exposure that ``systemd-analyze security`` prints."""
    result = subprocess.run(
        ["systemd-analyze", "security", "--offline=yes", "--no-pager", str(unit)],
        capture_output=True,
        text=True,
        check=True,
    )
    match = re.search(r"Overall exposure level for \S+: ([0-9.]+)", result.stdout)
    assert match, result.stdout
    return float(match.group(1))


def with_remote_dropin(tmp_path: Path) -> Path:
    """Write the unit with the remote-database drop-in's [Service] lines appended."""
    dropin = REMOTE_DROPIN.read_text()
    combined = tmp_path / "licensed.service"
    combined.write_text(SERVICE.read_text() + dropin[dropin.index("[Service]") :])
    return combined


@pytest.fixture
def systemd_analyze() -> None:
    """Skip (fail in CI) unless systemd-analyze is installed."""
    require(
        shutil.which("systemd-analyze") is not None,
        "systemd-analyze is not installed (Debian package systemd)",
    )


@pytest.mark.usefixtures("systemd_analyze")
def test_unit_passes_systemd_analyze_verify_without_warnings(tmp_path: Path) -> None:
    """If the unit is verified with an existing binary, verify says nothing."""
    unit = tmp_path / "licensed.service"
    text = SERVICE.read_text().replace(
        "ExecStart=/usr/bin/licensed ", "ExecStart=/usr/bin/true "
    )
    unit.write_text(text)

    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(unit)],
        capture_output=True,
        text=True,
        check=False,
    )

    assert "ExecStart=/usr/bin/true " in text
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


@pytest.mark.usefixtures("systemd_analyze")
def test_mask_helper_instance_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    """If an instance of licensed-mask@.service is verified, verify says nothing."""
    shutil.copy(MASK_HELPER, tmp_path)

    result = subprocess.run(
        [
            "systemd-analyze",
            "verify",
            "--man=no",
            "licensed-mask@assistant-smd.service",
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=False,
    )

    assert result.returncode == 0, result.stderr
    assert result.stderr == ""


@pytest.mark.usefixtures("systemd_analyze")
def test_check_script_accepts_the_unit() -> None:
    """If CI runs check-unit-security on the unit, it passes."""
    result = subprocess.run(
        [str(CHECK_SCRIPT)], capture_output=True, text=True, check=False
    )

    assert result.returncode == 0, result.stdout + result.stderr
    assert "(limit 1.5): ok" in result.stdout


@pytest.mark.usefixtures("systemd_analyze")
def test_check_script_fails_when_the_exposure_is_above_the_limit() -> None:
    """If the limit is below the unit's exposure, check-unit-security exits 1."""
    result = subprocess.run(
        [str(CHECK_SCRIPT), str(SERVICE), "0.1"],
        capture_output=True,
        text=True,
        check=False,
    )

    assert result.returncode == 1, result.stdout + result.stderr
    assert "is above 0.1" in result.stderr


@pytest.mark.usefixtures("systemd_analyze")
def test_unit_exposure_is_at_most_the_limit() -> None:
    """If the unit is analysed offline, its overall exposure is at most 1.5."""
    exposure = overall_exposure(SERVICE)

    assert exposure <= MAX_EXPOSURE


@pytest.mark.usefixtures("systemd_analyze")
def test_remote_database_dropin_keeps_exposure_at_most_the_limit(
    tmp_path: Path,
) -> None:
    """If the remote-database drop-in is applied, the exposure stays at most 1.5."""
    combined = with_remote_dropin(tmp_path)

    exposure = overall_exposure(combined)

    assert exposure <= MAX_EXPOSURE


@pytest.mark.usefixtures("systemd_analyze")
def test_every_remaining_penalty_is_explained_in_a_comment() -> None:
    """If the analysis still charges for a check, a unit comment names it."""
    comments = "\n".join(
        line for line in SERVICE.read_text().splitlines() if line.startswith("#")
    )

    penalties = [
        str(check["name"])
        for check in security_report(SERVICE)
        if check["exposure"] not in (None, "0.0")
    ]

    assert penalties
    assert [name for name in penalties if name not in comments] == []


@pytest.mark.parametrize(
    "path", [SERVICE, REMOTE_DROPIN, MASK_HELPER], ids=lambda p: p.name
)
def test_every_relaxed_setting_has_a_comment(path: Path) -> None:
    """If a shipped setting is weaker than the strictest value, a comment is above."""
    text = path.read_text()

    missing = uncommented_relaxations(text)

    assert missing == []


@pytest.mark.parametrize(
    "setting",
    [
        "ProtectHome=read-only",
        "ProtectSystem=full",
        "RestrictAddressFamilies=AF_UNIX AF_INET",
        "PrivateNetwork=no",
        "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
        "UMask=0022",
        "SystemCallFilter=@system-service @privileged",
        "ReadWritePaths=/etc/licensed",
    ],
)
def test_lint_reports_a_relaxed_setting_without_comment(setting: str) -> None:
    """If a relaxed setting follows another setting, the lint reports it."""
    text = f"[Service]\nProtectSystem=strict\n{setting}\n"

    missing = uncommented_relaxations(text)

    assert missing == [setting]


def test_lint_accepts_strict_settings_and_commented_relaxations() -> None:
    """If settings are strict or commented, the lint reports nothing."""
    text = (
        "[Service]\nProtectHome=yes\nPrivateNetwork=yes\nUMask=0077\n"
        "SystemCallFilter=@system-service\nSystemCallFilter=~@privileged\n"
        "# The server may be remote.\nRestrictAddressFamilies=AF_UNIX AF_INET\n"
    )

    missing = uncommented_relaxations(text)

    assert missing == []


def _mode_owner_group(path: Path, root: Path) -> tuple[str, str, str]:
    info = path.lstat()
    names = {
        int(fields[2]): fields[0]
        for fields in (
            line.split(":") for line in (root / "etc/passwd").read_text().splitlines()
        )
    }
    groups = {
        int(fields[2]): fields[0]
        for fields in (
            line.split(":") for line in (root / "etc/group").read_text().splitlines()
        )
    }
    return (
        f"{stat.S_IMODE(info.st_mode):04o}",
        names.get(info.st_uid, str(info.st_uid)),
        groups.get(info.st_gid, str(info.st_gid)),
    )


def _scratch_root(root: Path) -> None:
    """Lay out a root folder with the files an installed licensed has."""
    (root / "etc/licensed/keys").mkdir(parents=True)
    (root / "etc/licensed/licence").mkdir()
    (root / "etc/passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (root / "etc/group").write_text("root:x:0:\n")
    for name in ["licensed.toml", "licence/licence.lic", "keys/vendor.pub"]:
        target = root / "etc/licensed" / name
        target.write_text("x\n")
        target.chmod(0o666)


def _install_users_and_folders(root: Path) -> None:
    """Lay out ``root`` and apply licensed.sysusers and licensed.tmpfiles to it."""
    require(os.geteuid() == 0, "setting file owners needs root")
    require(
        shutil.which("systemd-tmpfiles") is not None
        and shutil.which("systemd-sysusers") is not None,
        "systemd-tmpfiles/systemd-sysusers are not installed (package systemd)",
    )
    _scratch_root(root)

    for tool, conf in [
        ("systemd-sysusers", "licensed.sysusers"),
        ("systemd-tmpfiles", "licensed.tmpfiles"),
    ]:
        args = [tool, f"--root={root}", str(UNITS / conf)]
        if tool == "systemd-tmpfiles":
            args.insert(1, "--create")
        subprocess.run(args, check=True, capture_output=True)


def _as_admin(
    uid: int, root: Path, script: str, *args: str
) -> subprocess.CompletedProcess[str]:
    """Run ``sh -c script`` as user ``uid`` of root's licensed-admin group.

    ``$1`` is root's ``etc/licensed``; ``args`` follow as ``$2``...
    """
    group = next(
        line.split(":")[2]
        for line in (root / "etc/group").read_text().splitlines()
        if line.startswith("licensed-admin:")
    )
    require(shutil.which("setpriv") is not None, "setpriv (util-linux) not found")
    as_admin = ["setpriv", f"--reuid={uid}", f"--regid={uid}", f"--groups={group}"]
    return subprocess.run(
        [*as_admin, "sh", "-c", script, "sh", str(root / "etc/licensed"), *args],
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.fixture
def shared_root() -> Iterator[Path]:
    """A scratch root other users can reach (tmp_path's parents are root's, 0700)."""
    root = Path(tempfile.mkdtemp(prefix="licensed-root-"))
    root.chmod(0o755)
    yield root
    shutil.rmtree(root)


def test_sysusers_and_tmpfiles_give_the_documented_owners_and_modes(
    tmp_path: Path,
) -> None:
    """If sysusers and tmpfiles run on a fresh root, files get the designed modes."""
    _install_users_and_folders(tmp_path)

    expected = {
        "etc/licensed": ("0755", "root", "root"),
        "etc/licensed/licensed.toml": ("0640", "root", "licensed-admin"),
        "etc/licensed/licence": ("2770", "root", "licensed-admin"),
        "etc/licensed/licence/licence.lic": ("0640", "root", "licensed-admin"),
        "etc/licensed/keys": ("0755", "root", "root"),
        "etc/licensed/keys/vendor.pub": ("0644", "root", "root"),
        "var/lib/licensed": ("0700", "licensed", "licensed"),
        "run/licensed": ("2755", "licensed", "licensed-admin"),
    }
    actual = {name: _mode_owner_group(tmp_path / name, tmp_path) for name in expected}
    assert actual == expected


def test_any_admin_may_replace_the_licence_another_admin_installed(
    shared_root: Path,
) -> None:
    """If admin B renames a licence over admin A's, it works, as licensectl does."""
    _install_users_and_folders(shared_root)
    # What write_atomic does: a new file in the folder, renamed over the old one.
    install = 'echo "$2" > "$1/licence/.new" && mv -f "$1/licence/.new" "$1/$3"'
    licence = shared_root / "etc/licensed/licence/licence.lic"

    first = _as_admin(61001, shared_root, install, "A", "licence/licence.lic")
    second = _as_admin(61002, shared_root, install, "B", "licence/licence.lic")

    assert (first.returncode, second.returncode) == (0, 0), second.stderr
    assert licence.read_text() == "B\n"
    assert licence.stat().st_uid == 61002


@pytest.mark.parametrize("name", ["keys", "licensed.toml", "licence"])
def test_an_admin_cannot_swap_what_root_owns(shared_root: Path, name: str) -> None:
    """If an admin renames the keys, the configuration or the folder, it fails."""
    _install_users_and_folders(shared_root)

    moved = _as_admin(61001, shared_root, f'mv "$1/{name}" "$1/{name}.old"')

    assert moved.returncode != 0
    assert "Permission denied" in moved.stderr
    assert (shared_root / "etc/licensed" / name).exists()


def test_sysusers_makes_the_daemon_user_no_admin_group_member() -> None:
    """If sysusers.d is applied, only the daemon's process joins licensed-admin."""
    lines = [
        line.split()
        for line in (UNITS / "licensed.sysusers").read_text().splitlines()
        if line and not line.startswith("#")
    ]

    memberships = [fields for fields in lines if fields[0] == "m"]

    assert memberships == []
    assert ["g", "licensed-admin", "-"] in lines
