"""Tests for syncagent.local.plan: what to fetch, settle, the operations of an apply."""

from __future__ import annotations

import pytest

from syncagent.errors import Reason, SyncError
from syncagent.local.livetree import LiveEntry, LiveTree
from syncagent.local.manifest import Manifest, Record
from syncagent.local.plan import diff, plan_fetch
from syncagent.tree import Kind, RemoteEntry

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


def test_settle_deadline_counts_from_the_end_of_the_youngest_mtime_second() -> None:
    listing = {
        "a": RemoteEntry(Kind.FILE, 0o640, 1, int(NOW) - 1),
        "b": RemoteEntry(Kind.FILE, 0o640, 1, int(NOW)),
    }
    fp = plan_fetch(listing, {}, None, now=NOW, settle=2)
    assert fp.settled_at == int(NOW) + 2 + 1  # b's second, settle, the mtime's resolution
    assert fp.settle_wait(NOW) == pytest.approx(fp.settled_at - NOW + 0.05)
    assert fp.settle_wait(fp.settled_at + 10) == pytest.approx(0.1 + 0.05)  # never 0: relist
    assert plan_fetch(listing, {}, None, now=NOW + 60, settle=2).settled_at is None


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


def test_verified_files_are_fetched_even_when_clean_and_say_so() -> None:
    manifest = Manifest("g", listed_at=NOW, records={"a": _rec("x"), "b": _rec("y")})
    listing = {
        "a": RemoteEntry(Kind.FILE, 0o640, 10, 100),
        "b": RemoteEntry(Kind.FILE, 0o640, 10, 100),
    }
    live = {"a": _live(), "b": _live()}
    fp = plan_fetch(listing, live, manifest, now=NOW + 100, settle=2, verify=frozenset({"a"}))
    assert fp.fetch == ("a",) and fp.verify_only == ("a",)
    assert "a" not in fp.known and fp.known["b"].sha256 == "y"
    assert fp.unsettled == ()
    # a file that changed anyway is a change, not a verification
    listing["a"] = RemoteEntry(Kind.FILE, 0o640, 11, 100)
    fp = plan_fetch(listing, live, manifest, now=NOW + 100, settle=2, verify=frozenset({"a"}))
    assert fp.fetch == ("a",) and fp.verify_only == ()
