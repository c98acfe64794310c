"""Pure decisions: what to fetch, and which operations turn the live tree into the new one.

No I/O here: inputs are the primary's listing, the live tree and the record of the last
generation; outputs are lists. That keeps the rules (racy mtimes, settle, apply order) testable
without a network or a disk.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from syncagent.errors import Problem, Reason, SyncError
from syncagent.local.livetree import LiveEntry, LiveTree
from syncagent.local.manifest import Manifest, Record
from syncagent.tree import Kind, Listing, RemoteEntry, depth

# SFTP v3 mtimes are whole seconds: a file written in the same second as the last listing may
# have changed again without its (size, mtime) changing, so it is fetched and compared.
RACY_SLACK = 1.0
# The same truncation makes a file look up to a second older than it is; settle errs the safe way.
MTIME_RESOLUTION = 1.0
SETTLE_MIN_WAIT = 0.1
SETTLE_MARGIN = 0.05


@dataclass(frozen=True)
class FetchPlan:
    fetch: tuple[str, ...]
    known: dict[str, Record]  # paths whose new content the record already vouches for
    unsettled: tuple[str, ...]
    settled_at: float | None = None  # when the youngest unsettled file counts as settled
    verify_only: tuple[str, ...] = ()  # fetched only to compare their content

    def settle_wait(self, now: float) -> float:
        """Seconds to wait before listing again, so every unsettled file has settled."""
        if self.settled_at is None:
            return 0.0
        return max(SETTLE_MIN_WAIT, self.settled_at - now) + SETTLE_MARGIN


def same_as_recorded(lv: LiveEntry | None, rec: Record | None) -> bool:
    """Whether the live entry is still exactly what the record says the agent put there.

    Files by (inode, size, mtime_ns): any write or replacement changes one of them. Planning
    uses it to trust a recorded hash; drift repair uses it to tell others' edits from ours.
    """
    if lv is None or rec is None:
        return lv is None and rec is None
    if rec.kind is not lv.kind:
        return False
    if rec.kind is Kind.FILE:
        return (lv.ino, lv.size, lv.mtime_ns) == (rec.ino, rec.size, rec.mtime_ns)
    if rec.kind is Kind.SYMLINK:
        return lv.link == rec.link
    return True


def trusted_record(path: str, live: dict[str, LiveEntry], record: Manifest | None) -> Record | None:
    """The recorded version of a live entry, if the entry on disk is still exactly that one."""
    rec = record.records.get(path) if record is not None else None
    lv = live.get(path)
    return rec if rec is not None and lv is not None and same_as_recorded(lv, rec) else None


def trusted_live(live: dict[str, LiveEntry], record: Manifest | None) -> dict[str, Record]:
    """Records of every live entry that is still exactly what the record says."""
    return {p: r for p in live if (r := trusted_record(p, live, record)) is not None}


def plan_fetch(
    listing: Listing,
    live: dict[str, LiveEntry],
    record: Manifest | None,
    *,
    now: float,
    settle: float,
    verify: frozenset[str] = frozenset(),
) -> FetchPlan:
    """Which files to fetch: every file the record cannot vouch for, and those being verified
    (``verify``: fetched and compared by content even when (size, mtime) say unchanged)."""
    fetch: list[str] = []
    unsettled: list[str] = []
    verify_only: list[str] = []
    known: dict[str, Record] = {}
    for path, e in sorted(listing.items()):
        if e.kind is Kind.DIR:
            continue
        if e.kind is Kind.SYMLINK:
            known[path] = Record(Kind.SYMLINK, e.mode, link=e.link, remote_mtime=e.mtime)
            continue
        rec = trusted_record(path, live, record)
        clean = rec is not None and record is not None and _clean(e, rec, record.listed_at)
        if clean and rec is not None and path not in verify:
            known[path] = kept_record(e, rec)
            continue
        fetch.append(path)
        if clean:
            verify_only.append(path)
        elif settle and 0 <= now - e.mtime < settle + MTIME_RESOLUTION:
            unsettled.append(path)
    settled_at = (
        max(listing[p].mtime for p in unsettled) + settle + MTIME_RESOLUTION if unsettled else None
    )
    return FetchPlan(tuple(fetch), known, tuple(unsettled), settled_at, tuple(verify_only))


def kept_record(e: RemoteEntry, rec: Record) -> Record:
    """The record of a live file the primary's entry ``e`` still matches: the entry's mode,
    size and mtime, the recorded hash, and its live identity too (the record already vouches
    for the file on disk, so no 10k-file rebuild of identities follows)."""
    return Record(
        Kind.FILE,
        e.mode,
        rec.sha256,
        size=e.size,
        remote_mtime=e.mtime,
        ino=rec.ino,
        mtime_ns=rec.mtime_ns,
    )


def _clean(e: RemoteEntry, rec: Record, listed_at: float) -> bool:
    return (e.size, e.mtime) == (rec.size, rec.remote_mtime) and e.mtime < listed_at - RACY_SLACK


@dataclass
class Changes:
    """The operations of one apply, in the order they must run."""

    clear: list[str] = field(default_factory=list)  # live dirs that become files or links
    mkdirs: list[tuple[str, int]] = field(default_factory=list)
    place: list[str] = field(default_factory=list)  # files and links renamed into place
    remove: list[str] = field(default_factory=list)  # files and links gone from the primary
    rmdirs: list[str] = field(default_factory=list)  # deepest first
    chmods: list[tuple[str, int]] = field(default_factory=list)
    added: list[str] = field(default_factory=list)
    modified: list[str] = field(default_factory=list)

    @property
    def removed(self) -> list[str]:
        return sorted([*self.remove, *self.rmdirs])

    def empty(self) -> bool:
        return not (
            self.clear or self.mkdirs or self.place or self.remove or self.rmdirs or self.chmods
        )


def diff(
    new: dict[str, Record],
    live: LiveTree,
    live_content: dict[str, Record],
    commit_last: tuple[str, ...] = (),
) -> Changes:
    """Operations from the live tree to ``new``.

    ``live_content`` holds the records of live files whose content is known (the trusted
    record); a live file without one is treated as different and replaced.
    """
    ch = Changes()
    entries = live.entries
    for path, rec in sorted(new.items(), key=lambda kv: (depth(kv[0]), kv[0])):
        lv = entries.get(path)
        if lv is not None and lv.kind is Kind.DIR and rec.kind is not Kind.DIR:
            if any(d == path or d.startswith(path + "/") for d in live.holds_local):
                raise SyncError(
                    Reason.APPLY,
                    "cannot replace a directory",
                    (
                        Problem(
                            path,
                            "the primary has a file here, but the live "
                            "directory holds node-local files",
                        ),
                    ),
                )
            ch.clear.append(path)
            lv = None
        if rec.kind is Kind.DIR:
            if lv is None or lv.kind is not Kind.DIR:
                ch.mkdirs.append((path, rec.mode))
                ch.added.append(path)
            elif lv.mode != rec.mode:
                ch.chmods.append((path, rec.mode))
            continue
        known = live_content.get(path)
        if lv is None:
            ch.place.append(path)
            ch.added.append(path)
        elif known is None or not known.same_content(rec) or lv.kind is not rec.kind:
            ch.place.append(path)
            ch.modified.append(path)
        elif rec.kind is Kind.FILE and lv.mode != rec.mode:
            ch.chmods.append((path, rec.mode))
    last = set(commit_last)
    ch.place.sort(key=lambda p: (p in last, commit_last.index(p) if p in last else 0, p))

    cleared = tuple(p + "/" for p in ch.clear)
    for path, lv in entries.items():
        if path in new or path.startswith(cleared):
            continue
        if lv.kind is Kind.DIR:
            if path not in live.holds_local:
                ch.rmdirs.append(path)
        else:
            ch.remove.append(path)
    ch.remove.sort()
    ch.rmdirs.sort(key=lambda p: (-depth(p), p))
    return ch
