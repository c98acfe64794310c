"""The supervisor: backoff and give-up decisions, and that nothing it runs fails unnoticed."""

from __future__ import annotations

import asyncio
import errno
import time

import pytest

from syncagent.daemon.supervise import (
    INTERNAL,
    Policy,
    Supervisor,
    TaskHealth,
    failure_reason,
    given_up,
    restart_delay,
)
from syncagent.errors import Reason, SyncError

FAST = Policy(max_restarts=3, window=60.0, base=0.01, cap=0.04)


def test_backoff_doubles_within_the_window_and_is_capped() -> None:
    p = Policy(max_restarts=5, window=100.0, base=0.5, cap=4.0)
    assert [restart_delay([0.0] * n, 1.0, p) for n in (1, 2, 3, 4, 5, 9)] == [
        0.5,
        1.0,
        2.0,
        4.0,
        4.0,
        4.0,
    ]
    assert restart_delay([0.0, 0.0, 0.0], 200.0, p) == 0.5, "old failures are forgotten"


def test_gives_up_only_past_the_limit_within_the_window() -> None:
    p = Policy(max_restarts=2, window=10.0)
    assert not given_up([1.0, 2.0], 3.0, p)
    assert given_up([1.0, 2.0, 3.0], 3.0, p)
    assert not given_up([1.0, 2.0, 3.0], 12.5, p), "a task that stopped failing recovers"


def test_reason_codes() -> None:
    assert failure_reason(SyncError(Reason.APPLY, "x")) == "apply"
    assert failure_reason(OSError(errno.ENOSPC, "full")) == "disk"
    assert (
        failure_reason(PermissionError(errno.EACCES, "denied")) == "permission"
    )  # os_error: an access error is a permission problem
    assert failure_reason(KeyError("bug")) == INTERNAL


def test_health_names_the_dead_task() -> None:
    h = TaskHealth(FAST)
    for t in range(3):
        h.failed("drift", float(t), "RuntimeError: boom")
    assert h.check(3.0).ok
    h.failed("drift", 3.0, "RuntimeError: boom")
    check = h.check(3.0)
    assert not check.ok and check.line().startswith("tasks: FAIL drift failed 4 times")
    assert "RuntimeError: boom" in check.line()


async def test_a_task_that_raises_or_returns_is_restarted_and_counted() -> None:
    stop = asyncio.Event()
    counted: list[tuple[str, str]] = []
    sup = Supervisor(TaskHealth(FAST), stop, lambda t, r: counted.append((t, r)))
    runs = 0

    async def flaky() -> None:
        nonlocal runs
        runs += 1
        if runs == 1:
            raise PermissionError(errno.EACCES, "Permission denied")
        if runs == 2:
            return  # a long-lived task that ends early is dead too
        await stop.wait()

    task = sup.spawn("sync-worker", flaky)
    for _ in range(200):
        if runs >= 3:
            break
        await asyncio.sleep(0.01)
    assert runs == 3 and not task.done()
    assert counted == [("sync-worker", "permission"), ("sync-worker", INTERNAL)]
    stop.set()
    await asyncio.wait_for(task, 2)


async def test_jobs_and_callbacks_never_raise_but_are_counted() -> None:
    stop = asyncio.Event()
    counted: list[tuple[str, str]] = []
    health = TaskHealth(FAST)
    sup = Supervisor(health, stop, lambda t, r: counted.append((t, r)))

    async def job() -> None:
        raise ValueError("job bug")

    def callback(x: int) -> None:
        raise SyncError(Reason.DISK, f"callback {x}")

    await sup.job("heartbeat", job)()
    sup.callback("control", callback)(1)
    assert counted == [("heartbeat", INTERNAL), ("control", "disk")]
    assert health.check(time.monotonic()).ok
    for _ in range(3):
        sup.callback("control", callback)(2)
    check = health.check(time.monotonic())  # four failures within the window: past the limit
    assert not check.ok and "control failed 4 times" in check.line()


async def test_the_loop_handler_counts_what_escaped_a_timer() -> None:
    stop = asyncio.Event()
    counted: list[tuple[str, str]] = []
    sup = Supervisor(TaskHealth(FAST), stop, lambda t, r: counted.append((t, r)))
    loop = asyncio.get_running_loop()
    previous = loop.get_exception_handler()
    loop.set_exception_handler(sup.loop_error)
    try:

        def boom() -> None:
            raise RuntimeError("timer bug")

        loop.call_soon(boom)
        await asyncio.sleep(0.05)
    finally:
        loop.set_exception_handler(previous)
    assert counted == [("loop", INTERNAL)]


@pytest.mark.parametrize("name", ["heartbeat", "drift"])
async def test_the_test_hook_fails_the_named_task_only(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SYNCAGENT_TEST_FAIL_TASK", name)
    counted: list[tuple[str, str]] = []
    sup = Supervisor(TaskHealth(FAST), asyncio.Event(), lambda t, r: counted.append((t, r)))
    ran: list[str] = []

    async def job() -> None:
        ran.append("ran")

    await sup.job("heartbeat", job)()
    await sup.job("poll", job)()
    assert counted == ([("heartbeat", INTERNAL)] if name == "heartbeat" else [])
    assert len(ran) == (1 if name == "heartbeat" else 2)
