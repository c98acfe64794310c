"""One sync, end to end: connect, list, plan, stage, re-list, validate, apply, report.

This is the only module that knows the order of the pipeline, and it holds nothing else: each
step lives in its own module. The primary's state comes from one interface
(remote/snapshot.py), answered by following the publish dir's HEAD or by the walk; which one
is chosen once (remote/source.py) and the engine never asks.
Blocking disk work runs in a thread so the daemon's HTTP endpoints stay responsive.
"""

from __future__ import annotations

import asyncio
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import structlog

from syncagent.errors import Reason, SyncError, os_error
from syncagent.local import apply as applying
from syncagent.local import ownership
from syncagent.local.drift import drifted_content
from syncagent.local.manifest import (
    Manifest,
    Record,
    generation_id,
    live_identity_records,
    new_records,
)
from syncagent.local.plan import diff, trusted_live
from syncagent.local.stage import Ownership, build_candidate, fsync_tree, own_inodes
from syncagent.local.state import StateDir, open_state
from syncagent.local.validate import (
    check_local_node,
    run_validate_command,
    tree_warnings,
    validate_tree,
)
from syncagent.local.verify import LOCAL, PRIMARY, Share, plan_share
from syncagent.remote.connection import Session, connect
from syncagent.remote.preconditions import compare_releases, hold_on_skew
from syncagent.remote.source import open_snapshot
from syncagent.report import Outcome, SyncResult, outcome_for
from syncagent.settings import Settings, SyncSettings
from syncagent.tree import Kind

log = structlog.get_logger("syncagent.engine")


class SyncSkipped(Exception):
    """``should_run`` said no once the lock was held (e.g. a rollback paused syncing)."""


async def sync(
    settings: Settings,
    session: Session | None = None,
    *,
    dry_run: bool = False,
    verify_all: bool = False,
    on_op: Callable[[int], None] | None = None,
    should_run: Callable[[], bool] | None = None,
) -> SyncResult:
    """Run one sync; never raises for sync failures, the result carries the reason.

    ``sync.timeout`` bounds everything, lock wait and journal roll-forward included, so the
    daemon's liveness check can rely on it. Raises SyncSkipped if ``should_run`` declines.
    ``verify_all`` compares every file's content now (``syncagent once --verify``).
    """
    started = time.monotonic()
    result = SyncResult(Outcome.FAILED, dry_run=dry_run)
    timeout = settings.sync.timeout
    run = _Run(dry_run, verify_all, on_op, should_run)
    try:
        await asyncio.wait_for(_locked_sync(settings, session, result, run), timeout)
    except SyncError as e:
        result.error = e
        result.outcome = outcome_for(e.reason)
    except TimeoutError:
        result.error = SyncError(Reason.TIMEOUT, f"sync took longer than sync.timeout={timeout:g}s")
        result.outcome = Outcome.FAILED
    except OSError as e:
        result.error = os_error(e, "sync")
        result.outcome = Outcome.FAILED
    result.duration = time.monotonic() - started
    return result


@dataclass(frozen=True)
class _Run:
    """How this one sync was asked to run."""

    dry_run: bool
    verify_all: bool
    on_op: Callable[[int], None] | None
    should_run: Callable[[], bool] | None


async def _locked_sync(
    settings: Settings, session: Session | None, result: SyncResult, run: _Run
) -> None:
    state = open_state(settings.sync.state_dir, settings.sync.target)
    await asyncio.to_thread(ownership.repair, state)
    async with applying.locked_and_recovered(state, settings.sync.target, settings.sync.timeout):
        if run.should_run is not None and not run.should_run():
            raise SyncSkipped
        current = state.current()
        result.previous = result.generation = current.generation if current else None
        check_local_node(settings.sync)
        own = session is None
        if own:
            session = await connect(settings.primary, state.pinned_host_key)
        assert session is not None
        try:
            await _sync(settings, session, state, current, result, run)
        finally:
            if own:
                await session.close()
    if result.outcome is Outcome.APPLIED:
        _empty_trash_soon(state)


_housekeeping: set[asyncio.Future[None]] = set()


def _empty_trash_soon(state: StateDir) -> None:
    """Delete pruned generations after the sync has answered, outside the lock."""
    task = asyncio.ensure_future(asyncio.to_thread(state.empty_trash))
    _housekeeping.add(task)
    task.add_done_callback(_housekeeping.discard)


