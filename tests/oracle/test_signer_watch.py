"""The signer's live reload, with the real consumer: a JDK WatchService registered on
``signer/`` exactly as X-Road's FileWatcherRunner registers it must see every keyconf.xml
change the agent applies (a sync, a rollback, a drift repair, a published generation) and
still be valid after 50 applies. A watch that went deaf is a secondary signing with old keys
until someone restarts it, and nothing else would notice."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from support.config import publish_settings, settings_for
from support.readers import Harness, KeyconfWatcher, WatchEvent
from support.sshd import Sshd
from support.trees import age

from syncagent.engine import sync
from syncagent.local.rollback import rollback
from syncagent.publish.builder import publish_once
from syncagent.report import Outcome
from syncagent.settings import Settings

KEYCONF = "signer/keyconf.xml"
APPLIES = 50


def keyconf_create(e: WatchEvent) -> bool:
    """An apply renames keyconf.xml into signer/: the create event X-Road's watcher acts on."""
    return e.kind == "ENTRY_CREATE" and e.name == "keyconf.xml"


def touch_keyconf(primary: Path, n: int) -> None:
    """A change of keyconf.xml's bytes, as the signer's own save makes one (a new size each
    time: age() gives every file the same old mtime, and the walk trusts size and mtime)."""
    path = primary / KEYCONF
    text = path.read_text().split("<!-- edit")[0].rstrip("\n")
    path.write_text(text + f"\n<!-- edit {'.' * (n + 1)} -->\n")


def applied(settings: Settings) -> str:
    result = asyncio.run(sync(settings))
    assert result.outcome is Outcome.APPLIED, result.summary()
    assert KEYCONF in result.modified, result.summary()
    assert result.generation is not None
    return result.generation


def seen(watcher: KeyconfWatcher, pred: Callable[[WatchEvent], bool], what: str) -> None:
    event = watcher.wait_for(pred, timeout=20)
    assert event.target, what
    assert watcher.valid, f"the watch key is no longer valid after {what}"
    watcher.clear()


def test_every_apply_reaches_the_signers_watch(
    oracle: Harness, sshd: Sshd, primary_tree: Path, target: Path
) -> None:
    settings = settings_for(sshd, primary_tree, target, sync__keep_generations="3")
    assert asyncio.run(sync(settings)).outcome is Outcome.APPLIED
    generations = []
    with KeyconfWatcher(target / "signer") as watcher:
        for n in range(APPLIES):
            touch_keyconf(primary_tree, n)
            age(primary_tree)
            generations.append(applied(settings))
            seen(watcher, keyconf_create, f"sync {n + 1}")

        back = asyncio.run(rollback(settings, generations[-2]))
        assert back.error is None, back.error
        seen(watcher, keyconf_create, "a rollback")

        with (target / KEYCONF).open("a") as f:  # an operator's in-place edit: a modify
            f.write("<!-- drift -->\n")
        watcher.wait_for(lambda e: e.kind == "ENTRY_MODIFY" and e.name == "keyconf.xml")
        watcher.clear()
        repaired = asyncio.run(sync(settings))
        assert repaired.outcome is Outcome.APPLIED, repaired.summary()
        assert KEYCONF in repaired.modified
        seen(watcher, keyconf_create, "a drift repair")
        assert (target / KEYCONF).read_bytes() == (primary_tree / KEYCONF).read_bytes()
        assert [e for e in watcher.events() if not e.target] == []


def test_a_followed_head_reaches_the_signers_watch(
    oracle: Harness, sshd: Sshd, primary_tree: Path, target: Path, publish_dir: Path
) -> None:
    settings = publish_settings(sshd, primary_tree, target, publish_dir)
    assert asyncio.run(publish_once(settings)).result == "published"
    assert asyncio.run(sync(settings)).source == "published"
    with KeyconfWatcher(target / "signer") as watcher:
        for n in range(3):
            touch_keyconf(primary_tree, n)
            assert asyncio.run(publish_once(settings)).result == "published"
            result = asyncio.run(sync(settings))
            assert result.source == "published" and KEYCONF in result.modified, result.summary()
            seen(watcher, keyconf_create, f"published generation {n + 1}")
