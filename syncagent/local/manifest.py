"""The record of a generation: every synced path with its content hash.

It is what makes a no-op sync cheap (compare the primary's listing with the record, fetch
nothing) and what makes a generation id comparable across replicas: two secondaries that
synced the same primary state compute the same id, whatever their local inodes or clocks.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from syncagent.local.livetree import LiveTree
from syncagent.tree import Kind, Listing

FORMAT_VERSION = 1


@dataclass(frozen=True, slots=True)
class Record:
    kind: Kind
    mode: int
    sha256: str | None = None  # files
    link: str | None = None  # symlinks
    size: int = 0
    remote_mtime: int = 0  # the primary's mtime when this content was fetched
    ino: int = 0  # local identity after apply: a mismatch means someone touched the file
    mtime_ns: int = 0

    def same_content(self, other: Record) -> bool:
        return (self.kind, self.sha256, self.link) == (other.kind, other.sha256, other.link)


@dataclass(frozen=True)
class Manifest:
    generation: str
    listed_at: float  # local clock when the primary's listing behind this record was taken
    records: dict[str, Record] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "version": FORMAT_VERSION,
            "generation": self.generation,
            "listed_at": self.listed_at,
            "records": {p: _record_json(r) for p, r in sorted(self.records.items())},
        }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Manifest:
        if doc.get("version") != FORMAT_VERSION:
            raise ValueError(f"unsupported manifest version {doc.get('version')!r}")
        records = {p: Record(**{**r, "kind": Kind(r["kind"])}) for p, r in doc["records"].items()}
        return cls(doc["generation"], float(doc["listed_at"]), records)

    def without(self, paths: Iterable[str]) -> Manifest:
        """This record, vouching for nothing at ``paths`` (their live copies are suspect)."""
        drop = set(paths)
        kept = {p: r for p, r in self.records.items() if p not in drop}
        return Manifest(self.generation, self.listed_at, kept)

    def dumps(self) -> bytes:
        return json.dumps(self.to_json(), separators=(",", ":")).encode()


def _record_json(r: Record) -> dict[str, Any]:
    # by hand: dataclasses.asdict deep-copies and was most of the cost for 10k-file records
    doc: dict[str, Any] = {
        "kind": r.kind.value,
        "mode": r.mode,
        "size": r.size,
        "remote_mtime": r.remote_mtime,
        "ino": r.ino,
        "mtime_ns": r.mtime_ns,
    }
    if r.sha256 is not None:
        doc["sha256"] = r.sha256
    if r.link is not None:
        doc["link"] = r.link
    return doc


def generation_id(records: dict[str, Record]) -> str:
    """sha256 over the sorted (path, kind, mode, content) of the synced set, first 16 hex.

    Local facts (inode, mtime) stay out so that every replica agrees.
    """
    h = hashlib.sha256()
    for path in sorted(records):
        r = records[path]
        content = r.sha256 if r.kind is Kind.FILE else (r.link or "")
        h.update(f"{path}\0{r.kind}\0{r.mode:o}\0{content}\n".encode())
    return h.hexdigest()[:16]


def new_records(
    listing: Listing, known: dict[str, Record], hashes: dict[str, str], farm: Path
) -> dict[str, Record]:
    """The records of a listed tree: fetched files with their hash and staged identity, the
    rest as the fetch plan already knew them."""
    records: dict[str, Record] = {}
    for path, e in listing.items():
        if e.kind is Kind.DIR:
            records[path] = Record(Kind.DIR, e.mode, remote_mtime=e.mtime)
        elif path in hashes:
            st = os.lstat(farm / path)
            records[path] = Record(
                Kind.FILE,
                e.mode,
                hashes[path],
                size=e.size,
                remote_mtime=e.mtime,
                ino=st.st_ino,
                mtime_ns=st.st_mtime_ns,
            )
        else:
            records[path] = known[path]
    return records


def live_identity_records(
    records: dict[str, Record], live: LiveTree, placed: set[str]
) -> dict[str, Record]:
    """Files that stay in place keep their live inode and mtime in the record."""
    out = dict(records)
    for path, rec in records.items():
        lv = live.entries.get(path)
        if (
            rec.kind is Kind.FILE
            and path not in placed
            and lv is not None
            and (rec.ino, rec.mtime_ns) != (lv.ino, lv.mtime_ns)
        ):
            out[path] = replace(rec, ino=lv.ino, mtime_ns=lv.mtime_ns)
    return out