async def _sync(
    settings: Settings,
    session: Session,
    state: StateDir,
    current: Manifest | None,
    result: SyncResult,
    run: _Run,
) -> None:
    sync = settings.sync
    target, farm = sync.target, state.candidate
    result.versions = await compare_releases(sync, session, settings.primary.remote_root)
    hold_on_skew(sync, result.versions)
    share = _verification_share(settings, state, current, run.verify_all)
    trusted = current
    if current is not None and share.paths:
        local = await asyncio.to_thread(drifted_content, target, current, share.paths)
        result.mismatches += [(p, LOCAL) for p in local]
        if local:  # the primary's copy replaces each of them
            trusted = current.without(local)
    try:  # a failed fetch must not leave its partial files behind (a full disk stays full)
        source = await open_snapshot(settings, session, state, current)
        snap = await source.take(current, trusted, frozenset(share.paths), result)
        if snap is None:  # the live tree is the primary's state: nothing else was read
            assert current is not None
            result.outcome = Outcome.UNCHANGED
            result.generation = result.candidate = current.generation
            result.verified = len(share.paths)
            if not run.dry_run:
                await _keep_verification(state, share, result)
            return
        result.verified = len(share.paths)
        if current is not None:
            result.mismatches += [
                (p, PRIMARY)
                for p in snap.verify_only
                if (rec := current.records.get(p)) and rec.sha256 != snap.hashes.get(p)
            ]
        for path, side in result.mismatches:
            log.warning("verify_mismatch", path=path, side=side, action="applying the primary's")
        live = snap.live
        records = new_records(snap.listing, snap.known, snap.hashes, farm)
        ch = diff(records, live, trusted_live(live.entries, trusted), sync.commit_last)
        result.added, result.modified, result.removed = ch.added, ch.modified, ch.removed
        result.mode_changed = [p for p, _ in ch.chmods]
        if ch.empty():  # no candidate tree to build: the live tree already is the generation
            records = live_identity_records(records, live, set())
            manifest = Manifest(generation_id(records), snap.listed_at, records)
            result.outcome = Outcome.UNCHANGED
            result.candidate = result.generation = manifest.generation
            if not run.dry_run:
                # listed_at only needs to advance when racy files were re-read (plan.RACY_SLACK),
                # not for files fetched only to verify them
                racy = snap.fetched.difference(snap.verify_only)
                if current is None or racy or current.records != records:
                    await asyncio.to_thread(state.write_current, manifest)
                await _keep_verification(state, share, result)
                await source.applied(state, manifest.generation)
            return
        # unchanged files come from the live generation's kept copy, never from the live tree:
        # a kept generation must not share an inode with a file someone may edit in place
        kept = state.generation_dir(current.generation) if current is not None else None
        await asyncio.to_thread(
            build_candidate, farm, target, snap.listing, snap.known, snap.fetched, kept
        )
        placed = set(ch.place)
        records = live_identity_records(records, live, placed)
        records = await asyncio.to_thread(own_inodes, farm, records, placed)
        manifest = Manifest(generation_id(records), snap.listed_at, records)
        result.candidate = manifest.generation
        await _validate(sync, farm, records, snap.fetched, result)
        if run.dry_run:
            result.outcome = Outcome.UNCHANGED
            return
        await asyncio.to_thread(fsync_tree, farm)
        data = await asyncio.to_thread(manifest.dumps)
        gen_dir = await asyncio.to_thread(state.store_generation, manifest, farm, data)
        await applying.finish_in_thread(
            applying.publish,
            state,
            target,
            manifest,
            gen_dir,
            ch,
            Ownership.of(sync),
            run.on_op,
            data,
        )
        await asyncio.to_thread(state.prune, manifest.generation, sync.keep_generations)
        result.outcome = Outcome.APPLIED
        result.generation = manifest.generation
        await _keep_verification(state, share, result)
        await source.applied(state, manifest.generation)
    finally:
        if farm.exists():
            await asyncio.to_thread(shutil.rmtree, farm, True)


def _verification_share(
    settings: Settings, state: StateDir, current: Manifest | None, everything: bool
) -> Share:
    files = sorted(p for p, r in current.records.items() if r.kind is Kind.FILE) if current else []
    return plan_share(
        files,
        state.verify_cursor(),
        now=time.time(),
        interval=settings.sync.verify_interval,
        everything=everything,
    )


async def _keep_verification(state: StateDir, share: Share, result: SyncResult) -> None:
    """The share counts only once its sync succeeded: a failed one is verified again."""
    await asyncio.to_thread(state.write_verify_cursor, share.next)
    if share.completes_pass:
        result.verified_pass_at = share.next.last_full_pass


async def _validate(
    sync: SyncSettings,
    farm: Path,
    records: dict[str, Record],
    fetched: set[str],
    result: SyncResult,
) -> None:
    files = [p for p, r in records.items() if r.kind is Kind.FILE]
    if sync.xroad_checks:
        result.warnings = await asyncio.to_thread(tree_warnings, farm, files)
        for warning in result.warnings:
            log.warning("validation_warning", path=warning.path, message=warning.message)
    problems = await asyncio.to_thread(
        validate_tree, farm, files, xroad=sync.xroad_checks, changed=fetched
    )
    if not problems and (problem := await run_validate_command(sync, farm)):
        problems = [problem]
    if problems:
        raise SyncError(Reason.VALIDATION, "the primary's tree failed validation", tuple(problems))
