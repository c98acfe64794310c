"""Pure decisions, no network or disk: excludes, planning, settings."""

from __future__ import annotations

import pytest

from syncagent.errors import Reason, SyncError, exit_code_for
from syncagent.excludes import PathFilter, compile_pattern, matches
from syncagent.livetree import LiveEntry, LiveTree
from syncagent.manifest import Manifest, Record, generation_id
from syncagent.plan import diff, plan_fetch
from syncagent.settings import FIELDS, load
from syncagent.tree import Kind, RemoteEntry, sanitise_mode

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
    sidecar = PathFilter.build("sidecar")
    assert sidecar.excluded("conf.d/node.ini", False)
    assert sidecar.excluded("xroad.properties", False)
    assert not sidecar.descend("gpghome") and not sidecar.descend("globalconf")
    assert not sidecar.excluded("db.properties", False)  # sidecar shares the DB: synced
    xlb = PathFilter.build("xlb")
    assert xlb.excluded("db.properties", False)
    assert not xlb.descend("jetty") and not xlb.descend("backup.d")
    assert not PathFilter.build("none").excluded("conf.d/node.ini", False)


def test_include_overrides_exclude_but_not_the_state_dir() -> None:
    pf = PathFilter.build(
        "sidecar", include=("/globalconf/instance-identifier",), protected=("/.syncagent/",)
    )
    assert pf.descend("globalconf")
    assert not pf.excluded("globalconf/instance-identifier", False)
    assert not PathFilter.build(
        "none", include=("/.syncagent/",), protected=("/.syncagent/",)
    ).descend(".syncagent")


def test_sanitised_modes_drop_special_and_world_write_bits() -> None:
    assert sanitise_mode(0o104777) == 0o775
    assert sanitise_mode(0o2640) == 0o640


# --- planning ---------------------------------------------------------------------------------

NOW = 1_700_000_000.0


def _rec(sha: str, size: int = 10, mtime: int = 100, mode: int = 0o640) -> Record:
    return Record(Kind.FILE, mode, sha, size=size, remote_mtime=mtime, ino=7, mtime_ns=5)


def _live(size: int = 10, mode: int = 0o640) -> LiveEntry:
    return LiveEntry(Kind.FILE, mode, size, ino=7, mtime_ns=5)


def test_clean_file_is_not_fetched_racy_or_changed_ones_are() -> None:
    manifest = Manifest(
        "g", listed_at=NOW, records={"a": _rec("x"), "b": _rec("y", mtime=int(NOW))}
    )
    listing = {
        "a": RemoteEntry(Kind.FILE, 0o640, 10, 100),
        "b": RemoteEntry(Kind.FILE, 0o640, 10, int(NOW)),
        "c": RemoteEntry(Kind.FILE, 0o640, 3, 100),
    }
    live = {"a": _live(), "b": _live()}
    fp = plan_fetch(listing, live, manifest, now=NOW + 100, settle=2)
    assert fp.fetch == ("b", "c")  # b: mtime within a second of the last listing; c: new
    assert fp.known["a"].sha256 == "x"
    assert fp.unsettled == ()


def test_drifted_live_file_loses_its_trust() -> None:
    manifest = Manifest("g", listed_at=NOW, records={"a": _rec("x")})
    listing = {"a": RemoteEntry(Kind.FILE, 0o640, 10, 100)}
    touched = {"a": LiveEntry(Kind.FILE, 0o640, 10, ino=7, mtime_ns=6)}
    assert plan_fetch(listing, touched, manifest, now=NOW, settle=0).fetch == ("a",)


def test_young_files_are_unsettled() -> None:
    listing = {"a": RemoteEntry(Kind.FILE, 0o640, 1, int(NOW) - 1)}
    fp = plan_fetch(listing, {}, None, now=NOW, settle=2)
    assert fp.unsettled == ("a",)
    assert plan_fetch(listing, {}, None, now=NOW + 1.5, settle=2).unsettled == ("a",)  # mtime floor
    assert plan_fetch(listing, {}, None, now=NOW + 5, settle=2).unsettled == ()
    assert plan_fetch(listing, {}, None, now=NOW, settle=0).unsettled == ()


def test_diff_orders_operations_and_commit_last() -> None:
    new = {
        "signer": Record(Kind.DIR, 0o750),
        "signer/keyconf.xml": _rec("k2"),
        "signer/softtoken": Record(Kind.DIR, 0o750),
        "signer/softtoken/B.p12": _rec("b"),
        "zz.ini": _rec("z", mode=0o600),
    }
    live = LiveTree(
        {
            "signer": LiveEntry(Kind.DIR, 0o750),
            "signer/keyconf.xml": _live(),
            "signer/softtoken": LiveEntry(Kind.DIR, 0o750),
            "signer/softtoken/A.p12": _live(),
            "zz.ini": _live(),
            "old": LiveEntry(Kind.DIR, 0o750),
            "old/deeper": LiveEntry(Kind.DIR, 0o750),
        }
    )
    known = {"signer/keyconf.xml": _rec("k1"), "zz.ini": _rec("z")}
    ch = diff(new, live, known, ("signer/keyconf.xml",))
    assert ch.place == ["signer/softtoken/B.p12", "signer/keyconf.xml"]  # keyconf after its .p12
    assert ch.remove == ["signer/softtoken/A.p12"]
    assert ch.rmdirs == ["old/deeper", "old"]  # deepest first
    assert ch.chmods == [("zz.ini", 0o600)]
    assert ch.added == ["signer/softtoken/B.p12"] and ch.modified == ["signer/keyconf.xml"]


