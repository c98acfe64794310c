"""HEADs for the pure rules' tests, on both sides of the publish dir."""

from __future__ import annotations

from syncagent.publishdir import Head

NOW = 1_800_000_000.0
A, B = "a" * 64, "b" * 64


def head(seq: int, gen: str = "0" * 16, checked: float = NOW) -> Head:
    return Head(gen, seq, A, checked, checked)
