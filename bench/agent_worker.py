"""A process that holds one or more agents and runs their syncs on command.

    python -m bench.agent_worker CONFIG_JSON

CONFIG_JSON: ``{"agents": [overrides, ...], "keepalive": seconds|null}``. Commands arrive as JSON
lines on stdin, answers leave as JSON lines on stdout (logs go to stderr):

- ``{"op": "connect", "retry": bool}``: every agent opens its connection at the same instant;
  with retry, a refused one retries with full-jitter exponential backoff (1 s base, 60 s cap: the
  daemon's keeper policy), as a daemon would. Answers attempts and time per agent.
- ``{"op": "sync", "fresh": bool}``: every agent syncs at the same instant, over its kept
  connection (the daemon's way) or, with fresh, over a new one it opens and closes (``once``).
- ``{"op": "profile", "fresh": bool, "path": str}``: one sync of agent 0 under pyinstrument.
- ``{"op": "close"}``, ``{"op": "quit"}``.

The engine is imported before the first command, so interpreter start-up and imports (a daemon
pays them once) are not part of any sync's time. CPU is the whole process's (all threads:
blocking disk work runs in a thread pool), measured with time.process_time().
"""

from __future__ import annotations

import asyncio
import json
import random
import sys
import time
from typing import Any

from syncagent import logs
from syncagent.connection import Session, connect
from syncagent.engine import sync
from syncagent.errors import SyncError
from syncagent.state import StateDir
from syncagent.verify import Cursor

from .infra import make_settings

BACKOFF_BASE, BACKOFF_CAP, MAX_ATTEMPTS = 1.0, 60.0, 12


class Worker:
    def __init__(self, config: dict[str, Any]) -> None:
        self.settings = [make_settings(o) for o in config["agents"]]
        self.keepalive: float | None = config.get("keepalive")
        self.sessions: list[Session | None] = [None] * len(self.settings)

    async def _connect_one(self, i: int, retry: bool, t0: float) -> dict[str, Any]:
        errors: list[str] = []
        for attempt in range(1, MAX_ATTEMPTS + 1):
            try:
                self.sessions[i] = await connect(
                    self.settings[i].primary,
                    StateDir(self.settings[i].sync.state_dir).pinned_host_key,
                    keepalive=self.keepalive,
                )
                return {
                    "ok": True,
                    "attempts": attempt,
                    "seconds": time.monotonic() - t0,
                    "errors": errors,
                }
            except SyncError as e:
                errors.append(f"{e.reason}: {e.message}")
                if not retry:
                    break
                ceiling = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** (attempt - 1))
                await asyncio.sleep(random.uniform(0, ceiling))
        return {
            "ok": False,
            "attempts": len(errors),
            "seconds": time.monotonic() - t0,
            "errors": errors,
        }

    async def connect(self, retry: bool) -> dict[str, Any]:
        t0 = time.monotonic()
        results = await asyncio.gather(
            *(self._connect_one(i, retry, t0) for i in range(len(self.settings)))
        )
        return {"results": list(results), "wall": time.monotonic() - t0}

    async def _sync_one(self, i: int, fresh: bool) -> dict[str, Any]:
        session = None if fresh else self.sessions[i]
        if not fresh and (session is None or session.closed):
            return {"outcome": "failed", "error": "no connection", "duration": 0.0}
        r = await sync(self.settings[i], session)
        return {
            "outcome": str(r.outcome),
            "duration": r.duration,
            "files_fetched": r.files_fetched,
            "bytes_fetched": r.bytes_fetched,
            "attempts": r.attempts,
            "error": f"{r.error.reason}: {r.error.message}" if r.error else None,
        }

    async def sync(self, fresh: bool) -> dict[str, Any]:
        cpu0, t0 = time.process_time(), time.perf_counter()
        results = await asyncio.gather(
            *(self._sync_one(i, fresh) for i in range(len(self.settings)))
        )
        return {
            "wall": time.perf_counter() - t0,
            "cpu": time.process_time() - cpu0,
            "results": list(results),
        }

    async def profile(self, fresh: bool, path: str) -> dict[str, Any]:
        from pyinstrument import Profiler

        profiler = Profiler(interval=0.0005, async_mode="enabled")
        profiler.start()
        out = await self.sync(fresh)
        profiler.stop()
        with open(path, "w") as fh:
            fh.write(profiler.output_text(unicode=False, color=False, show_all=False))
        return out

    def verify_clock(self, seconds: float | None) -> dict[str, Any]:
        """Move each agent's verification cursor ``seconds`` into the past (a share falls
        due, as if that much time had passed), or, with None, to now (nothing due)."""
        now = time.time()
        for s in self.settings:
            state = StateDir(s.sync.state_dir)
            c = state.verify_cursor()
            at = now if seconds is None else (c.stepped_at or now) - seconds
            state.write_verify_cursor(Cursor(c.after, at, c.last_full_pass))
        return {}

    async def close(self) -> dict[str, Any]:
        for s in self.sessions:
            if s is not None:
                await s.close()
        self.sessions = [None] * len(self.settings)
        return {}


async def main() -> None:
    logs.configure("json", "warning", sys.stderr)
    worker = Worker(json.loads(sys.argv[1]))
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    print(json.dumps({"ready": True}), flush=True)
    while line := await reader.readline():
        cmd = json.loads(line)
        op = cmd["op"]
        if op == "quit":
            break
        if op == "connect":
            answer = await worker.connect(bool(cmd.get("retry")))
        elif op == "sync":
            answer = await worker.sync(bool(cmd.get("fresh")))
        elif op == "profile":
            answer = await worker.profile(bool(cmd.get("fresh")), cmd["path"])
        elif op == "verify_clock":
            answer = worker.verify_clock(cmd.get("seconds"))
        elif op == "close":
            answer = await worker.close()
        else:
            answer = {"error": f"unknown op {op}"}
        print(json.dumps(answer), flush=True)
    await worker.close()


if __name__ == "__main__":
    asyncio.run(main())
