"""Pure pieces of the daemon: backoff, reload matching and spread, drift filtering, readiness and
liveness derivation, control files, sd_notify parsing. No network, no sshd."""

from __future__ import annotations

import os
import random
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from watchfiles import Change

from syncagent import control
from syncagent.drift import DriftWatcher, drifted, managed_path
from syncagent.errors import Reason, SyncError
from syncagent.excludes import PathFilter
from syncagent.keeper import backoff_ceiling, backoff_delay, keepalive_for
from syncagent.manifest import Manifest, Record
from syncagent.reload import changed_paths, matching_paths, rule_matches, spread_delay
from syncagent.report import Outcome, SyncResult
from syncagent.sdnotify import Notifier
from syncagent.settings import ReloadRule
from syncagent.state import StateDir
from syncagent.status import SYNC_GRACE, DaemonState, read_status, summary_line, write_status
from syncagent.tree import Kind

# ---- backoff ---------------------------------------------------------------------------------


def test_backoff_ceiling_doubles_from_one_second_to_the_cap() -> None:
    assert [backoff_ceiling(a) for a in range(8)] == [1, 2, 4, 8, 16, 32, 60, 60]
    assert backoff_ceiling(10_000) == 60  # no overflow on a primary that is gone for days


def test_backoff_delay_is_full_jitter_within_the_ceiling() -> None:
    rng = random.Random(42)
    for attempt in range(10):
        delays = [backoff_delay(attempt, rng=rng) for _ in range(200)]
        assert all(0 <= d <= backoff_ceiling(attempt) for d in delays)
        # full jitter: spread over the whole range, not clustered at the ceiling
        assert min(delays) < 0.2 * backoff_ceiling(attempt)
        assert max(delays) > 0.8 * backoff_ceiling(attempt)


def test_backoff_delay_is_reproducible_with_a_seeded_rng() -> None:
    a = [backoff_delay(i, rng=random.Random(1)) for i in range(5)]
    b = [backoff_delay(i, rng=random.Random(1)) for i in range(5)]
    assert a == b
    assert backoff_delay(3, base=0.5, cap=2, rng=random.Random(0)) <= 2


def test_keepalive_follows_the_interval_within_bounds() -> None:
    assert keepalive_for(0.5) == 1.0
    assert keepalive_for(5) == 5.0
    assert keepalive_for(60) == 15.0


# ---- reload rules ----------------------------------------------------------------------------

RULE = ReloadRule("proxy", ("/conf.d/", "/ssl/internal.*", "*.p12"), ("true",))


@pytest.mark.parametrize(
    ("path", "hit"),
    [
        ("conf.d/local.ini", True),
        ("conf.d/addons/message-log.ini", True),
        ("ssl/internal.key", True),
        ("ssl/proxy-ui-api.key", False),
        ("signer/softtoken/ABC.p12", True),
        ("signer/keyconf.xml", False),
        ("services/local.conf", False),
    ],
)
def test_rule_matches_paths_and_everything_below_a_directory(path: str, hit: bool) -> None:
    assert rule_matches(RULE, path) is hit


def test_changed_paths_and_matching() -> None:
    result = SyncResult(
        Outcome.APPLIED,
        added=["signer/softtoken/A.p12"],
        modified=["signer/keyconf.xml", "conf.d/local.ini"],
        removed=["ssl/internal.crt"],
    )
    assert changed_paths(result) == sorted(
        ["signer/softtoken/A.p12", "signer/keyconf.xml", "conf.d/local.ini", "ssl/internal.crt"]
    )
    assert matching_paths(RULE, changed_paths(result)) == [
        "conf.d/local.ini",
        "signer/softtoken/A.p12",
        "ssl/internal.crt",
    ]


def test_spread_is_stable_per_host_and_spreads_hosts() -> None:
    assert spread_delay(0, "a") == 0
    assert spread_delay(30, "secondary-0") == spread_delay(30, "secondary-0")
    delays = {round(spread_delay(30, f"secondary-{i}"), 3) for i in range(20)}
    assert len(delays) == 20 and all(0 <= d < 30 for d in delays)
    assert 0 <= spread_delay(10) < 10  # this host's name


# ---- drift filtering -------------------------------------------------------------------------


def test_managed_path_skips_node_local_and_state_dir(tmp_path: Path) -> None:
    pf = PathFilter.build("sidecar", protected=("/.syncagent/",))
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "globalconf").mkdir()
    (tmp_path / ".syncagent").mkdir()
    for rel in ("conf.d/local.ini", "conf.d/node.ini", "globalconf/x", ".syncagent/status.json"):
        (tmp_path / rel).write_text("x")

    def m(rel: str) -> str | None:
        return managed_path(tmp_path, pf, str(tmp_path / rel))

    assert m("conf.d/local.ini") == "conf.d/local.ini"
    assert m("conf.d/node.ini") is None
    assert m("globalconf/x") is None
    assert m("globalconf") is None
    assert m(".syncagent/status.json") is None
    assert m(".syncagent") is None
    assert m("xroad.properties") is None
    assert m("signer/keyconf.xml") == "signer/keyconf.xml"  # deleted: still ours
    assert managed_path(tmp_path, pf, "/elsewhere/file") is None
    assert managed_path(tmp_path, pf, str(tmp_path)) is None


