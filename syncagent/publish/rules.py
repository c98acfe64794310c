"""Pure decisions of the publisher: sequence numbers, what it does with the HEAD it found, and
what it keeps (the secondary's decisions about a HEAD are remote/head_rules.py).

No I/O: the publisher feeds in what it read and acts on the answer, so the rules (a sequence
never goes back, a secondary mid-fetch never meets a missing object) are testable alone.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass

from syncagent.publishdir import Head


def next_sequence(previous: int | None, now: float) -> int:
    """The sequence of a new generation: after the previous one, and never below the wall
    clock in milliseconds, so a publisher restarted with an emptied publish dir still never
    goes backwards (as long as its clock does not)."""
    floor = int(now * 1000)
    return floor if previous is None else max(previous + 1, floor)


class HeadAction(enum.StrEnum):
    CONFIRM = "confirm"  # only checked_at moves: this publisher wrote that HEAD itself
    RESTAMP = "restamp"  # same generation under a new sequence
    PUBLISH = "publish"  # a new generation


def head_action(
    previous: Head | None, generation: str, manifest_intact: bool, written: int | None
) -> HeadAction:
    """What a build whose source is ``generation`` does with the HEAD it found.

    A publisher confirms only a HEAD it wrote itself (``written``: the sequence it last wrote).
    Any other HEAD naming the same generation (found at start, restored from a backup, left by
    another publisher) may be older than what secondaries already applied, and they refuse a
    sequence that goes back: it gets a fresh sequence instead, so a restored publish dir heals
    at the next start and never holds secondaries on ``publish_rollback``.
    """
    if previous is None or previous.generation != generation or not manifest_intact:
        return HeadAction.PUBLISH
    if written is not None and previous.sequence == written:
        return HeadAction.CONFIRM
    return HeadAction.RESTAMP


@dataclass(frozen=True)
class Published:
    """One generation in the publish dir: its manifest and the objects it names."""

    sequence: int
    manifest: str
    objects: frozenset[str]


@dataclass(frozen=True)
class Retention:
    manifests: frozenset[str]
    objects: frozenset[str]


def retained(generations: Iterable[Published], keep: int, current: str | None = None) -> Retention:
    """The manifests and objects of the newest ``keep`` generations, always counting the one
    HEAD names (``current``) among them even when a manifest with a higher sequence lies around
    (one written just before a crash, before its HEAD): everything a secondary that read any of
    their HEADs may still fetch."""
    ordered = sorted(generations, key=lambda g: g.sequence, reverse=True)
    newest = [g for g in ordered if g.manifest == current][:1]
    newest += [g for g in ordered if g.manifest != current][: max(keep, 1) - len(newest)]
    return Retention(
        frozenset(g.manifest for g in newest),
        frozenset(o for g in newest for o in g.objects),
    )
