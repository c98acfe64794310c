"""Compare directory trees the way the acceptance criteria talk about them, and age them."""

from __future__ import annotations

import hashlib
import os
import pwd
import shutil
import stat
import time
from pathlib import Path

from syncagent.excludes import PathFilter
from syncagent.settings import Settings

Entry = tuple[str, int, str]  # kind, mode, content (sha256 or link target)


def snapshot(
    root: Path, pf: PathFilter | None = None, *, with_ids: bool = False
) -> dict[str, tuple[object, ...]]:
    """Every entry below root (seen through ``pf``): kind, mode, content, and optionally
    inode/owner, so "byte-for-byte unchanged" can be asserted including metadata."""
    out: dict[str, tuple[object, ...]] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        for name in sorted([*dirnames, *filenames]):
            rel = name if rel_dir == "." else f"{rel_dir}/{name}"
            full = Path(dirpath) / name
            st = os.lstat(full)
            is_dir = stat.S_ISDIR(st.st_mode)
            if pf is not None and ((not pf.descend(rel)) if is_dir else pf.excluded(rel, False)):
                if is_dir:
                    dirnames.remove(name)
                continue
            if is_dir:
                content = ""
                kind = "dir"
            elif stat.S_ISLNK(st.st_mode):
                content, kind = os.readlink(full), "symlink"
            else:
                content, kind = hashlib.sha256(full.read_bytes()).hexdigest(), "file"
            mode = stat.S_IMODE(st.st_mode) if kind != "symlink" else 0
            row: tuple[object, ...] = (kind, oct(mode), content)
            if with_ids:
                row += (st.st_ino, st.st_uid, st.st_gid, st.st_mtime_ns)
            out[rel] = row
    return out


def dir_inodes(root: Path) -> dict[str, int]:
    return {os.path.relpath(d, root): os.stat(d).st_ino for d, _, _ in os.walk(root)}


def copy_tree(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, symlinks=True)
    st = os.stat(src)
    for d, dirs, files in os.walk(dst):
        for n in [*dirs, *files]:
            os.lchown(Path(d) / n, st.st_uid, st.st_gid)
    os.chown(dst, st.st_uid, st.st_gid)
    os.chmod(dst, stat.S_IMODE(st.st_mode))
    return dst


OLD = time.time() - 3600


def managed(root: Path, settings: Settings) -> dict[str, tuple[object, ...]]:
    """What the agent manages below ``root``, seen through the settings' filter."""
    return snapshot(root, settings.sync.path_filter())


def node_local(target: Path) -> dict[str, bytes]:
    return {
        p: (target / p).read_bytes()
        for p in ("conf.d/node.ini", "xroad.properties", "globalconf/instance-identifier")
    }


def live_state(target: Path) -> dict[str, tuple[object, ...]]:
    """Everything in the live tree, metadata included, except the agent's private state dir."""
    return snapshot(target, PathFilter.build(protected=("/.syncagent/",)), with_ids=True)


def as_primary(root: Path) -> None:
    """A tree a builder just wrote, made a primary's: its root owned by xroad (as root can),
    and everything in it aged, so the read-only account reads it through group xroad."""
    if os.geteuid() == 0:
        xroad = pwd.getpwnam("xroad")
        os.chown(root, xroad.pw_uid, xroad.pw_gid)
    age(root)


def age(root: Path) -> None:
    """Make what a test just wrote look written by the primary long ago: owned like the tree
    (xroad-slave reads it through group xroad) and old enough for settle and racy rules."""
    recent = time.time() - 600
    owner = os.stat(root)
    for d, dirs, files in os.walk(root):
        for n in [*dirs, *files]:
            p = Path(d) / n
            if os.lstat(p).st_mtime > recent:
                os.lchown(p, owner.st_uid, owner.st_gid)
                os.utime(p, (OLD, OLD), follow_symlinks=False)
