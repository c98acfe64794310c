"""Pending restarts: applied changes that a running X-Road program has not picked up yet.

X-Road applies only signer/keyconf.xml live; every other file is read when its program starts.
Between an apply and that restart the files and what runs differ, silently. This module keeps,
per program the X-Road profiles know (xroad.paths.PROGRAMS), since when a change to a path it reads
waits for it, and clears that once no process of the program started before the change is
left: it restarted, or it is not running (it reads the new files when it starts).

Start times come from the process table, which works alike under supervisord and systemd and
needs no privilege the agent (running as xroad, like the X-Road programs) lacks. They are
compared on the kernel's boot clock (``CLOCK_BOOTTIME``, the clock /proc/<pid>/stat counts
in): the wall clock and /proc/stat's btime can disagree by more than a restart takes.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import structlog

from syncagent.xroad.paths import PROGRAMS, Program, is_program, programs_reading

log = structlog.get_logger("syncagent.xroad.restarts")

PROC = Path("/proc")


@dataclass(frozen=True)
class Process:
    pid: int
    argv: tuple[str, ...]
    started: float  # seconds since boot (CLOCK_BOOTTIME)


def now_since_boot() -> float:
    return time.clock_gettime(time.CLOCK_BOOTTIME)


def processes(proc: Path = PROC) -> Iterator[Process]:
    """Every process we may read (others' are skipped: ProtectProc hides them anyway)."""
    ticks = os.sysconf("SC_CLK_TCK")
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            raw = (entry / "cmdline").read_bytes()
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        argv = tuple(a.decode("utf-8", "replace") for a in raw.split(b"\0") if a)
        if not argv:
            continue  # kernel threads, zombies
        start_ticks = int(stat.rsplit(")", 1)[1].split()[19])
        yield Process(int(entry.name), argv, start_ticks / ticks)


def oldest_start(program: Program, procs: Iterable[Process]) -> float | None:
    """When the longest-running process of ``program`` started; None if none runs."""
    starts = [p.started for p in procs if is_program(program, p.argv)]
    return min(starts) if starts else None


@dataclass
class PendingRestarts:
    """program name -> since when (wall clock) a change it has not picked up waits for it."""

    since: dict[str, float] = field(default_factory=dict)
    _at: dict[str, float] = field(default_factory=dict)  # the same moments, on the boot clock

    def changed(
        self, paths: Iterable[str], wall: float, at: float, procs: Iterable[Process]
    ) -> list[str]:
        """An apply at ``at`` (boot clock; ``wall`` for people) changed ``paths``: mark every
        running program that reads them."""
        running = list(procs)
        marked = []
        for program in programs_reading(paths):
            started = oldest_start(program, running)
            if started is not None and started < at and program.name not in self.since:
                self.since[program.name] = wall
                self._at[program.name] = at
                marked.append(program.name)
        if marked:
            log.info("restart_pending", programs=marked, why="they read changed files at start")
        return marked

    def refresh(self, procs: Iterable[Process]) -> list[str]:
        """Clear the programs whose every process started after the change; returns them."""
        running = list(procs)
        done = []
        for program in PROGRAMS:
            at = self._at.get(program.name)
            if at is None:
                continue
            started = oldest_start(program, running)
            if started is None or started >= at:
                self._clear(program.name)
                done.append(program.name)
        if done:
            log.info("restart_done", programs=done)
        return done

    def reloaded(self, command: Iterable[str], rule: str) -> list[str]:
        """A reload rule that names a program (``supervisorctl restart xroad-proxy``)
        succeeded: that program has the new files."""
        words = {rule, *command}
        done = [name for name in list(self.since) if name in words]
        for name in done:
            self._clear(name)
        return done

    def _clear(self, name: str) -> None:
        self.since.pop(name, None)
        self._at.pop(name, None)
