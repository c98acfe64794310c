"""Tests for syncagent.excludes: rsync-style patterns, profiles, the path filter."""

from __future__ import annotations

import pytest

from syncagent.excludes import PathFilter, compile_pattern, matches
from syncagent.xroad.paths import PROFILES

# --- excludes ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "path", "is_dir", "expected"),
    [
        ("/xroad.properties", "xroad.properties", False, True),
        ("/xroad.properties", "sub/xroad.properties", False, False),  # anchored
        ("db.properties", "db.properties", False, True),
        ("db.properties", "a/b/db.properties", False, True),  # unanchored: any depth
        ("*.tmp", "signer/tmpconf123.tmp", False, True),
        ("*.tmp", "signer/tmpconf123.tmp.bak", False, False),
        ("/globalconf/", "globalconf", True, True),
        ("/globalconf/", "globalconf", False, False),  # trailing slash: directories only
        ("/conf.d/node.ini", "conf.d/node.ini", False, True),
        ("/conf.d/*.ini", "conf.d/addons/x.ini", False, False),  # * stays in one component
        ("/conf.d/**.ini", "conf.d/addons/x.ini", False, True),
    ],
)
def test_rsync_style_patterns(pattern: str, path: str, is_dir: bool, expected: bool) -> None:
    assert matches(compile_pattern(pattern), path, is_dir) is expected


def test_profiles_keep_node_local_paths_out() -> None:
    sidecar = PathFilter.build(PROFILES["sidecar"])
    assert sidecar.excluded("conf.d/node.ini", False)
    assert sidecar.excluded("xroad.properties", False)
    assert not sidecar.descend("gpghome") and not sidecar.descend("globalconf")
    assert not sidecar.excluded("db.properties", False)  # sidecar shares the DB: synced
    xlb = PathFilter.build(PROFILES["xlb"])
    assert xlb.excluded("db.properties", False)
    assert not xlb.descend("jetty") and not xlb.descend("backup.d")
    assert not PathFilter.build().excluded("conf.d/node.ini", False)


def test_include_overrides_exclude_but_not_the_state_dir() -> None:
    pf = PathFilter.build(
        PROFILES["sidecar"],
        include=("/globalconf/instance-identifier",),
        protected=("/.syncagent/",),
    )
    assert pf.descend("globalconf")
    assert not pf.excluded("globalconf/instance-identifier", False)
    assert not PathFilter.build(include=("/.syncagent/",), protected=("/.syncagent/",)).descend(
        ".syncagent"
    )
