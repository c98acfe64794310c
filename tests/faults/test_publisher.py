"""The publisher under faults, and secondaries following a publish dir that lies.

- SIGKILL: a forked publisher building in a loop while the source changes the way X-Road saves
  it, killed at a random moment, hundreds of times. After every kill the publish dir holds its
  invariant (tests/support/publish_faults.py: any HEAD names an intact manifest whose objects are
  all there, byte for byte), a fresh publisher recovers with a sequence above everything in the
  dir, and every so often a secondary syncs through the real sshd and its live tree is exactly
  the generation HEAD names.
- A full publish dir: every build fails as ``disk`` (outcome, log line, metric), HEAD keeps
  naming the last complete generation at every fill level, a following secondary keeps its
  generation, and the next build after space returns publishes.
- A hostile publish dir (tests/support/hostile_primary.py serving a real publish dir, then
  rewriting it): refused by reason, nothing outside staging written. Cases covered elsewhere
  are not repeated: an object whose bytes do not match its name and a sequence going back
  (tests/integration/test_publish.py), manifest path and duplicate rules one by one
  (tests/unit/test_publishdir.py).
"""

from __future__ import annotations

import asyncio
import collections
import json
import os
import random
import signal
import statistics
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from structlog.testing import capture_logs
from support import hostile_primary as hp
from support.config import publish_settings, settings_for
from support.daemon import http, metric
from support.faults import (
    XRoadWriter,
    check_live_generation,
    decoy_root,
    generation_of,
    read_node_local,
    reap,
)
from support.publish_faults import (
    check_publish_dir,
    fill,
    fork_publisher,
    manifest_doc,
    manifest_sequences,
    publish_lie,
    served,
    sha256,
    temp_files,
    tmpfs,
)
from support.sshd import Sshd, free_port, fresh_subdir
from support.trees import live_state, snapshot

from syncagent.demo.sample_tree import build_primary_tree, build_secondary_local
from syncagent.engine import sync
from syncagent.errors import Reason
from syncagent.excludes import PathFilter
from syncagent.publish.builder import Publisher, PublishOutcome, run_publisher
from syncagent.publishdir import HEAD_NAME, Head, encode_head
from syncagent.report import Outcome, SyncResult
from syncagent.settings import Settings, load

CYCLES = int(os.environ.get("SYNCAGENT_FAULT_PUBLISH_CYCLES", "220"))
SYNC_EVERY = 20  # a secondary syncs after every 20th kill
SEED = int(os.environ.get("SYNCAGENT_FAULT_SEED", str(int(time.time()))))


def fresh_build(settings: Settings) -> PublishOutcome:
    """What a restarted publisher's first build does (the source holds still meanwhile)."""
    publisher = Publisher(settings)
    outcome = publisher.build()
    for _ in range(3):
        if outcome.result != "moved":
            break
        outcome = publisher.build()
    return outcome


# ---- SIGKILL ---------------------------------------------------------------------------------


