"""Skip a test whose prerequisites are missing, except in CI, where it fails.

A developer laptop may lack root, a kernel feature or a binary; the test then skips
with the reason. In CI (``CI=true``) the environment is supposed to provide
everything, so a missing prerequisite is a failure rather than a silent skip.
"""

from __future__ import annotations

import os

import pytest


def require(ok: bool, reason: str) -> None:
    """Skip (or, with ``CI=true``, fail) the current test unless ``ok``."""
    if ok:
        return

    if os.environ.get("CI") == "true":
        pytest.fail(f"prerequisite missing in CI: {reason}", pytrace=False)
    pytest.skip(reason)
