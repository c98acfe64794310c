"""sd_notify(3) over the stdlib socket module, so a Type=notify unit needs no libsystemd binding.

systemd starts the X-Road services ``After=`` the agent, so READY=1 decides when they start;
WatchdogSec restarts a wedged agent only if the agent pings while healthy. Without
NOTIFY_SOCKET (supervisord, a terminal, tests) every call is a cheap no-op.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping

import structlog

log = structlog.get_logger("syncagent.daemon.sdnotify")


class Notifier:
    """Sends datagrams to ``$NOTIFY_SOCKET``; never raises (systemd being gone is not our fault)."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        self.address = _address(env.get("NOTIFY_SOCKET", ""))
        self.watchdog_interval = _watchdog_interval(env)
        self._warned = False

    @property
    def enabled(self) -> bool:
        return self.address is not None

    def send(self, *fields: str) -> bool:
        if self.address is None:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto("\n".join(fields).encode(), self.address)
        except OSError as e:
            if not self._warned:  # once: a missing socket would otherwise log every ping
                log.warning("sd_notify_failed", error=e.strerror or str(e))
                self._warned = True
            return False
        return True

    def ready(self, status: str = "") -> bool:
        return self.send("READY=1", *([f"STATUS={status}"] if status else []))

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1")

    def status(self, text: str) -> bool:
        return self.send(f"STATUS={text}")

    def stopping(self) -> bool:
        return self.send("STOPPING=1")


def _address(value: str) -> str | bytes | None:
    """A leading ``@`` names a Linux abstract socket (systemd uses those in containers)."""
    if not value:
        return None
    if value.startswith("@"):
        return b"\0" + value[1:].encode()
    if value.startswith("/"):
        return value
    return None


def _watchdog_interval(env: Mapping[str, str]) -> float | None:
    """Seconds between pings: half of WatchdogSec, as sd_watchdog_enabled(3) recommends.

    WATCHDOG_PID, when set, names the process the watchdog is meant for; a child that inherited
    the environment must not ping on its parent's behalf.
    """
    usec = env.get("WATCHDOG_USEC", "")
    pid = env.get("WATCHDOG_PID", "")
    if not usec.isdigit() or int(usec) == 0:
        return None
    if pid and pid != str(os.getpid()):
        return None
    return int(usec) / 2_000_000
