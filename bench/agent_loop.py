"""Stand-in for ``syncagent run`` when the daemon is not available: the same sync loop, bare.

    python -m bench.agent_loop OVERRIDES_JSON

One kept connection (keepalive min(15 s, interval), as the daemon's keeper), a first sync at
once, then syncs every ``sync.interval`` at a random phase plus up to ``sync.jitter`` x interval
of jitter (the daemon's schedule). No HTTP server, metrics, drift watcher or scheduler: its
footprint is a lower bound for the daemon's, and the report says which of the two was measured.
"""

from __future__ import annotations

import asyncio
import json
import random
import sys

from syncagent import logs
from syncagent.engine import sync
from syncagent.errors import SyncError
from syncagent.local.state import StateDir
from syncagent.remote.connection import Session, connect

from .infra import make_settings


async def main() -> None:
    settings = make_settings(json.loads(sys.argv[1]))
    logs.configure("json", settings.log.level, sys.stderr)
    interval, jitter = settings.sync.interval, settings.sync.jitter
    keepalive = max(1.0, min(15.0, interval))
    session: Session | None = None
    loop = asyncio.get_running_loop()
    phase = loop.time() + random.uniform(0, interval)
    k = -1  # -1: the first sync, at once
    while True:
        if k >= 0:
            at = phase + k * interval + random.uniform(0, jitter * interval)
            await asyncio.sleep(max(0.0, at - loop.time()))
        if session is None or session.closed:
            try:
                session = await connect(
                    settings.primary,
                    StateDir(settings.sync.state_dir).pinned_host_key,
                    keepalive=keepalive,
                )
            except SyncError as e:
                print(json.dumps({"event": "connect_failed", "error": e.message}), file=sys.stderr)
                session = None
        if session is not None:
            result = await sync(settings, session)
            if result.error is not None:
                print(
                    json.dumps({"event": "sync", "outcome": str(result.outcome)}), file=sys.stderr
                )
        k = max(k + 1, int((loop.time() - phase) // interval) + 1)


if __name__ == "__main__":
    asyncio.run(main())