def test_sigkill_at_random_points_leaves_a_complete_generation(
    sshd: Sshd, primary_tree: Path, target: Path, publish_dir: Path, tmp_path: Path
) -> None:
    rng = random.Random(SEED)
    s = publish_settings(sshd, primary_tree, target, publish_dir)
    pf = s.sync.path_filter()
    writer = XRoadWriter(primary_tree, pf, rng)
    local = read_node_local(target)
    log = tmp_path / "publisher.log"
    first = fresh_build(s)
    assert first.result == "published" and first.head is not None, first.summary()

    # How long a forked publisher takes to its first HEAD sets the window kills are spread
    # over, kept (below) where about half of them land before it, half in the builds after.
    timings = []
    for _ in range(5):
        before = (publish_dir / HEAD_NAME).read_bytes()
        started = time.monotonic()
        pid = fork_publisher(s, log)
        try:
            while (publish_dir / HEAD_NAME).read_bytes() == before:
                assert time.monotonic() - started < 10, log.read_text()[-2000:]
                time.sleep(0.0005)
            timings.append(time.monotonic() - started)
        finally:
            os.kill(pid, signal.SIGKILL)
            reap(pid, time.monotonic() + 5)
    last = check_head(publish_dir).sequence
    median = statistics.median(timings)
    window = 2.0 * median
    print(f"a forked publisher writes its first HEAD after {median * 1000:.0f} ms here")

    stats: collections.Counter[str] = collections.Counter()
    burst: Iterator[Callable[[], None]] = iter(())
    queued: Callable[[], None] | None = None
    for cycle in range(CYCLES):
        if queued is None and rng.random() < 0.8:
            burst = writer.random_burst()
            queued = next(burst, None)
        kill_at = rng.uniform(0.0, window)
        started = time.monotonic()
        pid = fork_publisher(s, log)
        try:
            next_step = started + rng.uniform(0.0, 0.5 * window)
            while (now := time.monotonic()) - started < kill_at:
                if now >= next_step and queued is not None:
                    queued()
                    queued = next(burst, None)
                    next_step = now + rng.uniform(0.0, 0.3 * window)
                status = reap(pid, min(started + kill_at, now + 0.002))
                assert status is None, f"cycle {cycle}: it exited: {log.read_text()[-2000:]}"
        finally:
            os.kill(pid, signal.SIGKILL)
            status = reap(pid, time.monotonic() + 5)
        assert status is not None and os.WIFSIGNALED(status), f"cycle {cycle}: {status}"

        where = f"cycle {cycle} (seed {SEED}, {dict(stats)})"
        try:
            head = check_head(publish_dir)
        except AssertionError as e:
            raise AssertionError(f"{where}: {e}") from e
        assert head.sequence >= last, f"{where}: HEAD went back"
        assert head.generation in writer.published, f"{where}: never a state of the source"
        written = head.sequence > last
        stats["HEAD written by the killed publisher" if written else "HEAD kept"] += 1
        window *= 0.95 if written else 1 / 0.95  # the machine's speed may change meanwhile
        if temp_files(publish_dir):
            stats["temp files left"] += 1
        sequences = manifest_sequences(publish_dir)
        if max(sequences) > head.sequence:
            stats["a manifest above HEAD left"] += 1

        if cycle % SYNC_EVERY == SYNC_EVERY - 1:
            result = asyncio.run(sync(s))
            assert result.error is None and result.source == "published", (where, result.summary())
            assert result.generation == head.generation, where
            live = check_live_generation(
                target, s.sync.state_dir, pf, published={head.generation}, node_local=local
            )
            assert live == head.generation
            stats["secondary synced"] += 1

        healed = fresh_build(s)
        assert healed.result in ("published", "unchanged"), f"{where}: {healed.summary()}"
        assert healed.head is not None and healed.head == check_head(publish_dir)
        assert healed.head.sequence > max([*sequences, head.sequence]), where
        assert healed.head.generation == generation_of(primary_tree, pf), where
        last = healed.head.sequence
    writer.close()
    print(f"seed {SEED}: {dict(stats)}; {writer.steps} writer steps; window {window:.3f}s")
    assert stats["HEAD kept"] >= CYCLES // 10, stats
    assert stats["HEAD written by the killed publisher"] >= CYCLES // 10, stats
    assert stats["secondary synced"] == CYCLES // SYNC_EVERY


def check_head(pub: Path) -> Head:
    head = check_publish_dir(pub)
    assert head is not None, "no HEAD after the first publish"
    return head


# ---- a full disk -----------------------------------------------------------------------------

FS_SIZE = 2 * 1024**2


@pytest.fixture
def small_fs(tree_area: Path) -> Any:
    """A 2 MiB tmpfs for the publish dir, where xroad-slave reaches it through the sshd."""
    with tmpfs(fresh_subdir(tree_area, "fs"), FS_SIZE, 4000) as mnt:
        yield mnt


def test_a_full_disk_at_every_fill_level_keeps_the_last_complete_generation(
    sshd: Sshd, primary_tree: Path, target: Path, small_fs: Path
) -> None:
    """The space left moves up page by page through the objects, the manifest and HEAD: each
    build publishes whole or fails as ``disk`` with HEAD untouched."""
    pub = small_fs / "publish"
    s = publish_settings(sshd, primary_tree, target, pub)
    publisher = Publisher(s)
    assert publisher.build().result == "published"
    assert asyncio.run(sync(s)).outcome is Outcome.APPLIED
    outcomes: collections.Counter[str] = collections.Counter()
    for leave in range(0, 48 * 1024, 2048):
        (primary_tree / "conf.d" / "local.ini").write_text(f"[proxy]\n; left {leave}\n")
        before = (pub / HEAD_NAME).read_bytes()
        filler = fill(small_fs, leave)
        try:
            outcome = publisher.build()
        finally:
            filler.unlink()
        head = check_head(pub)
        if outcome.result == "failed":
            assert outcome.reason is Reason.DISK, outcome.summary()
            assert (pub / HEAD_NAME).read_bytes() == before
        else:
            assert outcome.result == "published", outcome.summary()
            assert outcome.head == head
        outcomes[outcome.result] += 1
    print(dict(outcomes))
    assert outcomes["failed"] >= 4 and outcomes["published"] >= 4, outcomes
    (primary_tree / "conf.d" / "local.ini").write_text("[proxy]\n; space is back\n")
    healed = publisher.build()
    assert healed.result == "published", healed.summary()
    result = asyncio.run(sync(s))
    assert result.outcome is Outcome.APPLIED and result.generation == check_head(pub).generation


