"""The remote snapshot from the primary's publish dir: read HEAD, its manifest, fetch objects.

The alternative to the walk (snapshot.py) when the primary runs ``syncagent publish``: a no-op
is one read of HEAD whatever the tree's size, and a change fetches only the objects whose hash
this secondary lacks. Objects are immutable and named by their hash, so there is no settle
wait, no re-listing and no racy-mtime rule: each object is verified while it streams. What
comes out has the walk's shape (a listing, what the record vouches for, what was fetched), so
everything after it (validate, apply, the generation id) is the same code.
"""

from __future__ import annotations

import hashlib
import posixpath
from dataclasses import dataclass
from pathlib import Path

from .connection import Session
from .errors import Reason, SyncError
from .excludes import PathFilter
from .livetree import LiveTree
from .manifest import Manifest, Record
from .publication import (
    HEAD_MAX_BYTES,
    HEAD_NAME,
    MANIFESTS,
    OBJECTS,
    Head,
    PublishedTree,
    parse_head,
    parse_manifest,
)
from .publish_rules import plan_objects
from .snapshot import Limits, read_small
from .stage import Ownership, fetch_objects, fresh_dir
from .tree import Listing

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
class PublishedSnapshot:
    """One published generation, staged: what was fetched and what the record vouches for."""

    tree: PublishedTree
    known: dict[str, Record]  # unchanged live files and every symlink
    fetched: dict[str, str]  # path -> sha256 of every object fetched into the candidate
    nbytes: int

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


async def stage_published(
    session: Session,
    publish_dir: str,
    tree: PublishedTree,
    live: LiveTree,
    record: Manifest | None,
    farm: Path,
    owner: Ownership,
) -> PublishedSnapshot:
    """Fetch into ``farm`` only the objects this secondary lacks; live files whose recorded
    hash matches are linked in later (stage.build_candidate), as after a walk."""
    wanted, known = plan_objects(tree.listing, tree.hashes, live.entries, record)
    fresh_dir(farm)
    objects = posixpath.join(publish_dir, OBJECTS)
    nbytes = await fetch_objects(session, objects, wanted, tree.listing, farm, owner)
    return PublishedSnapshot(tree, known, wanted, nbytes)
