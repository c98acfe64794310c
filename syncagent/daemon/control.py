"""The control-file protocol the CLI and the daemon share: pause flags, pid file, trigger file.

Nothing on the HTTP port can change state; an operator with a shell on the node can, through
files in the state dir (and a signal):

    <state_dir>/paused      ``syncagent pause`` creates it, ``resume`` removes it; the
                            ``sync.disable_flag`` (IG-XLB's /var/tmp/xroad/sync-disabled)
                            pauses too, so the documented upgrade habit keeps working
    <state_dir>/daemon.pid  the running daemon: ``sync-now`` sends it SIGHUP, or, when the
                            caller may not signal it, creates <state_dir>/sync-now
    <state_dir>/current.json  changed by a rollback or ``syncagent once``: the daemon follows

The daemon notices these files through watchfiles within a second, and re-checks them on every
heartbeat in case a watch was lost. The commands themselves live in cli.py.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from syncagent import fswatch
from syncagent.local.state import StateDir, atomic_write
from syncagent.settings import SyncSettings


@dataclass(frozen=True)
class ControlFiles:
    state: StateDir
    disable_flag: Path

    @classmethod
    def of(cls, sync: SyncSettings) -> ControlFiles:
        return cls(StateDir(sync.state_dir), sync.disable_flag)

    def pause_flags(self) -> tuple[Path, ...]:
        return (self.state.pause_flag, self.disable_flag)

    def paused_by(self) -> tuple[str, ...]:
        """The flag files that exist: any one of them pauses syncing."""
        return tuple(str(p) for p in self.pause_flags() if os.path.lexists(p))

    def pause(self, why: str) -> bool:
        """Create our flag; False if it was already there."""
        flag = self.state.pause_flag
        if flag.exists():
            return False
        self.state.ensure()
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        atomic_write(flag, f"{why} at {stamp}\n".encode())
        return True

    def unpause(self) -> bool:
        try:
            self.state.pause_flag.unlink()
        except FileNotFoundError:
            return False
        return True

    def take_trigger(self) -> bool:
        try:
            self.state.trigger.unlink()
        except FileNotFoundError:
            return False
        return True

    # ---- pid file ----------------------------------------------------------------------------

    def write_pid(self) -> None:
        pid = os.getpid()
        atomic_write(self.state.pid_file, f"{pid} {_start_time(pid) or ''}\n".encode(), 0o644)

    def keep_pid(self) -> None:
        """Write the pid file again when someone deleted it (or the whole state dir): without
        it, ``status`` says no daemon runs and ``sync-now`` cannot signal this one."""
        if self.running_pid() != os.getpid():
            self.write_pid()

    def remove_pid(self) -> None:
        path = self.state.pid_file
        try:
            if path.read_text().split()[:1] == [str(os.getpid())]:
                path.unlink()
        except (OSError, IndexError):
            pass

    def running_pid(self) -> int | None:
        """The daemon's pid if the pid file names a live process that is still that daemon."""
        try:
            fields = self.state.pid_file.read_text().split()
            pid = int(fields[0])
        except (OSError, ValueError, IndexError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass  # alive, owned by someone else
        started = _start_time(pid)
        if len(fields) > 1 and started is not None and started != fields[1]:
            return None
        return pid

    def request_sync(self) -> str:
        """SIGHUP when we may signal the daemon, else the trigger file; returns what was done."""
        pid = self.running_pid()
        if pid is not None:
            try:
                os.kill(pid, signal.SIGHUP)
                return f"sent SIGHUP to the daemon (pid {pid})"
            except OSError:
                pass
        self.state.ensure()
        atomic_write(self.state.trigger, b"", 0o666)
        note = "" if pid is not None else "; no daemon is running, it syncs when it starts"
        return f"created {self.state.trigger}{note}"


def _start_time(pid: int) -> str | None:
    """Process start time in clock ticks: tells our daemon from a later process with its pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


class ControlWatcher:
    """Calls back on any change to the control files (or current.json, e.g. after a rollback)."""

    def __init__(self, files: ControlFiles, on_event: Callable[[], None]) -> None:
        self.files = files
        self.on_event = on_event

    def dirs(self) -> tuple[Path, ...]:
        flag = self.files.disable_flag
        return tuple(sorted({self.files.state.path, fswatch.existing_ancestor(flag.parent)}))

    def handle(self, changes: fswatch.Changes) -> None:
        state, flag = self.files.state, self.files.disable_flag
        names = {state.pause_flag.name, state.trigger.name, state.current_file.name, flag.name}
        for _, raw in changes:
            p = Path(raw)
            if p.name in names or p in flag.parents:
                self.on_event()
                return

    async def run(self, stop: asyncio.Event) -> None:
        await fswatch.watch("control", self.dirs, self.handle, stop)
