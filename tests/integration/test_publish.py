"""Publish on the primary, pull by hash: the publisher and the secondary's HEAD path against a
real OpenSSH sshd, through the read-only SFTP account."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import shutil
import socket
import stat
import time
from pathlib import Path
from typing import Any

import aiohttp
from support.config import publish_settings, settings_for
from support.daemon import http, metric
from support.sshd import Sshd, free_port
from support.tools import run_syncagent
from support.trees import age, copy_tree, live_state, managed

from syncagent.demo.sample_tree import build_secondary_local
from syncagent.engine import sync
from syncagent.errors import Reason
from syncagent.publish.builder import PublishOutcome, publish_once, run_publisher
from syncagent.publishdir import HEAD_NAME, OBJECTS, encode_head, parse_head
from syncagent.report import Outcome, SyncResult
from syncagent.settings import Settings


def publish(s: Settings) -> PublishOutcome:
    return asyncio.run(publish_once(s))


def run(s: Settings) -> SyncResult:
    return asyncio.run(sync(s))


def head(pub: Path) -> Any:
    return parse_head((pub / HEAD_NAME).read_bytes())


# ---------------------------------------------------------------------------------------------


def test_publish_then_sync_applies_the_tree_with_the_walks_generation(
    sshd: Sshd, primary_tree: Path, target: Path, publish_dir: Path, tmp_path: Path
) -> None:
    s = publish_settings(sshd, primary_tree, target, publish_dir)
    published = publish(s)
    assert published.result == "published", published.summary()
    group = primary_tree.stat().st_gid  # xroad: the read-only account reads through it
    assert stat.S_IMODE(publish_dir.stat().st_mode) == 0o750
    assert publish_dir.stat().st_gid == group
    assert stat.S_IMODE((publish_dir / HEAD_NAME).stat().st_mode) == 0o640
    assert (publish_dir / HEAD_NAME).stat().st_gid == group
    objects = list((publish_dir / OBJECTS).iterdir())
    assert objects and all(stat.S_IMODE(o.stat().st_mode) == 0o640 for o in objects)
    assert all(o.stat().st_gid == group for o in objects), "secrets: group-readable only"

    result = run(s)
    assert result.outcome is Outcome.APPLIED, result.summary()
    assert result.source == "published"
    assert managed(target, s) == managed(primary_tree, s)
    assert result.generation == head(publish_dir).generation

    walked = tmp_path / "walked"
    walked.mkdir(mode=0o751)
    build_secondary_local(walked)
    walk = run(settings_for(sshd, primary_tree, walked, primary__publish_dir="off"))
    assert walk.outcome is Outcome.APPLIED, walk.summary()
    assert walk.source == "walk"
    assert walk.generation == result.generation


def test_noop_reads_only_head(
    sshd: Sshd, primary_tree: Path, target: Path, publish_dir: Path
) -> None:
    s = publish_settings(sshd, primary_tree, target, publish_dir)
    publish(s)
    first = run(s)
    assert first.outcome is Outcome.APPLIED, first.summary()
    # everything but HEAD gone: a sync that read anything else would fail
    for name in ("objects", "manifests"):
        (publish_dir / name).rename(publish_dir.parent / f"{name}.away")
    again = run(s)
    assert again.outcome is Outcome.UNCHANGED, again.summary()
    assert again.source == "published"
    assert (again.files_fetched, again.bytes_fetched) == (0, 0)
    assert again.generation == first.generation


def test_noop_with_a_verification_share_due_still_reads_only_head(
    sshd: Sshd, primary_tree: Path, target: Path, publish_dir: Path
) -> None:
    """The share re-hashes live files; when none drifted, HEAD naming the live generation is
    the whole answer (the manifest HEAD names is the record's, by hash)."""
    s = publish_settings(sshd, primary_tree, target, publish_dir, sync__verify_interval="1")
    publish(s)
    first = run(s)
    assert first.outcome is Outcome.APPLIED, first.summary()
    time.sleep(1.2)  # a whole pass is due
    for name in ("objects", "manifests"):
        (publish_dir / name).rename(publish_dir.parent / f"{name}.away")
    again = run(s)
    assert again.outcome is Outcome.UNCHANGED, again.summary()
    assert again.verified > 0 and again.mismatches == []
    assert (again.files_fetched, again.bytes_fetched) == (0, 0)


def test_one_changed_file_fetches_one_object(
    sshd: Sshd, primary_tree: Path, target: Path, publish_dir: Path
) -> None:
    s = publish_settings(sshd, primary_tree, target, publish_dir)
    publish(s)
    run(s)
    (primary_tree / "conf.d" / "local.ini").write_text("[proxy]\nhealth-check-port=5599\n")
    age(primary_tree)
    assert publish(s).result == "published"
    result = run(s)
    assert result.outcome is Outcome.APPLIED, result.summary()
    assert result.modified == ["conf.d/local.ini"]
    assert result.files_fetched == 1
    assert result.bytes_fetched == len("[proxy]\nhealth-check-port=5599\n")
    assert managed(target, s) == managed(primary_tree, s)
    assert result.generation == head(publish_dir).generation


def test_a_tree_failing_validation_is_not_published(
    sshd: Sshd, primary_tree: Path, target: Path, publish_dir: Path
) -> None:
    s = publish_settings(sshd, primary_tree, target, publish_dir)
    good = publish(s)
    (primary_tree / "conf.d" / "local.ini").write_text("[proxy\nbroken\n")
    rejected = publish(s)
    assert rejected.result == "rejected"
    assert int(rejected.exit_code) == 3
    assert any(p.path == "conf.d/local.ini" for p in rejected.problems)
    assert good.head is not None
    assert head(publish_dir).generation == good.head.generation  # the last good one stays


def test_sequence_never_goes_backwards_across_a_restart_with_an_emptied_dir(
    sshd: Sshd, primary_tree: Path, target: Path, publish_dir: Path
) -> None:
    s = publish_settings(sshd, primary_tree, target, publish_dir)
    first = publish(s)
    assert first.head is not None
    for entry in publish_dir.iterdir():  # an ephemeral publish dir: gone with the restart
        shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
    again = publish(s)  # a new Publisher: nothing of the first one's state survives
    assert again.result == "published" and again.head is not None
    assert again.head.generation == first.head.generation
    assert again.head.sequence > first.head.sequence
    unchanged = publish(s)  # another start: the same generation, under a fresh sequence
    assert unchanged.result == "unchanged" and unchanged.restamped
    assert unchanged.head is not None and unchanged.head.sequence > again.head.sequence
    assert unchanged.head.generation == first.head.generation


def test_a_secondary_refuses_a_head_whose_sequence_went_back(
    sshd: Sshd, primary_tree: Path, target: Path, publish_dir: Path
) -> None:
    s = publish_settings(sshd, primary_tree, target, publish_dir)
    publish(s)
    assert run(s).outcome is Outcome.APPLIED
    (primary_tree / "devices.ini").unlink()
    publish(s)
    applied = run(s)
    assert applied.outcome is Outcome.APPLIED, applied.summary()
    newest = head(publish_dir)
    back = type(newest)(
        "0123456789abcdef", newest.sequence - 1, newest.manifest, time.time(), time.time()
    )
    (publish_dir / HEAD_NAME).write_bytes(encode_head(back))
    before = live_state(target)
    refused = run(s)
    assert refused.outcome is Outcome.REJECTED, refused.summary()
    assert refused.reason is Reason.PUBLISH_ROLLBACK
    assert int(refused.exit_code) == 3
    assert live_state(target) == before


def test_an_object_whose_bytes_do_not_match_its_name_is_refused(
    sshd: Sshd, primary_tree: Path, target: Path, publish_dir: Path
) -> None:
    s = publish_settings(sshd, primary_tree, target, publish_dir)
    publish(s)
    assert run(s).outcome is Outcome.APPLIED
    new = "[proxy]\nhealth-check-port=5600\n"
    (primary_tree / "conf.d" / "local.ini").write_text(new)
    age(primary_tree)
    publish(s)
    obj = publish_dir / OBJECTS / hashlib.sha256(new.encode()).hexdigest()
    obj.write_text(new.replace("5600", "6600"))  # same size, other bytes
    before = live_state(target)
    result = run(s)
    assert result.outcome is Outcome.FAILED, result.summary()
    assert result.reason is Reason.REMOTE_IO
    assert "holds other bytes" in str(result.error)
    assert live_state(target) == before
    assert not (target / ".syncagent" / "staging" / "tree").exists()


def test_no_head_falls_back_to_the_walk(
    sshd: Sshd, primary_tree: Path, target: Path, publish_dir: Path
) -> None:
    s = publish_settings(sshd, primary_tree, target, publish_dir)
    result = run(s)
    assert result.outcome is Outcome.APPLIED, result.summary()
    assert result.source == "walk"
    assert "no HEAD" in result.source_note
    assert managed(target, s) == managed(primary_tree, s)


def test_a_stale_head_falls_back_to_the_walk(
    sshd: Sshd, primary_tree: Path, target: Path, publish_dir: Path
) -> None:
    s = publish_settings(sshd, primary_tree, target, publish_dir)
    publish(s)
    current = head(publish_dir)
    old = time.time() - 3600
    stale = type(current)(current.generation, current.sequence, current.manifest, old, old)
    (publish_dir / HEAD_NAME).write_bytes(encode_head(stale))
    result = run(s)
    assert result.outcome is Outcome.APPLIED, result.summary()
    assert result.source == "walk"
    assert "stopped" in result.source_note


def test_the_publisher_follows_changes_in_the_source(
    sshd: Sshd, primary_tree: Path, target: Path, publish_dir: Path
) -> None:
    s = publish_settings(sshd, primary_tree, target, publish_dir, publish__settle="0.3")

    async def scenario() -> tuple[Any, Any]:
        stop = asyncio.Event()
        task = asyncio.create_task(run_publisher(s, stop))
        try:
            first = await _wait_head(publish_dir, None)
            (primary_tree / "conf.d" / "local.ini").write_text("[proxy]\nx=1\n")
            second = await _wait_head(publish_dir, first.sequence)
            return first, second
        finally:
            stop.set()
            assert await asyncio.wait_for(task, 10) == 0

    first, second = asyncio.run(scenario())
    assert second.sequence > first.sequence
    assert second.generation != first.generation
    result = run(s)
    assert result.outcome is Outcome.APPLIED and result.source == "published", result.summary()
    assert (target / "conf.d" / "local.ini").read_text() == "[proxy]\nx=1\n"


async def _wait_head(pub: Path, after: int | None) -> Any:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            h = head(pub)
        except (OSError, ValueError):
            h = None
        if h is not None and (after is None or h.sequence > after):
            return h
        await asyncio.sleep(0.1)
    raise AssertionError("no new HEAD")


def test_cli_publish_once_needs_no_primary_settings(
    primary_tree: Path, publish_dir: Path, tmp_path: Path
) -> None:
    env = {
        "SYNCAGENT_PUBLISH_SOURCE": str(primary_tree),
        "SYNCAGENT_PUBLISH_DIR": str(publish_dir),
        "SYNCAGENT_LOG_FORMAT": "json",
        "PATH": os.environ.get("PATH", ""),
    }
    done = run_syncagent("publish", "--once", "--json", env=env)
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert doc["result"] == "published"
    assert doc["generation"] == head(publish_dir).generation
    inside = run_syncagent(
        "publish", "--once", env={**env, "SYNCAGENT_PUBLISH_DIR": str(primary_tree / "pub")}
    )
    assert inside.returncode == 2
    assert "publish.dir" in inside.stderr


def test_a_primary_restored_from_a_backup_heals_its_secondaries_at_the_publishers_start(
    sshd: Sshd, primary_tree: Path, target: Path, publish_dir: Path, tmp_path: Path
) -> None:
    """The backup holds the tree and the publish dir of an hour ago; the secondaries applied
    later generations since. Its HEAD is refused as going back until the publisher starts."""
    s = publish_settings(sshd, primary_tree, target, publish_dir)
    assert publish(s).result == "published"
    assert run(s).outcome is Outcome.APPLIED
    backup = tmp_path / "backup"
    copy_tree(primary_tree, backup / "xroad")
    copy_tree(publish_dir, backup / "publish")
    (primary_tree / "conf.d" / "local.ini").write_text("[proxy]\nhealth-check-port=5599\n")
    age(primary_tree)
    assert publish(s).result == "published"
    later = run(s)
    assert later.outcome is Outcome.APPLIED and later.source == "published", later.summary()

    for restored, saved in ((primary_tree, backup / "xroad"), (publish_dir, backup / "publish")):
        shutil.rmtree(restored)
        copy_tree(saved, restored)
    before = live_state(target)
    refused = run(s)
    assert refused.reason is Reason.PUBLISH_ROLLBACK, refused.summary()
    assert live_state(target) == before

    started = publish(s)  # the publisher's first build after the restore
    assert started.result == "unchanged" and started.restamped, started.summary()
    healed = run(s)
    assert healed.outcome is Outcome.APPLIED and healed.source == "published", healed.summary()
    assert managed(target, s) == managed(primary_tree, s)
    assert healed.generation == head(publish_dir).generation
    assert publish(s).restamped  # every start: for a secondary already there, one manifest read
    again = run(s)
    assert again.outcome is Outcome.UNCHANGED and again.source == "published", again.summary()
    assert (again.files_fetched, again.generation) == (0, healed.generation)


def test_the_publisher_serves_healthz_and_metrics_read_only(
    sshd: Sshd, primary_tree: Path, target: Path, publish_dir: Path
) -> None:
    port = free_port()
    s = publish_settings(
        sshd, primary_tree, target, publish_dir, publish__listen=f"127.0.0.1:{port}"
    )
    url = f"http://127.0.0.1:{port}"

    async def scenario() -> tuple[str, str, int, int]:
        stop = asyncio.Event()
        task = asyncio.create_task(run_publisher(s, stop))
        try:
            first = await _wait_head(publish_dir, None)
            deadline = time.monotonic() + 15
            while True:
                with contextlib.suppress(aiohttp.ClientConnectionError):
                    status, text, headers = await http("GET", f"{url}/metrics")
                    if metric(text, "syncagent_publish_head_sequence") == first.sequence:
                        break
                assert time.monotonic() < deadline, "the metrics never showed the HEAD"
                await asyncio.sleep(0.05)
            assert status == 200 and headers["Content-Type"].startswith("text/plain")
            health, body, _ = await http("GET", f"{url}/healthz")
            posted, _, _ = await http("POST", f"{url}/metrics")
            return text, body, health, posted
        finally:
            stop.set()
            assert await asyncio.wait_for(task, 10) == 0

    text, body, health, posted = asyncio.run(scenario())
    assert (health, posted) == (200, 405)
    assert body == "loop: ok watching the source\nbuild: ok idle\n"
    now = head(publish_dir)
    assert metric(text, "syncagent_publish_generations_total", outcome="published") == 1
    assert metric(text, "syncagent_publish_last_build_ok") == 1
    assert metric(text, "syncagent_publish_last_success_timestamp_seconds") == now.checked_at
    assert metric(text, "syncagent_publish_duration_seconds_count") == 1
    objects = len(list((publish_dir / OBJECTS).iterdir()))
    assert metric(text, "syncagent_publish_objects") == objects
    dir_bytes = metric(text, "syncagent_publish_dir_bytes")
    assert dir_bytes is not None and dir_bytes > sum(
        p.stat().st_size for p in (publish_dir / OBJECTS).iterdir()
    )


def test_the_publisher_will_not_start_on_a_port_it_cannot_have(
    sshd: Sshd, primary_tree: Path, target: Path, publish_dir: Path
) -> None:
    """A taken port is worth a restart (exit 1); ``off`` needs no port at all."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        s = publish_settings(
            sshd, primary_tree, target, publish_dir, publish__listen=f"127.0.0.1:{port}"
        )
        assert asyncio.run(run_publisher(s, asyncio.Event())) == 1
    assert not (publish_dir / HEAD_NAME).exists()

    off = publish_settings(sshd, primary_tree, target, publish_dir, publish__listen="off")

    async def without_a_port() -> int:
        stop = asyncio.Event()
        task = asyncio.create_task(run_publisher(off, stop))
        await _wait_head(publish_dir, None)
        stop.set()
        return await asyncio.wait_for(task, 10)

    assert asyncio.run(without_a_port()) == 0
