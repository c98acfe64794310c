"""The publish directory's format: HEAD, manifests and objects, encoded and checked (pure).

    <publish dir>/HEAD                    the one mutable file: generation, sequence, manifest
    <publish dir>/manifests/<sha256>      a generation's entries (named by their own hash)
    <publish dir>/objects/<sha256>        a file's bytes, named by their hash, never rewritten

A secondary trusts nothing it reads here: the HEAD names the manifest by hash, the manifest
names every object by hash, and every name and limit is checked as strictly as a walk of the
primary's tree checks them. No I/O in this module: bytes in, typed values or errors out.
"""

from __future__ import annotations

import json
import posixpath
import re
from dataclasses import dataclass
from typing import Any

from syncagent.errors import Problem, Reason, SyncError
from syncagent.excludes import PathFilter
from syncagent.names import check_name, check_symlink
from syncagent.tree import Kind, Limits, Listing, RemoteEntry, depth, parent, sanitise_mode

FORMAT_VERSION = 1
HEAD_NAME = "HEAD"
MANIFESTS = "manifests"
OBJECTS = "objects"
HEAD_MAX_BYTES = 4096
SYMLINK_MODE = 0o777  # what a walk records for every symlink (the generation id includes it)
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_GENERATION = re.compile(r"^[0-9a-f]{16}$")


# The publisher re-confirms its HEAD (checked_at) at least this often, even with nothing new.
RESCAN_INTERVAL = 60.0


# A HEAD not confirmed for this long means the publisher stopped: secondaries walk instead.
STALE_AFTER = 5 * RESCAN_INTERVAL


@dataclass(frozen=True)
class Head:
    """What the publisher says is current: the secondary's whole no-op check."""

    generation: str
    sequence: int
    manifest: str  # sha256 of the manifest's bytes: its name under manifests/
    published_at: float  # when this generation was first published (publisher's clock)
    checked_at: float  # when the publisher last confirmed the source still is this generation

    def same_generation(self, other: Head | None) -> bool:
        return other is not None and (self.generation, self.sequence) == (
            other.generation,
            other.sequence,
        )


def encode_head(head: Head) -> bytes:
    return json.dumps(
        {
            "version": FORMAT_VERSION,
            "generation": head.generation,
            "sequence": head.sequence,
            "manifest": head.manifest,
            "published_at": head.published_at,
            "checked_at": head.checked_at,
        },
        sort_keys=True,
    ).encode()


def parse_head(data: bytes) -> Head:
    """The HEAD, or ValueError saying what is wrong with it."""
    doc = json.loads(data)
    if not isinstance(doc, dict) or doc.get("version") != FORMAT_VERSION:
        raise ValueError("not a version 1 HEAD")
    generation, sequence, manifest = doc.get("generation"), doc.get("sequence"), doc.get("manifest")
    if not isinstance(generation, str) or not _GENERATION.match(generation):
        raise ValueError("generation is not a 16-hex-digit id")
    if not isinstance(sequence, int) or isinstance(sequence, bool) or sequence < 0:
        raise ValueError("sequence is not a whole number")
    if not isinstance(manifest, str) or not _SHA256.match(manifest):
        raise ValueError("manifest is not a sha256")
    return Head(
        generation,
        sequence,
        manifest,
        _timestamp(doc, "published_at"),
        _timestamp(doc, "checked_at"),
    )


def _timestamp(doc: dict[str, Any], key: str) -> float:
    value = doc.get(key)
    if not isinstance(value, int | float) or isinstance(value, bool):
        raise ValueError(f"{key} is not a timestamp")
    return float(value)


@dataclass(frozen=True)
class PublishedTree:
    """A manifest as the secondary uses it: a listing, as a walk would have produced, and the
    content hash of every file in it."""

    generation: str
    sequence: int
    listing: Listing
    hashes: dict[str, str]


def encode_manifest(
    generation: str, sequence: int, listing: Listing, hashes: dict[str, str]
) -> bytes:
    entries: list[dict[str, Any]] = []
    for path, e in sorted(listing.items()):
        entry: dict[str, Any] = {"path": path, "type": e.kind.value}
        if e.kind is Kind.FILE:
            entry.update(mode=e.mode, size=e.size, sha256=hashes[path], mtime=e.mtime)
        elif e.kind is Kind.DIR:
            entry.update(mode=e.mode, mtime=e.mtime)
        else:
            entry.update(link=e.link, mtime=e.mtime)
        entries.append(entry)
    doc = {
        "version": FORMAT_VERSION,
        "generation": generation,
        "sequence": sequence,
        "entries": entries,
    }
    return json.dumps(doc, separators=(",", ":")).encode()


