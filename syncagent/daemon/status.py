"""The daemon's state in one place, and the checks and document derived from it.

/readyz, /healthz, /status, the metrics gauges and ``<state_dir>/status.json`` all read one
``DaemonState``: nothing keeps its own copy that could disagree with another. The status file is
how ``syncagent status`` works without network access (supervisord, kubectl exec).

What is live is never remembered: it is read from the state dir (the current record and the
journal, ``read_live``) each time a probe answers or the status is written. The daemon's own
idea of its generation can go stale (a rollback or ``syncagent once`` run by someone else, a
record it can no longer read); a probe that answered from it would say ready for a generation
that is not live.

"ready" here (and in ``syncagent_ready``) is the agent's own readiness; only /readyz also asks
the optional upstream health URL, because a status file or a scrape should not make requests.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from syncagent.errors import SyncError
from syncagent.local.state import StateDir, atomic_write
from syncagent.local.verify import SIDES
from syncagent.report import Outcome, SyncResult, VersionCheck
from syncagent.xroad.restarts import PendingRestarts

FORMAT_VERSION = 1
SYNC_GRACE = 5.0  # seconds past sync.timeout before liveness fails (the engine times out first)
HEARTBEAT_MAX_AGE = 30.0  # the scheduler's heartbeat job must have fired this recently
SUCCESS = (Outcome.APPLIED, Outcome.UNCHANGED)


@dataclass(frozen=True)
class Check:
    """One line of a probe's body: operators read why, not just the status code."""

    name: str
    ok: bool
    detail: str

    def line(self) -> str:
        return f"{self.name}: {'ok' if self.ok else 'FAIL'} {self.detail}".rstrip()


@dataclass(frozen=True)
class Live:
    """What the state dir says is live, read when asked."""

    generation: str | None
    journal_pending: bool
    error: str | None = None  # the current record could not be read: nothing is known live


def read_live(store: StateDir) -> Live:
    """Read-only: a probe moves nothing aside (a damaged record is the next sync's business).
    Costs a stat while the record is unchanged (StateDir caches it by identity)."""
    pending = store.journal.exists()
    try:
        current = store.current(move_damaged=False)
    except SyncError as e:
        return Live(None, pending, e.message)
    return Live(current.generation if current else None, pending)


