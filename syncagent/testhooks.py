"""The one place environment switches that exist only for tests are read.

A crash test must kill the agent between two apply operations, which nothing outside the
process can time exactly; this hook does it. It is listed in the configuration reference so an
operator who finds it set knows what it is. Production never sets it.
"""

from __future__ import annotations

import os

KILL_AFTER_OP = "SYNCAGENT_TEST_KILL_AFTER_OP"

DOCUMENTED: tuple[tuple[str, str], ...] = (
    (KILL_AFTER_OP, "SIGKILL the agent right after apply operation N (crash tests)."),
)


def kill_after_op() -> int:
    """The apply operation after which to SIGKILL ourselves; -1 when unset."""
    try:
        return int(os.environ.get(KILL_AFTER_OP, "-1"))
    except ValueError:
        return -1
