"""Fetch the primary's files into the staging dir over SFTP, hashed while they stream.

Two sources, one streaming rule: a walked file may still change on the primary (a file that
grows, shrinks or vanishes mid-read means the snapshot moved: the sync starts over), while a
published object is immutable and named by its hash (any difference is a broken or hostile
publish dir: the sync fails).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import posixpath
from collections.abc import Awaitable
from pathlib import Path
from typing import TypeVar

import asyncssh

from syncagent.errors import Reason, SyncError, os_error
from syncagent.local.stage import Ownership, private_dirs
from syncagent.local.state import write_all
from syncagent.remote.connection import Session, classify, gather_or_cancel, request
from syncagent.tree import Listing, RemoteEntry

T = TypeVar("T")


CHUNK = 256 * 1024


FETCH_CONCURRENCY = 16


class SnapshotMoved(Exception):
    """The primary changed a file while we read it; the sync starts over."""


async def fetch_files(
    session: Session,
    root: str,
    paths: tuple[str, ...],
    listing: Listing,
    dest: Path,
    owner: Ownership,
) -> tuple[dict[str, str], int]:
    """Download ``paths`` under ``dest``; return their sha256 and the bytes fetched."""
    gate = asyncio.Semaphore(FETCH_CONCURRENCY)
    hashes: dict[str, str] = {}
    total = 0

    async def one(path: str) -> None:
        nonlocal total
        async with gate:
            digest, n = await _fetch_one(
                session, posixpath.join(root, path), listing[path], dest / path, owner
            )
        hashes[path] = digest
        total += n

    for d in sorted({posixpath.dirname(p) for p in paths if "/" in p}):
        private_dirs(dest, d)
    await gather_or_cancel(one(p) for p in paths)
    return hashes, total


async def fetch_objects(
    session: Session,
    objects: str,
    wanted: dict[str, str],
    listing: Listing,
    dest: Path,
    owner: Ownership,
) -> int:
    """Download the published object of each path in ``wanted`` (path -> sha256) under
    ``dest``, hashed while streaming; return the bytes fetched.

    An object is immutable and named by its hash, so any difference (other bytes, another
    size, gone) is a broken or hostile publish dir, never a file still being written: the sync
    fails as ``remote_io`` with the path, and nothing of it is kept.
    """
    gate = asyncio.Semaphore(FETCH_CONCURRENCY)
    total = 0

    async def one(path: str) -> None:
        nonlocal total
        sha = wanted[path]
        remote = posixpath.join(objects, sha)
        async with gate:
            try:
                digest, n = await _fetch_one(session, remote, listing[path], dest / path, owner)
            except SnapshotMoved as e:
                raise SyncError(Reason.REMOTE_IO, f"{path}: published object {e}") from None
        if digest != sha:
            raise SyncError(
                Reason.REMOTE_IO,
                f"{path}: published object {sha} holds other bytes (sha256 {digest}); refused",
            )
        total += n

    for d in sorted({posixpath.dirname(p) for p in wanted if "/" in p}):
        private_dirs(dest, d)
    await gather_or_cancel(one(p) for p in sorted(wanted))
    return total


async def _fetch_one(
    session: Session, remote: str, entry: RemoteEntry, local: Path, owner: Ownership
) -> tuple[str, int]:
    h = hashlib.sha256()
    n = 0
    try:
        fd = os.open(local, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o600)
    except OSError as e:
        raise os_error(e, f"staging {local.name}") from None
    try:
        # A file one read can hold is read directly: asyncssh's parallel reader (block_size
        # -1) starts a task per read, a third of the CPU of a first full sync of small files.
        direct = entry.size < session.sftp.limits.max_read_len
        f = await _io(
            session,
            session.sftp.open(remote.encode(), "rb", block_size=0 if direct else -1),
            remote,
        )
        try:
            while True:
                want = min(CHUNK, entry.size - n + 1)  # one byte more than listed shows growth
                data: bytes = await _io(session, f.read(want, n), remote)
                if not data:
                    break
                n += len(data)
                if n > entry.size:
                    raise SnapshotMoved(f"{remote} grew past its listed {entry.size} bytes")
                h.update(data)
                write_all(fd, data)
                if n == entry.size and len(data) < want:
                    break  # the probe byte did not come: EOF, no extra round trip to prove it
        finally:
            # bounded like any request; must not replace the error that ended the read
            with contextlib.suppress(SyncError, asyncssh.SFTPError):
                await _io(session, f.close(), remote)
        if n != entry.size:
            raise SnapshotMoved(f"{remote} shrank below its listed {entry.size} bytes")
        os.fchmod(fd, entry.mode)
        owner.apply_fd(fd)
    except asyncssh.SFTPNoSuchFile:
        raise SnapshotMoved(f"{remote} vanished while fetching") from None
    except OSError as e:
        raise os_error(e, f"staging {remote}") from None
    finally:
        os.close(fd)
    os.utime(local, (entry.mtime, entry.mtime))
    return h.hexdigest(), n


async def _io(session: Session, op: Awaitable[T], remote: str) -> T:
    try:
        return await request(session, op)
    except (SnapshotMoved, asyncssh.SFTPNoSuchFile):
        raise
    except Exception as e:
        raise classify(e, remote) from None
