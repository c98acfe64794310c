"""Build the candidate tree: fetched files plus hardlinks of unchanged live files.

The candidate is a complete tree, so validation and ``validate_command`` see exactly what would
go live, and it becomes the generation's copy kept for rollback. It lives in the state dir, on
the target's filesystem, so apply can rename(2) its files into place.
"""

from __future__ import annotations

import ctypes
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

from syncagent.errors import SyncError, os_error
from syncagent.local.livetree import LiveTree
from syncagent.local.manifest import Record
from syncagent.local.state import fsync_dir
from syncagent.settings import SyncSettings
from syncagent.tree import Kind, Listing

PRIVATE_DIR = 0o700


@dataclass(frozen=True)
class Ownership:
    """Who owns what the agent writes (None: leave as created)."""

    uid: int | None
    gid: int | None

    @classmethod
    def of(cls, sync: SyncSettings) -> Ownership:
        """sync.owner/group, else the target's own owner and group."""
        st = sync.target.stat()
        uid: int | None = sync.owner if sync.owner is not None else st.st_uid
        gid = sync.group if sync.group is not None else st.st_gid
        if os.geteuid() != 0 and uid != os.geteuid():
            uid = None  # an unprivileged agent can only write files it owns
        return cls(uid, gid)

    def apply_fd(self, fd: int) -> None:
        if self.uid is None and self.gid is None:
            return
        st = os.fstat(fd)
        uid = st.st_uid if self.uid is None else self.uid
        gid = st.st_gid if self.gid is None else self.gid
        if (uid, gid) != (st.st_uid, st.st_gid):
            os.fchown(fd, uid, gid)


def private_dirs(dest: Path, rel: str) -> None:
    """Staging directories are private until apply gives them the primary's modes."""
    try:
        (dest / rel).mkdir(mode=PRIVATE_DIR, parents=True, exist_ok=True)
    except OSError as e:
        raise os_error(e, f"staging {rel}") from None


def build_candidate(
    dest: Path,
    target: Path,
    listing: Listing,
    known: dict[str, Record],
    fetched: set[str],
) -> None:
    """Complete ``dest`` into the full new tree: directories, links of kept files, symlinks.

    Paths are joined as strings: a pathlib join per file was two thirds of the cost of linking
    a 10k-file tree for one changed file."""
    src, dst = str(target), str(dest)
    try:
        for path, e in sorted(listing.items()):
            if e.kind is Kind.DIR:
                private_dirs(dest, path)
        for path, rec in known.items():
            if path in fetched:
                continue
            if rec.kind is Kind.SYMLINK:
                os.symlink(rec.link or "", f"{dst}/{path}")
            else:
                os.link(f"{src}/{path}", f"{dst}/{path}", follow_symlinks=False)
    except SyncError:
        raise
    except OSError as e:
        raise os_error(e, "building the candidate tree") from None


def link_live_files(
    records: dict[str, Record],
    live: LiveTree,
    placed: set[str],
    copies: set[str],
    target: Path,
    farm: Path,
) -> None:
    """Files that stay in place are the live file in the candidate tree, not a copy, so the
    generation store and the live tree share them (and their inode stays in the record).
    ``copies``: the paths whose farm file may be a copy (after a sync only what it fetched:
    build_candidate linked every other file from the live tree already)."""
    for path in copies - placed:
        rec = records.get(path)
        lv = live.entries.get(path)
        if rec is not None and rec.kind is Kind.FILE and lv is not None:
            farm_file = farm / path
            if os.path.lexists(farm_file) and os.lstat(farm_file).st_ino != lv.ino:
                farm_file.unlink()
                os.link(target / path, farm_file)


def fresh_dir(path: Path) -> None:
    """An empty private directory, whatever a crashed run left there."""
    if path.exists() or path.is_symlink():
        shutil.rmtree(path)
    path.mkdir(mode=PRIVATE_DIR, parents=True)


_libc = ctypes.CDLL(None, use_errno=True)
_syncfs = getattr(_libc, "syncfs", None)


def fsync_tree(root: Path) -> None:
    """Make the candidate's file data and directory entries durable before any rename.

    One syncfs(2) on the staging filesystem replaces an fsync per fetched file (10,000 fsyncs
    took ~6 s for a first full sync); where syncfs is missing, every file and dir is fsynced.
    """
    if _syncfs is not None:
        fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            if _syncfs(fd) == 0:
                return
        finally:
            os.close(fd)
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            fd = os.open(Path(dirpath) / name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fsync_dir(Path(dirpath))
