"""Tests for syncagent.daemon.control: pause flags, pid file, trigger file."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from syncagent.daemon.control import ControlFiles
from syncagent.local.state import StateDir
from syncagent.settings import FIELDS_BY_NAME

# ---- control files ---------------------------------------------------------------------------


def files_in(path: Path, flag: Path | None = None) -> ControlFiles:
    return ControlFiles(StateDir(path), flag or path / "no-such-disable-flag")


def test_the_default_disable_flag_is_ig_xlbs() -> None:
    assert FIELDS_BY_NAME["sync.disable_flag"].default == Path("/var/tmp/xroad/sync-disabled")


def test_pause_flags_include_the_xlb_flag(tmp_path: Path) -> None:
    xlb = tmp_path / "var-tmp-xroad" / "sync-disabled"
    state = tmp_path / "state"
    files = files_in(state, xlb)
    assert files.paused_by() == ()
    assert files.pause("test") and not files.pause("test")
    assert files.paused_by() == (str(state / "paused"),)
    xlb.parent.mkdir()
    xlb.touch()
    assert len(files.paused_by()) == 2
    assert files.unpause() and not files.unpause()
    assert files.paused_by() == (str(xlb),)


def test_pid_file_names_only_a_live_daemon(tmp_path: Path) -> None:
    files = files_in(tmp_path)
    assert files.running_pid() is None
    files.write_pid()
    assert files.running_pid() == os.getpid()
    files.remove_pid()
    assert not (tmp_path / "daemon.pid").exists()
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    (tmp_path / "daemon.pid").write_text(f"{child.pid}\n")
    assert files.running_pid() is None  # exited
    (tmp_path / "daemon.pid").write_text(f"{os.getpid()} 1\n")
    assert files.running_pid() is None  # pid reused by another process


def test_sync_request_falls_back_to_the_trigger_file(tmp_path: Path) -> None:
    files = files_in(tmp_path)
    how = files.request_sync()
    assert "no daemon is running" in how and (tmp_path / "sync-now").exists()
    assert files.take_trigger() and not files.take_trigger()