def test_a_full_disk_is_reported_as_disk_and_a_following_secondary_keeps_its_generation(
    sshd: Sshd, primary_tree: Path, target: Path, small_fs: Path
) -> None:
    """The running publisher: outcome, log line and metric all say ``disk``; once space is
    back the next build (here the next change) publishes and the secondary follows."""
    pub = small_fs / "publish"
    port = free_port()
    s = publish_settings(sshd, primary_tree, target, pub, publish__listen=f"127.0.0.1:{port}")
    url = f"http://127.0.0.1:{port}"

    async def exposition() -> str:
        try:
            status, text, _ = await http("GET", f"{url}/metrics")
        except aiohttp.ClientConnectionError:
            return ""  # not listening yet
        assert status == 200
        return text

    async def until_metric(name: str, want: float, **labels: str) -> str:
        deadline = time.monotonic() + 20
        while (value := metric(text := await exposition(), name, **labels)) is None or value < want:
            assert time.monotonic() < deadline, f"{name}{labels} never reached {want}"
            await asyncio.sleep(0.05)
        return text

    async def scenario() -> tuple[SyncResult, SyncResult]:
        stop = asyncio.Event()
        task = asyncio.create_task(run_publisher(s, stop))
        try:
            await until_metric("syncagent_publish_generations_total", 1, outcome="published")
            first = await sync(s)
            assert first.outcome is Outcome.APPLIED and first.source == "published"
            good = (pub / HEAD_NAME).read_bytes()
            before = live_state(target)
            filler = fill(small_fs, 0)
            (primary_tree / "ssl" / "bundle.p12").write_bytes(os.urandom(256 * 1024))
            text = await until_metric("syncagent_publish_failures_total", 1, reason="disk")
            assert metric(text, "syncagent_publish_last_build_ok") == 0
            failed = metric(text, "syncagent_publish_generations_total", outcome="failed")
            assert failed == metric(text, "syncagent_publish_failures_total", reason="disk")
            assert (pub / HEAD_NAME).read_bytes() == good
            check_head(pub)
            kept = await sync(s)
            assert kept.outcome is Outcome.UNCHANGED, kept.summary()
            assert kept.generation == first.generation and live_state(target) == before
            status, body, _ = await http("GET", f"{url}/healthz")
            assert status == 200, body  # restarting would not free the disk

            filler.unlink()
            (primary_tree / "conf.d" / "local.ini").write_text("[proxy]\n; space is back\n")
            text = await until_metric("syncagent_publish_generations_total", 2, outcome="published")
            assert metric(text, "syncagent_publish_last_build_ok") == 1
            assert metric(text, "syncagent_publish_failures_total", reason="disk") == failed
            head = check_head(pub)
            assert metric(text, "syncagent_publish_head_sequence") == head.sequence
            healed = await sync(s)
            assert healed.outcome is Outcome.APPLIED and healed.generation == head.generation
            return kept, healed
        finally:
            stop.set()
            assert await asyncio.wait_for(task, 10) == 0

    with capture_logs() as logs:
        asyncio.run(scenario())
    failed = [e for e in logs if e["event"] == "publish" and e.get("result") == "failed"]
    assert failed and all(e["reason"] == "disk" for e in failed), failed
    assert all("No space left" in str(e["error"]) for e in failed)


# ---- a hostile publish dir -------------------------------------------------------------------

PUBLISH_AT = "/srv/publish"


@dataclass
class World:
    root: Path  # everything a path escape could reach lives below here
    source: Path  # the honest tree, loaded into the hostile primary
    pub: Path  # its real publish dir, mounted at PUBLISH_AT
    target: Path


@pytest.fixture
def world(tmp_path: Path) -> World:
    root = tmp_path / "world"
    decoy_root(root)
    source = tmp_path / "honest"
    build_primary_tree(source, mtime=time.time() - 3600)
    pub = tmp_path / "publish"
    overrides = {"publish.source": str(source), "publish.dir": str(pub)}
    settings, problems = load(None, env={}, overrides=overrides, needs_primary=False)
    assert settings is not None, problems
    assert Publisher(settings).build().result == "published"
    target = root / "etc-xroad"
    target.mkdir(mode=0o751)
    build_secondary_local(target)
    return World(root, source, pub, target)


