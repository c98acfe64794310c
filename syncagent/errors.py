"""Failure reasons shared by logs, metrics and exit codes.

One closed set of reason codes so that an operator who sees ``reason="host_key"`` in a log line
finds the same word in ``syncagent_failures_total`` and can map it to the CLI's exit code.
"""

from __future__ import annotations

import enum
import errno
from dataclasses import dataclass


class Reason(enum.StrEnum):
    CONNECT = "connect"
    AUTH = "auth"
    HOST_KEY = "host_key"
    TIMEOUT = "timeout"
    REMOTE_IO = "remote_io"
    LIMITS = "limits"
    VALIDATION = "validation"
    APPLY = "apply"
    DISK = "disk"
    CONFIG = "config"
    NOT_INITIALIZED = "not_initialized"
    VERSION_SKEW = "version_skew"  # the primary runs another X-Road release: held
    PUBLISH_ROLLBACK = "publish_rollback"  # the primary's HEAD went back: refused, not applied
    PERMISSION = "permission"  # a local file the agent's user may not use (names path and owner)
    PAUSED = "paused"  # a pause flag is set: nothing changes the live tree but an override


class ExitCode(enum.IntEnum):
    OK = 0
    FAILED = 1
    CONFIG = 2
    REJECTED = 3
    NOT_INITIALIZED = 4
    PAUSED = 5


def exit_code_for(reason: Reason) -> ExitCode:
    if reason is Reason.CONFIG:
        return ExitCode.CONFIG
    if reason is Reason.PAUSED:
        return ExitCode.PAUSED
    if reason in (Reason.VALIDATION, Reason.LIMITS, Reason.VERSION_SKEW, Reason.PUBLISH_ROLLBACK):
        return ExitCode.REJECTED
    if reason is Reason.NOT_INITIALIZED:
        return ExitCode.NOT_INITIALIZED
    return ExitCode.FAILED


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one path (or setting): what a rejection reports."""

    path: str
    message: str
    reason: Reason = Reason.VALIDATION

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path else self.message


class SyncError(Exception):
    """A sync step failed; carries the reason code and every problem found."""

    def __init__(self, reason: Reason, message: str, problems: tuple[Problem, ...] = ()) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message
        self.problems = problems

    def __str__(self) -> str:
        if not self.problems:
            return self.message
        shown = "; ".join(str(p) for p in self.problems[:5])
        more = f" (+{len(self.problems) - 5} more)" if len(self.problems) > 5 else ""
        return f"{self.message}: {shown}{more}"


FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS})
DENIED_ERRNOS = frozenset({errno.EACCES, errno.EPERM})


def os_error(e: OSError, what: str, otherwise: Reason = Reason.APPLY) -> SyncError:
    """The one classifier of local OS errors: a full or read-only disk is ``disk`` (the
    operator frees space), a denied access is ``permission`` and names the file (the operator
    fixes an owner), anything else is ``otherwise``."""
    if e.errno in FULL_ERRNOS:
        reason = Reason.DISK
    elif e.errno in DENIED_ERRNOS:
        reason = Reason.PERMISSION
    else:
        reason = otherwise
    where = f" ({e.filename})" if e.filename and str(e.filename) not in what else ""
    return SyncError(reason, f"{what}{where}: {e.strerror or e}")
