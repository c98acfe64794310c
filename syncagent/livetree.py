"""The live tree as it is on disk, seen through the same filter as the primary's listing.

Node-local paths are filtered out here, before planning, so nothing downstream can touch them.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from .excludes import PathFilter
from .tree import Kind


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
            mode = stat.S_IMODE(st.st_mode)
            if is_dir:
                tree.entries[path] = LiveEntry(Kind.DIR, mode)
                _scan_dir(base, path, pf, tree)
            elif stat.S_ISLNK(st.st_mode):
                tree.entries[path] = LiveEntry(Kind.SYMLINK, mode, link=os.readlink(de.path))
            else:  # regular files and anything odd, which a rename will replace
                tree.entries[path] = LiveEntry(
                    Kind.FILE, mode, st.st_size, st.st_ino, st.st_mtime_ns
                )


def _self_and_ancestors(rel: str) -> list[str]:
    if not rel:
        return [""]
    parts = rel.split("/")
    return ["", *("/".join(parts[: i + 1]) for i in range(len(parts)))]
