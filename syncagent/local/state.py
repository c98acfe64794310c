"""The agent's private state directory: every file in it is named here, and only here.

    <state_dir>/lock                 one sync at a time, across processes (``locked``)
    <state_dir>/current.json         record of the live generation
    <state_dir>/journal.json         present only while an apply is in flight
    <state_dir>/next.json            the record the journal's apply makes current
    <state_dir>/staging/             candidate tree being built
    <state_dir>/generations/<id>/    immutable copy of a generation (live + kept ones):
                                     links among generations, never to the live tree
    <state_dir>/generations/<id>.json  its record
    <state_dir>/trash/               pruned generations, deleted after the sync that pruned them
    <state_dir>/status.json          the daemon's last status (``syncagent status``)
    <state_dir>/last-once.json       what the last ``syncagent once`` did (``syncagent status``)
    <state_dir>/daemon.pid           pid and start time of the running daemon
    <state_dir>/paused               pause flag (``syncagent pause``)
    <state_dir>/sync-now             trigger file (``syncagent sync-now`` without a signal)
    <state_dir>/known_hosts.pinned   the primary's key under host_key_policy = accept-new
    <state_dir>/verify.json          where the rotating content verification stands
    <state_dir>/published.json       the last HEAD applied from the primary's publish dir

It holds copies of secrets (db.properties), so it is 0700.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import os
import shutil
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from syncagent.errors import Reason, SyncError, os_error
from syncagent.local.manifest import Manifest
from syncagent.local.verify import Cursor


@dataclass(frozen=True)
class Seen:
    """What a secondary last applied from a HEAD (kept in its state dir)."""

    generation: str  # the HEAD's generation id
    sequence: int
    applied: str  # the live generation that sync left (differs when seeds were taken)


def as_dir_owner(fd: int, parent: Path, group: int | None = None) -> None:
    """Run as root, give what we create to the owner of the directory it is in: a root shell's
    command (``kubectl exec``) must not leave the unprivileged daemon a file it cannot read.
    Unprivileged, only ``group`` (one of ours) is set."""
    uid, gid = -1, (-1 if group is None else group)
    if os.geteuid() == 0:
        st = os.stat(parent)
        uid, gid = st.st_uid, (st.st_gid if group is None else group)
    mine = os.fstat(fd)
    if (uid, gid) != (-1, -1) and (mine.st_uid, mine.st_gid) != (uid, gid):
        os.fchown(fd, uid, gid)


def atomic_write(path: Path, data: bytes, mode: int = 0o600, group: int | None = None) -> None:
    """Write-fsync-rename-fsync: readers see the old or the new bytes, never a torn file.
    ``group``: the file's group, set before it becomes visible; run as root, the file is the
    directory owner's (``as_dir_owner``)."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, mode)
    try:
        as_dir_owner(fd, path.parent, group)
        write_all(fd, data)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    os.close(fd)
    os.replace(tmp, path)
    fsync_dir(path.parent)


# The record of the live generation, parsed once per change rather than once per sync (a
# 10k-file record takes ~60 ms to parse); keyed by the file's identity, so any rewrite (ours
# or anyone's) is read again. A few entries: one per state dir a process uses.
_RECORDS: dict[Path, tuple[tuple[int, ...], Manifest]] = {}
_RECORDS_KEPT = 4


def _identity(path: Path) -> tuple[int, ...]:
    st = os.stat(path)
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _remember(path: Path, manifest: Manifest, key: tuple[int, ...] | None = None) -> None:
    """``key``: the identity taken before the bytes were read (a file replaced meanwhile
    then only costs a parse more)."""
    _RECORDS.pop(path, None)
    while len(_RECORDS) >= _RECORDS_KEPT:
        del _RECORDS[next(iter(_RECORDS))]
    _RECORDS[path] = (_identity(path) if key is None else key, manifest)


