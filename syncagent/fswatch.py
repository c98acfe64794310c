"""A watchfiles loop that survives the directories it watches coming and going.

Control flags (/var/tmp/xroad may not exist yet), Kubernetes Secret mounts (``..data`` swapped
under us) and the live tree all need the same thing: watch, call back with the changed paths,
and re-resolve what to watch when the answer changes, never dying on a vanished directory.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from pathlib import Path

import structlog
from watchfiles import Change, awatch

log = structlog.get_logger("syncagent.fswatch")

Changes = set[tuple[Change, str]]
RETRY = 1.0  # seconds before watching again after an error
TICK_MS = 5000  # re-check what to watch at least this often (the heartbeat covers flags too)
STEP_MS = 250  # each step wakes the watcher thread and takes the GIL: the idle-CPU cost


def existing_ancestor(path: Path) -> Path:
    """The nearest directory that exists: watch it until ``path`` itself appears."""
    for candidate in (path, *path.parents):
        if candidate.is_dir():
            return candidate
    return Path("/")


async def sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


async def watch(
    name: str,
    targets: Callable[[], tuple[Path, ...]],
    on_change: Callable[[Changes], object],
    stop: asyncio.Event,
    *,
    recursive: bool = False,
    debounce_ms: int = 400,
    step_ms: int = STEP_MS,
    on_error: Callable[[Exception], object] | None = None,
) -> None:
    """Call ``on_change`` with each batch of events until ``stop`` is set.

    What to watch is re-resolved after every batch and every tick (TICK_MS): when the answer
    changes, or a watched directory itself was deleted (made again at the same path, even with
    the same inode number, it is another directory: the old watch would go on watching the
    deleted one), the watch starts over. ``on_error``: told of each exception ``on_change``
    raised (the daemon's supervisor counts it); the watch goes on either way.
    """
    while not stop.is_set():
        paths = targets()
        if not paths:
            await sleep_or_stop(stop, RETRY)
            continue
        roots = {str(p) for p in paths}
        try:
            async for changes in awatch(
                *paths,
                watch_filter=None,
                debounce=debounce_ms,
                step=step_ms,
                stop_event=stop,
                rust_timeout=TICK_MS,
                yield_on_timeout=True,
                recursive=recursive,
                ignore_permission_denied=True,
            ):
                if changes:
                    _deliver(name, on_change, changes, on_error)
                gone = any(kind is Change.deleted and p in roots for kind, p in changes)
                if gone or targets() != paths:
                    break
        except (OSError, RuntimeError) as e:
            log.warning("watch_failed", watch=name, error=str(e), retry_in=RETRY)
            await sleep_or_stop(stop, RETRY)


def _deliver(
    name: str,
    on_change: Callable[[Changes], object],
    changes: Changes,
    on_error: Callable[[Exception], object] | None = None,
) -> None:
    """A bug in one callback must not end the watch (drift repair would silently stop), nor
    go uncounted: ``on_error`` (the supervisor) logs and counts it, else it is logged here."""
    try:
        on_change(changes)
    except Exception as e:
        if on_error is None:
            log.exception("watch_callback_failed", watch=name)
        else:
            on_error(e)
