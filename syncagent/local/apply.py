"""Journaled apply: turn the live tree into a stored generation, crash-safely.

Directories are never replaced (X-Road's signer watches ``signer/`` by inode); files are
rename(2)d into them from the generation store, which keeps a copy made just before (a new
inode: a hardlink shared with the live tree would let an in-place edit of the live file change
the kept generation a rollback restores).
The full operation list is written and fsynced before the first rename, and every operation is
idempotent, so after a crash ``recover`` rolls forward to exactly the new generation.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import os
import shutil
import signal
import stat
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import structlog

from syncagent import testhooks
from syncagent.errors import Reason, SyncError, os_error
from syncagent.local.livetree import sha256_file
from syncagent.local.manifest import Manifest
from syncagent.local.plan import Changes
from syncagent.local.stage import Ownership, copy_file, fsync_tree
from syncagent.local.state import StateDir, atomic_write, fsync_dir, locked

log = structlog.get_logger("syncagent.local.apply")

T = TypeVar("T")
Op = list[Any]  # ["mkdir", path, mode] | ["place", path] | ["chmod", path, mode] | ...


@dataclass
class Journal:
    generation: str
    source: str  # the generation dir files are renamed from
    ops: list[Op]
    manifest: dict[str, Any] | None = None  # the record inline (journals before next.json)
    uid: int | None = None
    gid: int | None = None
    record: str | None = None  # the state dir's file (next.json) that becomes current.json

    def dumps(self) -> bytes:
        return json.dumps(self.__dict__, separators=(",", ":")).encode()

    @classmethod
    def loads(cls, data: bytes) -> Journal:
        doc = json.loads(data)
        journal = cls(**doc)
        for op in journal.ops:
            _check_rel(op[1])
        return journal


def _check_rel(path: str) -> None:
    if not path or path.startswith("/") or ".." in path.split("/") or "\0" in path:
        raise SyncError(Reason.APPLY, f"journal holds an unsafe path {path!r}")


def operations(ch: Changes) -> list[Op]:
    """The apply order: new dirs, files, commit_last files, removals, empty dirs, modes."""
    return [
        *(["clear", p] for p in ch.clear),
        *(["mkdir", p, m] for p, m in ch.mkdirs),
        *(["place", p] for p in ch.place),
        *(["remove", p] for p in ch.remove),
        *(["rmdir", p] for p in ch.rmdirs),
        *(["chmod", p, m] for p, m in ch.chmods),
    ]


def apply(
    state: StateDir,
    target: Path,
    journal: Journal,
    on_op: Callable[[int], None] | None = None,
    manifest: Manifest | None = None,
) -> None:
    try:
        atomic_write(state.journal, journal.dumps())
    except OSError as e:
        raise os_error(e, "writing the journal") from None
    _run(state, target, journal, on_op, manifest)


def publish(
    state: StateDir,
    target: Path,
    manifest: Manifest,
    gen_dir: Path,
    ch: Changes,
    owner: Ownership,
    on_op: Callable[[int], None] | None = None,
    data: bytes | None = None,
) -> None:
    """Journal and apply ``ch`` from a stored generation: the last step of a sync and of a
    rollback. Blocking; callers run it with finish_in_thread, under the lock.

    The new record is written to next.json before the journal names it, so the journal stays
    small and the apply ends with a rename instead of serialising the record again.
    """
    try:
        atomic_write(state.next_record, manifest.dumps() if data is None else data)
    except OSError as e:
        raise os_error(e, "writing the new record") from None
    journal = Journal(
        manifest.generation,
        str(gen_dir),
        operations(ch),
        uid=owner.uid,
        gid=owner.gid,
        record=state.next_record.name,
    )
    apply(state, target, journal, on_op, manifest)


async def finish_in_thread(func: Callable[..., T], *args: Any) -> T:
    """Run disk work that must complete under the lock even if the caller is cancelled.

    The journal makes an interrupted apply safe, but releasing the lock while the thread still
    renames files would let another process start a sync in the middle of it.
    """
    task = asyncio.ensure_future(asyncio.to_thread(func, *args))
    try:
        return await asyncio.shield(task)
    except asyncio.CancelledError:
        await asyncio.wait([task])
        raise


@contextlib.asynccontextmanager
async def locked_and_recovered(
    state: StateDir, target: Path, timeout: float
) -> AsyncIterator[None]:
    """The state lock, with any interrupted apply rolled forward first: where every sync,
    rollback and daemon start begins, so none of them ever sees a half-applied tree."""
    async with locked(state, timeout):
        await finish_in_thread(recover, state, target)
        yield


def recover(state: StateDir, target: Path) -> str | None:
    """Finish an apply a crash interrupted; returns its generation, or None if there was none."""
    try:
        data = state.journal.read_bytes()
    except FileNotFoundError:
        return None
    journal = Journal.loads(data)
    log.warning("journal_roll_forward", generation=journal.generation, ops=len(journal.ops))
    _run(state, target, journal, None)
    return journal.generation


def _run(
    state: StateDir,
    target: Path,
    journal: Journal,
    on_op: Callable[[int], None] | None,
    manifest: Manifest | None = None,
) -> None:
    source = Path(journal.source)
    touched: set[Path] = {target}
    kill_after = testhooks.kill_after_op()
    no_copy: OSError | None = None  # a kept copy the full disk refused; the journal retries it
    try:
        for i, op in enumerate(journal.ops):
            dst = target / op[1]
            try:
                _OPS[op[0]](dst, source / op[1], op, journal)
            except _NoSpaceForCopy as e:
                no_copy = no_copy or e.error
            touched.add(dst.parent)
            if i == kill_after:
                os.kill(os.getpid(), signal.SIGKILL)
            if on_op is not None:
                on_op(i)
        if no_copy is not None:
            raise no_copy
        for d in sorted(touched):
            if d.is_dir():
                fsync_dir(d)
        if source.is_dir():
            fsync_tree(source)  # the kept copies, durable before the journal goes
        _make_current(state, journal, manifest)
        state.journal.unlink()
        fsync_dir(state.path)
    except OSError as e:
        raise os_error(
            e,
            f"applying generation {journal.generation} (the journal "
            "will finish it on the next attempt)",
        ) from None


def _make_current(state: StateDir, journal: Journal, manifest: Manifest | None) -> None:
    if journal.manifest is not None:
        state.write_current(Manifest.from_json(journal.manifest))
        return
    if journal.record != state.next_record.name:
        raise SyncError(
            Reason.APPLY, f"journal of {journal.generation} names record {journal.record!r}"
        )
    record = state.next_record
    if record.exists():  # else a crash came after the rename: current.json is already it
        state.make_current(record, manifest)


def _lexists(p: Path) -> bool:
    return os.path.lexists(p)


def _is_real_dir(p: Path) -> bool:
    try:
        return stat.S_ISDIR(os.lstat(p).st_mode)
    except FileNotFoundError:
        return False


def _clear(dst: Path, _src: Path, _op: Op, _j: Journal) -> None:
    if _is_real_dir(dst):
        shutil.rmtree(dst)


def _mkdir(dst: Path, _src: Path, op: Op, j: Journal) -> None:
    if _lexists(dst) and not _is_real_dir(dst):
        dst.unlink()
    if not _lexists(dst):
        os.mkdir(dst, op[2])
    st = os.lstat(dst)
    uid = st.st_uid if j.uid is None else j.uid
    gid = st.st_gid if j.gid is None else j.gid
    if (uid, gid) != (st.st_uid, st.st_gid):  # an unprivileged agent never needs chown(2)
        os.chown(dst, uid, gid)
    os.chmod(dst, op[2])


class _NoSpaceForCopy(Exception):
    """The file is live; only its hardlink back into the generation store found no space."""

    def __init__(self, error: OSError) -> None:
        self.error = error


def _kept_copy(src: Path) -> Path:
    """Where the store's copy of a file is made before the file itself goes live."""
    return src.with_name(f".{src.name}.kept")


