"""What must hold of the primary before its tree is taken: it is initialised, and it runs the
same X-Road release as this node.

Both read a little from the primary (its VERSION file) and decide with xroad/paths.py's rules; the
engine calls them at their places in the pipeline.
"""

from __future__ import annotations

import asyncio

import structlog

from syncagent.errors import Reason, SyncError
from syncagent.local.validate import read_local_version
from syncagent.remote.connection import Session
from syncagent.remote.listing import read_small
from syncagent.report import VersionCheck
from syncagent.settings import SyncSettings
from syncagent.tree import Kind, Listing
from syncagent.xroad.paths import (
    VERSION_MAX_BYTES,
    VERSION_PATH,
    major_version,
    missing_required,
    same_release,
)

log = structlog.get_logger("syncagent.remote.preconditions")


async def compare_releases(sync: SyncSettings, session: Session, root: str) -> VersionCheck | None:
    """The primary's release against this node's; None when the check is off. Configuration
    written by another X-Road release can break this node (IG-XLB's upgrade procedure disabled
    sync by hand while versions differed)."""
    if sync.version_source is None or sync.version_skew == "ignore":
        return None
    local, why = await asyncio.to_thread(read_local_version, sync.version_source)
    if local is None:  # nothing to compare with: spare the primary the read
        return VersionCheck(None, None, None, why)
    raw = await read_small(session, root, VERSION_PATH, VERSION_MAX_BYTES)
    primary = raw.decode("utf-8", "replace").strip() or None if raw is not None else None
    if primary is None:
        why = f"the primary has no readable {VERSION_PATH}"
    same = same_release(primary, local) if primary else None
    if primary and same is None:
        why = f"cannot compare {primary!r} with {local!r}"
    return VersionCheck(primary, local, None if same is None else not same, why)


def hold_on_skew(sync: SyncSettings, versions: VersionCheck | None) -> None:
    """Raise VERSION_SKEW when the releases differ and ``sync.version_skew = hold``."""
    if versions is None or versions.skew is not True:
        return
    held = sync.version_skew == "hold"
    log.warning(
        "version_skew",
        primary=versions.primary,
        local=versions.local,
        action="holding: nothing is applied until they match" if held else "applying anyway",
    )
    if held:
        raise SyncError(
            Reason.VERSION_SKEW,
            f"the primary runs X-Road {versions.primary}, this node {versions.local}: nothing "
            "applied until they match (sync.version_skew = hold)",
        )


async def check_initialized(session: Session, root: str, listing: Listing) -> None:
    """A primary before its first initialisation must not wipe a working secondary. What an
    initialised one holds depends on its release (X-Road 8 keeps keyconf in its database), so
    VERSION is read when the 7.x answer would be "not initialized"."""
    files = [p for p, e in listing.items() if e.kind is Kind.FILE]
    dirs = [p for p, e in listing.items() if e.kind is Kind.DIR]
    missing = missing_required(files, dirs)
    if missing:  # VERSION is node-local in the X-Road profiles: read it, not from the listing
        version = await read_small(session, root, VERSION_PATH, VERSION_MAX_BYTES)
        missing = missing_required(files, dirs, major_version(version))
    if missing:
        raise SyncError(
            Reason.NOT_INITIALIZED, "primary not initialized: missing " + ", ".join(missing)
        )
