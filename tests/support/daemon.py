"""Helpers for the daemon tests: settings, an in-process daemon, a subprocess one, probes.

In-process (``running``) lets a test read ``DaemonState`` and patch the engine; the subprocess
(``Agent``) is what supervisord and systemd run, so signals, pid files and sd_notify are tested
there.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from support.config import env_for
from syncagent.daemon.sdnotify import Notifier
from syncagent.daemon.service import Daemon
from syncagent.settings import Settings

WAIT = 20.0


async def wait_for(
    pred: Callable[[], object], what: str, timeout: float = WAIT, step: float = 0.05
) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")
        await asyncio.sleep(step)


def metric(text: str, name: str, **labels: str) -> float | None:
    """The value of one sample in an exposition, or None when it is absent."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    return None


def sum_of(text: str, name: str) -> float:
    """A counter summed over all its labels."""
    return sum(
        float(s.value)
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    )


def samples(text: str, name: str) -> list[dict[str, str]]:
    return [
        dict(s.labels)
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.name == name
    ]


async def http(method: str, url: str) -> tuple[int, str, dict[str, str]]:
    async with (
        aiohttp.ClientSession() as session,
        session.request(method, url, timeout=aiohttp.ClientTimeout(total=10)) as resp,
    ):
        return resp.status, await resp.text(), dict(resp.headers)


@dataclass
class Running:
    daemon: Daemon
    task: asyncio.Task[int]
    stop: asyncio.Event

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.daemon.http_port}"

    async def get(self, path: str) -> tuple[int, str]:
        status, body, _ = await http("GET", self.url + path)
        return status, body

    async def metrics(self) -> str:
        return (await self.get("/metrics"))[1]

    async def status(self) -> dict[str, Any]:
        doc: dict[str, Any] = json.loads((await self.get("/status"))[1])
        return doc

    async def ready(self) -> bool:
        return (await self.get("/readyz"))[0] == 200


@contextlib.asynccontextmanager
async def running(settings: Settings, **kw: Any) -> AsyncIterator[Running]:
    kw.setdefault("notifier", Notifier(env={}))
    kw.setdefault("rng", random.Random(7))
    daemon = Daemon(settings, **kw)
    stop = asyncio.Event()
    task = asyncio.create_task(daemon.run_until(stop))
    await wait_for(lambda: daemon.http_port is not None or task.done(), "the HTTP port")
    assert not task.done(), f"daemon exited early with {task.result()}"
    try:
        yield Running(daemon, task, stop)
    finally:
        stop.set()
        rc = await asyncio.wait_for(task, 15)
        assert rc == 0


@dataclass
class Agent:
    """``python -m syncagent run`` with settings in its environment."""

    overrides: dict[str, str]
    log_dir: Path
    extra_env: dict[str, str] = field(default_factory=dict)
    proc: subprocess.Popen[bytes] | None = None
    prefix: tuple[str, ...] = ()  # run under this wrapper (e.g. ``setpriv`` dropping caps)

    @property
    def url(self) -> str:
        return "http://" + self.overrides["http.listen"]

    @property
    def log_path(self) -> Path:
        return self.log_dir / "agent.log"

    def env(self) -> dict[str, str]:
        keep = {k: v for k, v in os.environ.items() if not k.startswith(("SYNCAGENT_", "NOTIFY_"))}
        return {**keep, **env_for(self.overrides), "SYNCAGENT_LOG_FORMAT": "json", **self.extra_env}

    def start(self) -> Agent:
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [*self.prefix, sys.executable, "-m", "syncagent", "run"],
                env=self.env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
            )
        return self

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "syncagent", *args],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=60,
        )

    def events(self) -> list[dict[str, Any]]:
        out = []
        for line in self.log_path.read_text().splitlines():
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
        return out

    def signal(self, sig: signal.Signals) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    async def get(self, path: str) -> tuple[int, str]:
        try:
            status, body, _ = await http("GET", self.url + path)
        except aiohttp.ClientError:
            return 0, ""
        return status, body

    async def wait_ready(self, timeout: float = WAIT) -> None:
        async def check() -> bool:
            return (await self.get("/readyz"))[0] == 200

        deadline = time.monotonic() + timeout
        while not await check():
            assert self.proc is not None and self.proc.poll() is None, self.log_path.read_text()
            if time.monotonic() > deadline:
                raise AssertionError("agent not ready:\n" + self.log_path.read_text()[-3000:])
            await asyncio.sleep(0.1)

    async def status(self) -> dict[str, Any]:
        doc: dict[str, Any] = json.loads((await self.get("/status"))[1] or "{}")
        return doc
