"""Measure every figure of licensed, its floor and its peer; print one table.

    .venv/bin/python -m bench.run [--quick] [--runs N] [--idle SECONDS]
        [--only floor,P1,P1b,P2,P3,P4,P5,P6,peer] [--keep]

One sandboxed systemd serves every figure, licensed's and the do-it-yourself
peer's (``bench.diy``), so both are measured on the same machine, in the same run,
against the same units. ``docs/performance.md`` says what each figure measures.
The exit status is 1 when a goal is missed (never with ``--quick``, whose few
runs are a smoke test, not a measurement).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import platform
import shutil
import sys
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import structlog

from bench import bench_users, diy, ours
from bench.floor import Floor, measure_floor
from bench.probes import UnitWatch
from bench.stats import Summary, duration
from bench.switching import SMD, Switching
from tests.harness.daemon import Installation
from tests.harness.postgres import ThrowawayPostgres
from tests.harness.systemd import SandboxedSystemd, prerequisites

FIGURES = ("floor", "P1", "P1b", "P2", "P3", "P4", "P5", "P6", "peer")
P1B_GOAL_S = 0.010
P2_GOAL_S = 0.020
P3_CPU_GOAL_S = 0.2
P3_RSS_GOAL_MB = 40.0
P4_GOAL_S = 0.5
P5_GOAL_S = 0.050
P6_GOAL_S = 0.2
FLOOR_FACTOR = 2.0


@dataclass
class Row:
    """One line of the table, already formatted."""

    figure: str
    ours: str
    p99: str = "-"
    goal: str = "-"
    verdict: str = "-"
    peer: str = "-"
    ratio: str = "-"


@dataclass
class Report:
    """The table and the notes printed under it."""

    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def missed(self) -> list[str]:
        return [row.figure for row in self.rows if row.verdict == "MISSED"]

    def timing(
        self,
        figure: str,
        ours_: Summary,
        goal: float | None = None,
        goal_text: str | None = None,
        peer: Summary | None = None,
    ) -> None:
        verdict = "-" if goal is None else _verdict(ours_.median <= goal)
        self.rows.append(
            Row(
                figure,
                duration(ours_.median),
                duration(ours_.p99),
                goal_text or ("-" if goal is None else f"<= {duration(goal)}"),
                verdict,
                duration(peer.median) if peer else "-",
                f"{peer.median / ours_.median:.1f}x" if peer else "-",
            )
        )


def _verdict(met: bool) -> str:
    return "met" if met else "MISSED"


@dataclass
class Context:
    """What the phases share."""

    args: argparse.Namespace
    root: Path
    report: Report
    sandbox: SandboxedSystemd | None = None
    peer_installation: Installation | None = None
    postgres: ThrowawayPostgres | None = None
    peer_p1b: Summary | None = None

    def wants(self, *figures: str) -> bool:
        return any(figure in self.args.only for figure in figures)

    @property
    def systemd(self) -> SandboxedSystemd:
        assert self.sandbox is not None
        return self.sandbox


# Phases.


def phase_switching(ctx: Context) -> None:
    """The floor, P1, P1b and P6, around one running daemon."""
    runs = ctx.args.runs
    with (
        ours.running_daemon(ctx.root / "ours", ctx.systemd) as running,
        _unit_watch(ctx) as units,
    ):
        licences = running.licences
        floor = measure_floor(
            licences.full_a.data,
            running.installation.vendor.keyring,
            running.installation.status_file.read_bytes(),
            running.installation.status_file.parent,
            runs,
        )
        plain = ours.switch(running, units, licences.full_b, runs)
        enforcing = ours.switch(running, units, licences.expired, runs)
        peer = _peer_switching(ctx, units) if ctx.wants("peer") else None
        _report_switching(ctx, floor, plain, enforcing, peer)
        if ctx.wants("P6"):
            _phase_ctl(ctx, running.installation)


def _peer_switching(ctx: Context, units: UnitWatch) -> Switching:
    installation = ctx.peer_installation
    assert installation is not None
    licences = ours.Licences.signed_by(installation.vendor)
    with diy.armed(installation, ctx.systemd, licences):
        targets = (licences.full_a, licences.expired)
        return diy.switch(installation, ctx.systemd, units, targets, ctx.args.peer_runs)


def _report_switching(
    ctx: Context,
    floor: Floor,
    plain: Switching,
    enforcing: Switching,
    peer: Switching | None,
) -> None:
    report = ctx.report
    if ctx.wants("floor", "P1"):
        report.rows.append(
            Row(
                "floor (inotify+verify+write)",
                duration(floor.median),
                duration(floor.p99),
            )
        )
        report.notes.append(
            f"floor parts (median/p99): inotify rename delivery "
            f"{duration(floor.inotify.median)}/{duration(floor.inotify.p99)}, "
            f"Ed25519 verify {duration(floor.verify.median)}/"
            f"{duration(floor.verify.p99)}, atomic status write with fsync "
            f"{duration(floor.write.median)}/{duration(floor.write.p99)}"
        )
    peer_published = Summary.of(peer.published) if peer else None
    if ctx.wants("P1"):
        p1 = Summary.of(plain.published)
        goal = FLOOR_FACTOR * floor.median
        report.timing(
            "P1 licence -> status (full<->full)",
            p1,
            goal,
            f"<= 2x floor = {duration(goal)}",
            peer_published,
        )
        p1e = Summary.of(enforcing.published)
        report.timing(
            "P1 licence -> status (full<->expired)", p1e, goal, None, peer_published
        )
        report.rows[-1].goal = f"<= {duration(goal)}"
        report.notes.append(
            f"P1 / floor = {p1.median / floor.median:.2f} (full<->full, "
            f"{p1.runs} runs), {p1e.median / floor.median:.2f} (full<->expired, "
            f"{p1e.runs} runs)"
        )
    peer_stopped = Summary.of(peer.stopped) if peer else None
    ctx.peer_p1b = peer_stopped
    if ctx.wants("P1", "P1b"):
        report.timing(
            "P1b licence -> SMD stopped",
            Summary.of(enforcing.stopped),
            P1B_GOAL_S,
            peer=peer_stopped,
        )
        report.timing(
            "licence -> SMD active again",
            Summary.of(enforcing.started),
            peer=Summary.of(peer.started) if peer else None,
        )


def _phase_ctl(ctx: Context, installation: Installation) -> None:
    command, label = ours.ctl_command()
    samples = ours.measure_ctl(installation, command, ctx.args.ctl_runs)
    ctx.report.timing(label, Summary.of(samples), P6_GOAL_S)


def phase_expiry(ctx: Context) -> None:
    """P2, licensed's (real clock and libfaketime) and the peer's."""
    cases = ours.EXPIRY_CASES[: ctx.args.expiry_runs]
    peer = _peer_expiry(ctx, cases) if ctx.wants("peer") else None
    _expiry_real(ctx, peer)
    _expiry_faketime(ctx, peer)


def _expiry_real(ctx: Context, peer: Summary | None) -> None:
    gaps = (False, True) if ctx.args.quick else (False, True, False, False, False)
    with _unit_watch(ctx) as units:
        cases = ours.measure_expiry_real(ctx.root / "real", ctx.systemd, units, gaps)
    ctx.report.timing(
        "P2 lateness, real clock",
        Summary.of([case.component_stopped for case in cases]),
        P2_GOAL_S,
        peer=peer,
    )
    if peer is not None:
        ctx.report.rows[-1].peer += f" (p99 {duration(peer.p99)})"
    ctx.report.timing(
        "P2 SMD inactive signal, real clock",
        Summary.of([case.observed for case in cases]),
        P2_GOAL_S,
    )
    for case in cases:
        kind = "00:00 -> 01:00 at midnight" if case.gap else "no DST"
        if case.timed_out:
            ctx.report.notes.append(_timed_out(case.zone.name, case.timed_out))
            continue
        ctx.report.notes.append(
            f"P2 real clock, made-up zone {case.zone.name} ({kind}): "
            f"component_stopped {duration(case.component_stopped)}, SMD inactive "
            f"signal {duration(case.observed)} after the expiry instant "
            f"{case.zone.instant:%H:%M:%S} UTC"
        )


def _expiry_faketime(ctx: Context, peer: Summary | None) -> None:
    faketime = shutil.which("faketime")
    if faketime is None:
        ctx.report.notes.append("P2 skipped: libfaketime is not installed")
        return
    cases = ours.EXPIRY_CASES[: ctx.args.expiry_runs]
    lateness = ours.measure_expiry(ctx.root / "expiry", ctx.systemd, faketime, cases)
    ours_summary = Summary.of([late.component_stopped for late in lateness])
    for late in lateness:
        if late.timed_out:
            ctx.report.notes.append(_timed_out(late.case.zone, late.timed_out))
            continue
        ctx.report.notes.append(
            f"P2 {late.case.zone} valid until {late.case.valid_until}: "
            f"component_stopped {duration(late.component_stopped)}, unit_stopped "
            f"{duration(late.unit_stopped)} after the expiry instant "
            f"{late.case.instant:%Y-%m-%d %H:%M:%S} UTC"
        )
    ctx.report.timing("P2 lateness, libfaketime", ours_summary, P2_GOAL_S, peer=peer)


def _timed_out(zone: str, log: str) -> str:
    return (
        f"P2 {zone}: SMD was not stopped within {ours.P2_BOUND_S:g} s of the "
        f"expiry instant; counted as {ours.P2_BOUND_S:g} s (daemon log: {log})"
    )


def _peer_expiry(ctx: Context, cases: tuple[ours.ExpiryCase, ...]) -> Summary:
    """The peer's P2 over the same zones and days as licensed's libfaketime runs."""
    delivery = _peer_delivery(ctx)
    samples = []
    for case in cases:
        offset = diy.calendar_delay(case)
        samples.append(offset + delivery)
        ctx.report.notes.append(
            f"peer P2 {case.zone}: the timer's next elapse is "
            f"{duration(offset)} after the expiry instant"
        )
    return Summary.of(samples)


def _peer_delivery(ctx: Context) -> float:
    """Seconds from a HH:MM:01 schedule to SMD stopped by the peer's script."""
    if ctx.args.quick:
        a_minute_past_one = 61.0  # any HH:MM:01 is as late as 00:00:01
        predicted = diy.predicted_elapse(a_minute_past_one) - a_minute_past_one
        script = ctx.peer_p1b.median if ctx.peer_p1b else 0.0
        ctx.report.notes.append(
            f"peer P2 delivery (model, --quick): predicted accuracy delay "
            f"{duration(predicted)} + script {duration(script)} (its P1b)"
        )
        return predicted + script
    installation = ctx.peer_installation
    assert installation is not None
    licences = ours.Licences.signed_by(installation.vendor)
    with diy.armed(installation, ctx.systemd, licences), _unit_watch(ctx) as units:
        run = diy.measure_timer(installation, ctx.systemd, units, licences)
    ctx.report.notes.append(
        f"peer P2 delivery (real clock, timer moved to "
        f"{datetime.fromtimestamp(run.scheduled, UTC):%H:%M:%S} UTC, default "
        f"AccuracySec): service started {duration(run.fired)} after the schedule "
        f"(predicted from the boot ID: {duration(run.predicted)}), SMD stopped "
        f"after {duration(run.stopped)}"
    )
    return run.stopped


