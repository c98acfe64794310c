"""Run an operator's command (validate_command, reload rules) with a deadline.

Such a command must never outlive its purpose: it is killed on its own timeout and when the
caller is cancelled (SIGTERM mid-sync), in its own session so its children go with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

TAIL = 500  # characters of stderr kept: enough to say why, short enough for a log line


@dataclass(frozen=True)
class CommandResult:
    outcome: str  # "ok", "failed" or "timeout"
    returncode: int | None
    stderr: str

    @property
    def ok(self) -> bool:
        return self.outcome == "ok"


async def run_command(
    argv: Sequence[str], *, env: Mapping[str, str], timeout: float
) -> CommandResult:
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            env=dict(env),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
    except OSError as e:
        return CommandResult("failed", None, f"cannot run {argv[0]}: {e.strerror or e}")
    try:
        _, err = await asyncio.wait_for(proc.communicate(), timeout)
    except BaseException as e:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        await proc.wait()
        if isinstance(e, TimeoutError):
            return CommandResult("timeout", None, f"killed after {timeout:g}s")
        raise
    tail = err.decode("utf-8", "replace").strip()[-TAIL:]
    return CommandResult("ok" if proc.returncode == 0 else "failed", proc.returncode, tail)
