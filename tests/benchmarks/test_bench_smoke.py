"""The benchmark harness at tiny sizes (``python -m bench --quick``), so it never rots.

It runs everything the full benchmark runs (real sshd, rsync over ssh, ControlMaster, the agent,
the byte-counting relay, fan-out, propagation, idle footprint) in well under a minute, and checks
that the report carries every number. It asserts nothing about performance: targets are checked
by the full run's report, not by timed unit tests.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from support import REPO
from support.tools import require_root, require_tool

TOOLS = ("rsync-ssh", "rsync-cm", "agent", "agent-fresh")


def _require_matplotlib() -> None:
    if importlib.util.find_spec("matplotlib") is not None:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail("matplotlib is required in CI (test extras) for the bench plot")
    pytest.skip("matplotlib is not installed")


def _positive(value: object, where: str) -> None:
    assert isinstance(value, int | float) and value > 0, f"{where}: {value!r}"


def test_quick_bench_writes_json_table_and_plot(tmp_path: Path) -> None:
    require_root("the bench logs in as root and xroad-slave and makes cgroups")
    for tool in ("sshd", "ssh", "ssh-keygen", "rsync"):
        require_tool(tool)
    _require_matplotlib()

    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--out", str(tmp_path)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    [json_path] = tmp_path.glob("*.json")
    doc = json.loads(json_path.read_text())
    assert json_path.with_suffix(".png").stat().st_size > 1000
    table = json_path.with_suffix(".md").read_text()
    assert "| Target | Result | Met |" in table and "First full sync" in table

    for key in ("machine", "loadavg_start", "loadavg_end", "agent_mode", "params", "summary"):
        assert key in doc, key
    s = doc["summary"]
    for section in ("xroad_noop", "bulk_noop", "bulk_change", "bulk_first_sync"):
        for tool in TOOLS:
            row = s[section][tool]
            done, total = row["ok"].split("/")
            assert done == total, f"{section} {tool}: {row['ok']} succeeded"
            _positive(row["wall"]["median"], f"{section} {tool} wall")
            _positive(row["cpu"]["median"], f"{section} {tool} cpu")
            if doc["cpu_accounting"] != "unavailable":
                _positive(row["primary_cpu"]["median"], f"{section} {tool} primary cpu")
            if section != "bulk_first_sync":
                _positive(row["bytes"]["median"], f"{section} {tool} bytes")
    assert s["bulk_change"]["agent"]["wall"]["n"] >= 1

    # the security server tree (tests/support/xroad_etc.py): valid changes, every run applied
    for section in ("secsrv_first_sync", "secsrv_noop", "secsrv_change"):
        for tool in (*TOOLS, "agent-pub", "agent-pub-fresh"):
            row = s[section][tool]
            done, total = row["ok"].split("/")
            assert done == total, f"{section} {tool}: {row['ok']} succeeded"
            _positive(row["wall"]["median"], f"{section} {tool} wall")
    assert "Security server tree" in table

    assert len(s["propagation"]) == 2
    for p in s["propagation"]:
        assert "error" not in p, p
        for name in ("agent", "rsync"):
            _positive(p[name]["median"], f"propagation {p['interval']} {name}")
        # The agent must see every write. rsync may not: its size+mtime quick check misses a
        # same-size rewrite within one second (seen here once at a 1 s interval), a finding the
        # report records rather than a harness failure.
        assert p["agent"]["unseen"] == 0
        assert 0 <= p["rsync"]["unseen"] <= p["writes"]

    [fan] = s["fanout"]
    assert fan["agent_failed_total"] == 0
    assert fan["rsync_runs_total"] == fan["n"] * doc["params"]["fanout_rounds"]
    _positive(fan["sshd_pss_mb_with_agents"], "sshd memory")

    idle = s["idle"]
    assert "error" not in idle, idle
    _positive(idle["rss_max"], "agent rss")
    _positive(idle["duration"], "idle duration")
    assert idle["cpu_seconds"] >= 0

    names = {t["target"] for t in s["targets"]}
    assert any("first full 10k sync" in n for n in names)
    assert any("Agent steady RSS" in n for n in names)

    # the publish mode beside them (issue 12)
    for section in ("xroad_noop", "bulk_noop", "bulk_change", "bulk_first_sync"):
        for tool in ("agent-pub", "agent-pub-fresh"):
            row = s[section][tool]
            done, total = row["ok"].split("/")
            assert done == total, f"{section} {tool}: {row['ok']} succeeded"
            _positive(row["wall"]["median"], f"{section} {tool} wall")
    [pub_fan] = s["fanout_published"]
    assert pub_fan["failed_total"] == 0 and pub_fan["sequences_consistent"]
    for p in s["propagation"]:
        assert p["published"]["unseen"] == 0, p["published"]
    assert s["publisher"], "the publisher's footprint"
    assert any("published" in n for n in names)
