"""The one question a sync asks of the primary, whichever way its state is read.

Walking the primary (walk.py) and following its published HEAD (head.py) are two answers to
it: a tree the primary held still for, with what this node lacks fetched into the candidate
dir, or None when the live tree already is the primary's state. The engine asks it once per
sync and never asks which answer it got.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from syncagent.local.livetree import LiveTree
from syncagent.local.manifest import Manifest, Record
from syncagent.local.state import StateDir
from syncagent.report import SyncResult
from syncagent.tree import Listing


@dataclass(frozen=True)
class Snapshot:
    """A listing the primary held still for, with what was fetched for it."""

    listing: Listing
    listed_at: float  # before the listing (or HEAD's manifest) was read: the racy-mtime base
    live: LiveTree
    known: dict[str, Record]  # what the record vouches for: kept live files, every symlink
    fetched: set[str]  # paths now in the candidate dir
    hashes: dict[str, str]  # path -> sha256 of every fetched file
    verify_only: tuple[str, ...] = ()  # fetched only to compare their content with the record


class RemoteSnapshot(Protocol):
    """The primary's state, as one sync takes it."""

    async def take(
        self,
        current: Manifest | None,
        trusted: Manifest | None,
        verify: frozenset[str],
        result: SyncResult,
    ) -> Snapshot | None:
        """Stage what the live tree lacks; None: the live tree is what the primary has and
        nothing more needed reading. ``trusted``: the record minus files found drifted;
        ``verify``: files whose content the primary's copy must confirm this time."""
        ...

    async def applied(self, state: StateDir, generation: str) -> None:
        """``generation`` is live (applied, or already was): remember what it answered."""
        ...