def phase_start_and_idle(ctx: Context) -> None:
    """P4, then P3 on the daemon of the last start."""
    assert ctx.postgres is not None
    started = ours.measure_start(
        ctx.root / "start", ctx.systemd, ctx.postgres, ctx.args.start_runs
    )
    ctx.report.timing("P4 start -> READY=1", Summary.of(started.samples), P4_GOAL_S)
    daemon = started.daemon
    assert daemon is not None
    try:
        if ctx.wants("P3"):
            _report_idle(ctx, ours.measure_idle(daemon, ctx.args.idle))
    finally:
        daemon.stop()


def _report_idle(ctx: Context, idle: ours.Idle) -> None:
    ctx.report.rows.append(
        Row(
            "P3 idle CPU per hour",
            f"{idle.cpu_per_hour:.3f} s",
            goal=f"<= {P3_CPU_GOAL_S} s",
            verdict=_verdict(idle.cpu_per_hour <= P3_CPU_GOAL_S),
            peer="0 (no process)",
        )
    )
    ctx.report.rows.append(
        Row(
            "P3 resident memory",
            f"{idle.rss_mb:.1f} MB",
            p99=f"peak {idle.peak_rss_mb:.1f} MB",
            goal=f"<= {P3_RSS_GOAL_MB:.0f} MB",
            verdict=_verdict(idle.rss_mb <= P3_RSS_GOAL_MB),
            peer="0 (no process)",
        )
    )
    ctx.report.notes.append(
        f"P3 window {idle.window:g} s after the first user count (check_interval 60 s,"
        f" count_interval 300 s); CPU from the threads' schedstat (ns),"
        f" {idle.ticks_per_hour:.2f} s/h in utime+stime ticks"
    )
    ctx.report.notes.append(
        f"P3 memory: resident {idle.rss_mb:.1f} MB, of which private to the daemon"
        f" (freed if it exits) {idle.private_mb:.1f} MB; proportional share"
        f" {idle.proportional_mb:.1f} MB"
    )


