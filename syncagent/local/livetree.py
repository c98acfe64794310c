"""The live tree as it is on disk, seen through the same filter as the primary's listing.

Node-local paths are filtered out here, before planning, so nothing downstream can touch them.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from syncagent.excludes import PathFilter
from syncagent.tree import Kind

CHUNK = 1024 * 1024


@dataclass(frozen=True, slots=True)
class LiveEntry:
    kind: Kind
    mode: int
    size: int = 0
    ino: int = 0
    mtime_ns: int = 0
    link: str | None = None


@dataclass
class LiveTree:
    entries: dict[str, LiveEntry] = field(default_factory=dict)
    holds_local: set[str] = field(default_factory=set)  # dirs containing node-local entries


def scan(target: Path, pf: PathFilter) -> LiveTree:
    tree = LiveTree()
    _scan_dir(target, "", pf, tree)
    return tree


def _scan_dir(base: Path, rel: str, pf: PathFilter, tree: LiveTree) -> None:
    with os.scandir(base / rel if rel else base) as it:
        for de in it:
            path = f"{rel}/{de.name}" if rel else de.name
            st = de.stat(follow_symlinks=False)
            is_dir = stat.S_ISDIR(st.st_mode)
            if (not pf.descend(path)) if is_dir else pf.excluded(path, False):
                for a in _self_and_ancestors(rel):
                    tree.holds_local.add(a)
                continue
            tree.entries[path] = _entry(st, de.path)
            if is_dir:
                _scan_dir(base, path, pf, tree)


def absent(target: Path, paths: tuple[str, ...]) -> tuple[str, ...]:
    """Which anchored paths ("/globalconf/") do not exist in the live tree."""
    return tuple(p for p in paths if not os.path.lexists(target / p.strip("/")))


def sha256_file(path: Path) -> str:
    """The content hash of a file on disk (raises OSError as reading does)."""
    h = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def entry_at(path: Path) -> LiveEntry | None:
    """One live path as the scan would see it; None if it does not exist."""
    try:
        return _entry(os.lstat(path), path)
    except FileNotFoundError:
        return None


def _entry(st: os.stat_result, path: str | Path) -> LiveEntry:
    mode = stat.S_IMODE(st.st_mode)
    if stat.S_ISDIR(st.st_mode):
        return LiveEntry(Kind.DIR, mode)
    if stat.S_ISLNK(st.st_mode):
        return LiveEntry(Kind.SYMLINK, mode, link=os.readlink(path))
    # regular files and anything odd, which a rename will replace
    return LiveEntry(Kind.FILE, mode, st.st_size, st.st_ino, st.st_mtime_ns)


def _self_and_ancestors(rel: str) -> list[str]:
    if not rel:
        return [""]
    parts = rel.split("/")
    return ["", *("/".join(parts[: i + 1]) for i in range(len(parts)))]
