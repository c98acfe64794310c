"""Helpers for tests that need external programs.

A developer without OpenSSH installed should get skips, but CI must never go green by skipping
the tests that matter most, so a missing tool there is a failure.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Mapping

import pytest


def require_tool(name: str) -> str:
    """Return the tool's path; skip locally, fail in CI (env ``CI=true``) when it is missing."""
    path = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/bin:/bin")
    if path:
        return path
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{name} is required in CI but not installed")
    pytest.skip(f"{name} is not installed")


def require_file(candidates: list[str], what: str) -> str:
    """The first of ``candidates`` that exists (a helper off PATH, e.g. podman's catatonit);
    skip locally, fail in CI, when none does."""
    for path in candidates:
        if os.path.exists(path):
            return path
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"{what} is required in CI but not installed (looked for {candidates})")
    pytest.skip(f"{what} is not installed")


def require_root(reason: str) -> None:
    """Skip locally, fail in CI, when not root (accounts, chown and sshd logins need it)."""
    if os.geteuid() == 0:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"root is required in CI: {reason}")
    pytest.skip(f"needs root: {reason}")


def run_syncagent(
    *args: str, env: Mapping[str, str], timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """``python -m syncagent ARGS`` as an entrypoint runs it, with exactly ``env``."""
    return subprocess.run(
        [sys.executable, "-m", "syncagent", *args],
        env=dict(env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )
