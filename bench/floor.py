"""The physical floor of "licence replaced, new status published".

Whatever licensed does, publishing a new decision needs at least three things:
the kernel telling it the licence was renamed into place (inotify), one Ed25519
verification of the licence, and one crash-safe status write (write, fsync,
rename, fsync the folder: ``licensed.fsio.write_atomic``). Each is timed alone here,
in the same folders and with the same bytes the daemon uses, and the floor is the
sum of their medians.
"""

from __future__ import annotations

import multiprocessing
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

from inotify_simple import INotify, flags

from bench.stats import Summary
from licensed.fsio import write_atomic
from licensed.keyring import Keyring
from licensed.licence_file import split


@dataclass(frozen=True)
class Floor:
    """The three parts of the floor, each summarised over its runs."""

    inotify: Summary
    verify: Summary
    write: Summary

    @property
    def median(self) -> float:
        return self.inotify.median + self.verify.median + self.write.median

    @property
    def p99(self) -> float:
        return self.inotify.p99 + self.verify.p99 + self.write.p99


def measure_floor(
    licence: bytes, keyring: Keyring, status: bytes, folder: Path, runs: int
) -> Floor:
    """Time each part ``runs`` times; ``folder`` is the status file's folder."""
    return Floor(
        inotify=Summary.of(_inotify_delivery(folder / "floor-probe", runs)),
        verify=Summary.of(_verify(licence, keyring, runs)),
        write=Summary.of(_status_write(folder / "floor-status.json", status, runs)),
    )


def _inotify_delivery(folder: Path, runs: int) -> list[float]:
    """From a rename to a reader in another process waking with its event.

    A daemon is asleep in ``select`` when the licence is replaced, so the floor
    includes the kernel waking a blocked reader in another process, not only the
    cost of reading an event already queued.
    """
    folder.mkdir(exist_ok=True)
    target = folder / "licence.lic"
    staged = folder / "staged.lic"
    context = multiprocessing.get_context("fork")
    ours, theirs = context.Pipe()
    reader = context.Process(target=_wake_on_rename, args=(folder, theirs, runs))
    reader.start()
    samples = []
    try:
        if not ours.poll(10):
            raise RuntimeError("the inotify reader did not start")
        ours.recv()  # watching
        for _ in range(runs):
            staged.write_bytes(b"x")
            start = time.perf_counter()
            staged.replace(target)
            if not ours.poll(10):
                raise RuntimeError("the inotify reader was not woken within 10 s")
            samples.append(ours.recv() - start)
    finally:
        reader.join(timeout=10)
        if reader.is_alive():
            reader.kill()
    return samples


def _wake_on_rename(folder: Path, pipe: Connection, runs: int) -> None:
    with INotify() as inotify:
        inotify.add_watch(folder, flags.MOVED_TO)
        pipe.send(time.perf_counter())
        for _ in range(runs):
            inotify.read()
            # perf_counter is CLOCK_MONOTONIC: one clock for both processes.
            pipe.send(time.perf_counter())


def _verify(licence: bytes, keyring: Keyring, runs: int) -> list[float]:
    body, key_id, signature = split(licence)
    key = keyring.keys[key_id]
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        key.verify(signature, body)
        samples.append(time.perf_counter() - start)
    return samples


def _status_write(path: Path, document: bytes, runs: int) -> list[float]:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        write_atomic(path, document)
        samples.append(time.perf_counter() - start)
    path.unlink()
    return samples
