"""Re-apply a kept generation through the same journaled apply a sync uses.

A rollback is only as good as the copy it restores. Kept copies share no inode with the live
tree (stage.py, apply.py), so an edit of a live file cannot reach them; every kept file is still
hashed against the generation's manifest first, and a copy damaged in the state dir itself is
refused as ``validation`` (exit 3). The live tree is diffed exactly as a sync diffs it, so
directories keep their inodes and keyconf.xml lands last.

The caller pauses syncing before calling: otherwise the daemon's next sync would put the
primary's (presumably broken) configuration straight back. Like a sync, a rollback never raises
for a failure: its result carries the reason.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

import structlog

from syncagent.errors import Problem, Reason, SyncError, os_error
from syncagent.local import apply as applying
from syncagent.local.livetree import LiveTree, scan, sha256_file
from syncagent.local.manifest import Manifest, Record, live_identity_records
from syncagent.local.plan import diff, trusted_live
from syncagent.local.stage import Ownership, copy_file, own_inodes
from syncagent.local.state import StateDir, open_state
from syncagent.local.validate import check_local_node
from syncagent.report import RollbackResult
from syncagent.settings import Settings
from syncagent.tree import Kind

log = structlog.get_logger("syncagent.local.rollback")


def choose(state: StateDir, requested: str | None, live: str | None) -> str:
    """The requested generation, or the newest kept one that is not live."""
    kept = state.kept_generations()
    if requested is not None:
        if requested not in kept:
            shown = ", ".join(kept) or "none"
            raise SyncError(Reason.APPLY, f"generation {requested} is not kept (kept: {shown})")
        return requested
    for gen in kept:
        if gen != live:
            return gen
    raise SyncError(Reason.APPLY, "no kept generation other than the live one to roll back to")


def _problem(root: Path, path: str, rec: Record) -> str | None:
    p = root / path
    try:
        st = os.lstat(p)
    except FileNotFoundError:
        return "missing from the kept copy"
    if rec.kind is Kind.DIR:
        return None if stat.S_ISDIR(st.st_mode) else "is no longer a directory"
    if rec.kind is Kind.SYMLINK:
        if not stat.S_ISLNK(st.st_mode) or os.readlink(p) != rec.link:
            return "symlink differs from the manifest"
        return None
    if not stat.S_ISREG(st.st_mode):
        return "is no longer a regular file"
    return None if sha256_file(p) == rec.sha256 else "content differs from the manifest (sha256)"


def verify(state: StateDir, gen: str) -> Manifest:
    """The generation's manifest, if every kept file still hashes to what it says."""
    manifest = state.generation_manifest(gen)
    if manifest is None:
        raise SyncError(Reason.APPLY, f"generation {gen} has no manifest")
    root = state.generation_dir(gen)
    problems = [
        Problem(path, why)
        for path, rec in sorted(manifest.records.items())
        if (why := _problem(root, path, rec)) is not None
    ]
    if problems:
        raise SyncError(
            Reason.VALIDATION, f"kept generation {gen} does not match its manifest", tuple(problems)
        )
    return manifest


def _unshare(gen_dir: Path, records: dict[str, Record], live: LiveTree, placed: set[str]) -> None:
    """A copy kept before copies were immutable may still be the live file's inode: give the
    store its own copy before the live file is trusted to stay as it is."""
    for path, rec in records.items():
        lv = live.entries.get(path)
        if rec.kind is not Kind.FILE or path in placed or lv is None:
            continue
        kept = gen_dir / path
        if os.lstat(kept).st_ino == lv.ino:
            fresh = kept.with_name(f".{kept.name}.unshared")
            fresh.unlink(missing_ok=True)
            copy_file(kept, fresh)
            os.replace(fresh, kept)


def _apply(settings: Settings, state: StateDir, gen: str, live_gen: str | None) -> RollbackResult:
    """Blocking part, run in a thread under the sync lock."""
    sync = settings.sync
    kept = verify(state, gen)
    live = scan(sync.target, sync.path_filter())
    ch = diff(kept.records, live, trusted_live(live.entries, state.current()), sync.commit_last)
    gen_dir = state.generation_dir(gen)
    placed = set(ch.place)
    _unshare(gen_dir, kept.records, live, placed)
    records = own_inodes(gen_dir, live_identity_records(kept.records, live, placed), placed)
    manifest = Manifest(gen, kept.listed_at, records)
    if ch.empty():
        state.write_current(manifest)
    else:
        applying.publish(state, sync.target, manifest, gen_dir, ch, Ownership.of(sync))
    return RollbackResult(gen, live_gen, ch.added, ch.modified, ch.removed)


async def rollback(settings: Settings, requested: str | None) -> RollbackResult:
    """Roll the live tree back to a kept generation; the result says how, or why not."""
    try:
        result = await _rollback(settings, requested)
    except SyncError as e:
        return RollbackResult(requested, None, error=e)
    log.warning(
        "rolled_back",
        generation=result.generation,
        previous=result.previous,
        added=len(result.added),
        modified=len(result.modified),
        removed=len(result.removed),
    )
    return result


async def _rollback(settings: Settings, requested: str | None) -> RollbackResult:
    sync = settings.sync
    state = open_state(sync.state_dir, sync.target)
    async with applying.locked_and_recovered(state, sync.target, sync.timeout):
        check_local_node(sync)
        current = state.current()
        live_gen = current.generation if current else None
        gen = choose(state, requested, live_gen)
        try:
            # like a sync's apply: finishes under the lock even if the rollback is cancelled
            return await applying.finish_in_thread(_apply, settings, state, gen, live_gen)
        except OSError as e:
            raise os_error(e, f"rolling back to {gen}") from None