def everything(world: World) -> dict[str, tuple[object, ...]]:
    """The whole world, metadata included, but the secondary's staging."""
    protected = PathFilter.build(protected=("/etc-xroad/.syncagent/staging/",))
    return snapshot(world.root, protected, with_ids=True)


Lie = Callable[[hp.Node, Head, dict[str, Any]], None]


def refused(world: World, lie: Lie, reason: Reason, syncs: int = 1) -> list[SyncResult]:
    """An honest sync through the publish dir, then ``lie``, then ``syncs`` more: each one
    refused with ``reason``, and nothing but staging touched."""

    async def scenario() -> list[SyncResult]:
        primary = hp.Primary(hp.load_tree(world.source))
        node = primary.mount(PUBLISH_AT, served(world.pub))
        async with hp.serve(primary, world.root.parent / "server") as running:
            s = settings_for(
                running,
                hp.REMOTE_ROOT,
                world.target,
                primary__publish_dir=PUBLISH_AT,
                primary__io_timeout="2",
            )
            honest = await sync(s)
            assert honest.outcome is Outcome.APPLIED and honest.source == "published"
            head, doc = manifest_doc(node)
            lie(node, head, doc)
            before = everything(world)
            results = [await sync(s) for _ in range(syncs)]
            assert everything(world) == before, "something outside staging changed"
            assert primary.writes_refused == 0
        for r in results:
            assert r.error is not None, f"the lie was accepted: {r.summary()}"
            assert r.error.reason is reason, r.summary()
            assert r.generation == honest.generation and r.source == "published"
        staging = world.target / ".syncagent" / "staging"
        assert not staging.exists() or not any(staging.iterdir())
        return results

    return asyncio.run(scenario())


def test_a_head_naming_a_missing_manifest_is_refused(world: World) -> None:
    def lie(node: hp.Node, head: Head, doc: dict[str, Any]) -> None:
        now = time.time()
        gone = Head(head.generation, head.sequence + 1, sha256(b"no such manifest"), now, now)
        node.children[HEAD_NAME.encode()] = hp.file(encode_head(gone))

    (r,) = refused(world, lie, Reason.REMOTE_IO)
    assert "which is not in" in str(r.error)


@pytest.mark.parametrize("path", ["../escape.ini", "/etc/shadow", "conf.d/../../escape.ini"])
def test_a_manifest_entry_that_climbs_out_is_refused_before_any_fetch(
    world: World, path: str
) -> None:
    def lie(node: hp.Node, head: Head, doc: dict[str, Any]) -> None:
        entry = next(e for e in doc["entries"] if e["path"] == "conf.d/local.ini")
        publish_lie(node, {**doc, "entries": [*doc["entries"], {**entry, "path": path}]}, head)

    (r,) = refused(world, lie, Reason.VALIDATION)
    assert r.bytes_fetched == 0
    assert (world.root / "escape.ini").read_text() == "[decoy]\nmust-not-change=1\n"


def test_a_manifest_naming_a_path_twice_is_refused(world: World) -> None:
    """Two objects for one path: which one a secondary applied would depend on the order."""

    def lie(node: hp.Node, head: Head, doc: dict[str, Any]) -> None:
        entries = doc["entries"]
        ini = next(e for e in entries if e["path"] == "conf.d/local.ini")
        other = next(e for e in entries if e.get("sha256") not in (None, ini["sha256"]))
        twice = {**ini, "sha256": other["sha256"], "size": other["size"]}
        publish_lie(node, {**doc, "entries": [*entries, twice]}, head)

    (r,) = refused(world, lie, Reason.VALIDATION)
    assert r.error is not None and any("appears twice" in p.message for p in r.error.problems)


def test_a_head_that_changes_on_every_read_is_refused_every_time(world: World) -> None:
    """Each read names a new generation under a higher sequence, and the real manifest: the
    manifest's own generation and sequence decide, and a sync reads HEAD once."""
    reads: list[bytes] = []

    def lie(node: hp.Node, head: Head, doc: dict[str, Any]) -> None:
        def reader(offset: int, size: int) -> bytes:
            if offset == 0:
                now = time.time()
                n = len(reads) + 1
                gen = sha256(str(n).encode())[:16]
                reads.append(encode_head(Head(gen, head.sequence + n, head.manifest, now, now)))
            return reads[-1][offset : offset + size]

        node.children[HEAD_NAME.encode()] = hp.file(encode_head(head), reader=reader)

    results = refused(world, lie, Reason.REMOTE_IO, syncs=3)
    assert len(reads) == 3, "a sync read HEAD more than once"
    assert len(set(reads)) == 3
    for r, data in zip(results, reads, strict=True):
        assert json.loads(data)["generation"] in str(r.error)
        assert "HEAD says" in str(r.error)