@dataclass
class DaemonState:
    started_at: float = field(default_factory=time.time)
    generation: str | None = None  # live, validated generation
    last_result: SyncResult | None = None
    last_applied: SyncResult | None = None
    last_attempt: float | None = None  # wall clock, end of the attempt
    last_success: float | None = None
    consecutive_failures: int = 0
    connected: bool = False
    connects: int = 0  # successful connects since start; a rekey or loss adds one
    reconnect_attempts: int = 0  # failed connects since the last success
    paused_by: tuple[str, ...] = ()  # the flag files that exist
    syncing_since: float | None = None  # time.monotonic() when the running sync started
    heartbeat: float = field(default_factory=time.monotonic)
    journal_pending: bool = False
    versions: VersionCheck | None = None  # the last sync's version check (None: not configured)
    last_verified: float | None = None  # when the last full content-verification pass ended
    verify_mismatches: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SIDES, 0))
    restarts: PendingRestarts = field(default_factory=PendingRestarts)
    following_head: bool = False  # the last successful sync followed the primary's HEAD
    walk_fallbacks: int = 0  # syncs that walked where a HEAD had been followed
    # where what is live is read from (the daemon: ``read_live`` of its state dir); without
    # one (unit tests, the metrics reference), the fields above stand in for the disk
    disk: Callable[[], Live] | None = field(default=None, repr=False, compare=False)
    # more liveness checks (the daemon: its supervised tasks), evaluated when asked
    task_checks: Callable[[float], list[Check]] = field(
        default=lambda _: [], repr=False, compare=False
    )

    def live(self) -> Live:
        if self.disk is not None:
            return self.disk()
        return Live(self.generation, self.journal_pending)

    @property
    def paused(self) -> bool:
        return bool(self.paused_by)

    @property
    def version_skew(self) -> bool:
        return self.versions is not None and self.versions.skew is True

    def record(self, result: SyncResult, now: float) -> None:
        """Fold one sync result in; a failed sync leaves the live generation as it was."""
        self.last_result = result
        self.last_attempt = now
        if result.outcome in SUCCESS:
            self.generation = result.generation
            self.last_success = now
            self.consecutive_failures = 0
        else:
            self.consecutive_failures += 1
        if result.outcome is Outcome.APPLIED:
            self.last_applied = result
        if result.versions is not None:
            self.versions = result.versions
        if result.outcome in SUCCESS:
            if self.following_head and result.source == "walk":
                self.walk_fallbacks += 1
            self.following_head = result.source == "published"
        for _, side in result.mismatches:
            self.verify_mismatches[side] = self.verify_mismatches.get(side, 0) + 1
        if result.verified_pass_at is not None:
            self.last_verified = result.verified_pass_at

    def readiness(
        self, now: float, max_staleness: float | None, live: Live | None = None
    ) -> list[Check]:
        """The agent's own readiness, from what is live on disk (``live``: read already);
        /readyz adds the upstream check."""
        live = self.live() if live is None else live
        checks = [self._generation_check(live)]
        if live.journal_pending and self.syncing_since is None:
            checks.append(
                Check("journal", False, "an apply was interrupted; the next sync finishes it")
            )
        if max_staleness is not None:
            checks.append(self._staleness_check(now, max_staleness))
        return checks

    def _generation_check(self, live: Live) -> Check:
        if live.error is not None:
            return Check("config", False, f"cannot tell what is live: {live.error}")
        if live.generation:
            return Check("config", True, f"generation {live.generation} is live")
        why = "no validated configuration applied yet"
        if self.last_result is not None and self.last_result.error is not None:
            err = self.last_result.error
            why += f" (last attempt: [{err.reason}] {err.message})"
        return Check("config", False, why)

    def _staleness_check(self, now: float, max_staleness: float) -> Check:
        if self.last_success is None:
            return Check("staleness", False, "no successful sync yet")
        age = now - self.last_success
        ok = age <= max_staleness
        return Check("staleness", ok, f"last success {age:.0f}s ago (max {max_staleness:g}s)")

    def ready(self, now: float, max_staleness: float | None, live: Live | None = None) -> bool:
        return all(c.ok for c in self.readiness(now, max_staleness, live))

    def liveness(self, mono: float, sync_timeout: float, running: bool) -> list[Check]:
        """Never about the primary: a dead primary must not get secondaries restarted."""
        beat = mono - self.heartbeat
        checks = [
            Check(
                "scheduler",
                running and beat <= HEARTBEAT_MAX_AGE,
                f"{'running' if running else 'stopped'}, heartbeat {beat:.1f}s ago",
            )
        ]
        if self.syncing_since is None:
            checks.append(Check("sync", True, "idle"))
        else:
            took = mono - self.syncing_since
            limit = sync_timeout + SYNC_GRACE
            checks.append(Check("sync", took <= limit, f"running {took:.1f}s (limit {limit:g}s)"))
        return checks + self.task_checks(mono)

    def to_json(self, now: float, max_staleness: float | None) -> dict[str, Any]:
        r = self.last_result
        live = self.live()
        checks = self.readiness(now, max_staleness, live)
        doc: dict[str, Any] = {
            "version": FORMAT_VERSION,
            "pid": os.getpid(),
            "updated_at": now,
            "started_at": self.started_at,
            "ready": all(c.ok for c in checks),
            "checks": [c.line() for c in checks],
            "max_staleness": max_staleness,
            "generation": live.generation,
            "last_attempt": self.last_attempt,
            "last_success": self.last_success,
            "last_result": str(r.outcome) if r else None,
            "last_reason": str(r.reason) if r and r.reason else None,
            "last_error": r.error.message if r and r.error else None,
            "consecutive_failures": self.consecutive_failures,
            "paused": self.paused,
            "paused_by": list(self.paused_by),
            "connected": self.connected,
            "connects": self.connects,
            "reconnect_attempts": self.reconnect_attempts,
            "syncing": self.syncing_since is not None,
            "last_change": _change_doc(self.last_applied),
            "last_verified": self.last_verified,
            "version_check": self.versions.to_json() if self.versions else None,
            "restart_pending": dict(sorted(self.restarts.since.items())),
            "following_head": self.following_head,
            "walk_fallbacks": self.walk_fallbacks,
            "verify_mismatches": dict(self.verify_mismatches),
        }
        return doc


