"""pytest fixtures for tests that sign and read licence files in memory.

- ``vendor`` (module): a vendor key pair whose public key is trusted in a folder
  of the module's own.
- ``keyring`` (module): that folder, loaded.

A module whose tests need a fresh vendor per test defines its own ``vendor``
fixture, which takes precedence over these.
"""

from __future__ import annotations

import pytest

from licensed.keyring import Keyring
from tests.harness.licences import Vendor


@pytest.fixture(scope="module")
def vendor(tmp_path_factory: pytest.TempPathFactory) -> Vendor:
    """The trusted vendor, shared by the module."""
    return Vendor(tmp_path_factory.mktemp("keys"))


@pytest.fixture(scope="module")
def keyring(vendor: Vendor) -> Keyring:
    return vendor.keyring
