"""The primary's state by walking its tree: list, fetch what changed, re-list until it held still.

The walk needs no help from the primary beyond read-only SFTP, so it is what every secondary
can do; its cost is a full listing per check (the publish dir, head.py, makes that one read).
"""

from __future__ import annotations

import asyncio
import time

import structlog

from syncagent.errors import Reason, SyncError
from syncagent.excludes import PathFilter
from syncagent.local.livetree import absent, scan
from syncagent.local.manifest import Manifest
from syncagent.local.plan import plan_fetch
from syncagent.local.stage import Ownership, fresh_dir
from syncagent.local.state import StateDir
from syncagent.remote.connection import Session
from syncagent.remote.fetch import SnapshotMoved, fetch_files
from syncagent.remote.listing import list_tree, restat
from syncagent.remote.preconditions import check_initialized
from syncagent.remote.snapshot import Snapshot
from syncagent.report import SyncResult
from syncagent.settings import Settings
from syncagent.tree import Limits, Listing, ancestors, parent

log = structlog.get_logger("syncagent.engine")

MAX_ATTEMPTS = 4  # listings that moved under us before we give up on this round


class Walk:
    """List and fetch until the primary held still for the whole round."""

    def __init__(self, settings: Settings, session: Session, state: StateDir, note: str) -> None:
        self.settings = settings
        self.session = session
        self.state = state
        self.note = note  # why not the publish dir ("" when none is configured)

    async def take(
        self,
        current: Manifest | None,
        trusted: Manifest | None,
        verify: frozenset[str],
        result: SyncResult,
    ) -> Snapshot:
        sync, session = self.settings.sync, self.session
        result.source_note = self.note
        seeding = await asyncio.to_thread(absent, sync.target, sync.seed)
        if seeding:
            log.info(
                "seeding", paths=list(seeding), why="absent here: copied once from the primary"
            )
        root, pf, lim = (
            self.settings.primary.remote_root,
            sync.path_filter(seeding),
            Limits.of(sync),
        )
        farm = self.state.candidate
        moved: list[str] = []
        for attempt in range(1, MAX_ATTEMPTS + 1):
            result.attempts = attempt
            listed_at = time.time()
            listing = await list_tree(session, root, pf, lim)
            if sync.xroad_checks:
                await check_initialized(session, root, listing)
            live = await asyncio.to_thread(scan, sync.target, pf)
            fp = plan_fetch(
                listing, live.entries, trusted, now=time.time(), settle=sync.settle, verify=verify
            )
            if fp.unsettled and attempt < MAX_ATTEMPTS:
                wait = fp.settle_wait(time.time())
                log.info("waiting_to_settle", files=len(fp.unsettled), seconds=round(wait, 2))
                await asyncio.sleep(wait)
                continue
            await asyncio.to_thread(fresh_dir, farm)
            try:
                hashes, nbytes = await fetch_files(
                    session, root, fp.fetch, listing, farm, Ownership.of(sync)
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
            return Snapshot(
                listing, listed_at, live, fp.known, set(fp.fetch), hashes, fp.verify_only
            )
        raise SyncError(
            Reason.REMOTE_IO,
            f"the primary's tree kept changing over {MAX_ATTEMPTS} "
            f"attempts (e.g. {', '.join(moved[:3])}); will retry",
        )

    async def applied(self, state: StateDir, generation: str) -> None:
        """A walk leaves nothing to remember: the record is the whole memory."""


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
