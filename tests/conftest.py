"""Shared pytest fixtures.

Other blocks may be added below; keep each in its own clearly marked section.
"""

from __future__ import annotations

import os
import pwd
import shutil
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.sshd import Sshd, ensure_xroad_accounts, fresh_subdir, make_traversable_dir
from support.tools import agent_for, require_root, require_tool

# Test the checkout, installed or not (`pytest` alone does not put the repo root on sys.path).
_REPO = str(Path(__file__).resolve().parent.parent)
if _REPO not in sys.path:
    sys.path.insert(0, _REPO)

from syncagent.demo.sample_tree import build_primary_tree, build_secondary_local  # noqa: E402

# =============================================================================================
# BEGIN sshd / primary-tree fixtures (tests/support/sshd.py, syncagent/demo/sample_tree.py)
# =============================================================================================


def xroad_owner() -> tuple[int, int] | None:
    """(uid, gid) of ``xroad`` when we can chown to it, else None (tree stays ours)."""
    if os.geteuid() != 0:
        return None
    try:
        pw = pwd.getpwnam("xroad")
    except KeyError:
        return None
    return pw.pw_uid, pw.pw_gid


def _new_sshd() -> Sshd:
    require_root("sshd logins as root and xroad-slave")
    sshd_bin = require_tool("sshd")
    require_tool("ssh-keygen")
    ensure_xroad_accounts()
    server = Sshd(sshd_bin=sshd_bin)
    try:
        server.start()
    except BaseException:
        server.close()
        raise
    return server


@pytest.fixture(scope="session")
def sshd() -> Iterator[Sshd]:
    """One sshd for the session. Tests that stop, kill, restart or re-key it use fresh_sshd."""
    server = _new_sshd()
    yield server
    server.close()


@pytest.fixture
def fresh_sshd() -> Iterator[Sshd]:
    """A private sshd for tests that break it; stopped and deleted at teardown."""
    server = _new_sshd()
    yield server
    server.close()


@pytest.fixture(scope="session")
def tree_area() -> Iterator[Path]:
    """A 0711 directory: trees under it are reachable by ``xroad-slave`` via any sshd instance."""
    ensure_xroad_accounts()
    area = make_traversable_dir("syncagent-trees-")
    yield area
    shutil.rmtree(area, ignore_errors=True)


@pytest.fixture
def primary_tree(tree_area: Path) -> Path:
    """A fresh primary /etc/xroad (3 softToken keys), owned by xroad, mtimes an hour old."""
    root = fresh_subdir(tree_area, "xroad")
    build_primary_tree(root, mtime=time.time() - 3600, owner=xroad_owner())
    return root


# =============================================================================================
@pytest.fixture(scope="session")
def xroad_agent(sshd: Sshd) -> Iterator[Path]:
    """An agent install both root and xroad can run (the sshd fixture made the accounts)."""
    require_root("commands run as root and as xroad")
    with agent_for("xroad") as path:
        yield path


@pytest.fixture
def xroad_area() -> Iterator[Path]:
    """A directory the xroad user can traverse (pytest's tmp_path is root's, 0700)."""
    path = make_traversable_dir("syncagent-xroad-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def publish_dir(tree_area: Path) -> Path:
    """A publish dir beside the primary tree (never inside it), reachable by xroad-slave."""
    return fresh_subdir(tree_area, "publish")


# END sshd / primary-tree fixtures
# =============================================================================================


@pytest.fixture
def target(tmp_path: Path) -> Path:
    """A secondary's /etc/xroad before any sync: only its node-local files."""
    t = tmp_path / "etc-xroad"
    t.mkdir(mode=0o751)
    build_secondary_local(t)
    return t
