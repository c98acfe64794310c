"""``syncagent publish``: on the primary, turn the source tree into published generations.

A walk costs every secondary a full listing per check, growing with the tree; a published
generation costs one read of HEAD. The publisher watches the source (inotify sees every write,
whatever its mtime), waits for quiet (``publish.settle``), and builds a generation:

1. scan the profile's synced set (plus its seeds, so fresh secondaries can take them);
2. copy every file into ``objects/<sha256>`` while hashing it (an object is written once,
   never changed; identical content is stored once);
3. re-stat the source: a file that changed meanwhile means another round after the settle;
4. validate the copies (hard-linked into a private view, so exactly the published bytes are
   checked) with the secondaries' own validator: a tree that fails is not published;
5. write the manifest (named by its hash), then HEAD last (temp file, fsync, rename);
6. drop manifests and objects no longer named by the newest ``publish.keep`` generations.

It rescans fully at start and every ``publishdir.RESCAN_INTERVAL`` (a missed event cannot
hide a change), re-confirming HEAD's ``checked_at`` when nothing changed, so a secondary can
tell a publisher that stopped (a stale HEAD: it walks instead). It confirms only a HEAD it
wrote itself: the first build after a start gives an unchanged generation a fresh sequence
(``publish.rules.head_action``), because a publish dir restored from a backup may hold a HEAD
older than what secondaries applied, which they would refuse as ``publish_rollback`` forever.

Builds hold an exclusive lock on the publish dir (flock, gone with the process), so
``publish --once`` beside a running publisher cannot prune objects the other is about to name.
Every failure is an outcome with a reason code (``disk`` for a full disk), the same word in
the log line and in ``syncagent_publish_failures_total`` (publish/port.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fcntl
import hashlib
import os
import shutil
import signal
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass, field

import structlog

from syncagent import fswatch
from syncagent.daemon.http import bind_failure
from syncagent.errors import ExitCode, Problem, Reason, os_error
from syncagent.local.livetree import LiveEntry, scan
from syncagent.local.manifest import Record, generation_id
from syncagent.local.state import atomic_write, fsync_dir, write_all
from syncagent.local.validate import validate_tree
from syncagent.names import check_name, check_symlink
from syncagent.publish import port as pm
from syncagent.publish.rules import HeadAction, Published, head_action, next_sequence, retained
from syncagent.publishdir import (
    HEAD_NAME,
    MANIFESTS,
    OBJECTS,
    RESCAN_INTERVAL,
    SYMLINK_MODE,
    Head,
    encode_head,
    encode_manifest,
    manifest_objects,
    parse_head,
)
from syncagent.report import problems_json
from syncagent.settings import PUBLISH_LISTEN_OFF, Settings
from syncagent.tree import Kind, Listing, RemoteEntry, parent, sanitise_mode
from syncagent.xroad.paths import (
    VERSION_MAX_BYTES,
    VERSION_PATH,
    major_version,
    missing_required,
)

log = structlog.get_logger("syncagent.publish.builder")

# The objects are the primary's configuration, secrets included (keyconf.xml, the .p12 keys,
# db.properties): readable by the source's group only, which the read-only SFTP account
# (xroad-slave, in group xroad) reads through, exactly as it reads /etc/xroad itself.
DIR_MODE = 0o750
FILE_MODE = 0o640
VIEW = ".view"  # private validation view inside the publish dir
TMP_PREFIX = ".tmp-"
CHUNK = 1024 * 1024


@dataclass
class PublishOutcome:
    """What one build did: published, confirmed, or why not (the log says the same)."""

    result: str  # publish.port.RESULTS, or "config" (refused before any build)
    head: Head | None = None
    message: str = ""
    problems: list[Problem] = field(default_factory=list)
    reason: Reason | None = None  # set exactly when the build failed or was rejected
    restamped: bool = False  # an unchanged generation under a new sequence (the first build)

    @property
    def exit_code(self) -> ExitCode:
        return {
            "published": ExitCode.OK,
            "unchanged": ExitCode.OK,
            "rejected": ExitCode.REJECTED,
            "not_initialized": ExitCode.NOT_INITIALIZED,
            "config": ExitCode.CONFIG,
        }.get(self.result, ExitCode.FAILED)

    def to_json(self) -> dict[str, object]:
        doc: dict[str, object] = {"result": self.result, "exit_code": int(self.exit_code)}
        if self.head is not None:
            doc.update(generation=self.head.generation, sequence=self.head.sequence)
        if self.restamped:
            doc["restamped"] = True
        if self.reason is not None:
            doc["reason"] = str(self.reason)
        if self.message:
            doc["error"] = self.message
        if self.problems:
            doc["problems"] = problems_json(self.problems)
        return doc

    def summary(self) -> str:
        if self.head is not None and self.result in ("published", "unchanged"):
            return f"{self.result}: generation {self.head.generation} #{self.head.sequence}"
        shown = "; ".join(str(p) for p in self.problems[:5])
        return f"{self.result}: {self.message}" + (f": {shown}" if shown else "")


class _Moved(Exception):
    """The source changed while it was copied: build again after the settle."""


_Identity = tuple[int, int, int, int]  # ino, size, mtime_ns, ctime_ns


def _identity(st: os.stat_result) -> _Identity:
    return st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns


class Publisher:
    """Builds generations of one source into one publish dir (blocking: run in a thread)."""

    def __init__(self, settings: Settings) -> None:
        self.sync = settings.sync
        self.source = settings.publish.source
        self.dir = settings.publish.dir
        self.keep = settings.publish.keep
        self.objects = self.dir / OBJECTS
        self.manifests = self.dir / MANIFESTS
        self.head_file = self.dir / HEAD_NAME
        self._hashed: dict[str, tuple[_Identity, str]] = {}  # path -> (identity, sha256)
        # the last listing and hashes that passed validation: same bytes, same verdict
        self._validated: tuple[Listing, dict[str, str]] | None = None
        self.group: int | None = None  # the source's group, read when a build starts
        self.written: int | None = None  # the sequence of the last HEAD this publisher wrote

    def check_location(self) -> str | None:
        """Why the publish dir cannot be used with this source, if it cannot."""
        src, pdir = self.source.resolve(), self.dir.resolve()
        if pdir == src or src in pdir.parents:
            return f"publish.dir {self.dir} lies inside publish.source {self.source}"
        if not self.source.is_dir():
            return f"publish.source {self.source} is not a directory"
        return None

    def head(self) -> Head | None:
        try:
            return parse_head(self.head_file.read_bytes())
        except (OSError, ValueError):
            return None

    def build(self) -> PublishOutcome:
        """One generation of the source as it is now, or why not."""
        try:
            self._ensure_dirs()
            with self._locked():
                return self._build()
        except _Moved as e:
            return PublishOutcome("moved", message=str(e))
        except FileNotFoundError as e:
            return PublishOutcome("moved", message=f"{e.filename} vanished while it was published")
        except OSError as e:
            err = os_error(e, str(e.filename or self.dir), Reason.APPLY)
            return PublishOutcome("failed", message=err.message, reason=err.reason)

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """One build at a time per publish dir, whichever process runs it: another build's
        prune would take objects this one stored but has not named yet."""
        fd = os.open(self.dir, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def usage(self) -> pm.Usage:
        """Objects and bytes in the publish dir now (after the last prune)."""
        objects = nbytes = 0
        for d in (self.objects, self.manifests):
            with contextlib.suppress(FileNotFoundError), os.scandir(d) as it:
                for entry in it:
                    with contextlib.suppress(FileNotFoundError):
                        nbytes += entry.stat(follow_symlinks=False).st_size
                        if d is self.objects and not entry.name.startswith("."):
                            objects += 1
        with contextlib.suppress(FileNotFoundError):
            nbytes += self.head_file.stat().st_size
        return pm.Usage(objects, nbytes)

    def _ensure_dirs(self) -> None:
        self.group = self.source.stat().st_gid
        for d in (self.dir, self.objects, self.manifests):
            d.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
            st = d.stat()
            if st.st_gid != self.group:
                os.chown(d, -1, self.group)
            if stat.S_IMODE(st.st_mode) != DIR_MODE:
                d.chmod(DIR_MODE)

    def _build(self) -> PublishOutcome:
        seeded = scan(self.source, self.sync.path_filter(self.sync.seed))
        core = frozenset(scan(self.source, self.sync.path_filter()).entries)
        problems = _name_problems(seeded.entries)
        if problems:
            return _rejected("unsafe names in the source", problems)
        listing: Listing = {}
        hashes: dict[str, str] = {}
        for path, lv in sorted(seeded.entries.items()):
            if lv.kind is Kind.DIR:
                listing[path] = RemoteEntry(Kind.DIR, sanitise_mode(lv.mode), 0, 0)
            elif lv.kind is Kind.SYMLINK:
                listing[path] = RemoteEntry(Kind.SYMLINK, SYMLINK_MODE, 0, 0, lv.link)
            else:
                sha, entry = self._store(path)
                listing[path], hashes[path] = entry, sha
        self._check_still(seeded.entries)
        files = [p for p, e in listing.items() if e.kind is Kind.FILE]
        if self.sync.xroad_checks:
            dirs = [p for p, e in listing.items() if e.kind is Kind.DIR]
            missing = missing_required(files, dirs, major_version(self._version()))
            if missing:
                return PublishOutcome(
                    "not_initialized",
                    message="source not initialized: missing " + ", ".join(missing),
                    reason=Reason.NOT_INITIALIZED,
                )
        if (listing, hashes) != self._validated:  # a rescan of the same bytes needs no verdict
            problems = self._validate(listing, hashes)
            if problems:
                return _rejected("the source failed validation", problems)
            self._validated = (listing, hashes)
        generation = generation_id(
            _records({p: e for p, e in listing.items() if p in core}, hashes)
        )
        return self._publish(generation, listing, hashes)

    def _store(self, path: str) -> tuple[str, RemoteEntry]:
        """Copy one source file into its object (hashing while copying), unless an object
        with the same identity was stored before."""
        full = self.source / path
        fd = os.open(full, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise _Moved(f"{path} is no longer a regular file")
            entry = RemoteEntry(Kind.FILE, sanitise_mode(st.st_mode), st.st_size, int(st.st_mtime))
            cached = self._hashed.get(path)
            if cached is not None and cached[0] == _identity(st) and self._has(cached[1]):
                return cached[1], entry
            sha, size = self._copy(fd)
            if size != st.st_size or _identity(os.fstat(fd)) != _identity(st):
                raise _Moved(f"{path} changed while it was published")
        finally:
            os.close(fd)
        self._hashed[path] = (_identity(st), sha)
        return sha, entry

    def _has(self, sha: str) -> bool:
        return (self.objects / sha).is_file()

    def _copy(self, src: int) -> tuple[str, int]:
        h = hashlib.sha256()
        tmp = self.objects / f"{TMP_PREFIX}{os.getpid()}-{time.monotonic_ns()}"
        out = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
        size = 0
        try:
            while chunk := os.read(src, CHUNK):
                h.update(chunk)
                size += len(chunk)
                write_all(out, chunk)
            os.fchmod(out, FILE_MODE)
            if self.group is not None and os.fstat(out).st_gid != self.group:
                os.fchown(out, -1, self.group)
            os.fsync(out)
        except BaseException:
            os.close(out)
            tmp.unlink(missing_ok=True)
            raise
        os.close(out)
        sha = h.hexdigest()
        if self._has(sha):
            tmp.unlink()
        else:
            os.replace(tmp, self.objects / sha)
        return sha, size

    def _check_still(self, before: dict[str, LiveEntry]) -> None:
        """The whole tree must have held still for the whole build, not just each file."""
        again = scan(self.source, self.sync.path_filter(self.sync.seed)).entries
        if again != before:
            moved = sorted(p for p in before.keys() | again.keys() if before.get(p) != again.get(p))
            raise _Moved(f"the source changed while it was published ({', '.join(moved[:3])})")

    def _version(self) -> bytes | None:
        try:
            with (self.source / VERSION_PATH).open("rb") as fh:
                return fh.read(VERSION_MAX_BYTES)
        except OSError:
            return None

    def _validate(self, listing: Listing, hashes: dict[str, str]) -> list[Problem]:
        """The secondaries' validator over exactly the published bytes: the objects, linked
        into a private view of the tree."""
        view = self.dir / VIEW
        if view.exists() or view.is_symlink():
            shutil.rmtree(view)
        view.mkdir(mode=0o700)
        try:
            for path, e in sorted(listing.items()):
                if e.kind is Kind.DIR:
                    (view / path).mkdir(mode=0o700)
                elif e.kind is Kind.SYMLINK:
                    os.symlink(e.link or "", view / path)
                else:
                    os.link(self.objects / hashes[path], view / path)
            files = [p for p, e in listing.items() if e.kind is Kind.FILE]
            return validate_tree(view, files, xroad=self.sync.xroad_checks)
        finally:
            shutil.rmtree(view, ignore_errors=True)

    def _publish(self, generation: str, listing: Listing, hashes: dict[str, str]) -> PublishOutcome:
        now = time.time()
        previous = self.head()
        generations, unreadable = self._generations()
        intact = previous is not None and any(
            (g.manifest, g.sequence) == (previous.manifest, previous.sequence) for g in generations
        )
        action = head_action(previous, generation, intact, self.written)
        if action is HeadAction.CONFIRM:
            assert previous is not None
            head = dataclasses.replace(previous, checked_at=now)
            atomic_write(self.head_file, encode_head(head), FILE_MODE, self.group)
            return PublishOutcome("unchanged", head)
        sequences = [g.sequence for g in generations] + ([previous.sequence] if previous else [])
        sequence = next_sequence(max(sequences, default=None), now)
        data = encode_manifest(generation, sequence, listing, hashes)
        name = hashlib.sha256(data).hexdigest()
        atomic_write(self.manifests / name, data, FILE_MODE, self.group)
        fsync_dir(self.objects)  # every object's name is durable before a HEAD can name it
        restamp = action is HeadAction.RESTAMP
        first = previous.published_at if restamp and previous is not None else now
        head = Head(generation, sequence, name, first, now)
        atomic_write(self.head_file, encode_head(head), FILE_MODE, self.group)
        self.written = sequence
        generations.append(Published(sequence, name, frozenset(hashes.values())))
        self._prune(generations, unreadable, name)
        if restamp:
            return PublishOutcome("unchanged", head, restamped=True)
        log.info("published", generation=generation, sequence=sequence, files=len(hashes))
        return PublishOutcome("published", head)

    def _generations(self) -> tuple[list[Published], list[str]]:
        """Every intact manifest in the publish dir, and the names of the others (torn, foreign
        or not hashing to their name: nothing may follow them)."""
        generations: list[Published] = []
        unreadable: list[str] = []
        for m in self.manifests.iterdir():
            if m.name.startswith("."):
                continue
            try:
                data = m.read_bytes()
                if hashlib.sha256(data).hexdigest() != m.name:
                    raise ValueError("other bytes than its name")
                sequence, objects = manifest_objects(data)
            except (OSError, ValueError, KeyError, TypeError):
                unreadable.append(m.name)
                continue
            generations.append(Published(sequence, m.name, objects))
        return generations, unreadable

    def _prune(self, generations: list[Published], unreadable: list[str], current: str) -> None:
        """Keep what the newest ``keep`` generations name (HEAD's always among them); drop the
        rest, unreadable manifests and stray temp files. Runs only after HEAD is written."""
        keep = retained(generations, self.keep, current)
        for m in self.manifests.iterdir():
            if m.name not in keep.manifests or m.name in unreadable:
                m.unlink(missing_ok=True)
        for o in self.objects.iterdir():
            if o.name not in keep.objects:
                o.unlink(missing_ok=True)


def _records(listing: Listing, hashes: dict[str, str]) -> dict[str, Record]:
    """Records as a walking secondary builds them, so both compute one generation id."""
    return {
        p: Record(e.kind, e.mode, hashes.get(p), link=e.link, size=e.size)
        for p, e in listing.items()
    }


def _name_problems(entries: dict[str, LiveEntry]) -> list[Problem]:
    problems = [
        problem
        for path in sorted(entries)
        if (problem := check_name(path, path.rsplit("/", 1)[-1])) is not None
    ]
    paths = frozenset(entries)
    problems += [
        problem
        for path, e in sorted(entries.items())
        if e.kind is Kind.SYMLINK and (problem := check_symlink(path, e.link or "", paths))
    ]
    problems += [
        Problem(path, "its parent is not a directory")
        for path in entries
        if parent(path) and entries.get(parent(path), LiveEntry(Kind.FILE, 0)).kind is not Kind.DIR
    ]
    return problems


def _rejected(message: str, problems: list[Problem]) -> PublishOutcome:
    return PublishOutcome("rejected", message=message, problems=problems, reason=Reason.VALIDATION)


# ---- the watch loop --------------------------------------------------------------------------


def _log_outcome(outcome: PublishOutcome, why: str) -> None:
    doc = outcome.to_json()
    if outcome.result in ("published", "unchanged"):
        log.info("publish", why=why, **doc)
    elif outcome.result == "moved":
        log.info("publish", why=why, **doc, action="building again after the settle")
    else:
        log.error(
            "publish",
            why=why,
            **doc,
            action="not published: secondaries keep the last published generation",
        )


async def publish_once(settings: Settings) -> PublishOutcome:
    """One build (``syncagent publish --once``): retried while the source keeps moving."""
    publisher = Publisher(settings)
    if why := publisher.check_location():
        return PublishOutcome("config", message=why, reason=Reason.CONFIG)
    for _ in range(4):
        outcome = await asyncio.to_thread(publisher.build)
        _log_outcome(outcome, "once")
        if outcome.result != "moved":
            return outcome
        await asyncio.sleep(settings.publish.settle)
    return outcome


async def _measured(
    publisher: Publisher, state: pm.PublisherState, metrics: pm.PublishMetrics
) -> PublishOutcome:
    """One build, reported to the state and the metrics with the outcome's own reason."""
    state.building_since = started = time.monotonic()
    try:
        outcome = await asyncio.to_thread(publisher.build)
        usage = await asyncio.to_thread(publisher.usage) if outcome.head is not None else None
    finally:
        state.building_since = None
    state.record(outcome.result, outcome.head, usage)
    metrics.observe(outcome.result, outcome.reason, time.monotonic() - started)
    return outcome


async def run_publisher(settings: Settings, stop: asyncio.Event | None = None) -> int:
    """``syncagent publish``: watch, settle, build, until SIGTERM/SIGINT (or ``stop``)."""
    own_signals = stop is None
    stop = stop or asyncio.Event()
    publisher = Publisher(settings)
    if why := publisher.check_location():
        log.error("cannot_publish", reason=str(Reason.CONFIG), error=why)
        return int(ExitCode.CONFIG)
    state = pm.PublisherState.found(*await asyncio.to_thread(_found, publisher))
    metrics = pm.PublishMetrics(state)
    listen = settings.publish.listen
    runner = None
    if listen != PUBLISH_LISTEN_OFF:
        try:
            runner, port = await pm.serve(state, metrics, listen)
        except OSError as e:
            log.error("cannot_listen", reason=str(Reason.CONFIG), listen=listen, error=str(e))
            return int(bind_failure(e))
        log.info("serving", listen=listen, port=port)
    try:
        return await _watch_loop(settings, publisher, state, metrics, stop, own_signals)
    finally:
        if runner is not None:
            await runner.cleanup()


def _found(publisher: Publisher) -> tuple[Head | None, pm.Usage]:
    return publisher.head(), publisher.usage()


async def _watch_loop(
    settings: Settings,
    publisher: Publisher,
    state: pm.PublisherState,
    metrics: pm.PublishMetrics,
    stop: asyncio.Event,
    own_signals: bool,
) -> int:
    settle = settings.publish.settle
    dirty = asyncio.Event()
    last_event = [time.monotonic()]

    def on_change(_changes: fswatch.Changes) -> None:
        last_event[0] = time.monotonic()
        dirty.set()

    loop = asyncio.get_running_loop()
    signals = (signal.SIGTERM, signal.SIGINT) if own_signals else ()
    for sig in signals:
        loop.add_signal_handler(sig, stop.set)
    watcher = asyncio.create_task(
        fswatch.watch(
            "publish-source", lambda: (publisher.source,), on_change, stop, recursive=True
        ),
        name="publish-watch",
    )
    log.info("publishing", source=str(publisher.source), dir=str(publisher.dir), settle=settle)
    why = "start"
    state.running = True
    try:
        while not stop.is_set():
            while (quiet := time.monotonic() - last_event[0]) < settle and not stop.is_set():
                await fswatch.sleep_or_stop(stop, settle - quiet)
            if stop.is_set():
                break
            dirty.clear()
            outcome = await _measured(publisher, state, metrics)
            _log_outcome(outcome, why)
            if outcome.result == "moved":
                last_event[0] = time.monotonic()
                dirty.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(_first(dirty, stop), RESCAN_INTERVAL)
            why = "change" if dirty.is_set() else "rescan"
    finally:
        state.running = False
        stop.set()
        for sig in signals:
            loop.remove_signal_handler(sig)
        await asyncio.gather(watcher, return_exceptions=True)
    log.info("stopped")
    return int(ExitCode.OK)


async def _first(*events: asyncio.Event) -> None:
    waits = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waits:
            w.cancel()
