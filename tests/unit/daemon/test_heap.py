"""heap.release_free_memory: freed heap pages go back to the system (glibc's malloc_trim)."""

from __future__ import annotations

from pathlib import Path

from syncagent.daemon.heap import release_free_memory


def _rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_freed_heap_pages_between_live_ones_are_given_back() -> None:
    # 64 KiB blocks come from the heap (below glibc's mmap threshold); the one kept at the end
    # pins the heap's top, so only malloc_trim's madvise of the free middle can return them
    blocks = [bytearray(64 * 1024) for _ in range(512)]
    keep = blocks[-1]
    del blocks
    before = _rss_kib()
    assert release_free_memory()
    after = _rss_kib()
    assert before - after > 16 * 1024, (before, after)
    assert len(keep) == 64 * 1024
