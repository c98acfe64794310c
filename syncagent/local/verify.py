"""Pure decisions for content verification: which files a sync compares by content.

Planning trusts (size, mtime) once a file is older than the racy window, so a file rewritten on
the primary with the same size and mtime (a backup restore, ``cp -p``, ``rsync -t``) would never
be fetched again, and a local edit that restores size, mtime and inode would never be noticed.
Verification closes both: every synced file's content is compared with the primary's (by
fetching it) and its live copy re-hashed against the record, at least once per
``sync.verify_interval``, a rotating share per sync so that no one sync pays for the whole tree.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Any

PRIMARY = "primary"  # the primary's content differs from the record
LOCAL = "local"  # the live file differs from the record
SIDES = (PRIMARY, LOCAL)


@dataclass(frozen=True)
class Cursor:
    """Where the rotating pass stands: after which path, since when, and when the last full
    pass completed. Kept in the state dir between syncs."""

    after: str = ""  # the last path verified in this pass ("" = the pass starts over)
    stepped_at: float | None = None  # when the cursor last moved (None: never started)
    last_full_pass: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "after": self.after,
            "stepped_at": self.stepped_at,
            "last_full_pass": self.last_full_pass,
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Cursor:
        def opt(v: Any) -> float | None:
            return float(v) if isinstance(v, int | float) else None

        after = doc.get("after")
        return cls(
            after if isinstance(after, str) else "",
            opt(doc.get("stepped_at")),
            opt(doc.get("last_full_pass")),
        )


@dataclass(frozen=True)
class Share:
    """The files one sync verifies, and the cursor to keep if that sync succeeds."""

    paths: tuple[str, ...]
    next: Cursor
    completes_pass: bool


def plan_share(
    files: list[str], cursor: Cursor, *, now: float, interval: float, everything: bool = False
) -> Share:
    """The next share of ``files`` (sorted) to verify.

    Time decides the size: one file is due every ``interval / len(files)`` seconds, so a pass
    over the whole tree takes ``interval`` however often syncs run, and a sync soon after
    another verifies nothing. ``interval`` 0 or ``everything`` (``syncagent once --verify``)
    verifies every file now.
    """
    if everything or interval <= 0:
        return Share(tuple(files), Cursor("", now, now), True)
    if cursor.stepped_at is None or not files:
        return Share((), Cursor("", now, cursor.last_full_pass), False)
    per_file = interval / len(files)
    due = int(max(0.0, now - cursor.stepped_at) // per_file)
    if due == 0:
        return Share((), cursor, False)  # time accumulates until a whole file is due
    start = bisect.bisect_right(files, cursor.after) if cursor.after else 0
    share = tuple(files[start : start + due])
    if start + due >= len(files):
        return Share(share, Cursor("", now, now), True)
    # the clock moves by what was verified, so the remainder counts towards the next share
    stepped_at = cursor.stepped_at + due * per_file
    return Share(share, Cursor(share[-1], stepped_at, cursor.last_full_pass), False)
