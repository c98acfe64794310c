"""Metric names and labels are an interface (alerts in docker/prometheus rely on them)."""

from __future__ import annotations

import subprocess
import time

from support.daemon import metric, samples
from support.tools import require_tool

from syncagent.daemon.metrics import Metrics
from syncagent.daemon.status import DaemonState
from syncagent.errors import Reason, SyncError
from syncagent.report import Outcome, SyncResult, VersionCheck
from syncagent.settings import ReloadRule

RULES = [ReloadRule("proxy", ("/conf.d/",), ("true",))]
EXPECTED = {
    "syncagent_sync_total",
    "syncagent_sync_duration_seconds_bucket",
    "syncagent_sync_duration_seconds_sum",
    "syncagent_sync_duration_seconds_count",
    "syncagent_last_success_timestamp_seconds",
    "syncagent_last_attempt_timestamp_seconds",
    "syncagent_consecutive_failures",
    "syncagent_failures_total",
    "syncagent_generation_info",
    "syncagent_ready",
    "syncagent_paused",
    "syncagent_connected",
    "syncagent_files_changed_total",
    "syncagent_bytes_fetched_total",
    "syncagent_drift_total",
    "syncagent_reload_total",
    "syncagent_build_info",
    "syncagent_verify_mismatches_total",
    "syncagent_last_verified_timestamp_seconds",
    "syncagent_version_skew",
    "syncagent_restart_pending",
    "syncagent_following_head",
    "syncagent_walk_fallbacks_total",
    "syncagent_restart_pending_since_timestamp_seconds",
    "syncagent_task_restarts_total",
}


def _names(text: str) -> set[str]:
    return {
        line.split("{")[0].split(" ")[0]
        for line in text.splitlines()
        if line and not line.startswith("#")
    }


def test_every_series_exists_from_the_start() -> None:
    text = Metrics(DaemonState(), RULES).render().decode()
    assert _names(text) == EXPECTED
    results = {s["result"] for s in samples(text, "syncagent_sync_total")}
    assert results == {"applied", "unchanged", "failed", "rejected", "not_initialized", "cancelled"}
    reasons = {s["reason"] for s in samples(text, "syncagent_failures_total")}
    assert {
        "connect",
        "auth",
        "host_key",
        "timeout",
        "remote_io",
        "limits",
        "validation",
        "apply",
        "disk",
    } <= reasons
    assert {s["op"] for s in samples(text, "syncagent_files_changed_total")} == {
        "added",
        "modified",
        "removed",
    }
    assert {(s["rule"], s["result"]) for s in samples(text, "syncagent_reload_total")} == {
        ("proxy", "ok"),
        ("proxy", "failed"),
        ("proxy", "timeout"),
    }
    assert samples(text, "syncagent_generation_info") == [{"generation": "none"}]
    assert metric(text, "syncagent_ready") == 0
    assert metric(text, "syncagent_last_success_timestamp_seconds") == 0


def test_results_counted_and_gauges_follow_the_state() -> None:
    state = DaemonState()
    m = Metrics(state, RULES)
    now = time.time()
    applied = SyncResult(
        Outcome.APPLIED,
        generation="g1",
        added=["a", "b"],
        modified=["c"],
        removed=["d"],
        bytes_fetched=100,
        duration=0.3,
    )
    for result in (
        applied,
        SyncResult(Outcome.FAILED, error=SyncError(Reason.CONNECT, "x"), generation="g1"),
        SyncResult(Outcome.REJECTED, error=SyncError(Reason.VALIDATION, "y"), bytes_fetched=5),
    ):
        state.record(result, now)
        m.observe_sync(result)
    m.observe_drift(2)
    m.observe_reload("proxy", "failed")
    state.connected = True
    state.paused_by = ("/s/paused",)
    text = m.render().decode()
    assert metric(text, "syncagent_sync_total", result="applied") == 1
    assert metric(text, "syncagent_sync_total", result="failed") == 1
    assert metric(text, "syncagent_sync_total", result="rejected") == 1
    assert metric(text, "syncagent_failures_total", reason="connect") == 1
    assert metric(text, "syncagent_failures_total", reason="validation") == 1
    assert metric(text, "syncagent_files_changed_total", op="added") == 2
    assert metric(text, "syncagent_files_changed_total", op="removed") == 1
    assert metric(text, "syncagent_bytes_fetched_total") == 105
    assert metric(text, "syncagent_sync_duration_seconds_count") == 3
    assert metric(text, "syncagent_drift_total") == 2
    assert metric(text, "syncagent_reload_total", rule="proxy", result="failed") == 1
    assert metric(text, "syncagent_consecutive_failures") == 2
    assert metric(text, "syncagent_last_success_timestamp_seconds") == now
    assert metric(text, "syncagent_ready") == 1
    assert metric(text, "syncagent_paused") == 1
    assert metric(text, "syncagent_connected") == 1


