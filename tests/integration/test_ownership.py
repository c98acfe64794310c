"""Whoever runs a command, the unprivileged agent can still use its state dir.

The agent runs as ``xroad`` (systemd User=, supervisord user=); operators often type commands
as root (``kubectl exec``). These run the real CLI as both, against a real sshd.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

from support.operator import Run, runner, xroad_ids, xroad_secondary
from support.sshd import Sshd, free_port
from support.trees import age
from support.waiting import until


def _setup(xroad_agent: Path, sshd: Sshd, primary_tree: Path, xroad_area: Path) -> tuple[Run, Path]:
    run, target, _ = xroad_secondary(xroad_agent, sshd, primary_tree, xroad_area)
    return run, target / ".syncagent"


def _setup_env(
    xroad_agent: Path, sshd: Sshd, primary_tree: Path, xroad_area: Path
) -> tuple[Run, Path, dict[str, str]]:
    _, target, env = xroad_secondary(xroad_agent, sshd, primary_tree, xroad_area)
    env["SYNCAGENT_SYNC_DISABLE_FLAG"] = str(xroad_area / "no-such-dir" / "sync-disabled")
    return runner(xroad_agent, env), target / ".syncagent", env


def _not_xroads(state: Path) -> list[str]:
    uid, _ = xroad_ids()
    entries = [state, *state.iterdir(), *(state / "generations").iterdir()]
    dirs = [p for p in state.rglob("*") if p.is_dir() and not p.is_symlink()]
    return sorted({str(p) for p in (*entries, *dirs) if p.lstat().st_uid != uid})


def test_commands_run_as_root_leave_the_state_dir_the_agents(
    xroad_agent: Path, sshd: Sshd, primary_tree: Path, xroad_area: Path
) -> None:
    run, state = _setup(xroad_agent, sshd, primary_tree, xroad_area)
    first = run("once", user="xroad")
    assert first.returncode == 0, first.stdout + first.stderr

    (primary_tree / "conf.d" / "local.ini").write_text("[proxy]\nx=1\n")
    age(primary_tree)
    as_root = run("once")
    assert as_root.returncode == 0, as_root.stdout + as_root.stderr
    assert as_root.stdout.startswith("applied generation ")
    assert _not_xroads(state) == []

    back = run("rollback")
    assert back.returncode == 0, back.stdout + back.stderr
    assert _not_xroads(state) == []
    assert run("resume").returncode == 0
    assert run("sync-now").returncode == 0
    assert _not_xroads(state) == []

    # the agent's user carries on with what root left
    after = run("once", "--json", user="xroad")
    assert after.returncode == 0, after.stdout + after.stderr
    assert json.loads(after.stdout)["result"] == "applied"


def test_the_agent_names_what_it_cannot_use_and_repairs_what_it_can(
    xroad_agent: Path, sshd: Sshd, primary_tree: Path, xroad_area: Path
) -> None:
    """Files an older version (or a hand) left root's: the expendable ones are replaced, the
    record is named with its owner and the fix, as reason permission (exit 1)."""
    run, state = _setup(xroad_agent, sshd, primary_tree, xroad_area)
    assert run("once", user="xroad").returncode == 0
    (state / "status.json").write_text("{}")
    for name in ("current.json", "status.json"):
        os.chown(state / name, 0, 0)
        (state / name).chmod(0o600)

    res = run("once", "--json", user="xroad")
    assert res.returncode == 1, res.stdout + res.stderr
    doc = json.loads(res.stdout)
    assert doc["reason"] == "permission"
    assert f"{state / 'current.json'} (root)" in doc["error"]
    assert f"chown -R xroad: {state}" in doc["error"]
    assert (state / "status.json").stat().st_uid == xroad_ids()[0]  # replaced: expendable

    # root's own commands repair the state dir on the way
    assert run("once").returncode == 0
    assert _not_xroads(state) == []
    assert run("once", user="xroad").returncode == 0


def test_another_unprivileged_user_is_told_whom_to_run_as(
    xroad_agent: Path, sshd: Sshd, primary_tree: Path, xroad_area: Path
) -> None:
    run, state = _setup(xroad_agent, sshd, primary_tree, xroad_area)
    assert run("pause", user="xroad").returncode == 0
    res = run("resume", user="xroad-slave")
    assert res.returncode == 1
    assert "run this command as xroad (sudo -u xroad syncagent ...)" in res.stdout
    assert (state / "paused").exists()
    status = run("status", user="xroad-slave")
    assert status.returncode == 1 and "Traceback" not in status.stderr
    assert "run this command as xroad (sudo -u xroad syncagent ...)" in status.stdout


def _status(run: Run) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(run("status", "--json").stdout)
    return doc


def test_a_daemon_run_as_xroad_keeps_syncing_after_roots_rollback(
    xroad_agent: Path, sshd: Sshd, primary_tree: Path, xroad_area: Path
) -> None:
    """The reported case end to end: `kubectl exec ... syncagent rollback` (root), `resume`, and
    the daemon (xroad) follows the primary again instead of failing every sync."""
    run, state, env = _setup_env(xroad_agent, sshd, primary_tree, xroad_area)
    daemon_env = {
        **env,
        "SYNCAGENT_HTTP_LISTEN": f"127.0.0.1:{free_port()}",
        "SYNCAGENT_SYNC_INTERVAL": "1",
        "SYNCAGENT_SYNC_JITTER": "0",
    }
    log = xroad_area / "daemon.log"
    with log.open("wb") as out:
        daemon = subprocess.Popen(
            ["setpriv", "--reuid=xroad", "--regid=xroad", "--init-groups", str(xroad_agent), "run"],
            env=daemon_env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
        )
    try:
        until(lambda: _status(run).get("ready"), "the daemon's first sync", timeout=60)
        first = _status(run)["generation"]
        (primary_tree / "conf.d" / "local.ini").write_text("[proxy]\nx=2\n")
        age(primary_tree)
        until(lambda: _status(run)["generation"] != first, "the change applied", timeout=60)

        back = run("rollback")
        assert back.returncode == 0, back.stdout + back.stderr
        until(lambda: _status(run)["generation"] == first, "the daemon sees it", timeout=30)
        resumed = time.time()
        assert run("resume").returncode == 0
        until(
            lambda: (_status(run).get("last_attempt") or 0) > resumed + 1,
            "a sync after resume",
            timeout=60,
        )
        doc = _status(run)
        assert doc["last_reason"] is None, doc
        assert doc["consecutive_failures"] == 0 and doc["generation"] != first
        assert _not_xroads(state) == []
    finally:
        daemon.terminate()
        daemon.wait(30)
    assert "Permission denied" not in log.read_text()
