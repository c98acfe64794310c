"""Drift: changes to the live tree that the agent did not make.

With cron+rsync a hand edit on a secondary lived until the next minute, or forever if rsync's
quick check missed it. Here watchfiles reports it at once; the daemon logs it, counts it and
syncs, which puts the primary's version back.

Telling the agent's own applies from foreign changes needs no time window: current.json records
the inode, size and mtime of every file the agent placed (the same facts the engine uses to
trust a live file). An event whose path still matches its record is the agent's own doing;
a path that differs from it, vanished from it, or is missing from it is drift. Events that
arrive while an apply is in flight (a sync, a rollback, ``syncagent once``: the record is about
to change) are held and judged once it has finished. Node-local paths and the state dir are
never judged: the same PathFilter the engine uses decides.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Iterable
from pathlib import Path

import structlog

from syncagent import fswatch
from syncagent.errors import SyncError
from syncagent.excludes import PathFilter
from syncagent.local.livetree import entry_at, sha256_file
from syncagent.local.manifest import Manifest
from syncagent.local.plan import same_as_recorded
from syncagent.local.state import StateDir
from syncagent.tree import Kind, ancestors

log = structlog.get_logger("syncagent.local.drift")

RECHECK = 0.5  # seconds between looks while an apply is in flight
# Drift is repaired by a sync, seconds later anyway: its two watchers wake once a second, not
# four times (fswatch.STEP_MS), which is most of an idle daemon's CPU.
DRIFT_STEP_MS = 1000


def managed_path(target: Path, pf: PathFilter, path: str) -> str | None:
    """The path relative to the target if the agent manages it, else None."""
    try:
        rel = Path(path).relative_to(target).as_posix()
    except ValueError:
        return None
    if rel in ("", "."):
        return None
    if not all(pf.descend(d) for d in ancestors(rel)):
        return None
    if os.path.isdir(path) and not os.path.islink(path):
        return None if not pf.descend(rel) else rel
    if not os.path.lexists(path) and pf.excluded(rel, True):
        return None  # a deleted node-local directory ("globalconf/") looks like a file now
    return None if pf.excluded(rel, False) else rel


def drifted(target: Path, manifest: Manifest, paths: Iterable[str]) -> list[str]:
    """Paths whose live entry is not the one the record says the agent put there."""
    return sorted(
        p for p in paths if not same_as_recorded(entry_at(target / p), manifest.records.get(p))
    )


def drifted_content(target: Path, manifest: Manifest, paths: Iterable[str]) -> list[str]:
    """Files whose live entry still looks like the record (inode, size, mtime) but whose bytes
    no longer hash to it: an edit that restored all three, which only reading finds."""
    found = []
    for p in paths:
        rec = manifest.records.get(p)
        if rec is None or rec.kind is not Kind.FILE:
            continue
        if same_as_recorded(entry_at(target / p), rec) and _hash(target / p) != rec.sha256:
            found.append(p)
    return sorted(found)


def _hash(path: Path) -> str | None:
    """None when the file is gone or unreadable: then it is not what the record says either."""
    try:
        return sha256_file(path)
    except OSError:
        return None


class DriftWatcher:
    def __init__(
        self,
        target: Path,
        pf: PathFilter,
        store: StateDir,
        on_drift: Callable[[list[str]], None],
        busy: Callable[[], bool],
        on_error: Callable[[Exception], object] | None = None,
    ) -> None:
        """``on_error``: told of what judging events raised (the daemon's supervisor)."""
        self.target = target
        self.pf = pf
        self.store = store
        self.on_drift = on_drift
        self.busy = busy
        self.on_error = on_error
        self._pending: set[str] = set()
        self._timer: asyncio.TimerHandle | None = None

    def handle(self, changes: fswatch.Changes) -> None:
        for _, raw in changes:
            if (rel := managed_path(self.target, self.pf, raw)) is not None:
                self._pending.add(rel)
        self.evaluate()

    def evaluate(self) -> list[str]:
        """Judge held events now, or later if an apply is in flight; returns the drifted ones."""
        if not self._pending:
            return []
        if self.busy() or self.store.journal.exists():
            self._recheck_later()
            return []
        try:
            manifest = self.store.current()
        except SyncError:
            manifest = None
        paths, self._pending = self._pending, set()
        if manifest is None:
            return []  # nothing validated to compare with (or restore) yet
        found = drifted(self.target, manifest, paths)
        if found:
            self.on_drift(found)
        else:
            log.debug("own_change_ignored", paths=len(paths))
        return found

    def _recheck_later(self) -> None:
        if self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(RECHECK, self._recheck)

    def _recheck(self) -> None:
        """A timer callback: what it raises would reach only the loop's handler."""
        self._timer = None
        try:
            self.evaluate()
        except Exception as e:
            if self.on_error is None:
                raise
            self.on_error(e)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def subtrees(self) -> tuple[Path, ...]:
        """The top-level directories watched recursively: every one the filter descends into.

        Not the state dir: each applied sync adds a generation there, and a
        recursive watch would add (and keep bookkeeping for) a watch per new directory, growing
        with every sync. Nor node-local directories, whose events are never judged anyway.
        """
        try:
            names = sorted(os.listdir(self.target))
        except OSError:
            return ()
        return tuple(
            self.target / n
            for n in names
            if self.pf.descend(n)
            and (self.target / n).is_dir()
            and not (self.target / n).is_symlink()
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Two watches: the root alone (its files and which top-level directories exist), and
        the subtrees, re-resolved when the root's batch shows a top-level directory came or
        went (fswatch re-resolves on its tick too)."""

        def root() -> tuple[Path, ...]:
            return (self.target,) if self.target.is_dir() else ()

        try:
            await asyncio.gather(
                fswatch.watch(
                    "drift", root, self.handle, stop, step_ms=DRIFT_STEP_MS, on_error=self.on_error
                ),
                fswatch.watch(
                    "drift-subtrees",
                    self.subtrees,
                    self.handle,
                    stop,
                    recursive=True,
                    step_ms=DRIFT_STEP_MS,
                    on_error=self.on_error,
                ),
            )
        finally:
            self.close()
