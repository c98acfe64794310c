"""One sync, end to end: connect, list, plan, stage, re-list, validate, apply, report.

This is the only module that knows the order of the pipeline; each step lives in its own
module. Blocking disk work runs in a thread so the daemon's HTTP endpoints stay responsive.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import shutil
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

import structlog

from . import apply as applying
from .command import run_command
from .connection import Session, connect
from .errors import Problem, Reason, SyncError
from .excludes import PathFilter
from .livetree import LiveTree, scan
from .manifest import Manifest, Record, generation_id
from .plan import (
    MTIME_RESOLUTION,
    Changes,
    diff,
    plan_fetch,
    trusted_live,
)
from .report import Outcome, SyncResult, outcome_for
from .settings import Settings
from .snapshot import Limits, list_tree, restat
from .stage import (
    Ownership,
    SnapshotMoved,
    build_candidate,
    disk_error,
    fetch_files,
    fresh_dir,
    fsync_tree,
)
from .state import StateDir
from .tree import Kind, Listing, ancestors, parent
from .validate import check_node_is_secondary, missing_required, validate_tree

log = structlog.get_logger("syncagent.engine")

T = TypeVar("T")
MAX_ATTEMPTS = 4  # listings that moved under us before we give up on this round


def path_filter(settings: Settings) -> PathFilter:
    protected = (f"/{rel}/",) if (rel := settings.state_relpath()) else ()
    return PathFilter.build(
        settings["sync.profile"], settings["sync.exclude"], settings["sync.include"], protected
    )


def limits(settings: Settings) -> Limits:
    return Limits(
        settings["sync.max_files"],
        settings["sync.max_total_bytes"],
        settings["sync.max_file_bytes"],
        settings["sync.max_depth"],
    )


def ownership(settings: Settings) -> Ownership:
    st = settings.target.stat()
    uid = settings["sync.owner"] if settings["sync.owner"] is not None else st.st_uid
    gid = settings["sync.group"] if settings["sync.group"] is not None else st.st_gid
    if os.geteuid() != 0 and uid != os.geteuid():
        uid = None  # an unprivileged agent can only write files it owns
    return Ownership(uid, gid)


def check_local_node(settings: Settings) -> None:
    """Refuse to sync into a node that does not say it is a secondary."""
    if not settings.xroad_checks:
        return
    node_ini = settings.target / "conf.d" / "node.ini"
    try:
        data: bytes | None = node_ini.read_bytes()
    except FileNotFoundError:
        data = None
    problem = check_node_is_secondary(data)
    if problem:
        raise SyncError(
            Reason.VALIDATION, "this node is not a secondary", (Problem(str(node_ini), problem),)
        )


@contextlib.asynccontextmanager
async def locked(state: StateDir, timeout: float) -> AsyncIterator[None]:
    fd = os.open(state.path / "lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise SyncError(
                        Reason.APPLY, f"another sync holds {state.path / 'lock'}"
                    ) from None
                await asyncio.sleep(0.1)
        yield
    finally:
        os.close(fd)


def open_state(settings: Settings) -> StateDir:
    state = StateDir(settings.state_dir)
    state.ensure()
    state.check_same_filesystem(settings.target)
    return state


class SyncSkipped(Exception):
    """``should_run`` said no once the lock was held (e.g. a rollback paused syncing)."""


async def finish_in_thread(func: Callable[..., T], *args: Any) -> T:
    """Run disk work that must complete under the lock even if the sync is cancelled.

    The journal makes an interrupted apply safe, but releasing the lock while the thread still
    renames files would let another process start a sync in the middle of it.
    """
    task = asyncio.ensure_future(asyncio.to_thread(func, *args))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        await asyncio.wait([task])
        raise


async def sync(
    settings: Settings,
    session: Session | None = None,
    *,
    dry_run: bool = False,
    on_op: Callable[[int], None] | None = None,
    should_run: Callable[[], bool] | None = None,
) -> SyncResult:
    """Run one sync; never raises for sync failures, the result carries the reason.

    ``sync.timeout`` bounds everything, lock wait and journal roll-forward included, so the
    daemon's liveness check can rely on it. Raises SyncSkipped if ``should_run`` declines.
    """
    started = time.monotonic()
    result = SyncResult(Outcome.FAILED, dry_run=dry_run)
    try:
        await asyncio.wait_for(
            _locked_sync(settings, session, result, dry_run, on_op, should_run),
            settings["sync.timeout"],
        )
    except SyncError as e:
        result.error = e
        result.outcome = outcome_for(e.reason)
    except TimeoutError:
        result.error = SyncError(
            Reason.TIMEOUT, f"sync took longer than sync.timeout={settings['sync.timeout']:g}s"
        )
        result.outcome = Outcome.FAILED
    except OSError as e:
        result.error = disk_error(e, "sync")
        result.outcome = Outcome.FAILED
    result.duration = time.monotonic() - started
    return result


async def _locked_sync(
    settings: Settings,
    session: Session | None,
    result: SyncResult,
    dry_run: bool,
    on_op: Callable[[int], None] | None,
    should_run: Callable[[], bool] | None,
) -> None:
    state = open_state(settings)
    async with locked(state, settings["sync.timeout"]):
        if should_run is not None and not should_run():
            raise SyncSkipped
        await finish_in_thread(applying.recover, state, settings.target)
        current = state.current()
        result.previous = result.generation = current.generation if current else None
        check_local_node(settings)
        own = session is None
        if own:
            session = await connect(settings)
        assert session is not None
        try:
            await _sync(settings, session, state, current, result, dry_run, on_op)
        finally:
            if own:
                await session.close()


async def _stable_snapshot(
    settings: Settings,
    session: Session,
    state: StateDir,
    current: Manifest | None,
    result: SyncResult,
) -> tuple[Listing, float, LiveTree, dict[str, Record], set[str], dict[str, str]]:
    """List and fetch until the primary held still for the whole round."""
    root, pf, lim = settings["primary.remote_root"], path_filter(settings), limits(settings)
    target, farm = settings.target, state.staging / "tree"
    moved: list[str] = []
    for attempt in range(1, MAX_ATTEMPTS + 1):
        result.attempts = attempt
        listed_at = time.time()
        listing = await list_tree(session, root, pf, lim)
        files = [p for p, e in listing.items() if e.kind is Kind.FILE]
        dirs = [p for p, e in listing.items() if e.kind is Kind.DIR]
        if settings.xroad_checks and (missing := missing_required(files, dirs)):
            raise SyncError(
                Reason.NOT_INITIALIZED, "primary not initialized: missing " + ", ".join(missing)
            )
        live = await asyncio.to_thread(scan, target, pf)
        fp = plan_fetch(
            listing, live.entries, current, now=time.time(), settle=settings["sync.settle"]
        )
        if fp.unsettled and attempt < MAX_ATTEMPTS:
            youngest = max(listing[p].mtime for p in fp.unsettled)
            settled_at = youngest + settings["sync.settle"] + MTIME_RESOLUTION
            wait = max(0.1, settled_at - time.time()) + 0.05
            log.info("waiting_to_settle", files=len(fp.unsettled), seconds=round(wait, 2))
            await asyncio.sleep(wait)
            continue
        await asyncio.to_thread(fresh_dir, farm)
        try:
            hashes, nbytes = await fetch_files(
                session, root, fp.fetch, listing, farm, ownership(settings)
            )
        except SnapshotMoved as e:
            moved = [str(e)]
            continue
        result.files_fetched += len(hashes)
        result.bytes_fetched += nbytes
        if fp.fetch:
            moved = await _moved_since_listing(session, root, pf, lim, listing, fp.fetch)
            if moved:
                log.info("primary_changed_during_sync", paths=moved[:10], attempt=attempt)
                continue
        return listing, listed_at, live, fp.known, set(fp.fetch), hashes
    raise SyncError(
        Reason.REMOTE_IO,
        f"the primary's tree kept changing over {MAX_ATTEMPTS} "
        f"attempts (e.g. {', '.join(moved[:3])}); will retry",
    )


async def _moved_since_listing(
    session: Session,
    root: str,
    pf: PathFilter,
    lim: Limits,
    listing: Listing,
    fetched: tuple[str, ...],
) -> list[str]:
    """Entries that changed while we fetched, in every directory on the way to a fetched file."""
    dirs = {""} | {a for p in fetched for a in ancestors(p)}
    again = await restat(session, root, dirs, pf, lim)
    before = {p: e for p, e in listing.items() if parent(p) in dirs}
    return sorted(p for p in before.keys() | again.keys() if before.get(p) != again.get(p))


def _new_records(
    listing: Listing, known: dict[str, Record], hashes: dict[str, str], farm: Path
) -> dict[str, Record]:
    records: dict[str, Record] = {}
    for path, e in listing.items():
        if e.kind is Kind.DIR:
            records[path] = Record(Kind.DIR, e.mode, remote_mtime=e.mtime)
        elif path in hashes:
            st = os.lstat(farm / path)
            records[path] = Record(
                Kind.FILE,
                e.mode,
                hashes[path],
                size=e.size,
                remote_mtime=e.mtime,
                ino=st.st_ino,
                mtime_ns=st.st_mtime_ns,
            )
        else:
            records[path] = known[path]
    return records


def live_identity_records(
    records: dict[str, Record], live: LiveTree, placed: set[str]
) -> dict[str, Record]:
    """Files that stay in place keep their live inode and mtime in the record."""
    out = dict(records)
    for path, rec in records.items():
        lv = live.entries.get(path)
        if (
            rec.kind is Kind.FILE
            and path not in placed
            and lv is not None
            and (rec.ino, rec.mtime_ns) != (lv.ino, lv.mtime_ns)
        ):
            out[path] = replace(rec, ino=lv.ino, mtime_ns=lv.mtime_ns)
    return out


def with_live_identity(
    records: dict[str, Record], live: LiveTree, ch: Changes, target: Path, farm: Path
) -> dict[str, Record]:
    """As live_identity_records, and the candidate tree links the live file, not a copy."""
    placed = set(ch.place)
    for path, rec in records.items():
        lv = live.entries.get(path)
        if rec.kind is Kind.FILE and path not in placed and lv is not None:
            farm_file = farm / path
            if os.path.lexists(farm_file) and os.lstat(farm_file).st_ino != lv.ino:
                farm_file.unlink()
                os.link(target / path, farm_file)
    return live_identity_records(records, live, placed)


async def _sync(
    settings: Settings,
    session: Session,
    state: StateDir,
    current: Manifest | None,
    result: SyncResult,
    dry_run: bool,
    on_op: Callable[[int], None] | None,
) -> None:
    target, farm = settings.target, state.staging / "tree"
    try:  # a failed fetch must not leave its partial files behind (a full disk stays full)
        listing, listed_at, live, known, fetched, hashes = await _stable_snapshot(
            settings, session, state, current, result
        )
        records = _new_records(listing, known, hashes, farm)
        ch = diff(
            records, live, trusted_live(live.entries, current), tuple(settings["sync.commit_last"])
        )
        result.added, result.modified, result.removed = ch.added, ch.modified, ch.removed
        result.mode_changed = [p for p, _ in ch.chmods]
        if ch.empty():  # no candidate tree to build: the live tree already is the generation
            records = live_identity_records(records, live, set())
            manifest = Manifest(generation_id(records), listed_at, records)
            result.outcome = Outcome.UNCHANGED
            result.candidate = result.generation = manifest.generation
            # listed_at only needs to advance when racy files were re-read (plan.RACY_SLACK)
            if not dry_run and (current is None or fetched or current.records != records):
                await asyncio.to_thread(state.write_current, manifest)
            return
        await asyncio.to_thread(build_candidate, farm, target, listing, known, fetched)
        records = await asyncio.to_thread(with_live_identity, records, live, ch, target, farm)
        manifest = Manifest(generation_id(records), listed_at, records)
        result.candidate = manifest.generation
        await _validate(settings, farm, records, fetched)
        if dry_run:
            result.outcome = Outcome.UNCHANGED
            return
        await asyncio.to_thread(fsync_tree, farm)
        gen_dir = await asyncio.to_thread(state.store_generation, manifest, farm)
        await finish_in_thread(publish, settings, state, manifest, gen_dir, ch, on_op)
        await asyncio.to_thread(state.prune, manifest.generation, settings["sync.keep_generations"])
        result.outcome = Outcome.APPLIED
        result.generation = manifest.generation
    finally:
        if farm.exists():
            await asyncio.to_thread(shutil.rmtree, farm, True)


def publish(
    settings: Settings,
    state: StateDir,
    manifest: Manifest,
    gen_dir: Path,
    ch: Changes,
    on_op: Callable[[int], None] | None = None,
) -> None:
    """Journal and apply ``ch`` from a stored generation: the last step of a sync and of a
    rollback. Blocking; callers run it with finish_in_thread, under the lock."""
    own = ownership(settings)
    journal = applying.Journal(
        manifest.generation,
        str(gen_dir),
        applying.operations(ch),
        manifest.to_json(),
        own.uid,
        own.gid,
    )
    applying.apply(state, settings.target, journal, on_op)


async def _validate(
    settings: Settings, farm: Path, records: dict[str, Record], fetched: set[str]
) -> None:
    files = [p for p, r in records.items() if r.kind is Kind.FILE]
    problems = await asyncio.to_thread(
        validate_tree, farm, files, xroad=settings.xroad_checks, changed=fetched
    )
    if not problems and settings["sync.validate_command"]:
        problem = await run_validate_command(settings, farm)
        problems = [problem] if problem else []
    if problems:
        raise SyncError(Reason.VALIDATION, "the primary's tree failed validation", tuple(problems))


async def run_validate_command(settings: Settings, farm: Path) -> Problem | None:
    env = {**os.environ, "SYNCAGENT_STAGING": str(farm), "SYNCAGENT_TARGET": str(settings.target)}
    done = await run_command(
        settings["sync.validate_command"], env=env, timeout=settings["sync.validate_timeout"]
    )
    if done.ok:
        return None
    if done.returncode is None:
        return Problem("validate_command", done.stderr)
    return Problem("validate_command", f"exited {done.returncode}: {done.stderr}")
