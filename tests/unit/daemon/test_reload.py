"""Tests for syncagent.daemon.reload: rule matching, changed paths, per-host spread."""

from __future__ import annotations

import pytest

from syncagent.daemon.reload import changed_paths, matching_paths, rule_matches, spread_delay
from syncagent.report import Outcome, SyncResult
from syncagent.settings import ReloadRule

# ---- reload rules ----------------------------------------------------------------------------

RULE = ReloadRule("proxy", ("/conf.d/", "/ssl/internal.*", "*.p12"), ("true",))


@pytest.mark.parametrize(
    ("path", "hit"),
    [
        ("conf.d/local.ini", True),
        ("conf.d/addons/message-log.ini", True),
        ("ssl/internal.key", True),
        ("ssl/proxy-ui-api.key", False),
        ("signer/softtoken/ABC.p12", True),
        ("signer/keyconf.xml", False),
        ("services/local.conf", False),
    ],
)
def test_rule_matches_paths_and_everything_below_a_directory(path: str, hit: bool) -> None:
    assert rule_matches(RULE, path) is hit


def test_changed_paths_and_matching() -> None:
    result = SyncResult(
        Outcome.APPLIED,
        added=["signer/softtoken/A.p12"],
        modified=["signer/keyconf.xml", "conf.d/local.ini"],
        removed=["ssl/internal.crt"],
    )
    assert changed_paths(result) == sorted(
        ["signer/softtoken/A.p12", "signer/keyconf.xml", "conf.d/local.ini", "ssl/internal.crt"]
    )
    assert matching_paths(RULE, changed_paths(result)) == [
        "conf.d/local.ini",
        "signer/softtoken/A.p12",
        "ssl/internal.crt",
    ]


def test_spread_is_stable_per_host_and_spreads_hosts() -> None:
    assert spread_delay(0, "a") == 0
    assert spread_delay(30, "secondary-0") == spread_delay(30, "secondary-0")
    delays = {round(spread_delay(30, f"secondary-{i}"), 3) for i in range(20)}
    assert len(delays) == 20 and all(0 <= d < 30 for d in delays)
    assert 0 <= spread_delay(10) < 10  # this host's name
