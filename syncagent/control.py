"""Daemon control without network exposure: files in the state dir, signals, and the commands.

Nothing on the HTTP port can change state; an operator with a shell on the node can:

    syncagent pause / resume      <state_dir>/paused (IG-XLB's /var/tmp/xroad/sync-disabled
                                  pauses too, so the documented upgrade habit keeps working)
    syncagent sync-now            SIGHUP to the pid in <state_dir>/daemon.pid, or, when the
                                  caller may not signal it, the trigger file <state_dir>/sync-now
    syncagent status              reads <state_dir>/status.json (works under supervisord)
    syncagent rollback [GEN]      re-applies a kept generation, then pauses
    syncagent run                 the daemon itself

The daemon notices these files through watchfiles within a second, and re-checks them on every
heartbeat in case a watch was lost.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path

import structlog

from . import fswatch
from .cli import emit
from .errors import ExitCode, SyncError
from .settings import Settings
from .state import StateDir, atomic_write
from .status import read_status, summary_line

log = structlog.get_logger("syncagent.control")

XLB_DISABLE_FLAG = Path("/var/tmp/xroad/sync-disabled")
XLB_FLAG_ENV = "SYNCAGENT_XLB_DISABLE_FLAG"
PAUSE_FILE = "paused"
TRIGGER_FILE = "sync-now"
PID_FILE = "daemon.pid"
CURRENT_FILE = "current.json"


def xlb_flag() -> Path:
    """Read at call time so tests (and odd hosts) can move it with SYNCAGENT_XLB_DISABLE_FLAG."""
    return Path(os.environ.get(XLB_FLAG_ENV) or XLB_DISABLE_FLAG)


def pause_flags(state_dir: Path) -> tuple[Path, ...]:
    return (state_dir / PAUSE_FILE, xlb_flag())


def paused_by(state_dir: Path) -> tuple[str, ...]:
    return tuple(str(p) for p in pause_flags(state_dir) if os.path.lexists(p))


def pause(state_dir: Path, why: str) -> bool:
    """Create our flag; False if it was already there."""
    flag = state_dir / PAUSE_FILE
    if flag.exists():
        return False
    StateDir(state_dir).ensure()
    atomic_write(flag, f"{why} at {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime())}\n".encode())
    return True


def unpause(state_dir: Path) -> bool:
    try:
        (state_dir / PAUSE_FILE).unlink()
    except FileNotFoundError:
        return False
    return True


def take_trigger(state_dir: Path) -> bool:
    try:
        (state_dir / TRIGGER_FILE).unlink()
    except FileNotFoundError:
        return False
    return True


# ---- pid file --------------------------------------------------------------------------------


def _start_time(pid: int) -> str | None:
    """Process start time in clock ticks: tells our daemon from a later process with its pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def write_pid(state_dir: Path) -> None:
    pid = os.getpid()
    atomic_write(state_dir / PID_FILE, f"{pid} {_start_time(pid) or ''}\n".encode(), 0o644)


def remove_pid(state_dir: Path) -> None:
    path = state_dir / PID_FILE
    try:
        if path.read_text().split()[:1] == [str(os.getpid())]:
            path.unlink()
    except (OSError, IndexError):
        pass


def running_pid(state_dir: Path) -> int | None:
    """The daemon's pid if the pid file names a live process that is still that daemon."""
    try:
        fields = (state_dir / PID_FILE).read_text().split()
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


def request_sync(state_dir: Path) -> str:
    """SIGHUP when we may signal the daemon, else the trigger file; returns what was done."""
    pid = running_pid(state_dir)
    if pid is not None:
        try:
            os.kill(pid, signal.SIGHUP)
            return f"sent SIGHUP to the daemon (pid {pid})"
        except OSError:
            pass
    StateDir(state_dir).ensure()
    atomic_write(state_dir / TRIGGER_FILE, b"", 0o666)
    note = "" if pid is not None else "; no daemon is running, it syncs when it starts"
    return f"created {state_dir / TRIGGER_FILE}{note}"


# ---- the daemon's side -----------------------------------------------------------------------


