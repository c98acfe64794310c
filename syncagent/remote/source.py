"""Which way this sync reads the primary's state: its publish dir's HEAD, or the walk.

Chosen once per sync, before anything else is read: a fresh HEAD is followed, a missing,
unreadable or stale one means the walk, and a HEAD going back is refused (head.choose_head).
"""

from __future__ import annotations

from syncagent.local.manifest import Manifest
from syncagent.local.state import StateDir
from syncagent.remote.connection import Session
from syncagent.remote.head import Follow, choose_head
from syncagent.remote.snapshot import RemoteSnapshot
from syncagent.remote.walk import Walk
from syncagent.settings import Settings


async def open_snapshot(
    settings: Settings, session: Session, state: StateDir, current: Manifest | None
) -> RemoteSnapshot:
    live = current.generation if current else None
    choice = await choose_head(settings.primary, session, state, live)
    if choice.followed is None:
        return Walk(settings, session, state, choice.note)
    return Follow(settings, session, state, choice.followed)