def phase_users(ctx: Context) -> None:
    """P5, through bench_users' own measurement (all its index variants)."""
    pg = ctx.postgres
    assert pg is not None
    persons = 20_000 if ctx.args.quick else 1_000_000
    variants = bench_users.VARIANTS
    users = {bench_users._build(pg, variant, persons, 0.6) for variant in variants}
    timings = bench_users._time_rounds(pg, ctx.args.user_runs)
    results = {
        v.name: bench_users._result(pg, v, timings[v], explain=False) for v in variants
    }
    best = results[bench_users.RECOMMENDED]
    scan = results["no index"]
    ctx.report.rows.append(
        Row(
            f"P5 user count ({persons} persons)",
            f"{best.median_ms:.2f} ms",
            f"{best.p99_ms:.2f} ms",
            f"<= {P5_GOAL_S * 1000:g} ms",
            _verdict(best.median_ms <= P5_GOAL_S * 1000),
            f"{scan.median_ms:.2f} ms (no index)",
            f"{scan.median_ms / best.median_ms:.1f}x",
        )
    )
    ctx.report.notes.append(
        f"P5 {users.pop()} users; with the recommended index: {best.plan}, index "
        f"{best.index_size}; without: {scan.plan}"
    )


# Running it all.


def main(argv: list[str] | None = None) -> int:
    """Run the selected figures and print the table; 1 if a goal is missed."""
    args = _parse(argv)
    structlog.configure(
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING)
    )
    root = Path(tempfile.mkdtemp(prefix="licensed-bench-"))
    report = Report()
    try:
        _run(Context(args, root, report))
    finally:
        if args.keep:
            print(f"bench folder kept: {root}")
        else:
            shutil.rmtree(root, ignore_errors=True)
    _print(report, args)
    return 1 if report.missed and not args.quick else 0


