"""The public surface: ``licensed.__all__`` is small, deliberate and importable."""

from __future__ import annotations

import importlib
import importlib.resources

import pytest

import licensed

EXPECTED = [
    "Audience",
    "Decision",
    "Licence",
    "LicenceType",
    "Message",
    "State",
    "Status",
    "StatusUnavailable",
    "evaluate",
    "expiry_instant",
    "read_status",
]


def test_the_exported_names_are_exactly_the_expected_ones() -> None:
    """If a name is added to or dropped from __all__, this test says so."""
    assert sorted(licensed.__all__) == EXPECTED


def test_all_has_no_duplicates() -> None:
    """If __all__ lists a name twice, the list is wrong."""
    assert len(set(licensed.__all__)) == len(licensed.__all__)


@pytest.mark.parametrize("name", EXPECTED)
def test_each_exported_name_is_importable(name: str) -> None:
    """If a name is exported, 'from licensed import NAME' gives a real object."""
    module = importlib.import_module("licensed")

    exported = getattr(module, name)

    assert exported is not None
    assert getattr(exported, "__module__", "").startswith("licensed.")


def test_star_import_gives_the_exported_names() -> None:
    """If code does 'from licensed import *', it gets exactly __all__."""
    namespace: dict[str, object] = {}

    exec("from licensed import *", namespace)  # noqa: S102 - the point of the test

    assert sorted(k for k in namespace if k != "__builtins__") == EXPECTED


def test_the_package_is_typed() -> None:
    """If a consumer runs mypy, the py.typed marker makes our hints count."""
    assert licensed.__file__ is not None
    marker = importlib.resources.files("licensed") / "py.typed"

    assert marker.is_file()
