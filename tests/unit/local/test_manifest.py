"""Tests for syncagent.local.manifest: records and the generation id."""

from __future__ import annotations

from syncagent.local.manifest import Record, generation_id
from syncagent.tree import Kind


def test_generation_id_ignores_local_identity() -> None:
    a = {"f": Record(Kind.FILE, 0o640, "h", size=1, remote_mtime=1, ino=1, mtime_ns=1)}
    b = {"f": Record(Kind.FILE, 0o640, "h", size=1, remote_mtime=9, ino=2, mtime_ns=2)}
    c = {"f": Record(Kind.FILE, 0o600, "h")}
    assert generation_id(a) == generation_id(b) != generation_id(c)