class ControlWatcher:
    """Calls back on any change to the control files (or current.json, e.g. after a rollback)."""

    def __init__(self, state_dir: Path, on_event: Callable[[], None]) -> None:
        self.state_dir = state_dir
        self.on_event = on_event

    def dirs(self) -> tuple[Path, ...]:
        flag = xlb_flag()
        return tuple(sorted({self.state_dir, fswatch.existing_ancestor(flag.parent)}))

    def handle(self, changes: fswatch.Changes) -> None:
        flag = xlb_flag()
        names = {PAUSE_FILE, TRIGGER_FILE, CURRENT_FILE, flag.name}
        for _, raw in changes:
            p = Path(raw)
            if p.name in names or p in flag.parents:
                self.on_event()
                return

    async def run(self, stop: asyncio.Event) -> None:
        await fswatch.watch("control", self.dirs, self.handle, stop)


# ---- commands --------------------------------------------------------------------------------


def cmd_pause(settings: Settings, args: argparse.Namespace) -> int:
    created = pause(settings.state_dir, "syncagent pause")
    flag = settings.state_dir / PAUSE_FILE
    line = (
        f"paused: {'created' if created else 'already present:'} {flag}; the live tree stays as "
        "it is until `syncagent resume`"
    )
    emit(
        args,
        line,
        {"result": "paused", "flag": str(flag), "paused_by": paused_by(settings.state_dir)},
    )
    return ExitCode.OK


def cmd_resume(settings: Settings, args: argparse.Namespace) -> int:
    removed = unpause(settings.state_dir)
    still = paused_by(settings.state_dir)
    flag = settings.state_dir / PAUSE_FILE
    line = f"resumed: {'removed' if removed else 'no'} {flag}"
    if still:
        line += f"; still PAUSED by {', '.join(still)}: remove it to resume"
    else:
        line += "; the daemon syncs now"
    emit(args, line, {"result": "paused" if still else "resumed", "paused_by": list(still)})
    return ExitCode.FAILED if still else ExitCode.OK


def cmd_sync_now(settings: Settings, args: argparse.Namespace) -> int:
    how = request_sync(settings.state_dir)
    emit(args, f"sync requested: {how}", {"result": "requested", "how": how})
    return ExitCode.OK


def cmd_status(settings: Settings, args: argparse.Namespace) -> int:
    doc = read_status(settings.state_dir)
    if doc is None:
        line = f"NOT READY: no status in {settings.state_dir} (has the daemon run?)"
        emit(args, line, {"ready": False, "daemon_running": False})
        return ExitCode.FAILED
    now = time.time()
    pid = running_pid(settings.state_dir)
    alive = pid is not None and pid == doc.get("pid")
    ready = bool(alive and doc.get("ready") and not _stale(doc, settings, now))
    emit(
        args,
        summary_line({**doc, "ready": ready}, now, alive),
        {**doc, "ready": ready, "daemon_running": alive},
    )
    return ExitCode.OK if ready else ExitCode.FAILED


def _stale(doc: dict[str, object], settings: Settings, now: float) -> bool:
    limit = settings["sync.max_staleness"]
    last = doc.get("last_success")
    if limit is None:
        return False
    return not isinstance(last, int | float) or now - last > limit


def cmd_rollback(settings: Settings, args: argparse.Namespace) -> int:
    from .rollback import rollback

    created = pause(settings.state_dir, "syncagent rollback")
    try:
        result = asyncio.run(rollback(settings, args.generation))
    except SyncError as e:
        if created:
            unpause(settings.state_dir)
        line = f"rollback refused: [{e.reason}] {e}"
        problems = [{"path": p.path, "message": p.message} for p in e.problems]
        emit(
            args,
            line,
            {"result": "failed", "reason": str(e.reason), "error": e.message, "problems": problems},
        )
        return int(ExitCode.FAILED)
    flag = settings.state_dir / PAUSE_FILE
    line = (
        f"rolled back to generation {result.generation} (was {result.previous}): "
        f"+{len(result.added)} ~{len(result.modified)} -{len(result.removed)}; syncing is PAUSED "
        f"({flag}) so it sticks: `syncagent resume` follows the primary again"
    )
    emit(args, line, {**result.to_json(), "paused": True, "flag": str(flag)})
    return ExitCode.OK


def cmd_run(settings: Settings, args: argparse.Namespace) -> int:
    from .daemon import serve

    return asyncio.run(serve(settings))


COMMANDS: dict[str, Callable[[Settings, argparse.Namespace], int]] = {
    "run": cmd_run,
    "pause": cmd_pause,
    "resume": cmd_resume,
    "sync-now": cmd_sync_now,
    "status": cmd_status,
    "rollback": cmd_rollback,
}