def _run(ctx: Context) -> None:
    with contextlib.ExitStack() as stack:
        if ctx.wants("floor", "P1", "P1b", "P2", "P3", "P4", "P6", "peer"):
            ok, reason = prerequisites()
            if not ok:
                raise SystemExit(f"bench: {reason}")
            ctx.sandbox = stack.enter_context(_sandbox(ctx))
        if ctx.wants("P3", "P4", "P5"):
            ctx.postgres = stack.enter_context(ThrowawayPostgres())
        if ctx.wants("floor", "P1", "P1b", "P6", "peer"):
            phase_switching(ctx)
        if ctx.wants("P2"):
            phase_expiry(ctx)
        if ctx.wants("P3", "P4"):
            phase_start_and_idle(ctx)
        if ctx.wants("P5"):
            phase_users(ctx)


@contextlib.contextmanager
def _sandbox(ctx: Context) -> Iterator[SandboxedSystemd]:
    units: dict[str, str] = {}
    if ctx.wants("peer"):
        ok, reason = diy.prerequisites()
        if not ok:
            raise SystemExit(f"bench: {reason}")
        ctx.peer_installation = ours.new_installation(ctx.root / "peer")
        units = diy.unit_files(ctx.peer_installation)
    with SandboxedSystemd(extra_units=units, writable_paths=[ctx.root]) as sandbox:
        yield sandbox


