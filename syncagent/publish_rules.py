"""Pure decisions about published generations: sequence numbers, what the publisher keeps, and
what a secondary does with the HEAD it read.

No I/O: the publisher and the secondary's snapshot step feed in what they read and act on the
answer, so the rules (a sequence never goes back, a secondary mid-fetch never meets a missing
object, a stale HEAD means the walk) are testable alone.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

from .livetree import LiveEntry, LiveTree
from .manifest import Manifest, Record
from .plan import MTIME_RESOLUTION, kept_record, same_as_recorded, trusted_record
from .publication import Head
from .tree import Kind, Listing

# The publisher re-confirms its HEAD (checked_at) at least this often, even with nothing new.
RESCAN_INTERVAL = 60.0
# A HEAD not confirmed for this long means the publisher stopped: secondaries walk instead.
STALE_AFTER = 5 * RESCAN_INTERVAL


def next_sequence(previous: int | None, now: float) -> int:
    """The sequence of a new generation: after the previous one, and never below the wall
    clock in milliseconds, so a publisher restarted with an emptied publish dir still never
    goes backwards (as long as its clock does not)."""
    floor = int(now * 1000)
    return floor if previous is None else max(previous + 1, floor)


class HeadAction(enum.StrEnum):
    CONFIRM = "confirm"  # only checked_at moves: this publisher wrote that HEAD itself
    RESTAMP = "restamp"  # same generation under a new sequence
    PUBLISH = "publish"  # a new generation


def head_action(
    previous: Head | None, generation: str, manifest_intact: bool, written: int | None
) -> HeadAction:
    """What a build whose source is ``generation`` does with the HEAD it found.

    A publisher confirms only a HEAD it wrote itself (``written``: the sequence it last wrote).
    Any other HEAD naming the same generation (found at start, restored from a backup, left by
    another publisher) may be older than what secondaries already applied, and they refuse a
    sequence that goes back: it gets a fresh sequence instead, so a restored publish dir heals
    at the next start and never holds secondaries on ``publish_rollback``.
    """
    if previous is None or previous.generation != generation or not manifest_intact:
        return HeadAction.PUBLISH
    if written is not None and previous.sequence == written:
        return HeadAction.CONFIRM
    return HeadAction.RESTAMP


@dataclass(frozen=True)
class Published:
    """One generation in the publish dir: its manifest and the objects it names."""

    sequence: int
    manifest: str
    objects: frozenset[str]


@dataclass(frozen=True)
class Retention:
    manifests: frozenset[str]
    objects: frozenset[str]


def retained(generations: Iterable[Published], keep: int, current: str | None = None) -> Retention:
    """The manifests and objects of the newest ``keep`` generations, always counting the one
    HEAD names (``current``) among them even when a manifest with a higher sequence lies around
    (one written just before a crash, before its HEAD): everything a secondary that read any of
    their HEADs may still fetch."""
    ordered = sorted(generations, key=lambda g: g.sequence, reverse=True)
    newest = [g for g in ordered if g.manifest == current][:1]
    newest += [g for g in ordered if g.manifest != current][: max(keep, 1) - len(newest)]
    return Retention(
        frozenset(g.manifest for g in newest),
        frozenset(o for g in newest for o in g.objects),
    )


@dataclass(frozen=True)
class Seen:
    """What a secondary last applied from a HEAD (kept in its state dir)."""

    generation: str  # the HEAD's generation id
    sequence: int
    applied: str  # the live generation that sync left (differs when seeds were taken)


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
