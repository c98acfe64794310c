"""Tests for syncagent.daemon.sdnotify: datagrams and the watchdog interval."""

from __future__ import annotations

import socket
from pathlib import Path

from syncagent.daemon.sdnotify import Notifier

# ---- sd_notify -------------------------------------------------------------------------------


def test_notifier_is_a_noop_without_notify_socket() -> None:
    n = Notifier(env={})
    assert not n.enabled and not n.ready() and n.watchdog_interval is None


def test_notifier_sends_datagrams_and_reads_the_watchdog(tmp_path: Path) -> None:
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        n = Notifier(env={"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "3000000"})
        assert n.watchdog_interval == 1.5
        assert n.ready("generation g1") and n.watchdog() and n.stopping()
        got = [sock.recv(4096).decode() for _ in range(3)]
    assert got == ["READY=1\nSTATUS=generation g1", "WATCHDOG=1", "STOPPING=1"]
    other = Notifier(env={"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "1", "WATCHDOG_PID": "1"})
    assert other.watchdog_interval is None  # meant for another process
    gone = Notifier(env={"NOTIFY_SOCKET": str(tmp_path / "missing")})
    assert not gone.ready()
    abstract = Notifier(env={"NOTIFY_SOCKET": "@syncagent-test"})
    assert abstract.address == b"\0syncagent-test"
