"""Tests for syncagent.tree: entries and modes."""

from __future__ import annotations

from syncagent.tree import sanitise_mode


def test_sanitised_modes_drop_special_and_world_write_bits() -> None:
    assert sanitise_mode(0o104777) == 0o775
    assert sanitise_mode(0o2640) == 0o640
