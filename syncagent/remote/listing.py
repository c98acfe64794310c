"""List the primary's tree over SFTP: names, types, sizes, mtimes, modes.

Limits are enforced while listing, not after, so a hostile or broken primary with a million
entries costs a bounded amount of memory and time. Names arrive as bytes and are checked
before they are ever joined into a path.
"""

from __future__ import annotations

import asyncio
import contextlib
import posixpath
import stat
from collections.abc import AsyncGenerator, Awaitable, Iterable
from typing import TypeVar, cast

import asyncssh

from syncagent.errors import Problem, Reason, SyncError
from syncagent.excludes import PathFilter
from syncagent.names import check_name, check_symlink
from syncagent.remote.connection import (
    Session,
    answered_within,
    classify,
    gather_or_cancel,
    request,
)
from syncagent.tree import Kind, Limits, Listing, RemoteEntry, sanitise_mode

T = TypeVar("T")
READDIR_CONCURRENCY = 8


class _Walk:
    def __init__(self, session: Session, root: str, pf: PathFilter, limits: Limits) -> None:
        self.session = session
        self.root = root.rstrip("/") or "/"
        self.filter = pf
        self.limits = limits
        self.listing: Listing = {}
        self.total_bytes = 0
        self.names_read = 0
        self.gate = asyncio.Semaphore(READDIR_CONCURRENCY)

    async def io(self, op: Awaitable[T], path: str) -> T:
        try:
            return await request(self.session, op)
        except (SyncError, asyncssh.SFTPNoSuchFile, StopAsyncIteration):
            raise
        except Exception as e:
            raise classify(e, posixpath.join(self.root, path)) from None

    async def walk(self, rel: str, level: int) -> None:
        remote = posixpath.join(self.root, rel) if rel else self.root
        async with self.gate:
            try:
                names = await self.read_dir(remote, rel)
            except asyncssh.SFTPNoSuchFile:
                if rel:  # vanished mid-walk: the stability check will retry
                    return
                raise SyncError(
                    Reason.NOT_INITIALIZED, f"{remote} does not exist on the primary"
                ) from None
        subdirs: list[str] = []
        for name in names:
            raw = name.filename
            assert isinstance(raw, bytes)
            if raw in (b".", b".."):
                continue
            shown = raw.decode("utf-8", "backslashreplace")
            problem = check_name(f"{rel}/{shown}" if rel else shown, raw)
            if problem:
                raise SyncError(Reason.VALIDATION, "unsafe name in the primary's tree", (problem,))
            path = posixpath.join(rel, raw.decode()) if rel else raw.decode()
            entry = await self.entry(path, name.attrs, level)
            if entry is None:
                continue
            self.listing[path] = entry
            if entry.kind is Kind.DIR:
                subdirs.append(path)
        if subdirs:
            await gather_or_cancel(self.walk(d, level + 1) for d in subdirs)

    async def read_dir(self, remote: str, rel: str) -> list[asyncssh.SFTPName]:
        """One directory's names, counted against max_files as they arrive.

        asyncssh's ``readdir`` collects a whole directory before returning, so a primary that
        lists a million names would cost their memory before any limit could say no. Every name
        read counts, excluded ones too (a million ``*.tmp`` is no cheaper to read).
        """
        names: list[asyncssh.SFTPName] = []
        it = cast(
            AsyncGenerator[asyncssh.SFTPName, None], self.session.sftp.scandir(remote.encode())
        )
        try:
            with answered_within(self.session) as answered:
                async for name in it:
                    answered()
                    if name.filename in (b".", b".."):
                        continue
                    names.append(name)
                    self.names_read += 1
                    if self.names_read > self.limits.max_files:
                        raise SyncError(
                            Reason.LIMITS,
                            f"more than max_files={self.limits.max_files} entries "
                            f"(stopped listing in {rel or '/'})",
                        )
            return names
        except (SyncError, asyncssh.SFTPNoSuchFile):
            raise
        except Exception as e:
            raise classify(e, posixpath.join(self.root, rel)) from None
        finally:
            with contextlib.suppress(Exception):
                await request(self.session, it.aclose())

    async def entry(self, path: str, attrs: asyncssh.SFTPAttrs, level: int) -> RemoteEntry | None:
        mode = attrs.permissions
        if mode is None:
            raise SyncError(Reason.REMOTE_IO, f"{path}: the primary sent no file type")
        if stat.S_ISDIR(mode):
            if not self.filter.descend(path):
                return None
            if level + 1 > self.limits.max_depth:
                raise SyncError(
                    Reason.LIMITS, f"{path}: deeper than max_depth={self.limits.max_depth}"
                )
            return RemoteEntry(Kind.DIR, sanitise_mode(mode), 0, int(attrs.mtime or 0))
        if self.filter.excluded(path, False):
            return None
        if stat.S_ISREG(mode):
            size = int(attrs.size or 0)
            if size > self.limits.max_file_bytes:
                raise SyncError(
                    Reason.LIMITS,
                    f"{path}: {size} bytes is over max_file_bytes={self.limits.max_file_bytes}",
                )
            self.total_bytes += size
            if self.total_bytes > self.limits.max_total_bytes:
                raise SyncError(
                    Reason.LIMITS,
                    f"tree is over max_total_bytes={self.limits.max_total_bytes} (at {path})",
                )
            return RemoteEntry(Kind.FILE, sanitise_mode(mode), size, int(attrs.mtime or 0))
        if stat.S_ISLNK(mode):
            target = await self.io(
                self.session.sftp.readlink(posixpath.join(self.root, path).encode()), path
            )
            text = (
                target.decode("utf-8", "backslashreplace") if isinstance(target, bytes) else target
            )
            return RemoteEntry(Kind.SYMLINK, 0o777, 0, int(attrs.mtime or 0), text)
        kind = _kind_name(mode)
        raise SyncError(
            Reason.VALIDATION,
            "unsupported file type in the primary's tree",
            (
                Problem(
                    path,
                    f"is a {kind}; only regular files, directories and "
                    "relative symlinks are synced",
                ),
            ),
        )


