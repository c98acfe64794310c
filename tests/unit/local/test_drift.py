"""Tests for syncagent.local.drift: which events are drift, held while an apply runs."""

from __future__ import annotations

from pathlib import Path

from watchfiles import Change

from syncagent.excludes import PathFilter
from syncagent.local.drift import DriftWatcher, drifted, managed_path
from syncagent.local.manifest import Manifest, Record
from syncagent.local.state import StateDir
from syncagent.tree import Kind
from syncagent.xroad.paths import PROFILES

# ---- drift filtering -------------------------------------------------------------------------


def test_managed_path_skips_node_local_and_state_dir(tmp_path: Path) -> None:
    pf = PathFilter.build(PROFILES["sidecar"], protected=("/.syncagent/",))
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "globalconf").mkdir()
    (tmp_path / ".syncagent").mkdir()
    for rel in ("conf.d/local.ini", "conf.d/node.ini", "globalconf/x", ".syncagent/status.json"):
        (tmp_path / rel).write_text("x")

    def m(rel: str) -> str | None:
        return managed_path(tmp_path, pf, str(tmp_path / rel))

    assert m("conf.d/local.ini") == "conf.d/local.ini"
    assert m("conf.d/node.ini") is None
    assert m("globalconf/x") is None
    assert m("globalconf") is None
    assert m(".syncagent/status.json") is None
    assert m(".syncagent") is None
    assert m("xroad.properties") is None
    assert m("signer/keyconf.xml") == "signer/keyconf.xml"  # deleted: still ours
    assert managed_path(tmp_path, pf, "/elsewhere/file") is None
    assert managed_path(tmp_path, pf, str(tmp_path)) is None


def test_drifted_compares_live_entries_with_the_record(tmp_path: Path) -> None:
    (tmp_path / "conf.d").mkdir()
    f = tmp_path / "conf.d/local.ini"
    f.write_text("[a]\n")
    st = f.stat()
    records = {
        "conf.d": Record(Kind.DIR, 0o750),
        "conf.d/local.ini": Record(
            Kind.FILE, 0o640, "x", size=st.st_size, ino=st.st_ino, mtime_ns=st.st_mtime_ns
        ),
        "gone.ini": Record(Kind.FILE, 0o640, "y", size=1),
    }
    manifest = Manifest("g1", 0.0, records)
    paths = ["conf.d", "conf.d/local.ini", "gone.ini", "never-recorded-never-there"]
    assert drifted(tmp_path, manifest, paths) == ["gone.ini"]
    f.write_text("[a]\nhand=1\n")
    (tmp_path / "extra.ini").write_text("")
    assert drifted(tmp_path, manifest, [*paths, "extra.ini"]) == [
        "conf.d/local.ini",
        "extra.ini",
        "gone.ini",
    ]


async def test_drift_watcher_holds_events_while_an_apply_runs(tmp_path: Path) -> None:
    store = StateDir(tmp_path / "state")
    store.ensure()
    target = tmp_path / "t"
    target.mkdir()
    (target / "a.ini").write_text("x")
    st = (target / "a.ini").stat()
    rec = Record(Kind.FILE, 0o644, "h", size=st.st_size, ino=st.st_ino, mtime_ns=st.st_mtime_ns)
    store.write_current(Manifest("g1", 0.0, {"a.ini": rec}))
    seen: list[list[str]] = []
    busy = [True]
    watcher = DriftWatcher(target, PathFilter.build(), store, seen.append, lambda: busy[0])
    (target / "b.ini").write_text("new")
    batch = {(Change.modified, str(target / "a.ini")), (Change.added, str(target / "b.ini"))}
    watcher.handle(batch)
    assert seen == []  # held: the apply in flight may be the author
    busy[0] = False
    assert watcher.evaluate() == ["b.ini"]
    assert seen == [["b.ini"]]
    watcher.handle({(Change.modified, str(target / "a.ini"))})
    assert seen == [["b.ini"]]  # a.ini is exactly what the record says: our own change
    watcher.close()


def test_drift_watch_leaves_the_state_dir_and_node_local_dirs_unwatched(tmp_path: Path) -> None:
    """Each applied sync adds a generation of directories to the state dir: watching it
    recursively grew the daemon's memory with every sync (bench soak)."""
    target = tmp_path / "t"
    for d in ("signer", "conf.d", ".syncagent/generations/g1/signer", "gpghome"):
        (target / d).mkdir(parents=True)
    (target / "db.properties").write_text("x")
    (target / "link").symlink_to("signer")
    pf = PathFilter.build(node_local=("/gpghome/",), protected=("/.syncagent/",))
    store = StateDir(target / ".syncagent")
    watcher = DriftWatcher(target, pf, store, lambda _: None, lambda: False)
    assert watcher.subtrees() == (target / "conf.d", target / "signer")
    watcher.close()
