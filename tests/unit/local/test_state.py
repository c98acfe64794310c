"""The state dir: the live generation's record, parsed once per change; pruning off the path."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from syncagent.errors import Reason, SyncError
from syncagent.local.manifest import Manifest, Record
from syncagent.local.state import StateDir
from syncagent.tree import Kind


def _manifest(gen: str, sha: str = "a" * 64) -> Manifest:
    return Manifest(gen, 1.0, {"a.ini": Record(Kind.FILE, 0o640, sha, size=1)})


def test_the_record_is_parsed_once_and_read_again_whenever_the_file_changes(
    tmp_path: Path,
) -> None:
    store = StateDir(tmp_path / "state")
    store.ensure()
    assert store.current() is None
    store.write_current(_manifest("g1"))
    first = store.current()
    assert first == _manifest("g1")
    assert store.current() is first  # no second parse of an unchanged file

    # Rewritten in place by hand, same size and same mtime: still read again.
    data = store.current_file.read_bytes()
    st = store.current_file.stat()
    store.current_file.write_bytes(data.replace(b'"g1"', b'"g2"'))
    os.utime(store.current_file, ns=(st.st_atime_ns, st.st_mtime_ns))
    again = store.current()
    assert again is not None and again.generation == "g2"


def test_make_current_renames_the_written_record_into_place(tmp_path: Path) -> None:
    store = StateDir(tmp_path / "state")
    store.ensure()
    store.write_current(_manifest("g1"))
    store.next_record.write_bytes(_manifest("g2", "b" * 64).dumps())
    store.make_current(store.next_record, None)
    assert not store.next_record.exists()
    assert store.current() == _manifest("g2", "b" * 64)


def test_pruned_generations_go_to_the_trash_until_it_is_emptied(tmp_path: Path) -> None:
    store = StateDir(tmp_path / "state")
    store.ensure()
    for i, gen in enumerate(["g1", "g2", "g3", "g4"]):
        (store.generation_dir(gen) / "signer").mkdir(parents=True)
        (store.generation_dir(gen) / "signer" / "keyconf.xml").write_text(gen)
        store.generation_record(gen).write_bytes(_manifest(gen).dumps())
        os.utime(store.generation_record(gen), (1000 + i, 1000 + i))
    store.prune("g4", keep=1)
    assert store.kept_generations() == ["g4", "g3"]
    assert sorted(p.name.split(".")[0] for p in store.trash.iterdir()) == ["g1", "g2"]
    assert not store.generation_record("g1").exists()
    store.empty_trash()
    assert list(store.trash.iterdir()) == []
    assert (store.generation_dir("g3") / "signer" / "keyconf.xml").read_text() == "g3"


def test_a_record_it_cannot_read_is_a_sync_error_and_stays_where_it_is(tmp_path: Path) -> None:
    """Not a bare OSError: callers that handle SyncError must not let it through (the daemon's
    sync worker died of a PermissionError here)."""
    state = StateDir(tmp_path)
    state.ensure()
    state.current_file.mkdir()  # unreadable as a file even to root
    with pytest.raises(SyncError) as e:
        state.current()
    assert e.value.reason is Reason.APPLY and "cannot read" in e.value.message
    assert state.current_file.is_dir()
