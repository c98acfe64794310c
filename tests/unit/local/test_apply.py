"""The journaled apply: the record becomes current by a rename, old journals still finish."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from syncagent.errors import SyncError
from syncagent.local import apply as applying
from syncagent.local.manifest import Manifest, Record
from syncagent.local.state import StateDir
from syncagent.tree import Kind


def _setup(tmp_path: Path) -> tuple[StateDir, Path, Path, Manifest]:
    store = StateDir(tmp_path / "state")
    store.ensure()
    target = tmp_path / "target"
    target.mkdir()
    gen_dir = store.generation_dir("g2")
    gen_dir.mkdir()
    (gen_dir / "a.ini").write_text("[a]\n")
    manifest = Manifest("g2", 5.0, {"a.ini": Record(Kind.FILE, 0o640, "f" * 64, size=4)})
    return store, target, gen_dir, manifest


def test_a_journal_names_next_json_and_the_apply_renames_it_to_current(tmp_path: Path) -> None:
    store, target, gen_dir, manifest = _setup(tmp_path)
    store.next_record.write_bytes(manifest.dumps())
    journal = applying.Journal(
        "g2", str(gen_dir), [["place", "a.ini"]], record=store.next_record.name
    )
    store.journal.write_bytes(journal.dumps())
    assert len(store.journal.read_bytes()) < 200  # the record is not inside the journal
    assert applying.recover(store, target) == "g2"
    assert (target / "a.ini").read_text() == "[a]\n"
    assert store.current() == manifest
    assert not store.next_record.exists() and not store.journal.exists()


def test_a_crash_after_the_rename_rolls_forward_without_next_json(tmp_path: Path) -> None:
    store, target, gen_dir, manifest = _setup(tmp_path)
    store.write_current(manifest)
    journal = applying.Journal(
        "g2", str(gen_dir), [["place", "a.ini"]], record=store.next_record.name
    )
    store.journal.write_bytes(journal.dumps())
    assert applying.recover(store, target) == "g2"
    assert store.current() == manifest and not store.journal.exists()


def test_a_journal_written_before_next_json_existed_still_finishes(tmp_path: Path) -> None:
    """An agent upgraded between a crash and its restart finds the inline-record format."""
    store, target, gen_dir, manifest = _setup(tmp_path)
    doc = {
        "generation": "g2",
        "source": str(gen_dir),
        "ops": [["place", "a.ini"]],
        "manifest": manifest.to_json(),
        "uid": None,
        "gid": None,
    }
    store.journal.write_bytes(json.dumps(doc).encode())
    assert applying.recover(store, target) == "g2"
    assert store.current() == manifest
    assert (target / "a.ini").read_text() == "[a]\n"


def test_a_journal_naming_another_record_file_is_refused(tmp_path: Path) -> None:
    store, target, gen_dir, _ = _setup(tmp_path)
    journal = applying.Journal("g2", str(gen_dir), [], record="../../etc/passwd")
    store.journal.write_bytes(journal.dumps())
    with pytest.raises(SyncError, match="names record"):
        applying.recover(store, target)
