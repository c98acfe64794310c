"""The remote snapshot from the primary's publish dir: read HEAD, its manifest, fetch objects.

The alternative to the walk (walk.py) when the primary runs ``syncagent publish``: a no-op
is one read of HEAD whatever the tree's size, and a change fetches only the objects whose hash
this secondary lacks. Objects are immutable and named by their hash, so there is no settle
wait, no re-listing and no racy-mtime rule: each object is verified while it streams. What
comes out has the walk's shape (a listing, what the record vouches for, what was fetched), so
everything after it (validate, apply, the generation id) is the same code.
"""

from __future__ import annotations

import asyncio
import hashlib
import posixpath
import time
from dataclasses import dataclass
from pathlib import Path

import asyncssh
import structlog

from syncagent.errors import Reason, SyncError
from syncagent.excludes import PathFilter
from syncagent.local.livetree import LiveTree, absent, scan
from syncagent.local.manifest import Manifest, Record
from syncagent.local.stage import Ownership, fresh_dir
from syncagent.local.state import Seen, StateDir
from syncagent.publishdir import (
    HEAD_MAX_BYTES,
    HEAD_NAME,
    MANIFESTS,
    OBJECTS,
    Head,
    PublishedTree,
    parse_head,
    parse_manifest,
)
from syncagent.remote.connection import Session, classify, request
from syncagent.remote.fetch import fetch_objects
from syncagent.remote.head_rules import (
    HeadStat,
    HeadVerdict,
    after_head_read,
    head_unchanged,
    judge_head,
    live_matches,
    plan_objects,
)
from syncagent.remote.listing import read_small
from syncagent.remote.preconditions import check_initialized
from syncagent.remote.snapshot import Snapshot
from syncagent.report import SyncResult
from syncagent.settings import PrimarySettings, Settings
from syncagent.tree import Limits, Listing

log = structlog.get_logger("syncagent.remote.head")

MANIFEST_BYTES_PER_ENTRY = 1024  # a manifest entry is ~200 bytes; the bound is generous
MANIFEST_MIN_BYTES = 1024 * 1024


@dataclass(frozen=True)
class HeadRead:
    """A HEAD, or why there is none to follow (then the engine walks)."""

    head: Head | None
    why: str = ""


async def read_head(session: Session, publish_dir: str) -> HeadRead:
    """One small read. A missing or unreadable HEAD is a reason to walk, not a failure; a
    connection that fails is a failure (the walk would fail the same way)."""
    try:
        data = await read_small(session, publish_dir, HEAD_NAME, HEAD_MAX_BYTES)
    except SyncError as e:
        if e.reason is not Reason.REMOTE_IO:
            raise
        return HeadRead(None, f"{publish_dir}/{HEAD_NAME} is unreadable ({e.message})")
    if data is None:
        return HeadRead(None, f"no {HEAD_NAME} in {publish_dir}")
    if len(data) >= HEAD_MAX_BYTES:
        return HeadRead(None, f"{publish_dir}/{HEAD_NAME} is larger than {HEAD_MAX_BYTES} bytes")
    try:
        return HeadRead(parse_head(data))
    except ValueError as e:
        return HeadRead(None, f"{publish_dir}/{HEAD_NAME} is not a valid HEAD ({e})")


@dataclass(frozen=True)
class HeadPoll:
    """What one poll learnt: the HEAD file's stat and what HEAD names (None: no valid HEAD)."""

    stat: HeadStat | None
    named: tuple[str, int] | None


async def poll_head(session: Session, publish_dir: str, known: HeadStat | None) -> HeadPoll:
    """The daemon's check between syncs: one stat of HEAD, and a read only when the stat
    cannot vouch for what it names (a third of the primary's work of open, read, close)."""
    path = posixpath.join(publish_dir, HEAD_NAME)
    try:
        attrs = await request(session, session.sftp.stat(path.encode()))
    except asyncssh.SFTPNoSuchFile:
        return HeadPoll(None, None)
    except Exception as e:
        raise classify(e, path) from None
    size, mtime = int(attrs.size or 0), int(attrs.mtime or 0)
    if known is not None and head_unchanged(known, size, mtime):
        return HeadPoll(known, known.named)
    sent = time.monotonic()
    read = await read_head(session, publish_dir)
    named = (read.head.generation, read.head.sequence) if read.head else None
    return HeadPoll(after_head_read(known, size, mtime, named, sent, time.monotonic()), named)


@dataclass(frozen=True)
class Followed:
    """The HEAD a sync follows, and what it means for the live generation."""

    publish_dir: str
    head: Head
    verdict: HeadVerdict


@dataclass(frozen=True)
class Choice:
    """Follow a HEAD, or walk (``note`` says why)."""

    followed: Followed | None
    note: str = ""


