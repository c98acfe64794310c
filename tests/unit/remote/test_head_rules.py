"""The secondary's rules for a HEAD it read (remote/head_rules.py): follow, refuse, walk."""

from __future__ import annotations

from support.heads import NOW, A, B, head

from syncagent.local.livetree import LiveEntry, LiveTree
from syncagent.local.manifest import Manifest, Record
from syncagent.local.state import Seen
from syncagent.publishdir import STALE_AFTER
from syncagent.remote.head_rules import (
    WALKING_POLL,
    HeadVerdict,
    after_head_read,
    head_unchanged,
    judge_head,
    live_matches,
    plan_objects,
    poll_due,
    poll_wants_sync,
)
from syncagent.tree import Kind, RemoteEntry


def test_judging_a_head() -> None:
    seen = Seen("0" * 16, 10, "1" * 16)
    assert judge_head(head(10), seen, "1" * 16, NOW) is HeadVerdict.CURRENT
    assert judge_head(head(10), seen, "2" * 16, NOW) is HeadVerdict.NEW  # live moved (walk, drift)
    assert judge_head(head(11), seen, "1" * 16, NOW) is HeadVerdict.NEW
    assert judge_head(head(9), seen, "1" * 16, NOW) is HeadVerdict.ROLLBACK
    assert judge_head(head(10, "f" * 16), seen, "1" * 16, NOW) is HeadVerdict.ROLLBACK
    assert judge_head(head(1), None, None, NOW) is HeadVerdict.NEW
    old = NOW - STALE_AFTER - 1
    assert judge_head(head(11, checked=old), seen, None, NOW) is HeadVerdict.STALE


def test_only_objects_the_secondary_lacks_are_fetched() -> None:
    listing = {
        "same": RemoteEntry(Kind.FILE, 0o644, 1),
        "changed": RemoteEntry(Kind.FILE, 0o644, 1),
        "edited": RemoteEntry(Kind.FILE, 0o644, 1),
        "new": RemoteEntry(Kind.FILE, 0o644, 1),
        "link": RemoteEntry(Kind.SYMLINK, 0o777, link="same"),
    }
    hashes = {"same": A, "changed": B, "edited": A, "new": A}
    live = {
        "same": LiveEntry(Kind.FILE, 0o644, 1, ino=1, mtime_ns=5),
        "changed": LiveEntry(Kind.FILE, 0o644, 1, ino=2, mtime_ns=5),
        "edited": LiveEntry(Kind.FILE, 0o644, 1, ino=3, mtime_ns=6),  # not what was recorded
    }
    record = Manifest(
        "x",
        0.0,
        {
            p: Record(Kind.FILE, 0o644, A, size=1, ino=i, mtime_ns=5)
            for i, p in enumerate(("same", "changed", "edited"), 1)
        },
    )
    wanted, known = plan_objects(listing, hashes, live, record)
    assert wanted == {"changed": B, "edited": A, "new": A}
    assert set(known) == {"same", "link"}


def test_live_matches_only_the_exact_record() -> None:
    rec = Manifest("x", 0.0, {"f": Record(Kind.FILE, 0o644, A, size=1, ino=1, mtime_ns=5)})
    tree = LiveTree({"f": LiveEntry(Kind.FILE, 0o644, 1, ino=1, mtime_ns=5)})
    assert live_matches(tree, rec)
    assert not live_matches(LiveTree({"f": LiveEntry(Kind.FILE, 0o600, 1, 1, 5)}), rec)
    assert not live_matches(LiveTree({**tree.entries, "g": LiveEntry(Kind.DIR, 0o755)}), rec)


def test_a_head_stat_is_enough_only_after_a_confirming_read() -> None:
    first = after_head_read(None, 120, 1000, ("g1", 1), sent_at=10.0, answered_at=10.01)
    assert not head_unchanged(first, 120, 1000), "a rewrite within second 1000 could hide"
    soon = after_head_read(first, 120, 1000, ("g1", 1), sent_at=10.5, answered_at=10.51)
    assert not head_unchanged(soon, 120, 1000), "sent within a second: not yet confirming"
    later = after_head_read(soon, 120, 1000, ("g1", 1), sent_at=11.2, answered_at=11.21)
    assert head_unchanged(later, 120, 1000)
    assert later.named == ("g1", 1)
    assert not head_unchanged(later, 120, 1001), "a new mtime is a new HEAD"
    assert not head_unchanged(later, 121, 1000), "a new size is a new HEAD"


def test_a_head_that_named_something_else_starts_over() -> None:
    first = after_head_read(None, 120, 1000, ("g1", 1), sent_at=10.0, answered_at=10.01)
    other = after_head_read(first, 120, 1000, ("g2", 2), sent_at=11.5, answered_at=11.51)
    assert other.named == ("g2", 2) and not other.confirmed
    assert other.read_at == 11.51
    assert not head_unchanged(None, 120, 1000)


X, Y = ("a" * 16, 7), ("b" * 16, 8)


def test_what_a_poll_of_head_asks_for() -> None:
    following = [
        (X, X, X, False),  # the HEAD followed: nothing to do
        (X, X, Y, True),  # a new HEAD
        (X, X, None, True),  # HEAD gone or invalid: the walk takes over
    ]
    walking = [
        (None, None, None, False),  # no publisher: no syncs from polls
        (None, X, X, False),  # the stale HEAD the walk began with
        (None, None, X, True),  # a publisher started
        (None, X, Y, True),  # a stopped publisher came back with a fresh sequence
        (None, X, None, False),  # the stale HEAD went away: still the walk
    ]
    got = [
        (followed, before, named, poll_wants_sync(followed, before, named))
        for followed, before, named, _ in following + walking
    ]
    assert got == following + walking


def test_while_walking_head_is_looked_for_at_a_slower_pace() -> None:
    assert poll_due(True, None, 5.0) and poll_due(True, 4.9, 5.0)  # following: every tick
    assert poll_due(False, None, 5.0)  # the first tick after the walk began
    assert not poll_due(False, 5.0, 5.0 + WALKING_POLL - 0.1)
    assert poll_due(False, 5.0, 5.0 + WALKING_POLL)
