"""Helpers for tests that need external programs.

A developer without OpenSSH installed should get skips, but CI must never go green by skipping
the tests that matter most, so a missing tool there is a failure.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path

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


AGENT_BIN = Path(sys.executable).parent / "syncagent"  # the venv's console script


def runs_as(uid: int, gid: int, cmd: list[str]) -> bool:
    """Whether ``cmd`` starts after a plain setuid/setgid, as supervisord does it."""
    try:
        res = subprocess.run(
            cmd, user=uid, group=gid, extra_groups=[], capture_output=True, timeout=60
        )
    except OSError:
        return False
    return res.returncode == 0


@contextlib.contextmanager
def agent_for(user: str) -> Iterator[Path]:
    """The agent as the image has it: an install that ``user`` (and root) can execute.

    The image's /opt/syncagent venv is world-readable. This checkout's venv may not be for
    xroad (its interpreter can live under a 0700 /root, e.g. with pyenv): then make a venv in a
    traversable temp dir on a system interpreter of the same version, seeing the checkout's
    venv's packages (``site.addsitedir`` from a .pth, so the editable install works too).
    """
    pw = pwd.getpwnam(user)
    if runs_as(pw.pw_uid, pw.pw_gid, [str(AGENT_BIN), "--help"]):
        yield AGENT_BIN
        return
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    system = shutil.which(version, path="/usr/local/bin:/usr/bin:/bin")
    assert system and runs_as(pw.pw_uid, pw.pw_gid, [system, "-c", ""]), (
        f"{user} cannot run {AGENT_BIN}, and there is no system {version} it could run"
    )
    base = Path(tempfile.mkdtemp(prefix=f"syncagent-{user}-venv-"))
    base.chmod(0o711)
    try:
        venv = base / "venv"
        subprocess.run(
            [system, "-m", "venv", "--without-pip", str(venv)],
            check=True,
            capture_output=True,
            timeout=120,
        )
        (venv / "lib").chmod(0o755)
        (site,) = (venv / "lib").glob("python3*/site-packages")
        ours = [p for p in sys.path if p.endswith("site-packages") and p.startswith(sys.prefix)]
        (site / "checkout-venv.pth").write_text(
            "".join(f"import site; site.addsitedir({p!r})\n" for p in ours)
        )
        agent = venv / "bin" / "syncagent"
        agent.write_text(
            f"#!{venv}/bin/python\nimport sys\nfrom syncagent.cli import main\nsys.exit(main())\n"
        )
        agent.chmod(0o755)
        assert runs_as(pw.pw_uid, pw.pw_gid, [str(agent), "--help"]), f"{agent} fails as {user}"
        yield agent
    finally:
        shutil.rmtree(base, ignore_errors=True)
