"""The one place environment switches that exist only for tests are read.

A crash test must kill the agent between two apply operations, which nothing outside the
process can time exactly; this hook does it. A supervision test must make one of the daemon's
tasks fail every time it starts, which nothing outside can cause for every task alike. They are
listed in the configuration reference so an operator who finds one set knows what it is.
Production never sets them.
"""

from __future__ import annotations

import os

KILL_AFTER_OP = "SYNCAGENT_TEST_KILL_AFTER_OP"
FAIL_TASK = "SYNCAGENT_TEST_FAIL_TASK"

DOCUMENTED: tuple[tuple[str, str], ...] = (
    (KILL_AFTER_OP, "SIGKILL the agent right after apply operation N (crash tests)."),
    (FAIL_TASK, "Make the daemon's task NAME raise each time it starts (supervision tests)."),
)


def kill_after_op() -> int:
    """The apply operation after which to SIGKILL ourselves; -1 when unset."""
    try:
        return int(os.environ.get(KILL_AFTER_OP, "-1"))
    except ValueError:
        return -1


class InjectedFault(RuntimeError):
    """What a task named in SYNCAGENT_TEST_FAIL_TASK raises."""


def maybe_fail_task(name: str) -> None:
    """Raise if the tests asked this task to fail."""
    if os.environ.get(FAIL_TASK) == name:
        raise InjectedFault(f"injected fault ({FAIL_TASK}={name})")