def test_diff_refuses_to_replace_a_dir_holding_node_local_files() -> None:
    new = {"conf.d": _rec("file-now")}
    live = LiveTree({"conf.d": LiveEntry(Kind.DIR, 0o750)}, holds_local={"", "conf.d"})
    with pytest.raises(SyncError) as e:
        diff(new, live, {})
    assert e.value.reason is Reason.APPLY


def test_generation_id_ignores_local_identity() -> None:
    a = {"f": Record(Kind.FILE, 0o640, "h", size=1, remote_mtime=1, ino=1, mtime_ns=1)}
    b = {"f": Record(Kind.FILE, 0o640, "h", size=1, remote_mtime=9, ino=2, mtime_ns=2)}
    c = {"f": Record(Kind.FILE, 0o600, "h")}
    assert generation_id(a) == generation_id(b) != generation_id(c)


# --- settings ---------------------------------------------------------------------------------

BASE = {"primary.host": "p", "primary.known_hosts": "/k"}


def test_precedence_file_env_flag(tmp_path) -> None:  # type: ignore[no-untyped-def]
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        '[primary]\nhost = "from-file"\nport = 2200\nknown_hosts = "/k"\n'
        '[sync]\ninterval = 30\nexclude = ["/nginx"]\n'
    )
    s, problems = load(
        cfg,
        env={"SYNCAGENT_SYNC_INTERVAL": "45", "SYNCAGENT_PRIMARY_PORT": "2201"},
        overrides={"primary.port": "2202"},
    )
    assert s is not None, problems
    assert s["primary.host"] == "from-file" and s.sources["primary.host"] == str(cfg)
    assert (
        s["sync.interval"] == 45.0 and s.sources["sync.interval"] == "env SYNCAGENT_SYNC_INTERVAL"
    )
    assert s["primary.port"] == 2202 and s.sources["primary.port"] == "flag --primary-port"
    assert s["sync.exclude"] == ("/nginx",)
    assert s["sync.state_dir"] == "/etc/xroad/.syncagent"


def test_xroad_primary_dns_is_the_fallback_host() -> None:
    s, _ = load(
        None, env={"XROAD_PRIMARY_DNS": "primary-svc", "SYNCAGENT_PRIMARY_KNOWN_HOSTS": "/k"}
    )
    assert s is not None and s["primary.host"] == "primary-svc"
    s, _ = load(
        None,
        env={
            "XROAD_PRIMARY_DNS": "primary-svc",
            "SYNCAGENT_PRIMARY_HOST": "x",
            "SYNCAGENT_PRIMARY_KNOWN_HOSTS": "/k",
        },
    )
    assert s is not None and s["primary.host"] == "x"


@pytest.mark.parametrize(
    ("key", "value", "fragment"),
    [
        ("SYNCAGENT_SYNC_INTERVAL", "-5", "must be > 0"),
        ("SYNCAGENT_PRIMARY_PORT", "70000", "port must be"),
        ("SYNCAGENT_PRIMARY_HOST_KEY_POLICY", "trust-me", "must be one of"),
        ("SYNCAGENT_SYNC_PROFILE", "k8s", "must be one of"),
        ("SYNCAGENT_SYNC_MAX_TOTAL_BYTES", "lots", "expected a size"),
        ("SYNCAGENT_SYNC_OWNER", "no-such-user-here", "no such user"),
        ("SYNCAGENT_SYNC_TARGET", "relative/path", "absolute path"),
        ("SYNCAGENT_HTTP_LISTEN", "9101", "HOST:PORT"),
    ],
)
def test_each_bad_value_is_named_with_its_source(key: str, value: str, fragment: str) -> None:
    env = {"SYNCAGENT_PRIMARY_HOST": "p", "SYNCAGENT_PRIMARY_KNOWN_HOSTS": "/k", key: value}
    s, problems = load(None, env=env)
    assert s is None
    assert len(problems) == 1, problems
    assert f"env {key}" in problems[0].path and fragment in problems[0].message
    assert problems[0].reason is Reason.CONFIG


def test_all_problems_are_reported_at_once(tmp_path) -> None:  # type: ignore[no-untyped-def]
    cfg = tmp_path / "c.toml"
    cfg.write_text('[primary]\nport = "x"\nbogus = 1\n[sync]\nsettle = -1\n')
    s, problems = load(cfg, env={})
    assert s is None
    where = " | ".join(p.path for p in problems)
    for expected in (
        "primary.port",
        "primary.bogus",
        "sync.settle",
        "primary.host",
        "primary.known_hosts",
    ):
        assert expected in where


def test_broken_toml_names_the_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    cfg = tmp_path / "c.toml"
    cfg.write_text("[primary\n")
    _, problems = load(cfg, env={})
    assert problems and str(cfg) in problems[0].path and "TOML" in problems[0].message


def test_every_field_has_env_and_flag_names() -> None:
    names = {f.env for f in FIELDS}
    assert "SYNCAGENT_PRIMARY_HOST" in names and "SYNCAGENT_SYNC_COMMIT_LAST" in names
    assert len(names) == len(FIELDS)


def test_exit_codes_follow_reasons() -> None:
    assert exit_code_for(Reason.CONFIG) == 2
    assert exit_code_for(Reason.VALIDATION) == 3
    assert exit_code_for(Reason.NOT_INITIALIZED) == 4
    assert exit_code_for(Reason.HOST_KEY) == 1


def test_readme_documents_every_key_and_exit_code() -> None:
    from pathlib import Path

    readme = (Path(__file__).resolve().parent.parent / "README.md").read_text()
    missing = [f.name for f in FIELDS if f"`{f.name}`" not in readme or f.env not in readme]
    assert missing == []
    for code in range(5):
        assert f"\n| {code} |" in readme
