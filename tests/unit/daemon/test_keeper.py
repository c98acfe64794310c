"""Tests for syncagent.daemon.keeper: backoff with full jitter, keepalive."""

from __future__ import annotations

import random

from syncagent.daemon.keeper import backoff_ceiling, backoff_delay, keepalive_for

# ---- backoff ---------------------------------------------------------------------------------


def test_backoff_ceiling_doubles_from_one_second_to_the_cap() -> None:
    assert [backoff_ceiling(a) for a in range(8)] == [1, 2, 4, 8, 16, 32, 60, 60]
    assert backoff_ceiling(10_000) == 60  # no overflow on a primary that is gone for days


def test_backoff_delay_is_full_jitter_within_the_ceiling() -> None:
    rng = random.Random(42)
    for attempt in range(10):
        delays = [backoff_delay(attempt, rng=rng) for _ in range(200)]
        assert all(0 <= d <= backoff_ceiling(attempt) for d in delays)
        # full jitter: spread over the whole range, not clustered at the ceiling
        assert min(delays) < 0.2 * backoff_ceiling(attempt)
        assert max(delays) > 0.8 * backoff_ceiling(attempt)


def test_backoff_delay_is_reproducible_with_a_seeded_rng() -> None:
    a = [backoff_delay(i, rng=random.Random(1)) for i in range(5)]
    b = [backoff_delay(i, rng=random.Random(1)) for i in range(5)]
    assert a == b
    assert backoff_delay(3, base=0.5, cap=2, rng=random.Random(0)) <= 2


def test_keepalive_follows_the_interval_within_bounds() -> None:
    assert keepalive_for(0.5) == 1.0
    assert keepalive_for(5) == 5.0
    assert keepalive_for(60) == 15.0
