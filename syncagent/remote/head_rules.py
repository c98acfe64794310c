"""Pure decisions of a secondary about the HEAD it read: follow it, refuse it, or walk, and
which objects to fetch; what the daemon's poll may conclude from a stat of HEAD.

No I/O: remote/head.py feeds in what it read and acts on the answer, so the rules (a sequence
never goes back, a stale HEAD means the walk) are testable alone.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from syncagent.local.livetree import LiveEntry, LiveTree
from syncagent.local.manifest import Manifest, Record
from syncagent.local.plan import MTIME_RESOLUTION, kept_record, same_as_recorded, trusted_record
from syncagent.local.state import Seen
from syncagent.publishdir import STALE_AFTER, Head
from syncagent.tree import Kind, Listing


class HeadVerdict(enum.StrEnum):
    CURRENT = "current"  # the live generation is what HEAD names: nothing to do
    NEW = "new"  # read the manifest and fetch what is missing
    ROLLBACK = "rollback"  # the sequence went back: refuse
    STALE = "stale"  # the publisher stopped confirming: walk instead


def judge_head(
    head: Head, seen: Seen | None, live_generation: str | None, now: float
) -> HeadVerdict:
    """What one HEAD read means for this secondary.

    A HEAD whose sequence is below the last one applied (or equal, naming another generation)
    is a publisher that went back in time or a hostile publish dir: refused, never applied.
    """
    if now - head.checked_at > STALE_AFTER:
        return HeadVerdict.STALE
    if seen is not None:
        if head.sequence < seen.sequence:
            return HeadVerdict.ROLLBACK
        if head.sequence == seen.sequence and head.generation != seen.generation:
            return HeadVerdict.ROLLBACK
        if head.sequence == seen.sequence and live_generation == seen.applied:
            return HeadVerdict.CURRENT
    return HeadVerdict.NEW


def plan_objects(
    listing: Listing, hashes: dict[str, str], live: dict[str, LiveEntry], record: Manifest | None
) -> tuple[dict[str, str], dict[str, Record]]:
    """Which objects to fetch (path -> sha256), and what the record already vouches for.

    A live file is kept when it is still exactly what the record says and the record's hash is
    the published one: the hash is the whole comparison, no size or mtime rule is needed.
    """
    wanted: dict[str, str] = {}
    known: dict[str, Record] = {}
    for path, e in sorted(listing.items()):
        if e.kind is Kind.SYMLINK:
            known[path] = Record(Kind.SYMLINK, e.mode, link=e.link, remote_mtime=e.mtime)
        elif e.kind is Kind.FILE:
            rec = trusted_record(path, live, record)
            if rec is not None and rec.kind is Kind.FILE and rec.sha256 == hashes[path]:
                known[path] = kept_record(e, rec)
            else:
                wanted[path] = hashes[path]
    return wanted, known


def live_matches(live: LiveTree, record: Manifest) -> bool:
    """Whether the live tree is exactly the recorded generation (no drift to repair): then a
    HEAD naming that generation needs nothing else read."""
    if live.entries.keys() != record.records.keys():
        return False
    for path, lv in live.entries.items():
        rec = record.records[path]
        if not same_as_recorded(lv, rec) or (rec.kind is not Kind.SYMLINK and lv.mode != rec.mode):
            return False
    return True


@dataclass(frozen=True)
class HeadStat:
    """What the daemon's poll knows of the HEAD file: its size and whole-second mtime (SFTP
    v3), the generation and sequence its last read named, and when that read's answer came."""

    size: int
    mtime: int
    named: tuple[str, int] | None  # (generation, sequence); None: not a valid HEAD
    read_at: float  # monotonic
    confirmed: bool = False


def head_unchanged(known: HeadStat | None, size: int, mtime: int) -> bool:
    """Whether a stat of HEAD is enough: the same size and mtime as a read that is confirmed.

    A rewrite within the second of the mtime (same size: the fields are fixed-width) would
    leave both as they were, so the first read of a size and mtime is confirmed by a second
    one sent more than MTIME_RESOLUTION later, when that second is surely over on the
    primary; from then on only a new size or mtime means a new HEAD.
    """
    return known is not None and known.confirmed and (known.size, known.mtime) == (size, mtime)


def after_head_read(
    known: HeadStat | None,
    size: int,
    mtime: int,
    named: tuple[str, int] | None,
    sent_at: float,
    answered_at: float,
) -> HeadStat:
    """What a read teaches; ``sent_at``/``answered_at``: monotonic, around the read."""
    same = known is not None and (known.size, known.mtime, known.named) == (size, mtime, named)
    if same and known is not None and sent_at - known.read_at > MTIME_RESOLUTION:
        return HeadStat(size, mtime, named, known.read_at, confirmed=True)
    if same and known is not None:
        return known
    return HeadStat(size, mtime, named, answered_at)


# While walking, HEAD is looked for at this pace at the fastest, not every sync.poll: a primary
# without a publisher would otherwise pay a stat per secondary every 2 s for nothing.
WALKING_POLL = 10.0


def poll_due(following: bool, last_walking_poll: float | None, now: float) -> bool:
    """Whether this tick of the poll should look at HEAD (``now``: monotonic)."""
    return following or last_walking_poll is None or now - last_walking_poll >= WALKING_POLL


def poll_wants_sync(
    followed: tuple[str, int] | None,
    polled_before: tuple[str, int] | None,
    named: tuple[str, int] | None,
) -> bool:
    """Whether what a poll of HEAD found is worth a sync.

    Following (``followed``: the HEAD the last sync followed): any other answer, none too,
    since no valid HEAD means the walk. Walking: only a HEAD that is new since the previous
    poll (a publisher that started, or came back with a fresh sequence); the stale HEAD the
    walk began with, or no HEAD, stays the walk's, so a stopped publisher costs no syncs.
    """
    if followed is not None:
        return named != followed
    return named is not None and named != polled_before
