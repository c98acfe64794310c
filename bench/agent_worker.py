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
- ``{"op": "head"}``: agent 0 checks its primary's HEAD once over its kept connection: the check
  the daemon makes every ``sync.poll`` seconds between syncs (``remote.head.poll_head``: a stat,
  and a read only when the stat cannot vouch for it; no sync follows an unchanged one).
- ``{"op": "poll", "every": s, "duration": s}``: every agent checks its primary's HEAD over its
  kept connection every ``every`` seconds from a random phase, for ``duration`` seconds: what the
  daemon's poll job does while it follows a HEAD (``remote.head.poll_head``, nothing else).
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
from collections.abc import Coroutine, Iterable
from typing import Any

from syncagent import logs
from syncagent.engine import sync
from syncagent.errors import SyncError
from syncagent.local.state import StateDir
from syncagent.local.verify import Cursor
from syncagent.remote.connection import Session, connect
from syncagent.remote.head import poll_head
from syncagent.remote.head_rules import HeadStat

from .infra import make_settings

BACKOFF_BASE, BACKOFF_CAP, MAX_ATTEMPTS = 1.0, 60.0, 12


class Worker:
    def __init__(self, config: dict[str, Any]) -> None:
        self.settings = [make_settings(o) for o in config["agents"]]
        self.keepalive: float | None = config.get("keepalive")
        self.sessions: list[Session | None] = [None] * len(self.settings)
        self.head_stats: list[HeadStat | None] = [None] * len(self.settings)  # as the daemon's

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
            "verified": r.verified,  # files of the verification share that fell due
            "source": r.source,  # "published" (followed a HEAD) or "walk"
            "sequence": r.followed[1] if r.followed else None,
        }

    async def sync(self, fresh: bool) -> dict[str, Any]:
        return await _timed_all(self._sync_one(i, fresh) for i in range(len(self.settings)))

    async def _poll_one(self, i: int, every: float, duration: float) -> dict[str, Any]:
        session, root = self.sessions[i], self.settings[i].primary.published_root
        if session is None or session.closed or root is None:
            return {"polls": 0, "errors": ["no connection or no publish dir"], "sequences": []}
        end = time.monotonic() + duration
        await asyncio.sleep(random.uniform(0, every))
        polls, errors, seqs = 0, list[str](), set[int]()
        while time.monotonic() < end:
            t = time.monotonic()
            try:
                polled = await poll_head(session, root, self.head_stats[i])
                self.head_stats[i] = polled.stat
                polls += 1
                if polled.named is not None:
                    seqs.add(polled.named[1])
                else:
                    errors.append("no valid HEAD")
            except SyncError as e:
                errors.append(f"{e.reason}: {e.message}")
            await asyncio.sleep(max(0.0, every - (time.monotonic() - t)))
        return {"polls": polls, "errors": errors[:3], "sequences": sorted(seqs)}

    async def head(self) -> dict[str, Any]:
        session, root = self.sessions[0], self.settings[0].primary.published_root
        cpu0, t0 = time.process_time(), time.perf_counter()
        if session is None or session.closed or root is None:
            res: dict[str, Any] = {"outcome": "failed", "error": "no connection or publish dir"}
        else:
            try:
                polled = await poll_head(session, root, self.head_stats[0])
                self.head_stats[0] = polled.stat
                res = {
                    "outcome": "unchanged" if polled.named else "failed",
                    "error": None if polled.named else "no valid HEAD",
                    "sequence": polled.named[1] if polled.named else None,
                }
            except SyncError as e:
                res = {"outcome": "failed", "error": f"{e.reason}: {e.message}"}
        return {
            "wall": time.perf_counter() - t0,
            "cpu": time.process_time() - cpu0,
            "results": [{"source": "published", "files_fetched": 0, "sequence": None, **res}],
        }

    async def poll(self, every: float, duration: float) -> dict[str, Any]:
        n = len(self.settings)
        return await _timed_all(self._poll_one(i, every, duration) for i in range(n))

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


async def _timed_all(coros: Iterable[Coroutine[Any, Any, dict[str, Any]]]) -> dict[str, Any]:
    """Run every agent's coroutine at the same instant; the wall and the process's CPU."""
    cpu0, t0 = time.process_time(), time.perf_counter()
    results = await asyncio.gather(*coros)
    return {
        "wall": time.perf_counter() - t0,
        "cpu": time.process_time() - cpu0,
        "results": list(results),
    }


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
        elif op == "head":
            answer = await worker.head()
        elif op == "poll":
            answer = await worker.poll(float(cmd["every"]), float(cmd["duration"]))
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
