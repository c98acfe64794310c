"""The control commands as an operator types them (no daemon needed for these)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from support.tools import run_syncagent


def _cli(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNCAGENT_")}
    env.update(
        SYNCAGENT_PRIMARY_HOST="primary.invalid",
        SYNCAGENT_PRIMARY_HOST_KEY_POLICY="accept-new",
        SYNCAGENT_SYNC_TARGET=str(tmp_path / "target"),
        SYNCAGENT_SYNC_DISABLE_FLAG=str(tmp_path / "xlb" / "sync-disabled"),
    )
    return run_syncagent(*args, env=env, timeout=60)


def test_pause_resume_and_the_xlb_flag(tmp_path: Path) -> None:
    (tmp_path / "target").mkdir()
    flag = tmp_path / "target/.syncagent/paused"

    res = _cli(tmp_path, "pause")
    assert res.returncode == 0 and res.stdout.startswith("paused: created ") and flag.exists()
    assert "already present" in _cli(tmp_path, "pause").stdout

    xlb = tmp_path / "xlb/sync-disabled"
    xlb.parent.mkdir()
    xlb.touch()
    res = _cli(tmp_path, "resume")
    assert res.returncode == 1 and not flag.exists()
    assert f"still PAUSED by {xlb}" in res.stdout
    xlb.unlink()
    assert _cli(tmp_path, "pause").returncode == 0
    res = _cli(tmp_path, "resume")
    assert res.returncode == 0 and "the daemon syncs now" not in res.stdout
    assert res.stdout.endswith("; no daemon is running: syncing resumes when it starts\n")
    assert _cli(tmp_path, "pause").returncode == 0
    res = _cli(tmp_path, "resume", "--json")
    assert res.returncode == 0 and json.loads(res.stdout) == {"paused_by": [], "result": "resumed"}


def test_status_without_a_daemon_is_not_ready(tmp_path: Path) -> None:
    (tmp_path / "target").mkdir()
    res = _cli(tmp_path, "status")
    assert res.returncode == 1
    assert res.stdout.startswith("NOT READY: daemon not running: generation (none), ")
    assert "connected" not in res.stdout and "None" not in res.stdout
    res = _cli(tmp_path, "status", "--json")
    assert res.returncode == 1 and json.loads(res.stdout)["ready"] is False


def test_sync_now_without_a_daemon_leaves_a_trigger_file(tmp_path: Path) -> None:
    (tmp_path / "target").mkdir()
    res = _cli(tmp_path, "sync-now")
    assert res.returncode == 0 and "no daemon is running" in res.stdout
    assert (tmp_path / "target/.syncagent/sync-now").exists()


def test_rollback_without_kept_generations_refuses_and_does_not_pause(tmp_path: Path) -> None:
    target = tmp_path / "target"
    target.mkdir()
    (target / "conf.d").mkdir()
    (target / "conf.d/node.ini").write_text("[node]\ntype = slave\n")
    res = _cli(tmp_path, "rollback")
    assert res.returncode == 1 and res.stdout.startswith("rollback refused: [apply] no kept")
    assert not (target / ".syncagent/paused").exists()


def test_accept_rollback_forgets_the_followed_head_and_asks_for_a_sync(tmp_path: Path) -> None:
    """The way out of publish_rollback an operator takes on purpose (a primary restored from a
    backup, or replaced by one whose clock is behind)."""
    state = tmp_path / "target/.syncagent"
    state.mkdir(parents=True)
    doc = {"generation": "abc", "sequence": 1764590000000, "applied": "abc"}
    (state / "published.json").write_text(json.dumps(doc))
    res = _cli(tmp_path, "accept-rollback")
    assert res.returncode == 0, res.stderr
    assert res.stdout.startswith("accept-rollback: forgot #1764590000000 (abc)")
    assert not (state / "published.json").exists()
    assert (state / "sync-now").exists()
    res = _cli(tmp_path, "accept-rollback", "--json")
    assert res.returncode == 0 and json.loads(res.stdout) == {
        "forgotten": None,
        "result": "accepted",
    }


def test_control_commands_need_only_where_the_state_is(tmp_path: Path) -> None:
    """On an IG-XLB host `syncagent pause` as systemd/README.md writes it: no primary settings
    (those live in the config file the daemon reads), only the target."""
    (tmp_path / "target").mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SYNCAGENT_", "XROAD_"))}
    env.update(
        SYNCAGENT_SYNC_TARGET=str(tmp_path / "target"),
        SYNCAGENT_SYNC_DISABLE_FLAG=str(tmp_path / "xlb" / "sync-disabled"),
    )
    for command, code in (("pause", 0), ("status", 1), ("sync-now", 0), ("resume", 0)):
        res = run_syncagent(command, env=env, timeout=60)
        assert res.returncode == code, (command, res.stdout, res.stderr)
        assert "primary.host" not in res.stdout + res.stderr
