"""Re-apply a kept generation through the same journaled apply a sync uses.

A rollback is only as good as the copy it restores, so every kept file is hashed against the
generation's manifest first and any difference refuses the rollback (a hardlinked copy can be
changed through the live tree's link by a careless edit). The live tree is diffed exactly as a
sync diffs it, so directories keep their inodes and keyconf.xml lands last.

The caller pauses syncing before calling: otherwise the daemon's next sync would put the
primary's (presumably broken) configuration straight back.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from . import apply as applying
from . import engine
from .errors import Problem, Reason, SyncError
from .livetree import scan
from .manifest import Manifest, Record
from .plan import diff, trusted_live
from .settings import Settings
from .state import StateDir
from .tree import Kind

log = structlog.get_logger("syncagent.rollback")

CHUNK = 1024 * 1024


@dataclass
class Rollback:
    generation: str
    previous: str | None
    added: list[str] = field(default_factory=list)
    modified: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, object]:
        return {
            "result": "rolled_back",
            "generation": self.generation,
            "previous_generation": self.previous,
            "added": self.added,
            "modified": self.modified,
            "removed": self.removed,
        }


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


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


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
    return None if _sha256(p) == rec.sha256 else "content differs from the manifest (sha256)"


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


def _apply(settings: Settings, state: StateDir, gen: str, live_gen: str | None) -> Rollback:
    """Blocking part, run in a thread under the sync lock."""
    kept = verify(state, gen)
    live = scan(settings.target, engine.path_filter(settings))
    ch = diff(
        kept.records,
        live,
        trusted_live(live.entries, state.current()),
        tuple(settings["sync.commit_last"]),
    )
    gen_dir = state.generation_dir(gen)
    records = engine.with_live_identity(kept.records, live, ch, settings.target, gen_dir)
    manifest = Manifest(gen, kept.listed_at, records)
    if ch.empty():
        state.write_current(manifest)
    else:
        engine.publish(settings, state, manifest, gen_dir, ch)
    return Rollback(gen, live_gen, ch.added, ch.modified, ch.removed)


async def rollback(settings: Settings, requested: str | None) -> Rollback:
    """Roll the live tree back to a kept generation; raises SyncError with the reason."""
    state = engine.open_state(settings)
    async with engine.locked(state, settings["sync.timeout"]):
        await engine.finish_in_thread(applying.recover, state, settings.target)
        engine.check_local_node(settings)
        current = state.current()
        live_gen = current.generation if current else None
        gen = choose(state, requested, live_gen)
        try:
            # like a sync's apply: finishes under the lock even if the rollback is cancelled
            result = await engine.finish_in_thread(_apply, settings, state, gen, live_gen)
        except OSError as e:
            raise SyncError(Reason.APPLY, f"rolling back to {gen}: {e.strerror or e}") from None
    log.warning(
        "rolled_back",
        generation=gen,
        previous=live_gen,
        added=len(result.added),
        modified=len(result.modified),
        removed=len(result.removed),
    )
    return result