def write_all(fd: int, data: bytes) -> None:
    """Every byte: a nearly full disk (or a pipe) can take a write only in part."""
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class StateDir:
    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock = path / "lock"
        self.journal = path / "journal.json"
        self.next_record = path / "next.json"
        self.current_file = path / "current.json"
        self.staging = path / "staging"
        self.generations = path / "generations"
        self.trash = path / "trash"
        self.status_file = path / "status.json"
        self.last_once_file = path / "last-once.json"
        self.pid_file = path / "daemon.pid"
        self.pause_flag = path / "paused"
        self.trigger = path / "sync-now"
        self.pinned_host_key = path / "known_hosts.pinned"
        self.verify_file = path / "verify.json"
        self.published_file = path / "published.json"

    @property
    def candidate(self) -> Path:
        """Where a sync builds its candidate tree."""
        return self.staging / "tree"

    def ensure(self) -> None:
        """Create the state dir and its directories (run as root: the owner's of its parent,
        see ``as_dir_owner``)."""
        try:
            for d in (self.path, self.generations, self.staging, self.trash):
                if d.is_dir():
                    continue
                d.mkdir(mode=0o700, parents=True, exist_ok=True)
                if os.geteuid() == 0:
                    fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
                    try:
                        as_dir_owner(fd, d.parent)
                    finally:
                        os.close(fd)
        except OSError as e:
            raise os_error(e, f"cannot create state_dir {self.path}", Reason.CONFIG) from None

    def check_same_filesystem(self, target: Path) -> None:
        """rename(2) cannot cross filesystems; find out at start, not mid-apply."""
        if self.path.stat().st_dev != target.stat().st_dev:
            raise SyncError(
                Reason.CONFIG,
                f"state_dir {self.path} is on another filesystem than "
                f"target {target}: atomic rename is impossible; put it inside the "
                "target's filesystem",
            )

    def current(self, move_damaged: bool = True) -> Manifest | None:
        """The live generation's record. Unreadable (another owner, mode 0600: a command run
        as root) is a SyncError like every other failure here, never a bare OSError that a
        caller expecting SyncError lets through. ``move_damaged=False``: a reader that must
        not change anything (a probe) leaves a damaged record where it is."""
        try:
            key = _identity(self.current_file)
            cached = _RECORDS.get(self.current_file)
            if cached is not None and cached[0] == key:
                return cached[1]
            manifest = Manifest.from_json(json.loads(self.current_file.read_bytes()))
        except FileNotFoundError:
            return None
        except OSError as e:
            raise os_error(e, f"cannot read {self.current_file}") from None
        except (ValueError, KeyError, TypeError) as e:
            if not move_damaged:
                raise SyncError(Reason.APPLY, f"{self.current_file} is damaged ({e})") from None
            # a damaged record only costs a full re-fetch; the live tree is still intact
            self.current_file.rename(self.current_file.with_suffix(".corrupt"))
            raise SyncError(
                Reason.APPLY,
                f"{self.current_file} was unreadable ({e}); moved "
                "aside, the next sync re-fetches everything",
            ) from None
        _remember(self.current_file, manifest, key)
        return manifest

    def write_current(self, manifest: Manifest) -> None:
        atomic_write(self.current_file, manifest.dumps())
        _remember(self.current_file, manifest)

    def make_current(self, record: Path, manifest: Manifest | None) -> None:
        """Rename a record written (and fsynced) earlier into place: the apply's last step
        costs no second serialisation of a 10k-file record."""
        os.replace(record, self.current_file)
        fsync_dir(self.path)
        if manifest is not None:
            _remember(self.current_file, manifest)

    def verify_cursor(self) -> Cursor:
        """Where verification stands; a missing or damaged file only restarts the pass."""
        try:
            doc = json.loads(self.verify_file.read_bytes())
        except (OSError, ValueError):
            return Cursor()
        return Cursor.from_json(doc) if isinstance(doc, dict) else Cursor()

    def write_verify_cursor(self, cursor: Cursor) -> None:
        atomic_write(self.verify_file, json.dumps(cursor.to_json()).encode())

    def seen_head(self) -> Seen | None:
        """The last HEAD applied; a missing or damaged file only costs one manifest read (the
        sequence check then restarts from the next HEAD)."""
        try:
            doc = json.loads(self.published_file.read_bytes())
            return Seen(str(doc["generation"]), int(doc["sequence"]), str(doc["applied"]))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def forget_seen_head(self) -> Seen | None:
        """An operator's ``accept-rollback``: the next HEAD is followed whatever its sequence
        (a primary restored from a backup, or replaced by one whose clock is behind)."""
        seen = self.seen_head()
        self.published_file.unlink(missing_ok=True)
        fsync_dir(self.path)
        return seen

    def write_seen_head(self, seen: Seen) -> None:
        doc = {"generation": seen.generation, "sequence": seen.sequence, "applied": seen.applied}
        atomic_write(self.published_file, json.dumps(doc).encode())

    def generation_dir(self, gen: str) -> Path:
        return self.generations / gen

    def generation_record(self, gen: str) -> Path:
        return self.generations / f"{gen}.json"

    def generation_manifest(self, gen: str) -> Manifest | None:
        try:
            doc = json.loads(self.generation_record(gen).read_bytes())
        except FileNotFoundError:
            return None
        return Manifest.from_json(doc)

    def store_generation(self, manifest: Manifest, farm: Path, data: bytes | None = None) -> Path:
        """Move a candidate tree into the generation store under its id; ``data``: the
        record already serialised (``manifest.dumps()``)."""
        dest = self.generation_dir(manifest.generation)
        if dest.exists():
            shutil.rmtree(dest)
        farm.rename(dest)
        record = manifest.dumps() if data is None else data
        atomic_write(self.generation_record(manifest.generation), record)
        return dest

    def kept_generations(self) -> list[str]:
        """Stored generation ids, newest first."""
        metas = sorted(
            self.generations.glob("*.json"), key=lambda p: p.stat().st_mtime, reverse=True
        )
        return [m.stem for m in metas if (self.generations / m.stem).is_dir()]

    def prune(self, live: str, keep: int) -> None:
        """Drop generations beyond ``keep``: their trees move to the trash (one rename each,
        under the lock), and ``empty_trash`` deletes them later, off the sync's path (10,000
        unlinks per pruned generation of a 10k-file tree)."""
        kept = [g for g in self.kept_generations() if g != live][:keep]
        for entry in self.generations.iterdir():
            gen = entry.name.removesuffix(".json")
            if gen != live and gen not in kept:
                if entry.is_dir():
                    entry.rename(self.trash / f"{entry.name}.{time.time_ns()}")
                else:
                    entry.unlink(missing_ok=True)

    def empty_trash(self) -> None:
        """Safe without the lock: nothing but prune puts anything there, under a fresh name."""
        with contextlib.suppress(FileNotFoundError):
            for entry in self.trash.iterdir():
                shutil.rmtree(entry, ignore_errors=True)


def open_state(state_dir: Path, target: Path) -> StateDir:
    """The state dir, created if needed, on the target's filesystem."""
    state = StateDir(state_dir)
    state.ensure()
    state.check_same_filesystem(target)
    return state


@contextlib.asynccontextmanager
async def locked(state: StateDir, timeout: float) -> AsyncIterator[None]:
    """Hold the state dir's lock: one sync, rollback or roll-forward at a time, across
    processes. Waits up to ``timeout`` without blocking the event loop."""
    fd = os.open(state.lock, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        as_dir_owner(fd, state.path)
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise SyncError(Reason.APPLY, f"another sync holds {state.lock}") from None
                await asyncio.sleep(0.1)
        yield
    finally:
        os.close(fd)
