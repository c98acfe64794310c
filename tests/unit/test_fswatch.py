"""Tests for syncagent.fswatch: a watch survives its directory being deleted and made again."""

from __future__ import annotations

import asyncio
import shutil
import time
from pathlib import Path

from syncagent import fswatch


async def test_a_directory_made_again_at_the_same_path_is_watched_again(tmp_path: Path) -> None:
    watched = tmp_path / "xroad"
    watched.mkdir()
    flag = watched / "sync-disabled"
    seen: list[str] = []
    stop = asyncio.Event()

    def targets() -> tuple[Path, ...]:
        return (fswatch.existing_ancestor(watched),)

    async def meanwhile() -> None:
        try:
            await asyncio.sleep(0.5)
            shutil.rmtree(watched)
            watched.mkdir()  # at once: a new inode at the old path, before the watch looks
            await asyncio.sleep(1.0)
            flag.touch()
            deadline = time.monotonic() + 4
            while str(flag) not in seen:
                assert time.monotonic() < deadline, f"the new directory is not watched: {seen}"
                await asyncio.sleep(0.05)
        finally:
            stop.set()

    def record(changes: fswatch.Changes) -> None:
        seen.extend(p for _, p in changes)

    await asyncio.wait_for(
        asyncio.gather(fswatch.watch("test", targets, record, stop), meanwhile()), 15
    )