async def choose_head(
    primary: PrimarySettings, session: Session, state: StateDir, live_generation: str | None
) -> Choice:
    """The publish dir when it has a fresh HEAD, else the walk; a HEAD going back is refused."""
    publish_dir = primary.published_root
    if publish_dir is None:
        return Choice(None)
    read = await read_head(session, publish_dir)
    head = read.head
    if head is None:
        if primary.publish_dir != "auto":  # asked for by path: worth a line
            log.warning("walking", why=read.why)
        return Choice(None, read.why)
    seen = await asyncio.to_thread(state.seen_head)
    verdict = judge_head(head, seen, live_generation, time.time())
    if verdict is HeadVerdict.STALE:
        why = (
            f"{publish_dir}/HEAD was last confirmed at {head.checked_at:.0f}: the publisher "
            "has stopped"
        )
        log.warning("walking", why=why)
        return Choice(None, why)
    if verdict is HeadVerdict.ROLLBACK:
        assert seen is not None
        raise SyncError(
            Reason.PUBLISH_ROLLBACK,
            f"the primary's HEAD names generation {head.generation} #{head.sequence}, but "
            f"#{seen.sequence} ({seen.generation}) was already applied: a publish going "
            "back is refused (`syncagent accept-rollback` on this node follows it deliberately)",
        )
    return Choice(Followed(publish_dir, head, verdict))


async def remember_head(state: StateDir, followed: Followed, applied: str) -> None:
    """A sync that followed a HEAD raises the sequence floor for the next one."""
    head = followed.head
    await asyncio.to_thread(state.write_seen_head, Seen(head.generation, head.sequence, applied))


@dataclass(frozen=True)
class PublishedSnapshot:
    """One published generation, staged: what was fetched and what the record vouches for."""

    tree: PublishedTree
    known: dict[str, Record]  # unchanged live files and every symlink
    fetched: dict[str, str]  # path -> sha256 of every object fetched into the candidate
    nbytes: int
    live: LiveTree
    listed_at: float  # before HEAD's manifest was read: the walk's listing time

    @property
    def listing(self) -> Listing:
        return self.tree.listing


async def read_manifest(
    session: Session, publish_dir: str, head: Head, limits: Limits, pf: PathFilter
) -> PublishedTree:
    """The manifest HEAD names, checked against its name and against the HEAD."""
    bound = max(MANIFEST_MIN_BYTES, limits.max_files * MANIFEST_BYTES_PER_ENTRY)
    rel = posixpath.join(MANIFESTS, head.manifest)
    data = await read_small(session, publish_dir, rel, bound)
    if data is None:
        raise SyncError(
            Reason.REMOTE_IO, f"HEAD names manifest {head.manifest}, which is not in {publish_dir}"
        )
    if len(data) >= bound:
        raise SyncError(Reason.LIMITS, f"manifest {head.manifest} is over {bound} bytes")
    if hashlib.sha256(data).hexdigest() != head.manifest:
        raise SyncError(Reason.REMOTE_IO, f"manifest {head.manifest} holds other bytes; refused")
    tree = parse_manifest(data, limits, pf)
    if (tree.generation, tree.sequence) != (head.generation, head.sequence):
        raise SyncError(
            Reason.REMOTE_IO,
            f"manifest {head.manifest} is generation {tree.generation} #{tree.sequence}, "
            f"HEAD says {head.generation} #{head.sequence}",
        )
    return tree


async def take_published(
    settings: Settings,
    session: Session,
    farm: Path,
    current: Manifest | None,
    trusted: Manifest | None,
    followed: Followed,
) -> PublishedSnapshot | None:
    """Fetch into ``farm`` what the HEAD's manifest has that this secondary lacks (live files
    whose recorded hash matches are linked in later, stage.build_candidate, as after a walk);
    None: the live tree already is the generation HEAD names (one read, nothing else)."""
    sync = settings.sync
    listed_at = time.time()
    seeding = await asyncio.to_thread(absent, sync.target, sync.seed)
    pf = sync.path_filter(seeding)
    live = await asyncio.to_thread(scan, sync.target, pf)
    if (
        followed.verdict is HeadVerdict.CURRENT
        and current is not None
        and trusted is current
        and live_matches(live, current)
    ):
        return None
    if seeding:
        log.info("seeding", paths=list(seeding), why="absent here: copied once from the primary")
    tree = await read_manifest(session, followed.publish_dir, followed.head, Limits.of(sync), pf)
    if sync.xroad_checks:
        await check_initialized(session, settings.primary.remote_root, tree.listing)
    wanted, known = plan_objects(tree.listing, tree.hashes, live.entries, trusted)
    await asyncio.to_thread(fresh_dir, farm)
    objects = posixpath.join(followed.publish_dir, OBJECTS)
    nbytes = await fetch_objects(session, objects, wanted, tree.listing, farm, Ownership.of(sync))
    return PublishedSnapshot(tree, known, wanted, nbytes, live, listed_at)


class Follow:
    """The primary's state as its publish dir's HEAD names it."""

    def __init__(
        self, settings: Settings, session: Session, state: StateDir, followed: Followed
    ) -> None:
        self.settings = settings
        self.session = session
        self.state = state
        self.followed = followed

    async def take(
        self,
        current: Manifest | None,
        trusted: Manifest | None,
        verify: frozenset[str],
        result: SyncResult,
    ) -> Snapshot | None:
        """``verify`` needs nothing here: every object is checked against its hash anyway."""
        head = self.followed.head
        result.source = "published"
        result.followed = (head.generation, head.sequence)
        published = await take_published(
            self.settings, self.session, self.state.candidate, current, trusted, self.followed
        )
        if published is None:
            return None
        result.files_fetched += len(published.fetched)
        result.bytes_fetched += published.nbytes
        return Snapshot(
            published.listing,
            published.listed_at,
            published.live,
            published.known,
            set(published.fetched),
            published.fetched,
        )

    async def applied(self, state: StateDir, generation: str) -> None:
        """Raise the sequence floor: a HEAD going back from here is refused."""
        await remember_head(state, self.followed, generation)