@contextlib.contextmanager
def _unit_watch(ctx: Context) -> Iterator[UnitWatch]:
    watch = UnitWatch(ctx.systemd.bus_address, (SMD, diy.SERVICE))
    try:
        yield watch
    finally:
        watch.close()


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench.run", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--quick", action="store_true", help="few runs: a smoke test")
    parser.add_argument("--runs", type=int, help="runs per P1 series (default 200)")
    parser.add_argument(
        "--idle", type=float, help="P3 idle window in seconds (default 600)"
    )
    parser.add_argument(
        "--only",
        default=",".join(FIGURES),
        help=f"comma-separated figures to measure, of {','.join(FIGURES)}",
    )
    parser.add_argument("--keep", action="store_true", help="keep the bench folder")
    args = parser.parse_args(argv)

    args.only = {name.strip() for name in args.only.split(",") if name.strip()}
    unknown = args.only - set(FIGURES)
    if unknown:
        parser.error(f"unknown figure(s) {sorted(unknown)}; choose from {FIGURES}")
    quick = args.quick
    args.runs = args.runs or (10 if quick else 200)
    args.idle = args.idle or (20.0 if quick else 600.0)
    args.peer_runs = args.runs if not quick else 4
    args.expiry_runs = 2 if quick else len(ours.EXPIRY_CASES)
    args.start_runs = 3 if quick else 20
    args.ctl_runs = 3 if quick else 20
    args.user_runs = 10 if quick else 50
    return args


def _print(report: Report, args: argparse.Namespace) -> None:
    header = Row(
        "figure",
        "ours median",
        "ours p99",
        "goal",
        "verdict",
        "peer median",
        "peer/ours",
    )
    rows = [header, *report.rows]
    columns = list(zip(*(_cells(row) for row in rows), strict=True))
    widths = [max(len(cell) for cell in column) for column in columns]
    print()
    print(_machine(args))
    for number, row in enumerate(rows):
        print(
            "  ".join(
                cell.ljust(w) for cell, w in zip(_cells(row), widths, strict=True)
            ).rstrip()
        )
        if number == 0:
            print("  ".join("-" * w for w in widths))
    for note in report.notes:
        print(f"- {note}")
    if report.missed:
        print(f"missed: {', '.join(report.missed)}")


def _cells(row: Row) -> list[str]:
    return [row.figure, row.ours, row.p99, row.goal, row.verdict, row.peer, row.ratio]


def _machine(args: argparse.Namespace) -> str:
    model = "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    mode = "quick" if args.quick else "full"
    return (
        f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {mode} run, {os.cpu_count()} x "
        f"{model}, Linux {platform.release()}, Python {platform.python_version()}, "
        f"load average {os.getloadavg()[0]:.2f}"
    )


if __name__ == "__main__":
    sys.exit(main())