def test_drifted_compares_live_entries_with_the_record(tmp_path: Path) -> None:
    (tmp_path / "conf.d").mkdir()
    f = tmp_path / "conf.d/local.ini"
    f.write_text("[a]\n")
    st = f.stat()
    records = {
        "conf.d": Record(Kind.DIR, 0o750),
        "conf.d/local.ini": Record(
            Kind.FILE, 0o640, "x", size=st.st_size, ino=st.st_ino, mtime_ns=st.st_mtime_ns
        ),
        "gone.ini": Record(Kind.FILE, 0o640, "y", size=1),
    }
    manifest = Manifest("g1", 0.0, records)
    paths = ["conf.d", "conf.d/local.ini", "gone.ini", "never-recorded-never-there"]
    assert drifted(tmp_path, manifest, paths) == ["gone.ini"]
    f.write_text("[a]\nhand=1\n")
    (tmp_path / "extra.ini").write_text("")
    assert drifted(tmp_path, manifest, [*paths, "extra.ini"]) == [
        "conf.d/local.ini",
        "extra.ini",
        "gone.ini",
    ]


async def test_drift_watcher_holds_events_while_an_apply_runs(tmp_path: Path) -> None:
    store = StateDir(tmp_path / "state")
    store.ensure()
    target = tmp_path / "t"
    target.mkdir()
    (target / "a.ini").write_text("x")
    st = (target / "a.ini").stat()
    rec = Record(Kind.FILE, 0o644, "h", size=st.st_size, ino=st.st_ino, mtime_ns=st.st_mtime_ns)
    store.write_current(Manifest("g1", 0.0, {"a.ini": rec}))
    seen: list[list[str]] = []
    busy = [True]
    watcher = DriftWatcher(target, PathFilter.build("none"), store, seen.append, lambda: busy[0])
    (target / "b.ini").write_text("new")
    batch = {(Change.modified, str(target / "a.ini")), (Change.added, str(target / "b.ini"))}
    watcher.handle(batch)
    assert seen == []  # held: the apply in flight may be the author
    busy[0] = False
    assert watcher.evaluate() == ["b.ini"]
    assert seen == [["b.ini"]]
    watcher.handle({(Change.modified, str(target / "a.ini"))})
    assert seen == [["b.ini"]]  # a.ini is exactly what the record says: our own change
    watcher.close()


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
    write_status(tmp_path, s.to_json(now + 5, None))
    doc = read_status(tmp_path)
    assert doc is not None
    assert doc["generation"] == "g1" and doc["ready"] and doc["consecutive_failures"] == 1
    assert doc["last_reason"] == "auth" and doc["last_change"]["added"] == 1
    assert doc["pid"] == os.getpid()
    line = summary_line(doc, now + 10, alive=True)
    assert line.startswith("ready: generation g1, last success 10s ago, last attempt 5s ago")
    assert "PAUSED by /state/paused" in line and "[auth] auth went wrong" in line
    assert summary_line(doc, now, alive=False).startswith("NOT READY: daemon not running")
    (tmp_path / "status.json").write_text("{not json")
    assert read_status(tmp_path) is None


# ---- control files ---------------------------------------------------------------------------


def test_pause_flags_include_the_xlb_flag(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(control.XLB_FLAG_ENV, raising=False)
    assert control.xlb_flag() == Path("/var/tmp/xroad/sync-disabled")
    xlb = tmp_path / "var-tmp-xroad" / "sync-disabled"
    monkeypatch.setenv(control.XLB_FLAG_ENV, str(xlb))
    state = tmp_path / "state"
    assert control.paused_by(state) == ()
    assert control.pause(state, "test") and not control.pause(state, "test")
    assert control.paused_by(state) == (str(state / "paused"),)
    xlb.parent.mkdir()
    xlb.touch()
    assert len(control.paused_by(state)) == 2
    assert control.unpause(state) and not control.unpause(state)
    assert control.paused_by(state) == (str(xlb),)


def test_pid_file_names_only_a_live_daemon(tmp_path: Path) -> None:
    assert control.running_pid(tmp_path) is None
    control.write_pid(tmp_path)
    assert control.running_pid(tmp_path) == os.getpid()
    control.remove_pid(tmp_path)
    assert not (tmp_path / control.PID_FILE).exists()
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    (tmp_path / control.PID_FILE).write_text(f"{child.pid}\n")
    assert control.running_pid(tmp_path) is None  # exited
    (tmp_path / control.PID_FILE).write_text(f"{os.getpid()} 1\n")
    assert control.running_pid(tmp_path) is None  # pid reused by another process


def test_sync_request_falls_back_to_the_trigger_file(tmp_path: Path) -> None:
    how = control.request_sync(tmp_path)
    assert "no daemon is running" in how and (tmp_path / control.TRIGGER_FILE).exists()
    assert control.take_trigger(tmp_path) and not control.take_trigger(tmp_path)


# ---- sd_notify -------------------------------------------------------------------------------


def test_notifier_is_a_noop_without_notify_socket() -> None:
    n = Notifier(env={})
    assert not n.enabled and not n.ready() and n.watchdog_interval is None


def test_notifier_sends_datagrams_and_reads_the_watchdog(tmp_path: Path) -> None:
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        n = Notifier(env={"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "3000000"})
        assert n.watchdog_interval == 1.5
        assert n.ready("generation g1") and n.watchdog() and n.stopping()
        got = [sock.recv(4096).decode() for _ in range(3)]
    assert got == ["READY=1\nSTATUS=generation g1", "WATCHDOG=1", "STOPPING=1"]
    other = Notifier(env={"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "1", "WATCHDOG_PID": "1"})
    assert other.watchdog_interval is None  # meant for another process
    gone = Notifier(env={"NOTIFY_SOCKET": str(tmp_path / "missing")})
    assert not gone.ready()
    abstract = Notifier(env={"NOTIFY_SOCKET": "@syncagent-test"})
    assert abstract.address == b"\0syncagent-test"