def _change_doc(result: SyncResult | None) -> dict[str, Any] | None:
    if result is None:
        return None
    return {
        "generation": result.generation,
        "previous_generation": result.previous,
        "added": len(result.added),
        "modified": len(result.modified),
        "removed": len(result.removed),
        "mode_changed": len(result.mode_changed),
    }


def write_status(path: Path, doc: dict[str, Any]) -> None:
    """Atomic, so ``syncagent status`` never reads half a document (path: StateDir.status_file)."""
    atomic_write(path, json.dumps(doc, sort_keys=True).encode(), 0o644)


def read_status(path: Path) -> dict[str, Any] | None:
    try:
        doc = json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except ValueError:
        return None
    return doc if isinstance(doc, dict) else None


def once_status(previous: dict[str, Any] | None, result: SyncResult, now: float) -> dict[str, Any]:
    """What ``syncagent once`` leaves for ``status`` (StateDir.last_once_file)."""
    success = result.outcome in SUCCESS
    last_success = now if success else (previous or {}).get("last_success")
    return {
        "last_attempt": now,
        "last_attempt_by": "syncagent once",
        "last_success": last_success,
        "last_result": str(result.outcome),
        "last_reason": str(result.reason) if result.reason else None,
        "last_error": result.error.message if result.error else None,
    }


def state_status(
    state: StateDir, daemon: dict[str, Any] | None, paused_by: tuple[str, ...]
) -> dict[str, Any]:
    """The status when no daemon answers, from the state dir itself: the live generation from
    its record, and the newer of the daemon's last status and ``syncagent once``'s."""
    doc: dict[str, Any] = dict(daemon or {})
    try:
        record = json.loads(state.current_file.read_bytes())
        doc["generation"] = record.get("generation") if isinstance(record, dict) else None
    except (OSError, ValueError):
        doc["generation"] = None
    once = read_status(state.last_once_file)
    if once is not None and (once.get("last_attempt") or 0) >= (doc.get("last_attempt") or 0):
        doc.update(once)
    doc.update(paused=bool(paused_by), paused_by=list(paused_by), connected=False, syncing=False)
    return doc


def summary_line(doc: dict[str, Any], now: float, alive: bool) -> str:
    """One line for ``syncagent status``."""
    if not alive:
        head = "NOT READY: daemon not running"
    else:
        head = "ready" if doc.get("ready") else "NOT READY"
    parts = [f"{head}: generation {doc.get('generation') or '(none)'}"]
    parts.append(f"last success {_ago(doc.get('last_success'), now)}")
    attempt = f"last attempt {_ago(doc.get('last_attempt'), now)}"
    said = [str(doc[k]) for k in ("last_result", "last_attempt_by") if doc.get(k)]
    if said:
        attempt += f" ({', by '.join(said)})"
    parts.append(attempt)
    if alive:
        parts.append("connected" if doc.get("connected") else "not connected")
    if doc.get("paused"):
        parts.append("PAUSED by " + ", ".join(doc.get("paused_by") or []))
    if doc.get("consecutive_failures"):
        parts.append(f"{doc['consecutive_failures']} consecutive failure(s)")
    pending = doc.get("restart_pending") or {}
    if pending:
        parts.append("restart pending: " + ", ".join(sorted(pending)))
    line = ", ".join(parts)
    if doc.get("last_error"):
        line += f"; last error [{doc.get('last_reason')}] {doc['last_error']}"
    return line


def _ago(t: Any, now: float) -> str:
    if not isinstance(t, int | float):
        return "never"
    return f"{max(0.0, now - t):.0f}s ago"
