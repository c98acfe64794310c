"""The publisher on a local source and publish dir: what a start does to an unchanged HEAD, the
reason every failure carries into its log line and metrics, the lock, and the endpoints' state.

No SFTP here (tests/integration/test_publish.py has the secondaries' side): a build is local
I/O, so it runs against real directories in tmp_path.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs
from support.daemon import metric

from syncagent.demo.sample_tree import build_primary_tree
from syncagent.errors import Problem, Reason
from syncagent.local import validate
from syncagent.local.state import Seen
from syncagent.publish import builder as publishing
from syncagent.publish.builder import Publisher, PublishOutcome, _log_outcome
from syncagent.publish.port import PublisherState, PublishMetrics
from syncagent.publishdir import HEAD_NAME, MANIFESTS, OBJECTS, STALE_AFTER, Head, parse_head
from syncagent.remote.head_rules import HeadVerdict, judge_head
from syncagent.settings import Settings, load

LOCAL_INI = "conf.d/local.ini"


@pytest.fixture
def source(tmp_path: Path) -> Path:
    root = tmp_path / "xroad"
    build_primary_tree(root, mtime=time.time() - 3600)
    return root


def settings_of(source: Path, pub: Path, **extra: str) -> Settings:
    overrides = {
        "publish.source": str(source),
        "publish.dir": str(pub),
        "sync.version_source": "none",
        **extra,
    }
    settings, problems = load(None, env={}, overrides=overrides, needs_primary=False)
    assert settings is not None, problems
    return settings


def head_of(pub: Path) -> Head:
    return parse_head((pub / HEAD_NAME).read_bytes())


def built(publisher: Publisher, result: str) -> Head:
    outcome = publisher.build()
    assert outcome.result == result, outcome.summary()
    assert outcome.head is not None
    assert outcome.head == head_of(publisher.dir)
    return outcome.head


def manifest_of(pub: Path, head: Head) -> dict[str, object]:
    data = (pub / MANIFESTS / head.manifest).read_bytes()
    assert hashlib.sha256(data).hexdigest() == head.manifest
    doc: dict[str, object] = json.loads(data)
    return doc


def test_a_restored_publish_dir_heals_at_the_next_start(source: Path, tmp_path: Path) -> None:
    """The primary comes back from a backup: its tree and publish dir are as they were, HEAD
    older than what the secondaries applied since. Without a fresh sequence they would refuse
    it (publish_rollback) until the tree next changed."""
    pub = tmp_path / "publish"
    s = settings_of(source, pub)
    first = built(Publisher(s), "published")
    backup = tmp_path / "backup"
    shutil.copytree(pub, backup)
    old_ini = (source / LOCAL_INI).read_bytes()
    (source / LOCAL_INI).write_text("[proxy]\nhealth-check-port=5599\n")
    later = built(Publisher(s), "published")
    applied = Seen(later.generation, later.sequence, later.generation)

    shutil.rmtree(pub)
    shutil.copytree(backup, pub)
    (source / LOCAL_INI).write_bytes(old_ini)
    assert judge_head(head_of(pub), applied, later.generation, time.time()) is (
        HeadVerdict.ROLLBACK
    )

    outcome = Publisher(s).build()
    assert outcome.result == "unchanged" and outcome.restamped, outcome.summary()
    healed = head_of(pub)
    assert healed == outcome.head
    assert healed.generation == first.generation
    assert healed.sequence > later.sequence and healed.sequence >= int(first.checked_at * 1000)
    assert healed.published_at == first.published_at  # the generation is not new
    doc = manifest_of(pub, healed)
    assert (doc["generation"], doc["sequence"]) == (healed.generation, healed.sequence)
    assert judge_head(healed, applied, later.generation, time.time()) is HeadVerdict.NEW


def test_a_running_publisher_confirms_only_the_head_it_wrote(source: Path, tmp_path: Path) -> None:
    pub = tmp_path / "publish"
    publisher = Publisher(settings_of(source, pub))
    first = built(publisher, "published")
    again = publisher.build()
    assert again.result == "unchanged" and not again.restamped
    assert again.head is not None and again.head.sequence == first.sequence
    assert again.head.manifest == first.manifest and again.head.checked_at > first.checked_at
    old_head, old_ini = (pub / HEAD_NAME).read_bytes(), (source / LOCAL_INI).read_bytes()
    (source / LOCAL_INI).write_text("[proxy]\nhealth-check-port=5592\n")
    later = built(publisher, "published")
    # the tree and the older HEAD are put back under the running publisher
    (source / LOCAL_INI).write_bytes(old_ini)
    (pub / HEAD_NAME).write_bytes(old_head)
    outcome = publisher.build()
    assert outcome.restamped and outcome.head is not None
    assert outcome.head.generation == first.generation
    assert outcome.head.sequence > later.sequence


def test_a_new_sequence_is_above_every_manifest_and_heads_manifest_is_kept(
    source: Path, tmp_path: Path
) -> None:
    """A manifest written just before a crash (before its HEAD), or under a clock that was
    ahead, has a higher sequence than HEAD: the next sequence goes above it, and pruning to one
    generation keeps the one HEAD names, not the orphan."""
    pub = tmp_path / "publish"
    s = settings_of(source, pub, **{"publish.keep": "1"})
    first = built(Publisher(s), "published")
    doc = manifest_of(pub, first)
    ahead = first.sequence + 10**9
    orphan = json.dumps({**doc, "generation": "f" * 16, "sequence": ahead}).encode()
    orphan_name = hashlib.sha256(orphan).hexdigest()
    (pub / MANIFESTS / orphan_name).write_bytes(orphan)

    restamped = Publisher(s).build()
    assert restamped.head is not None and restamped.head.sequence == ahead + 1
    assert sorted(os.listdir(pub / MANIFESTS)) == [restamped.head.manifest]
    assert manifest_of(pub, restamped.head)["sequence"] == ahead + 1


def test_a_manifest_that_no_longer_hashes_to_its_name_is_published_again(
    source: Path, tmp_path: Path
) -> None:
    """Confirming a HEAD whose manifest rotted would keep every secondary refusing it."""
    pub = tmp_path / "publish"
    publisher = Publisher(settings_of(source, pub))
    first = built(publisher, "published")
    rotten = pub / MANIFESTS / first.manifest
    rotten.write_bytes(rotten.read_bytes().replace(b'"version":1', b'"version":1 '))
    again = built(publisher, "published")
    assert again.generation == first.generation and again.manifest != first.manifest
    assert not rotten.exists()
    manifest_of(pub, again)


SECRET = "hunter2-do-not-log"


@pytest.mark.parametrize(
    ("damage", "result", "reason"),
    [
        ("bash", "rejected", Reason.VALIDATION),
        ("keyconf", "not_initialized", Reason.NOT_INITIALIZED),
        ("objects-dir", "failed", Reason.APPLY),
    ],
)
def test_every_failed_build_carries_one_reason_into_its_log_line_and_metrics(
    source: Path, tmp_path: Path, damage: str, result: str, reason: Reason
) -> None:
    pub = tmp_path / "publish"
    publisher = Publisher(settings_of(source, pub))
    good = built(publisher, "published")
    if damage == "bash":
        (source / "services" / "local.conf").write_text(f'DB_PASSWORD="{SECRET}\nif then fi\n')
    elif damage == "keyconf":
        (source / "signer" / "keyconf.xml").unlink()
    else:
        shutil.rmtree(pub / OBJECTS)
        (pub / OBJECTS).write_text("not a directory\n")
    with capture_logs() as logs:
        outcome = publisher.build()
        _log_outcome(outcome, "test")
    assert (outcome.result, outcome.reason) == (result, reason), outcome.summary()
    assert outcome.to_json()["reason"] == str(reason)
    (line,) = [e for e in logs if e["event"] == "publish"]
    assert line["reason"] == str(reason) and line["log_level"] == "error"
    assert SECRET not in repr(logs) and SECRET not in outcome.summary()
    assert head_of(pub) == good  # not even re-confirmed

    state = PublisherState.found(good, None)
    metrics = PublishMetrics(state)
    state.record(outcome.result, outcome.head, None)
    metrics.observe(outcome.result, outcome.reason, 0.01)
    text = metrics.render().decode()
    assert metric(text, "syncagent_publish_failures_total", reason=str(reason)) == 1
    assert metric(text, "syncagent_publish_generations_total", outcome=result) == 1
    assert metric(text, "syncagent_publish_last_build_ok") == 0


def test_metrics_follow_the_builds(source: Path, tmp_path: Path) -> None:
    pub = tmp_path / "publish"
    publisher = Publisher(settings_of(source, pub))
    state = PublisherState.found(None, None)
    metrics = PublishMetrics(state)
    text = metrics.render().decode()
    assert metric(text, "syncagent_publish_last_success_timestamp_seconds") == 0
    assert metric(text, "syncagent_publish_last_build_ok") == 1  # nothing failed yet
    for reason in ("validation", "not_initialized", "disk", "apply"):
        assert metric(text, "syncagent_publish_failures_total", reason=reason) == 0

    def observe(outcome: PublishOutcome) -> None:
        usage = publisher.usage() if outcome.head is not None else None
        state.record(outcome.result, outcome.head, usage)
        metrics.observe(outcome.result, outcome.reason, 0.2)

    observe(publisher.build())
    (source / LOCAL_INI).write_text("[proxy\n")
    observe(publisher.build())
    observe(PublishOutcome("moved", message="the source changed while it was published"))
    text = metrics.render().decode()
    assert metric(text, "syncagent_publish_last_build_ok") == 0  # a move changes nothing
    assert metric(text, "syncagent_publish_consecutive_failures") == 1
    (source / LOCAL_INI).write_text("[proxy]\nhealth-check-port=5590\n")
    observe(publisher.build())
    text = metrics.render().decode()
    head = head_of(pub)
    for outcome in ("published", "rejected", "moved"):
        want = 2 if outcome == "published" else 1
        assert metric(text, "syncagent_publish_generations_total", outcome=outcome) == want
    assert metric(text, "syncagent_publish_failures_total", reason="validation") == 1
    assert metric(text, "syncagent_publish_last_build_ok") == 1
    assert metric(text, "syncagent_publish_consecutive_failures") == 0
    assert metric(text, "syncagent_publish_head_sequence") == head.sequence
    assert metric(text, "syncagent_publish_last_success_timestamp_seconds") == head.checked_at
    assert metric(text, "syncagent_publish_duration_seconds_count") == 4
    objects = [p for p in (pub / OBJECTS).iterdir() if not p.name.startswith(".")]
    assert metric(text, "syncagent_publish_objects") == len(objects)
    on_disk = sum(p.stat().st_size for d in (OBJECTS, MANIFESTS) for p in (pub / d).iterdir())
    assert metric(text, "syncagent_publish_dir_bytes") == on_disk + (pub / HEAD_NAME).stat().st_size


def test_liveness_fails_only_for_a_stopped_loop_or_a_build_past_stale_after() -> None:
    state = PublisherState(running=True)
    assert all(c.ok for c in state.liveness(100.0))
    state.building_since = 100.0
    assert all(c.ok for c in state.liveness(100.0 + STALE_AFTER))
    assert not all(c.ok for c in state.liveness(101.0 + STALE_AFTER))
    state.building_since = None
    state.record("failed", None, None)  # a full disk is not a reason to restart
    assert all(c.ok for c in state.liveness(100.0))
    state.running = False
    assert [c.name for c in state.liveness(100.0) if not c.ok] == ["loop"]


def test_a_build_waits_for_another_publishers_build(source: Path, tmp_path: Path) -> None:
    """``publish --once`` beside the running publisher: one prune must not take objects the
    other is about to name."""
    pub = tmp_path / "publish"
    publisher = Publisher(settings_of(source, pub))
    built(publisher, "published")
    (source / LOCAL_INI).write_text("[proxy]\nhealth-check-port=5591\n")
    fd = os.open(pub, os.O_RDONLY | os.O_DIRECTORY)
    outcomes: list[PublishOutcome] = []
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        worker = threading.Thread(target=lambda: outcomes.append(publisher.build()))
        worker.start()
        worker.join(0.5)
        assert worker.is_alive() and outcomes == []
    finally:
        os.close(fd)
    worker.join(10)
    assert [o.result for o in outcomes] == ["published"]


def test_a_rescan_of_unchanged_bytes_is_not_validated_again(
    source: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The minute's rescan of a 10k-file tree re-validated every file: same bytes, same
    verdict. A changed file, or a tree that failed before, is validated again."""
    calls: list[int] = []

    def counting(*args: Any, **kwargs: Any) -> list[Problem]:
        calls.append(1)
        return validate.validate_tree(*args, **kwargs)

    monkeypatch.setattr(publishing, "validate_tree", counting)
    p = Publisher(settings_of(source, tmp_path / "pub"))
    built(p, "published")
    built(p, "unchanged")
    assert len(calls) == 1
    (source / LOCAL_INI).write_text("[proxy]\n[broken\n")
    assert p.build().result == "rejected"
    assert p.build().result == "rejected", "a rejected tree is judged again"
    assert len(calls) == 3
    (source / LOCAL_INI).write_text("[proxy]\nhealth-check-port=5599\n")
    built(p, "published")
    assert len(calls) == 4
