"""The daemon supervises its own tasks: nothing long-lived may die unnoticed.

A task that raised used to end silently: asyncio keeps the exception on a Task nobody awaits
until shutdown, so a sync worker killed by one unexpected ``PermissionError`` left the process
up, /healthz green and no sync ever again. Here every long-lived task (sync worker, watchers,
keeper, HTTP), every scheduler job (heartbeat, schedule, HEAD poll) and every callback a
watcher or timer calls runs under one supervisor:

- an unexpected exception is logged once with its traceback and a reason code (``task_failed``),
  counted (``syncagent_task_restarts_total{task}``), and the task restarted after an exponential
  backoff (a job's next run, a callback's next event is its restart);
- a task that failed more than ``MAX_RESTARTS`` times within ``WINDOW`` fails /healthz, named,
  so systemd's watchdog or the kubelet restarts the whole process. It is still retried at the
  backoff's cap meanwhile: under a supervisor that never probes (supervisord), a fault that
  goes away heals, and /healthz turns green once the window holds no more than the limit.

The decisions (how long to wait, when to give up, which reason code) are pure functions; the
async shell only sleeps, logs and counts.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import ParamSpec

import structlog

from syncagent import testhooks
from syncagent.daemon.status import Check
from syncagent.errors import SyncError, os_error
from syncagent.fswatch import sleep_or_stop

log = structlog.get_logger("syncagent.daemon.supervise")

MAX_RESTARTS = 5  # more failures than this within WINDOW: /healthz fails
WINDOW = 300.0
BACKOFF_BASE = 0.5
BACKOFF_CAP = 30.0
INTERNAL = "internal"  # the reason code of a bug: no SyncError, no OSError

# Every name a failure can be counted under, so each series exists from the start.
TASKS = (
    "sync-worker",
    "keeper",
    "control",
    "drift",
    "credentials",
    "http",
    "heartbeat",
    "schedule",
    "poll",
    "loop",
)

P = ParamSpec("P")


@dataclass(frozen=True)
class Policy:
    max_restarts: int = MAX_RESTARTS
    window: float = WINDOW
    base: float = BACKOFF_BASE
    cap: float = BACKOFF_CAP


def recent(failures: Sequence[float], now: float, window: float) -> list[float]:
    return [t for t in failures if now - t <= window]


def restart_delay(failures: Sequence[float], now: float, policy: Policy) -> float:
    """Seconds before the next start: doubling with each failure in the window, capped; the
    window forgets, so a task that ran well for a while starts again quickly."""
    n = len(recent(failures, now, policy.window))
    return float(min(policy.cap, policy.base * 2 ** max(0, min(n - 1, 62))))


def given_up(failures: Sequence[float], now: float, policy: Policy) -> bool:
    """More failures in the window than a restart of the task can explain away."""
    return len(recent(failures, now, policy.window)) > policy.max_restarts


def failure_reason(exc: BaseException) -> str:
    """The reason code a failure is logged and judged with: a SyncError's own, the one OS-error
    classifier's for an OSError (``disk`` or ``apply``), else ``internal`` (a bug)."""
    if isinstance(exc, SyncError):
        return str(exc.reason)
    if isinstance(exc, OSError):
        return str(os_error(exc, "").reason)
    return INTERNAL


@dataclass
class TaskHealth:
    """What /healthz reads: when each task failed, and why the last time."""

    policy: Policy = field(default_factory=Policy)
    failures: dict[str, list[float]] = field(default_factory=dict)
    last_error: dict[str, str] = field(default_factory=dict)

    def failed(self, name: str, now: float, why: str) -> float:
        """Note one failure; returns the delay before the restart."""
        kept = recent(self.failures.get(name, []), now, self.policy.window)
        kept.append(now)
        self.failures[name] = kept
        self.last_error[name] = why
        return restart_delay(kept, now, self.policy)

    def check(self, now: float) -> Check:
        dead = sorted(
            name for name, times in self.failures.items() if given_up(times, now, self.policy)
        )
        if not dead:
            return Check("tasks", True, "")
        p = self.policy
        detail = "; ".join(
            f"{name} failed {len(recent(self.failures[name], now, p.window))} times in "
            f"{p.window:g}s (last: {self.last_error.get(name, '?')})"
            for name in dead
        )
        return Check("tasks", False, detail)


class Supervisor:
    def __init__(
        self,
        health: TaskHealth,
        stop: asyncio.Event,
        on_failure: Callable[[str, str], None] = lambda task, reason: None,
    ) -> None:
        """``on_failure(task, reason)``: counts the failure (the metrics' counter)."""
        self.health = health
        self.stop = stop
        self.on_failure = on_failure

    def failed(self, name: str, exc: BaseException) -> float:
        """Log, count and judge one failure; returns the delay before the restart."""
        reason = failure_reason(exc)
        delay = self.health.failed(name, time.monotonic(), f"{type(exc).__name__}: {exc}")
        self.on_failure(name, reason)
        log.error(
            "task_failed",
            task=name,
            reason=reason,
            restart_in=round(delay, 2),
            exc_info=exc,
        )
        if not self.health.check(time.monotonic()).ok:
            log.error("task_unhealthy", task=name, action="/healthz fails until it recovers")
        return delay

    def spawn(self, name: str, run: Callable[[], Awaitable[None]]) -> asyncio.Task[None]:
        """Run ``run()`` until the stop event is set, restarting it whenever it raises or
        returns early (a long-lived task that returned is as dead as one that raised)."""
        return asyncio.create_task(self._keep(name, run), name=name)

    async def _keep(self, name: str, run: Callable[[], Awaitable[None]]) -> None:
        while not self.stop.is_set():
            try:
                testhooks.maybe_fail_task(name)
                await run()
            except asyncio.CancelledError:
                raise
            except Exception as e:
                await sleep_or_stop(self.stop, self.failed(name, e))
                continue
            if not self.stop.is_set():
                early = RuntimeError(f"{name} returned before the daemon stopped")
                await sleep_or_stop(self.stop, self.failed(name, early))

    def job(self, name: str, run: Callable[[], Awaitable[None]]) -> Callable[[], Awaitable[None]]:
        """A scheduler job that never raises into APScheduler (which would only log it as
        plain text, uncounted); its next run is the restart."""

        async def guarded() -> None:
            try:
                testhooks.maybe_fail_task(name)
                await run()
            except Exception as e:
                self.failed(name, e)

        return guarded

    def callback(self, name: str, fn: Callable[P, object]) -> Callable[P, None]:
        """A callback (watch event, control change, timer) that never raises into the loop;
        the next event is its restart."""

        def guarded(*args: P.args, **kwargs: P.kwargs) -> None:
            try:
                fn(*args, **kwargs)
            except Exception as e:
                self.failed(name, e)

        return guarded

    def loop_error(self, _: asyncio.AbstractEventLoop, context: dict[str, object]) -> None:
        """The event loop's exception handler: what escaped a bare timer or future."""
        exc = context.get("exception")
        if not isinstance(exc, BaseException):
            exc = RuntimeError(str(context.get("message", "unknown event loop error")))
        self.failed("loop", exc)
