"""The publish dir's format: HEAD and manifest round trips, and every refusal of a bad one."""

from __future__ import annotations

import json

import pytest

from syncagent.errors import Reason, SyncError
from syncagent.excludes import PathFilter
from syncagent.publishdir import (
    Head,
    encode_head,
    encode_manifest,
    manifest_objects,
    parse_head,
    parse_manifest,
)
from syncagent.tree import Kind, Limits, RemoteEntry

SHA = "a" * 64
LIMITS = Limits(max_files=100, max_total_bytes=1000, max_file_bytes=500, max_depth=4)
LISTING = {
    "conf.d": RemoteEntry(Kind.DIR, 0o755),
    "conf.d/local.ini": RemoteEntry(Kind.FILE, 0o644, 10, 1700000000),
    "link": RemoteEntry(Kind.SYMLINK, 0o777, link="conf.d/local.ini"),
    "globalconf": RemoteEntry(Kind.DIR, 0o755),
    "globalconf/x": RemoteEntry(Kind.FILE, 0o644, 3),
}
HASHES = {"conf.d/local.ini": SHA, "globalconf/x": "b" * 64}


def manifest(entries: list[dict[str, object]]) -> bytes:
    return json.dumps(
        {"version": 1, "generation": "0" * 16, "sequence": 1, "entries": entries}
    ).encode()


def refusal(data: bytes, limits: Limits = LIMITS) -> SyncError:
    with pytest.raises(SyncError) as e:
        parse_manifest(data, limits, PathFilter.build())
    return e.value


def test_head_round_trips_and_refuses_garbage() -> None:
    head = Head("0123456789abcdef", 7, SHA, 1.5, 2.5)
    assert parse_head(encode_head(head)) == head
    for bad in (b"{}", b"[]", b'{"version": 1, "generation": "x"}'):
        with pytest.raises(ValueError):
            parse_head(bad)


def test_manifest_round_trips_through_the_secondarys_filter() -> None:
    data = encode_manifest("0123456789abcdef", 3, LISTING, HASHES)
    everything = parse_manifest(data, LIMITS, PathFilter.build())
    assert everything.listing == LISTING and everything.hashes == HASHES
    local = parse_manifest(data, LIMITS, PathFilter.build(("/globalconf/",)))
    assert "globalconf" not in local.listing and "globalconf/x" not in local.hashes
    assert manifest_objects(data) == (3, frozenset(HASHES.values()))


@pytest.mark.parametrize(
    "path", ["../etc/shadow", "/etc/shadow", "a/../b", "a//b", "", "bad\nname"]
)
def test_unsafe_paths_are_refused(path: str) -> None:
    e = refusal(manifest([{"path": path, "type": "file", "mode": 420, "size": 1, "sha256": SHA}]))
    assert e.reason is Reason.VALIDATION


def test_duplicates_orphans_and_types_are_refused() -> None:
    f = {"path": "a", "type": "file", "mode": 420, "size": 1, "sha256": SHA}
    assert refusal(manifest([f, f])).reason is Reason.VALIDATION
    orphan = {**f, "path": "d/a"}
    assert refusal(manifest([orphan])).reason is Reason.VALIDATION
    assert refusal(manifest([{**f, "type": "fifo"}])).reason is Reason.VALIDATION
    escaping: dict[str, object] = {"path": "l", "type": "symlink", "link": "../../etc/shadow"}
    assert refusal(manifest([escaping])).reason is Reason.VALIDATION


def test_malformed_manifests_are_remote_io() -> None:
    assert refusal(b"not json").reason is Reason.REMOTE_IO
    bad_sha = {"path": "a", "type": "file", "mode": 420, "size": 1, "sha256": "xyz"}
    assert refusal(manifest([bad_sha])).reason is Reason.REMOTE_IO
    assert refusal(manifest([{"path": "a", "type": "dir"}])).reason is Reason.REMOTE_IO


def test_limits_apply_before_use() -> None:
    f = {"type": "file", "mode": 420, "sha256": SHA}
    big = manifest([{**f, "path": "a", "size": 501}])
    assert refusal(big).reason is Reason.LIMITS
    total = manifest([{**f, "path": f"f{i}", "size": 400} for i in range(3)])
    assert refusal(total).reason is Reason.LIMITS
    many = manifest([{**f, "path": f"f{i}", "size": 0} for i in range(101)])
    assert refusal(many).reason is Reason.LIMITS
    parts = ["a", "b", "c", "d", "e"]
    chain = [{"path": "/".join(parts[: i + 1]), "type": "dir", "mode": 493} for i in range(5)]
    assert refusal(manifest(chain)).reason is Reason.LIMITS


def test_modes_are_sanitised() -> None:
    data = manifest([{"path": "a", "type": "file", "mode": 0o4777, "size": 1, "sha256": SHA}])
    assert parse_manifest(data, LIMITS, PathFilter.build()).listing["a"].mode == 0o775
