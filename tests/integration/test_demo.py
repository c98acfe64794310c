"""``syncagent demo``, the README's first command: must work with nothing set up."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from support.tools import run_syncagent


def test_demo_with_duration_exits_0_having_applied_a_generation(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SYNCAGENT_", "NOTIFY_"))}
    env["SYNCAGENT_SYNC_DISABLE_FLAG"] = str(tmp_path / "no-such-flag")
    res = subprocess.run(
        [
            sys.executable,
            "-m",
            "syncagent",
            "demo",
            "--duration",
            "8",
            "--churn",
            "--dir",
            str(tmp_path / "demo"),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert "syncagent demo" in res.stdout and "/readyz" in res.stdout
    assert "[demo] done: generation " in res.stdout
    assert "[demo] primary: " in res.stdout  # churn happened
    events = [json.loads(line) for line in res.stderr.splitlines() if line.startswith("{")]
    applied = [e for e in events if e.get("event") == "sync" and e.get("result") == "applied"]
    assert applied, "no generation applied"
    target = tmp_path / "demo/secondary/etc/xroad"
    assert (target / "signer/keyconf.xml").is_file()
    assert (target / "conf.d/node.ini").read_text() == "[node]\ntype = slave\n"

    # The config it wrote drives the other commands; the daemon is gone now.
    status = run_syncagent(
        "status", "-c", str(tmp_path / "demo/syncagent.toml"), env=env, timeout=60
    )
    assert status.returncode == 1 and "daemon not running" in status.stdout


def test_demo_banner_names_a_command_that_runs_and_no_removed_directory(tmp_path: Path) -> None:
    """The README installs into .venv/bin, not onto PATH: the banner says what started it, and
    a temporary demo does not end by pointing at trees it has just removed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SYNCAGENT_", "NOTIFY_"))}
    env["SYNCAGENT_SYNC_DISABLE_FLAG"] = str(tmp_path / "no-such-flag")
    env["PATH"] = "/usr/bin:/bin"  # no syncagent on it
    res = subprocess.run(
        [sys.executable, "-m", "syncagent", "demo", "--duration", "4"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    shown = [
        ln.split("try", 1)[1].split(" status ")[0].strip()
        for ln in res.stdout.splitlines()
        if ln.strip().startswith("try")
    ]
    assert shown == [f"{sys.executable} -m syncagent"]
    config = res.stdout.split(" status -c ", 1)[1].split()[0]
    done = [ln for ln in res.stdout.splitlines() if ln.startswith("[demo] done")]
    assert done and "removed" in done[0] and str(Path(config).parent) not in done[0]
    assert not Path(config).exists()