def test_generation_info_keeps_exactly_one_series() -> None:
    state = DaemonState()
    m = Metrics(state)
    for gen in ("g1", "g2", "g3"):
        state.record(SyncResult(Outcome.APPLIED, generation=gen), time.time())
        assert samples(m.render().decode(), "syncagent_generation_info") == [{"generation": gen}]


def test_registries_are_private() -> None:
    a, b = Metrics(DaemonState()), Metrics(DaemonState())
    a.observe_drift()
    assert metric(b.render().decode(), "syncagent_drift_total") == 0


def test_exposition_passes_promtool() -> None:
    promtool = require_tool("promtool")
    state = DaemonState()
    m = Metrics(state, RULES)
    state.record(SyncResult(Outcome.APPLIED, generation="g1", added=["a"]), time.time())
    m.observe_sync(SyncResult(Outcome.APPLIED, generation="g1", added=["a"]))
    res = subprocess.run(
        [promtool, "check", "metrics"], input=m.render(), capture_output=True, timeout=30
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.strip() == b"" and res.stderr.strip() == b""


def test_verification_is_counted_by_side_and_its_last_pass_is_a_gauge() -> None:
    state = DaemonState()
    m = Metrics(state)
    result = SyncResult(
        Outcome.APPLIED,
        generation="g2",
        modified=["conf.d/local.ini", "db.properties"],
        mismatches=[("conf.d/local.ini", "primary"), ("db.properties", "local")],
        verified_pass_at=1234.0,
    )
    state.record(result, 1240.0)
    m.observe_sync(result)
    text = m.render().decode()
    assert metric(text, "syncagent_verify_mismatches_total", side="primary") == 1
    assert metric(text, "syncagent_verify_mismatches_total", side="local") == 1
    assert metric(text, "syncagent_last_verified_timestamp_seconds") == 1234.0
    assert state.to_json(1240.0, None)["verify_mismatches"] == {"primary": 1, "local": 1}
    assert state.to_json(1240.0, None)["last_verified"] == 1234.0


def test_version_skew_is_a_gauge_from_the_last_check() -> None:
    state = DaemonState()
    m = Metrics(state)
    assert metric(m.render().decode(), "syncagent_version_skew") == 0
    held = SyncResult(
        Outcome.REJECTED,
        error=SyncError(Reason.VERSION_SKEW, "held"),
        versions=VersionCheck("7.8.0", "7.6.2-1.ubuntu24.04", True),
    )
    state.record(held, 1.0)
    assert metric(m.render().decode(), "syncagent_version_skew") == 1
    assert state.to_json(1.0, None)["version_check"] == {
        "primary": "7.8.0",
        "local": "7.6.2-1.ubuntu24.04",
        "skew": True,
        "note": "",
    }
    state.record(
        SyncResult(Outcome.UNCHANGED, "g", versions=VersionCheck("7.8.0", "7.8.0", False)), 2.0
    )
    assert metric(m.render().decode(), "syncagent_version_skew") == 0