def _placed(src: Path, dst: Path) -> bool:
    """Whether this place already ran: the live file is the store's former file and the store
    holds its copy (same bytes, mode, size and mtime; the bytes compared only when the rest
    agrees, so only a repeated op pays for it), or (a journal written before kept copies)
    the two are one inode."""
    try:
        ss, sd = os.lstat(src), os.lstat(dst)
    except FileNotFoundError:
        return False
    if (ss.st_dev, ss.st_ino) == (sd.st_dev, sd.st_ino):
        return True
    if not (stat.S_ISREG(ss.st_mode) and stat.S_ISREG(sd.st_mode)):
        return False
    if (ss.st_mode, ss.st_size, ss.st_mtime_ns) != (sd.st_mode, sd.st_size, sd.st_mtime_ns):
        return False
    return sha256_file(src) == sha256_file(dst)


def _place(dst: Path, src: Path, _op: Op, _j: Journal) -> None:
    """Copy the stored file aside, rename it into place, put the copy where it was: the live
    file is the generation's file (its inode is in the record), the store keeps its own."""
    copy = _kept_copy(src)
    no_space: OSError | None = None
    if _lexists(src) and not _placed(src, dst):
        if stat.S_ISREG(os.lstat(src).st_mode):
            no_space = _copy_aside(src, copy)
        if _is_real_dir(dst):
            shutil.rmtree(dst)
        os.rename(src, dst)
    if not _lexists(src):
        if _lexists(copy):
            os.rename(copy, src)
        elif stat.S_ISREG(os.lstat(dst).st_mode):
            # the copy could not be made before (full disk): made now, from the live file
            no_space = _copy_aside(dst, copy)
            if no_space is None:
                os.rename(copy, src)
        else:
            os.link(dst, src, follow_symlinks=False)  # a symlink is never edited in place
    if no_space is not None:
        # A copy needs space. Stopping here would leave two generations mixed in the live
        # tree for as long as the disk stays full; the renames need none, so they go on and
        # the journal keeps the apply open until this copy is made.
        raise _NoSpaceForCopy(no_space)


def _copy_aside(src: Path, copy: Path) -> OSError | None:
    """A fresh copy of ``src`` at ``copy``; a full disk is returned, not raised."""
    copy.unlink(missing_ok=True)  # a partial one a crash left
    try:
        copy_file(src, copy)
    except OSError as e:
        copy.unlink(missing_ok=True)
        if e.errno not in (errno.ENOSPC, errno.EDQUOT):
            raise
        return e
    return None


def _remove(dst: Path, _src: Path, _op: Op, _j: Journal) -> None:
    if _lexists(dst) and not _is_real_dir(dst):
        dst.unlink()


def _rmdir(dst: Path, _src: Path, _op: Op, _j: Journal) -> None:
    try:
        dst.rmdir()
    except FileNotFoundError:
        pass
    except OSError as e:
        if e.errno != errno.ENOTEMPTY:
            raise
        log.warning(
            "directory_kept", path=str(dst), why="not empty: holds files the agent does not manage"
        )


def _chmod(dst: Path, _src: Path, op: Op, _j: Journal) -> None:
    if _lexists(dst) and not os.path.islink(dst):
        os.chmod(dst, op[2])


_OPS: dict[str, Callable[[Path, Path, Op, Journal], None]] = {
    "clear": _clear,
    "mkdir": _mkdir,
    "place": _place,
    "remove": _remove,
    "rmdir": _rmdir,
    "chmod": _chmod,
}