def parse_manifest(data: bytes, limits: Limits, pf: PathFilter) -> PublishedTree:
    """The manifest seen through this secondary's filter, or SyncError naming the first breach.

    The walk's limits (``Limits``) apply to it before any of it is used.

    Structure errors are ``remote_io`` (a broken publisher), unsafe names and paths
    ``validation``, breached limits ``limits``: the same reasons a walk gives the same faults.
    """
    try:
        doc = json.loads(data)
    except ValueError as e:
        raise _malformed(f"not JSON ({e})") from None
    if not isinstance(doc, dict) or doc.get("version") != FORMAT_VERSION:
        raise _malformed("not a version 1 manifest")
    generation, sequence, entries = doc.get("generation"), doc.get("sequence"), doc.get("entries")
    if not isinstance(generation, str) or not isinstance(sequence, int):
        raise _malformed("no generation or sequence")
    if not isinstance(entries, list):
        raise _malformed("no entry list")
    if len(entries) > limits.max_files:
        raise SyncError(Reason.LIMITS, f"more than max_files={limits.max_files} entries")
    everything: dict[str, RemoteEntry] = {}
    hashes: dict[str, str] = {}
    total = 0
    safe: set[str] = set()  # path prefixes whose names were checked: each directory once
    for raw in entries:
        path, entry, sha = _entry(raw, limits, safe)
        if path in everything:
            raise _unsafe(path, "appears twice in the manifest")
        everything[path] = entry
        if sha is not None:
            hashes[path] = sha
            total += entry.size
            if total > limits.max_total_bytes:
                raise SyncError(
                    Reason.LIMITS,
                    f"tree is over max_total_bytes={limits.max_total_bytes} (at {path})",
                )
    for path in everything:
        up = parent(path)
        if up and (everything.get(up) is None or everything[up].kind is not Kind.DIR):
            raise _unsafe(path, f"its parent {up} is not a directory of the manifest")
    descends: dict[str, bool] = {}  # pf.descend per directory, asked once each
    listing = {p: e for p, e in everything.items() if _synced(p, e, pf, descends)}
    paths = frozenset(listing)
    problems = [
        problem
        for p, e in sorted(listing.items())
        if e.kind is Kind.SYMLINK and (problem := check_symlink(p, e.link or "", paths))
    ]
    if problems:
        raise SyncError(Reason.VALIDATION, "unsafe symlink in the published manifest", (*problems,))
    kept = {p: h for p, h in hashes.items() if p in listing}
    return PublishedTree(generation, sequence, listing, kept)


def _entry(raw: Any, limits: Limits, safe: set[str]) -> tuple[str, RemoteEntry, str | None]:
    if not isinstance(raw, dict) or not isinstance(raw.get("path"), str):
        raise _malformed("an entry without a path")
    path: str = raw["path"]
    _check_path(path, safe)
    if depth(path) > limits.max_depth:
        raise SyncError(Reason.LIMITS, f"{path}: deeper than max_depth={limits.max_depth}")
    kind, mtime = raw.get("type"), _whole(raw.get("mtime", 0), path, "mtime")
    if kind == Kind.DIR.value:
        return path, RemoteEntry(Kind.DIR, _mode(raw, path), 0, mtime), None
    if kind == Kind.SYMLINK.value:
        link = raw.get("link")
        if not isinstance(link, str):
            raise _malformed(f"{path}: symlink without a target")
        return path, RemoteEntry(Kind.SYMLINK, SYMLINK_MODE, 0, mtime, link), None
    if kind != Kind.FILE.value:
        raise _unsafe(path, f"has type {kind!r}; only files, directories and symlinks are synced")
    size, sha = _whole(raw.get("size"), path, "size"), raw.get("sha256")
    if not isinstance(sha, str) or not _SHA256.match(sha):
        raise _malformed(f"{path}: sha256 is not 64 lowercase hex digits")
    if size > limits.max_file_bytes:
        raise SyncError(
            Reason.LIMITS, f"{path}: {size} bytes is over max_file_bytes={limits.max_file_bytes}"
        )
    return path, RemoteEntry(Kind.FILE, _mode(raw, path), size, mtime), sha


def _check_path(path: str, safe: set[str]) -> None:
    """Every component a safe name, nothing that climbs, no leading or doubled slash.
    ``safe``: prefixes already checked (a 10k-file manifest has a few hundred directories)."""
    if not path or path.startswith("/") or posixpath.normpath(path) != path:
        raise _unsafe(path or "(empty)", "is not a normalised relative path")
    done = ""
    for part in path.split("/"):
        done = f"{done}/{part}" if done else part
        if done in safe:
            continue
        problem = check_name(done, part)
        if problem:
            raise SyncError(Reason.VALIDATION, "unsafe name in the published manifest", (problem,))
        safe.add(done)


def _synced(path: str, e: RemoteEntry, pf: PathFilter, descends: dict[str, bool]) -> bool:
    """As a walk sees it: an entry below an excluded directory is never reached."""
    parts = path.split("/")
    for i in range(len(parts) - 1):
        a = "/".join(parts[: i + 1])
        ok = descends.get(a)
        if ok is None:
            ok = descends[a] = pf.descend(a)
        if not ok:
            return False
    return pf.descend(path) if e.kind is Kind.DIR else not pf.excluded(path, False)


def _mode(raw: dict[str, Any], path: str) -> int:
    return sanitise_mode(_whole(raw.get("mode"), path, "mode"))


def _whole(value: Any, path: str, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise _malformed(f"{path}: {what} is not a whole number")
    return value


def _malformed(why: str) -> SyncError:
    return SyncError(Reason.REMOTE_IO, f"the published manifest is malformed: {why}")


def _unsafe(path: str, why: str) -> SyncError:
    return SyncError(
        Reason.VALIDATION, "unsafe entry in the published manifest", (Problem(path, why),)
    )


def manifest_objects(data: bytes) -> tuple[int, frozenset[str]]:
    """The sequence and object names of one of the publisher's own manifests (for pruning)."""
    doc = json.loads(data)
    entries = doc["entries"]
    return int(doc["sequence"]), frozenset(
        str(e["sha256"]) for e in entries if e.get("type") == Kind.FILE.value
    )
