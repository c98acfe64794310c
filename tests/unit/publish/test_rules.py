"""The publisher's pure rules (publish/rules.py): sequences, retention, what to do with HEAD."""

from __future__ import annotations

from support.heads import NOW, head

from syncagent.publish.rules import (
    HeadAction,
    Published,
    Retention,
    head_action,
    next_sequence,
    retained,
)


def test_sequence_follows_the_previous_and_never_falls_below_the_clock() -> None:
    assert next_sequence(None, NOW) == int(NOW * 1000)
    assert next_sequence(5, NOW) == int(NOW * 1000)
    ahead = int(NOW * 1000) + 10
    assert next_sequence(ahead, NOW) == ahead + 1


def test_retention_keeps_the_newest_generations_objects() -> None:
    gens = [Published(1, "m1", frozenset({"o1"})), Published(3, "m3", frozenset({"o3", "o2"}))]
    gens.append(Published(2, "m2", frozenset({"o2"})))
    kept = retained(gens, 2)
    assert kept.manifests == {"m3", "m2"} and kept.objects == {"o3", "o2"}
    assert retained(gens, 0).manifests == {"m3"}  # the HEAD's own is always kept


def test_retention_always_counts_heads_own_generation() -> None:
    """A manifest with a higher sequence than HEAD's (written before a crash, before its HEAD)
    never pushes out the one HEAD names."""
    gens = [Published(5, "orphan", frozenset({"o5"})), Published(3, "head", frozenset({"o3"}))]
    gens.append(Published(2, "older", frozenset({"o2"})))
    assert retained(gens, 1, "head") == Retention(frozenset({"head"}), frozenset({"o3"}))
    kept = retained(gens, 2, "head")
    assert kept.manifests == {"head", "orphan"} and kept.objects == {"o3", "o5"}
    assert retained(gens, 1, None).manifests == {"orphan"}


def test_a_publisher_confirms_only_the_head_it_wrote() -> None:
    gen = "0" * 16
    found = head(40, gen)
    assert head_action(found, gen, True, 40) is HeadAction.CONFIRM
    assert head_action(found, gen, True, None) is HeadAction.RESTAMP  # the first build of a start
    assert head_action(found, gen, True, 55) is HeadAction.RESTAMP  # put back under it
    assert head_action(found, "1" * 16, True, 40) is HeadAction.PUBLISH
    assert head_action(found, gen, False, 40) is HeadAction.PUBLISH  # its manifest is gone
    assert head_action(None, gen, False, None) is HeadAction.PUBLISH


# ---- the daemon's HEAD poll: a stat, and a read only when the stat cannot vouch -------------
