"""Concurrent writer: the primary saves multi-file key updates in bursts, the way X-Road does
(new .p12 files first, then keyconf.xml by rename; on removal keyconf.xml first), while the
agent syncs every second. The live tree must never, at any instant, hold a keyconf.xml that
names a softToken key whose .p12 is missing.

Three observers watch the live tree:
- a hook after every single apply operation (deterministic: sees every intermediate state);
- a thread that polls the live tree continuously while applies run (real concurrency);
- a full check after every sync: the live tree is exactly its manifest's generation and valid.
"""

from __future__ import annotations

import asyncio
import collections
import os
import random
import threading
import time
from pathlib import Path

from support.config import settings_for
from support.faults import XRoadWriter, check_live_generation
from support.sshd import Sshd
from support.trees import managed

from syncagent.demo.sample_tree import (
    KEYCONF,
    build_secondary_local,
)
from syncagent.engine import sync
from syncagent.report import Outcome
from syncagent.xroad.paths import SOFTTOKEN_DIR, softtoken_key_ids

DURATION = float(os.environ.get("SYNCAGENT_FAULT_CONCURRENT_SECONDS", "20"))
SEED = int(os.environ.get("SYNCAGENT_FAULT_SEED", str(int(time.time()))))


def missing_keys(target: Path) -> tuple[list[str], int] | None:
    """Keys the live keyconf.xml names without a .p12, and the keyconf inode; None if keyconf
    was replaced while looking (then the sample says nothing)."""
    keyconf = target / KEYCONF
    try:
        ino = os.stat(keyconf).st_ino
        ids = softtoken_key_ids(keyconf.read_bytes())
    except FileNotFoundError:
        return None
    missing = [k for k in ids if not (target / SOFTTOKEN_DIR / f"{k}.p12").exists()]
    try:
        if os.stat(keyconf).st_ino != ino:
            return None
    except FileNotFoundError:
        return None
    return missing, len(ids)


def test_keyconf_never_goes_live_without_its_p12_files(
    sshd: Sshd, primary_tree: Path, tmp_path: Path
) -> None:
    target = tmp_path / "etc-xroad"
    target.mkdir(mode=0o751)
    build_secondary_local(target)
    settings = settings_for(sshd, primary_tree, target)
    pf = settings.sync.path_filter()
    rng = random.Random(SEED)
    writer = XRoadWriter(primary_tree, pf, rng, record=False)
    assert asyncio.run(sync(settings)).outcome is Outcome.APPLIED

    stop = threading.Event()
    violations: list[str] = []
    stats: collections.Counter[str] = collections.Counter()

    def write() -> None:
        """Bursts of 1-3 new keys, or removals, with pauses inside and between bursts."""
        while not stop.is_set():
            keys = len(writer.key_ids())
            if keys < 3 or (keys < 8 and rng.random() < 0.6):
                burst = writer.add_keys(rng.randint(1, 3))
                stats["bursts adding keys"] += 1
            else:
                burst = writer.remove_keys(rng.randint(1, 3))
                stats["bursts removing keys"] += 1
            for step in burst:
                step()
                time.sleep(rng.uniform(0.0, 0.03))
            stop.wait(rng.uniform(0.05, 0.6))

    def watch() -> None:
        while not stop.is_set():
            sample = missing_keys(target)
            if sample is not None:
                stats["live samples"] += 1
                if sample[0]:
                    violations.append(f"watcher: keyconf names {sample[0]} without .p12")
            time.sleep(0.001)

    def after_op(_op: int) -> None:
        sample = missing_keys(target)
        assert sample is not None  # nothing else replaces keyconf while an apply runs
        stats["apply steps checked"] += 1
        if sample[0]:
            violations.append(f"after apply op {_op}: keyconf names {sample[0]} without .p12")

    async def agent() -> None:
        deadline = time.monotonic() + DURATION
        while time.monotonic() < deadline:
            started = time.monotonic()
            result = await sync(settings, on_op=after_op)
            stats[f"sync {result.outcome}"] += 1
            if result.error is not None:
                stats[f"reason {result.error.reason}"] += 1
            if result.outcome is Outcome.APPLIED:
                ids = softtoken_key_ids((target / KEYCONF).read_bytes())
                stats["max keys live"] = max(stats["max keys live"], len(ids))
            check_live_generation(target, settings.sync.state_dir, pf)
            await asyncio.sleep(max(0.0, 1.0 - (time.monotonic() - started)))

    threads = [threading.Thread(target=write), threading.Thread(target=watch)]
    for t in threads:
        t.start()
    try:
        asyncio.run(agent())
    finally:
        stop.set()
        for t in threads:
            t.join(10)
    writer.close()

    print(f"seed {SEED}: {dict(stats)}")
    assert violations == []
    assert stats["sync applied"] >= DURATION / 4, stats
    assert stats["apply steps checked"] > 0 and stats["live samples"] > 100, stats
    assert stats["reason validation"] == 0, "a consistent primary was rejected"

    final = asyncio.run(sync(settings))  # the primary is quiet now: converge on it exactly
    assert final.error is None, final.summary()
    assert managed(target, settings) == managed(primary_tree, settings)
    check_live_generation(target, settings.sync.state_dir, pf)
