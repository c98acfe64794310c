"""Fixtures of the oracle tests: X-Road's real readers (tests/support/readers.py)."""

from __future__ import annotations

import pytest
from support.readers import Harness, harness


@pytest.fixture(scope="session")
def oracle() -> Harness:
    """The compiled harness, once per session; skips (locally) or fails (CI=true) when the JDK
    or a jar is missing."""
    return harness()
