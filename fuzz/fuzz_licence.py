"""The long fuzzing campaign over the reader, the verifier, the config and install.

Usage (from the repository root, with atheris installed in .venv)::

    .venv/bin/python -m fuzz.fuzz_licence reader --runs 500000 --seed 1
    .venv/bin/python -m fuzz.fuzz_licence install --runs 100000 --seed 1

``reader`` feeds coverage-guided inputs (libFuzzer through atheris) to
``parse_licence`` and ``config.parse``. The first input byte picks how the rest is
used: as a whole file, as a body re-signed with the trusted key (so the body parser
runs behind a valid signature), as choices that damage a genuine file or body with
``fuzz.mutations``, as configuration text, or as the unsigned signature block. The
only outcomes allowed are a licence for the product, ``InvalidLicence`` with a
one-line reason, ``Config`` and ``ConfigError``; anything else stops the run with a
traceback and a ``crash-*`` file holding the input. One exception: a ``ValueError``
or ``RecursionError`` out of the configuration parser (pathological TOML, which it
once let escape) is counted as ``config_uncaught_*`` rather than fatal, so that it
cannot end a run before the licence reader has been fuzzed.

``install`` drives ``licensed.install.install`` (what ``licensectl install`` runs)
with damaged copies of a genuine licence and checks after every attempt that the
installed licence file is byte-identical and no temporary file is left beside it.

Each run prints ``fuzz_summary`` lines as JSON (inputs, seconds, rate, outcomes)
every 100 000 inputs and at the end. With ``--engine random`` a seeded
``random.Random`` replaces libFuzzer, for machines without atheris.

Limitations: atheris must be installed by hand (``pip install atheris``); it is
not a project dependency. libFuzzer's ``-runs`` counts inputs per process, so two
processes with different seeds are run side by side to use two cores.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import random
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

try:
    import atheris  # type: ignore[import-untyped, import-not-found, unused-ignore]
except ImportError:  # pragma: no cover - depends on the machine
    atheris = None

if atheris is not None:
    with atheris.instrument_imports(include=["licensed", "tomllib", "fuzz"]):
        from fuzz import make_corpus, mutations, oracle
        from licensed import config as config_module
        from licensed.errors import InstallError, InvalidLicence
        from licensed.install import install
        from licensed.keyring import Keyring
        from licensed.licence_file import BEGIN, END, SignedLicence
else:
    from fuzz import make_corpus, mutations, oracle
    from licensed import config as config_module
    from licensed.errors import InstallError, InvalidLicence
    from licensed.install import install
    from licensed.keyring import Keyring
    from licensed.licence_file import BEGIN, END, SignedLicence

REPORT_EVERY = 100_000
MAX_LEN = 16_384

CONFIG_SEED = (
    'licence_file = "/etc/licensed/licence.lic"\nkeys_dir = "/etc/licensed/keys"\n'
    'timezone = "Europe/Zurich"\ncheck_interval = 60\nclock_rollback_tolerance = 7200'
    '\ntrial_warning_days = [14, 3]\nlog_format = "json"\n[components]\n"SMD" = '
    '"assistant-smd.service"\n[database]\nconninfo = "dbname=assistant"\n'
    "statement_timeout = 2.5\n"
)

Pick = mutations.Pick
Target = Callable[[bytes, Pick], None]


class Material:
    """The trusted key, a genuine licence file and its body, made from a seed."""

    def __init__(self, folder: Path) -> None:
        self.vendor_key: Ed25519PrivateKey = make_corpus.derived_key("trusted")
        self.keys_dir = make_corpus.write_keyring(folder / "keys", self.vendor_key)
        self.keyring = Keyring.load(self.keys_dir)
        self.genuine = make_corpus.genuine_trial(self.vendor_key)
        self.installed = make_corpus.genuine_full(self.vendor_key)
        self.body = make_corpus.body_of(self.genuine)

    def resign(self, body: bytes) -> bytes:
        signature = base64.b64encode(self.vendor_key.sign(body)).decode()
        block = (
            f'{BEGIN}\nkey_id = "{make_corpus.TRUSTED_ID}"\n'
            f'ed25519 = "{signature}"\n{END}\n'
        )
        return body + block.encode()


class Reader:
    """The reader campaign: one input, one of six ways of using it."""

    def __init__(self, material: Material) -> None:
        self.material = material
        self.outcomes: Counter[str] = Counter()
        self.modes: tuple[Callable[[bytes, Pick], str], ...] = (
            self.whole_file,
            self.resigned_body,
            self.damaged_file,
            self.damaged_resigned_body,
            self.configuration,
            self.signature_block,
        )

    def run(self, data: bytes, pick: Pick) -> None:
        mode = self.modes[data[0] % len(self.modes)] if data else self.whole_file
        self.outcomes[mode(data[1:], pick)] += 1

    def whole_file(self, data: bytes, pick: Pick) -> str:
        return self._licence(data)

    def resigned_body(self, data: bytes, pick: Pick) -> str:
        return self._licence(self.material.resign(data))

    def damaged_file(self, data: bytes, pick: Pick) -> str:
        damaged = mutations.mutate(self.material.genuine, pick, 1 + pick(4))
        if damaged == self.material.genuine:
            return "unchanged"
        oracle.refuse(damaged, self.material.keyring)
        return "refused"

    def damaged_resigned_body(self, data: bytes, pick: Pick) -> str:
        body = mutations.mutate(self.material.body, pick, 1 + pick(4))
        return self._licence(self.material.resign(body))

    def configuration(self, data: bytes, pick: Pick) -> str:
        try:
            outcome = oracle.read_config(data.decode("utf-8", "replace"))
        except (ValueError, RecursionError) as exc:
            # tomllib raises these for a number past 4300 digits and for deep
            # nesting; config.parse once let them out. Counted, not fatal, so a
            # run goes on to fuzz the licence reader.
            return f"config_uncaught_{type(exc).__name__}"
        return "config" if isinstance(outcome, config_module.Config) else "config_error"

    def signature_block(self, data: bytes, pick: Pick) -> str:
        framed = self.material.body + f"{BEGIN}\n".encode() + data + f"{END}\n".encode()
        outcome = oracle.read(framed, self.material.keyring)
        if isinstance(outcome, SignedLicence):
            return "block_accepted" if framed == self.material.genuine else "forged"
        return "refused"

    def _licence(self, data: bytes) -> str:
        outcome = oracle.read(data, self.material.keyring)
        return "accepted" if isinstance(outcome, SignedLicence) else "refused"


class Installer:
    """The install campaign: damaged files offered to install, checked afterwards."""

    NOW = datetime(2026, 12, 15, tzinfo=UTC)

    def __init__(self, material: Material, folder: Path) -> None:
        self.material = material
        (folder / "etc").mkdir()
        (folder / "state").mkdir()
        self.config = config_module.Config(
            licence_file=folder / "etc" / "licence.lic",
            keys_dir=material.keys_dir,
            state_dir=folder / "state",
            timezone="Europe/Zurich",
        )
        self.config.licence_file.write_bytes(material.installed)
        self.digest = hashlib.sha256(material.installed).hexdigest()
        self.source = folder / "offered.lic"
        self.outcomes: Counter[str] = Counter()

    def run(self, data: bytes, pick: Pick) -> None:
        if data and data[0] % 2:
            offered = data[1:]
        else:
            offered = mutations.mutate(self.material.genuine, pick, 1 + pick(4))
        if offered == self.material.genuine:
            self.outcomes["genuine_skipped"] += 1
            return
        self.source.write_bytes(offered)
        self.outcomes[self._attempt()] += 1
        self._check_unchanged()

    def _attempt(self) -> str:
        try:
            install(self.config, self.source, now=self.NOW, force=False, dry_run=False)
        except InvalidLicence as exc:
            oracle.check_reason(exc)
            return "refused"
        except InstallError as exc:
            oracle.check_reason(exc)
            return "install_error"
        raise oracle.AcceptedError(f"install accepted {self.source.read_bytes()!r}")

    def _check_unchanged(self) -> None:
        data = self.config.licence_file.read_bytes()
        if hashlib.sha256(data).hexdigest() != self.digest:
            raise AssertionError("the installed licence changed")
        names = sorted(p.name for p in self.config.licence_file.parent.iterdir())
        if names != ["licence.lic"]:
            raise AssertionError(f"the licence folder holds {names}")


class Meter:
    """Counts inputs and prints a JSON summary every ``REPORT_EVERY`` and at the end."""

    def __init__(self, campaign: str, runs: int, outcomes: Counter[str]) -> None:
        self.campaign = campaign
        self.runs = runs
        self.outcomes = outcomes
        self.count = 0
        self.started = time.monotonic()

    def tick(self) -> None:
        self.count += 1
        if self.count % REPORT_EVERY == 0 or self.count == self.runs:
            self.report()

    def report(self) -> None:
        seconds = time.monotonic() - self.started
        summary: dict[str, Any] = {
            "event": "fuzz_summary",
            "campaign": self.campaign,
            "inputs": self.count,
            "seconds": round(seconds, 1),
            "rate": round(self.count / seconds) if seconds else None,
            "outcomes": dict(sorted(self.outcomes.items())),
            "pid": os.getpid(),
        }
        print(json.dumps(summary), file=sys.stderr, flush=True)


def seeds(campaign: str, material: Material) -> list[bytes]:
    """Starting inputs: each reader mode once with genuine material."""
    if campaign == "install":
        return [b"\x00", b"\x01" + material.genuine]
    block = material.genuine[len(material.body) + len(BEGIN) + 1 : -len(END) - 1]
    return [
        b"\x00" + material.genuine,
        b"\x01" + material.body,
        b"\x02" + bytes(range(32)),
        b"\x03" + bytes(range(32)),
        b"\x04" + CONFIG_SEED.encode(),
        b"\x05" + block,
    ]


def run_atheris(run: Target, meter: Meter, options: argparse.Namespace) -> None:
    """Hand the target to libFuzzer for ``options.runs`` inputs."""

    def one_input(data: bytes) -> None:
        provider = atheris.FuzzedDataProvider(data)
        run(data, lambda n: provider.ConsumeIntInRange(0, n - 1) if n > 1 else 0)
        meter.tick()

    corpus = Path(options.workdir) / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    for number, seed in enumerate(options.seed_inputs):
        (corpus / f"seed-{number}").write_bytes(seed)
    argv = [
        sys.argv[0],
        f"-runs={options.runs}",
        f"-seed={options.seed}",
        f"-max_len={MAX_LEN}",
        f"-artifact_prefix={options.workdir}/",
        "-print_final_stats=1",
        str(corpus),
    ]
    atheris.Setup(argv, one_input)
    atheris.Fuzz()


def run_random(run: Target, meter: Meter, options: argparse.Namespace) -> None:
    """Seeded random inputs: a seed input damaged, or random bytes."""
    rng = random.Random(options.seed)  # noqa: S311 - reproducible, not secret
    for _ in range(options.runs):
        seed = options.seed_inputs[rng.randrange(len(options.seed_inputs))]
        data = seed[:1] + mutations.mutate(
            seed[1:], rng.randrange, 1 + rng.randrange(4)
        )
        run(data, rng.randrange)
        meter.tick()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("campaign", choices=["reader", "install"])
    parser.add_argument("--runs", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--engine", choices=["atheris", "random"], default="atheris")
    parser.add_argument("--workdir", default=None, help="corpus and crash files")
    options = parser.parse_args(argv)
    if options.engine == "atheris" and atheris is None:
        parser.error(
            "atheris is not installed: pip install atheris, or --engine random"
        )

    folder = Path(tempfile.mkdtemp(prefix=f"fuzz-{options.campaign}-"))
    options.workdir = options.workdir or str(folder)
    material = Material(folder)
    if options.campaign == "reader":
        target: Reader | Installer = Reader(material)
    else:
        target = Installer(material, folder)
    options.seed_inputs = seeds(options.campaign, material)
    meter = Meter(options.campaign, options.runs, target.outcomes)

    engine = run_atheris if options.engine == "atheris" else run_random
    engine(target.run, meter, options)
    if meter.count % REPORT_EVERY and meter.count != options.runs:
        meter.report()
    return 0


if __name__ == "__main__":
    sys.exit(main())
