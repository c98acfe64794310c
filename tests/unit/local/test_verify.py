"""Tests for syncagent.local.verify: the rotating share of files a sync compares by content."""

from __future__ import annotations

import pytest

from syncagent.local.verify import Cursor, plan_share

FILES = [f"f{i:03d}" for i in range(100)]
HOUR = 3600.0


def test_the_first_sync_starts_the_clock_and_verifies_nothing() -> None:
    share = plan_share(FILES, Cursor(), now=1000.0, interval=HOUR)
    assert share.paths == () and share.next == Cursor("", 1000.0, None)
    assert not share.completes_pass


def test_each_sync_takes_the_share_its_elapsed_time_is_due() -> None:
    start = Cursor("", 0.0, None)  # one file is due every 36 s
    share = plan_share(FILES, start, now=60.0, interval=HOUR)
    assert share.paths == ("f000",)
    assert share.next == Cursor("f000", 36.0, None)  # the other 24 s count towards the next
    nxt = plan_share(FILES, share.next, now=120.0, interval=HOUR)
    assert nxt.paths == ("f001", "f002")
    assert nxt.next.stepped_at == 108.0


def test_a_sync_soon_after_another_verifies_nothing_and_keeps_the_clock() -> None:
    cursor = Cursor("f010", 100.0, None)
    share = plan_share(FILES, cursor, now=135.0, interval=HOUR)
    assert share.paths == () and share.next == cursor


def test_a_pass_covers_every_file_within_the_interval_at_one_sync_a_minute() -> None:
    seen: list[str]
    passes: list[float]
    cursor, seen, passes, now = Cursor("", 0.0, None), [], [], 0.0
    while not passes:
        now += 60.0
        share = plan_share(FILES, cursor, now=now, interval=HOUR)
        seen += share.paths
        cursor = share.next
        if share.completes_pass:
            passes.append(now)
    assert sorted(seen) == FILES and len(seen) == len(set(seen))
    assert passes[0] <= HOUR and cursor.last_full_pass == passes[0]


def test_files_added_mid_pass_do_not_shift_the_cursor() -> None:
    cursor = Cursor("f049", 0.0, None)
    more = sorted([*FILES, "f0495", "a-new"])
    share = plan_share(more, cursor, now=36.0, interval=HOUR)  # 1 of 102 due
    assert share.paths == ("f0495",)


def test_a_long_pause_verifies_the_rest_of_the_pass_not_more() -> None:
    share = plan_share(FILES, Cursor("f089", 0.0, 5.0), now=10 * HOUR, interval=HOUR)
    assert share.paths == tuple(FILES[90:]) and share.completes_pass
    assert share.next == Cursor("", 10 * HOUR, 10 * HOUR)


@pytest.mark.parametrize(("interval", "everything"), [(0.0, False), (HOUR, True)])
def test_everything_now(interval: float, everything: bool) -> None:
    share = plan_share(
        FILES, Cursor("f010", 5.0, None), now=9.0, interval=interval, everything=everything
    )
    assert share.paths == tuple(FILES) and share.completes_pass
    assert share.next == Cursor("", 9.0, 9.0)


def test_cursor_json_roundtrip_and_damage() -> None:
    c = Cursor("conf.d/local.ini", 1.5, 2.5)
    assert Cursor.from_json(c.to_json()) == c
    assert Cursor.from_json({"after": 3, "stepped_at": "x"}) == Cursor()
