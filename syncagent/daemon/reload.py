"""Reload rules: run a command after an apply changed paths it cares about.

X-Road re-reads only ``signer/keyconf.xml`` by itself; every other file needs the program that
reads it restarted, which nothing did before. A rule runs at most once per apply however many of
its paths changed; a failing command is logged and counted, never a reason to roll back: the
configuration is valid, only the restart failed, and the next apply retries it.

``reload.spread`` delays commands by a per-host amount (a stable hash of the hostname), so
replicas that applied the same generation in the same second do not all restart together.

Suggested rules for the Kubernetes sidecar (supervisord inside the container)::

    # signer/keyconf.xml: nothing to do, the signer watches it and applies it live.
    [[reload]]
    name = "proxy"
    paths = ["/conf.d/", "/ssl/", "/services/", "/db.properties"]
    command = ["supervisorctl", "restart", "xroad-proxy"]
    [[reload]]
    name = "signer"
    paths = ["/conf.d/", "/services/", "/devices.ini"]
    command = ["supervisorctl", "restart", "xroad-signer"]
    [[reload]]
    name = "proxy-ui-api"
    paths = ["/conf.d/", "/ssl/proxy-ui-api.*", "/services/"]
    command = ["supervisorctl", "restart", "xroad-proxy-ui-api"]

A pattern matches a changed path or any directory above it ("/conf.d/" covers every file in
conf.d), with the same rsync-style syntax as ``sync.exclude``. Which program reads which path is
recorded in ``xroad.paths.PROGRAMS``.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import socket
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import structlog

from syncagent.command import run_command
from syncagent.excludes import covers
from syncagent.local.manifest import Manifest
from syncagent.report import Outcome, SyncResult
from syncagent.settings import ReloadRule, ReloadSettings

log = structlog.get_logger("syncagent.daemon.reload")


def rule_matches(rule: ReloadRule, path: str) -> bool:
    return covers(rule.paths, path)


def matching_paths(rule: ReloadRule, paths: Iterable[str]) -> list[str]:
    return [p for p in paths if rule_matches(rule, p)]


def changed_paths(result: SyncResult) -> list[str]:
    return sorted({*result.added, *result.modified, *result.removed})


def applied_elsewhere(old: Manifest | None, new: Manifest) -> SyncResult:
    """What an apply the daemon did not run (a rollback) changed, as a result to reload for."""
    before = old.records if old is not None else {}
    after = new.records
    return SyncResult(
        Outcome.APPLIED,
        generation=new.generation,
        previous=old.generation if old is not None else None,
        added=sorted(after.keys() - before.keys()),
        modified=sorted(
            p for p in after.keys() & before.keys() if not after[p].same_content(before[p])
        ),
        removed=sorted(before.keys() - after.keys()),
    )


def spread_delay(spread: float, hostname: str | None = None) -> float:
    """A stable fraction of ``spread`` per host: the same host always waits the same time."""
    if spread <= 0:
        return 0.0
    name = hostname if hostname is not None else socket.gethostname()
    fraction = int.from_bytes(hashlib.sha256(name.encode()).digest()[:4], "big") / 2**32
    return spread * fraction


class Reloader:
    """Queues matched rules after each apply and runs them one at a time, each once."""

    def __init__(
        self,
        reload: ReloadSettings,
        target: Path,
        on_result: Callable[[str, str], None],
        hostname: str | None = None,
    ) -> None:
        self.rules: Sequence[ReloadRule] = reload.rules
        self.target = str(target)
        self.delay = spread_delay(reload.spread, hostname)
        self.on_result = on_result
        self._pending: dict[str, tuple[str, list[str]]] = {}  # rule -> (generation, paths)
        self._task: asyncio.Task[None] | None = None

    def schedule(self, result: SyncResult) -> list[str]:
        """Queue every rule one of the applied paths matches; returns their names."""
        changed = changed_paths(result)
        names = []
        for rule in self.rules:
            hits = matching_paths(rule, changed)
            if hits:
                _, before = self._pending.get(rule.name, ("", []))
                self._pending[rule.name] = (result.generation or "", sorted({*before, *hits}))
                names.append(rule.name)
        if names and (self._task is None or self._task.done()):
            self._task = asyncio.create_task(self._drain(), name="reload")
        return names

    async def idle(self) -> None:
        """Wait until every queued rule has run (tests, shutdown)."""
        while self._task is not None and not self._task.done():
            await asyncio.shield(self._task)

    async def close(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _drain(self) -> None:
        if self.delay > 0:
            log.info("reload_delayed", seconds=round(self.delay, 2), why="reload.spread")
            await asyncio.sleep(self.delay)
        while self._pending:
            rule = next(r for r in self.rules if r.name in self._pending)
            generation, paths = self._pending.pop(rule.name)
            await self._run(rule, generation, paths)

    async def _run(self, rule: ReloadRule, generation: str, paths: list[str]) -> None:
        env = {
            **os.environ,
            "SYNCAGENT_RULE": rule.name,
            "SYNCAGENT_GENERATION": generation,
            "SYNCAGENT_TARGET": self.target,
            "SYNCAGENT_CHANGED": "\n".join(paths),
        }
        done = await run_command(rule.command, env=env, timeout=rule.timeout)
        result, code, tail = done.outcome, done.returncode, done.stderr
        self.on_result(rule.name, result)
        fields = {
            "rule": rule.name,
            "result": result,
            "generation": generation,
            "paths": len(paths),
        }
        if result == "ok":
            log.info("reload", **fields)
        else:
            log.warning("reload", **fields, exit_code=code, stderr=tail)
