"""Entries of a configuration tree, as listed on the primary or found on disk.

Paths are relative posix strings without a leading slash ("signer/keyconf.xml"); the root
itself is never an entry. Modes are permission bits only, already sanitised.
"""

from __future__ import annotations

import enum
import posixpath
import stat
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from syncagent.settings import SyncSettings

SAFE_MODE_MASK = 0o775  # drop setuid/setgid/sticky and world-write from anything we write


class Kind(enum.StrEnum):
    FILE = "file"
    DIR = "dir"
    SYMLINK = "symlink"


def sanitise_mode(mode: int) -> int:
    return stat.S_IMODE(mode) & SAFE_MODE_MASK


@dataclass(frozen=True, slots=True)
class RemoteEntry:
    """What the primary's listing says of one path."""

    kind: Kind
    mode: int
    size: int = 0
    mtime: int = 0
    link: str | None = None


Listing = dict[str, RemoteEntry]


def parent(path: str) -> str:
    return posixpath.dirname(path)


def depth(path: str) -> int:
    return path.count("/") + 1


def ancestors(path: str) -> list[str]:
    """Parent directories of a path, outermost first ("a/b/c" -> ["a", "a/b"])."""
    parts = path.split("/")[:-1]
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


@dataclass(frozen=True)
class Limits:
    """How much of a tree a listing (walked or published) may hold before it is refused."""

    max_files: int
    max_total_bytes: int
    max_file_bytes: int
    max_depth: int

    @classmethod
    def of(cls, sync: SyncSettings) -> Limits:
        return cls(sync.max_files, sync.max_total_bytes, sync.max_file_bytes, sync.max_depth)