def _kind_name(mode: int) -> str:
    for test, name in (
        (stat.S_ISFIFO, "FIFO"),
        (stat.S_ISCHR, "character device"),
        (stat.S_ISBLK, "block device"),
        (stat.S_ISSOCK, "socket"),
    ):
        if test(mode):
            return name
    return f"file of unknown type {stat.S_IFMT(mode):o}"


def symlink_problems(listing: Listing) -> list[Problem]:
    paths = frozenset(listing)
    problems = []
    for path, e in listing.items():
        if e.kind is Kind.SYMLINK and (p := check_symlink(path, e.link or "", paths)):
            problems.append(p)
    return problems


async def list_tree(session: Session, root: str, pf: PathFilter, limits: Limits) -> Listing:
    """The filtered listing of the primary's tree, or SyncError naming the first breach."""
    walk = _Walk(session, root, pf, limits)
    await walk.walk("", 0)
    problems = symlink_problems(walk.listing)
    if problems:
        raise SyncError(Reason.VALIDATION, "unsafe symlink in the primary's tree", tuple(problems))
    return walk.listing


async def restat(
    session: Session, root: str, dirs: Iterable[str], pf: PathFilter, limits: Limits
) -> Listing:
    """Fresh entries of the immediate children of ``dirs`` ("" is the root).

    After a fetch, the engine re-reads only the directories on the way to what it fetched: a
    handful of readdirs for one changed file in a 10,000-file tree, instead of a second walk.
    """
    walk = _Walk(session, root, pf, limits)

    async def one(rel: str) -> None:
        remote = posixpath.join(walk.root, rel) if rel else walk.root
        try:
            names = await walk.read_dir(remote, rel)
        except asyncssh.SFTPNoSuchFile:
            return
        for name in names:
            raw = name.filename
            assert isinstance(raw, bytes)
            text = raw.decode("utf-8", "replace")
            path = posixpath.join(rel, text) if rel else text
            entry = await walk.entry(path, name.attrs, path.count("/"))
            if entry is not None:
                walk.listing[path] = entry

    await gather_or_cancel(one(d) for d in sorted(set(dirs)))
    return walk.listing


async def read_small(session: Session, root: str, rel: str, limit: int) -> bytes | None:
    """The first ``limit`` bytes of one file on the primary (VERSION), None if it is absent."""
    remote = posixpath.join(root.rstrip("/") or "/", rel)
    try:
        f = await request(session, session.sftp.open(remote.encode(), "rb"))
        try:
            data: bytes = await request(session, f.read(limit, 0))
        finally:
            with contextlib.suppress(Exception):
                await request(session, f.close())
    except asyncssh.SFTPNoSuchFile:
        return None
    except Exception as e:
        raise classify(e, remote) from None
    return data
