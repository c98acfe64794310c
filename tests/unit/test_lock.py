"""The locks (requirements/*.lock) install exactly what pyproject.toml allows, with hashes."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[2]
PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
PIN = re.compile(r"^([A-Za-z0-9_.\-]+)==([^\s\\]+)")


def pins(lock: str) -> dict[str, str]:
    """name -> version of every pinned line; each pin must carry at least one sha256."""
    text = (REPO / "requirements" / lock).read_text()
    found: dict[str, str] = {}
    for block in re.split(r"\n(?=[A-Za-z0-9])", text):
        m = PIN.match(block)
        if m:
            assert "--hash=sha256:" in block, f"{lock}: {m.group(1)} has no hash"
            found[canonicalize_name(m.group(1))] = m.group(2)
    return found


@pytest.mark.parametrize(
    ("lock", "requirements"),
    [
        ("runtime.lock", PROJECT["dependencies"]),
        ("test.lock", PROJECT["dependencies"] + PROJECT["optional-dependencies"]["test"]),
    ],
)
def test_lock_satisfies_pyproject(lock: str, requirements: list[str]) -> None:
    locked = pins(lock)
    for line in requirements:
        req = Requirement(line)
        name = canonicalize_name(req.name)
        assert name in locked, f"{lock} lacks {req.name} (refresh it: see docs/testing.md)"
        assert req.specifier.contains(locked[name], prereleases=True), (
            f"{lock} pins {req.name}=={locked[name]}, outside pyproject's {req.specifier}"
        )


def test_runtime_lock_agrees_with_test_lock() -> None:
    test = pins("test.lock")
    for name, version in pins("runtime.lock").items():
        assert test.get(name) == version, f"{name}: runtime {version}, test {test.get(name)}"
