"""Tests for syncagent.daemon.status: readiness, liveness, the status document."""

from __future__ import annotations

import os
import time
from pathlib import Path

from syncagent.daemon.status import (
    SYNC_GRACE,
    Check,
    DaemonState,
    read_live,
    read_status,
    summary_line,
    write_status,
)
from syncagent.errors import Reason, SyncError
from syncagent.local.manifest import Manifest
from syncagent.local.state import StateDir
from syncagent.report import Outcome, SyncResult

# ---- state, readiness, liveness --------------------------------------------------------------


def _fail(reason: Reason) -> SyncResult:
    return SyncResult(Outcome.FAILED, error=SyncError(reason, f"{reason} went wrong"))


def test_readiness_needs_a_generation_and_survives_failures() -> None:
    s = DaemonState()
    now = time.time()
    checks = s.readiness(now, None)
    assert not s.ready(now, None)
    assert checks[0].line().startswith("config: FAIL no validated configuration")
    s.record(_fail(Reason.CONNECT), now)
    assert "[connect] connect went wrong" in s.readiness(now, None)[0].line()
    s.record(SyncResult(Outcome.APPLIED, generation="g1"), now)
    assert s.ready(now, None) and s.generation == "g1" and s.last_success == now
    for _ in range(3):
        s.record(_fail(Reason.CONNECT), now + 1)
    assert s.ready(now + 1, None), "a primary outage must not take secondaries out of service"
    assert s.consecutive_failures == 3 and s.generation == "g1" and s.last_attempt == now + 1
    s.record(_fail(Reason.VALIDATION), now + 2)
    assert s.generation == "g1"  # a rejected candidate never becomes live


def test_staleness_and_journal_make_not_ready_pausing_does_not() -> None:
    s = DaemonState(generation="g1", last_success=1000.0)
    assert s.ready(1050, 60) and not s.ready(1061, 60)
    assert "staleness: FAIL last success 61s ago (max 60s)" in [
        c.line() for c in s.readiness(1061, 60)
    ]
    s.paused_by = ("/x/paused",)
    assert s.ready(1050, 60)
    s.journal_pending = True
    assert not s.ready(1050, 60)
    s.syncing_since = time.monotonic()  # the running sync is finishing it
    assert s.ready(1050, 60)


def test_liveness_ignores_the_primary_but_not_a_stuck_sync() -> None:
    s = DaemonState()
    mono = time.monotonic()
    s.heartbeat = mono
    s.record(_fail(Reason.CONNECT), time.time())
    assert all(c.ok for c in s.liveness(mono, 30, True))
    assert not all(c.ok for c in s.liveness(mono, 30, False))
    assert not all(c.ok for c in s.liveness(mono + 60, 30, True))  # heartbeat stopped
    s.syncing_since = mono - 30 - SYNC_GRACE - 1
    lines = [c.line() for c in s.liveness(mono, 30, True)]
    assert any(line.startswith("sync: FAIL running") for line in lines)


def test_status_document_roundtrip_and_summary(tmp_path: Path) -> None:
    s = DaemonState()
    now = time.time()
    s.record(SyncResult(Outcome.APPLIED, generation="g1", added=["a"], modified=["b"]), now)
    s.record(_fail(Reason.AUTH), now + 5)
    s.paused_by = ("/state/paused",)
    write_status(tmp_path / "status.json", s.to_json(now + 5, None))
    doc = read_status(tmp_path / "status.json")
    assert doc is not None
    assert doc["generation"] == "g1" and doc["ready"] and doc["consecutive_failures"] == 1
    assert doc["last_reason"] == "auth" and doc["last_change"]["added"] == 1
    assert doc["pid"] == os.getpid()
    line = summary_line(doc, now + 10, alive=True)
    assert line.startswith("ready: generation g1, last success 10s ago, last attempt 5s ago")
    assert "PAUSED by /state/paused" in line and "[auth] auth went wrong" in line
    assert summary_line(doc, now, alive=False).startswith("NOT READY: daemon not running")
    (tmp_path / "status.json").write_text("{not json")
    assert read_status(tmp_path / "status.json") is None


# ---- what is live is read from the state dir -------------------------------------------------


def test_readiness_follows_the_record_on_disk_not_the_generation_remembered(
    tmp_path: Path,
) -> None:
    store = StateDir(tmp_path / "state")
    store.ensure()
    s = DaemonState(generation="g-remembered", disk=lambda: read_live(store))
    now = time.time()
    assert not s.ready(now, None), "no record on disk: nothing is live"
    store.write_current(Manifest("g-disk", 1.0, {}))
    assert s.readiness(now, None)[0].line() == "config: ok generation g-disk is live"
    assert s.to_json(now, None)["generation"] == "g-disk"

    store.journal.write_text("{}")  # another process's apply, interrupted
    assert [c.name for c in s.readiness(now, None) if not c.ok] == ["journal"]
    store.journal.unlink()

    store.current_file.write_text("{not json")
    line = s.readiness(now, None)[0].line()
    assert line.startswith("config: FAIL cannot tell what is live:") and "damaged" in line
    assert store.current_file.exists(), "a probe moves nothing aside"


def test_liveness_includes_the_task_checks() -> None:
    s = DaemonState(task_checks=lambda mono: [Check("tasks", False, "drift failed 6 times")])
    checks = s.liveness(time.monotonic(), 30.0, True)
    assert [c.line() for c in checks if not c.ok] == ["tasks: FAIL drift failed 6 times"]
