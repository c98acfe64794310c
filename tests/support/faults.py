"""Shared by the fault tests: what a generation is, a primary writer that saves like X-Road, and
the checks that say "the live tree is exactly one validated generation".

A generation is identified the way the engine does it (syncagent.local.manifest.generation_id over
path, kind, sanitised mode and content of the synced set), computed here independently from the
files on disk, so a check never trusts the agent's own record of what it applied.
"""

from __future__ import annotations

import functools
import hashlib
import os
import random
import shutil
import stat
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from syncagent.demo.sample_tree import (
    KEYCONF,
    add_softtoken_key,
    remove_softtoken_key,
)
from syncagent.excludes import PathFilter
from syncagent.local.manifest import Record, generation_id
from syncagent.local.state import StateDir
from syncagent.local.validate import validate_tree
from syncagent.tree import Kind, sanitise_mode
from syncagent.xroad.paths import SOFTTOKEN_DIR, softtoken_key_ids

# What build_secondary_local writes: never synced, never touched by a sync.
NODE_LOCAL = frozenset(
    {
        "conf.d/node.ini",
        "xroad.properties",
        "gpghome",
        "gpghome/pubring.kbx",
        "globalconf",
        "globalconf/instance-identifier",
    }
)


def tree_records(root: Path, pf: PathFilter) -> dict[str, Record]:
    """The synced set of a tree on disk, as the engine would record it (no local identities)."""
    out: dict[str, Record] = {}

    def walk(rel: str) -> None:
        with os.scandir(root / rel if rel else root) as it:
            for de in sorted(it, key=lambda d: d.name):
                path = f"{rel}/{de.name}" if rel else de.name
                st = de.stat(follow_symlinks=False)
                if stat.S_ISDIR(st.st_mode):
                    if pf.descend(path):
                        out[path] = Record(Kind.DIR, sanitise_mode(st.st_mode))
                        walk(path)
                elif pf.excluded(path, False):
                    continue
                elif stat.S_ISLNK(st.st_mode):
                    out[path] = Record(Kind.SYMLINK, 0o777, link=os.readlink(de.path))
                else:
                    digest = hashlib.sha256(Path(de.path).read_bytes()).hexdigest()
                    out[path] = Record(Kind.FILE, sanitise_mode(st.st_mode), digest)

    walk("")
    return out


def generation_of(root: Path, pf: PathFilter) -> str:
    return generation_id(tree_records(root, pf))


def all_paths(target: Path, state_rel: str = ".syncagent") -> set[str]:
    """Every entry below target, unfiltered, except the agent's state dir."""
    found: set[str] = set()
    for dirpath, dirnames, filenames in os.walk(target):
        rel_dir = os.path.relpath(dirpath, target)
        if rel_dir == ".":
            dirnames[:] = [d for d in dirnames if d != state_rel]
        for name in [*dirnames, *filenames]:
            found.add(name if rel_dir == "." else f"{rel_dir}/{name}")
    return found


def content(rec: Record) -> tuple[object, ...]:
    return (rec.kind, rec.mode, rec.sha256, rec.link)


def check_live_generation(
    target: Path,
    state_dir: Path,
    pf: PathFilter,
    *,
    published: set[str] | None = None,
    node_local: dict[str, bytes] | None = None,
) -> str:
    """Assert the live tree is exactly the generation current.json names, and that it passes
    validation; return its id. ``published``: the generations the primary ever held."""
    state = StateDir(state_dir)
    assert not state.journal.exists(), "an apply is still in flight after recovery"
    current = state.current()
    assert current is not None, "no current.json after a sync"
    live = tree_records(target, pf)
    recorded = {p: content(r) for p, r in current.records.items()}
    on_disk = {p: content(r) for p, r in live.items()}
    if recorded != on_disk:
        diff = sorted(
            p for p in recorded.keys() | on_disk.keys() if recorded.get(p) != on_disk.get(p)
        )
        raise AssertionError(f"live tree differs from its manifest at {diff[:10]}")
    gen = generation_id(live)
    assert gen == current.generation, (gen, current.generation)
    if published is not None:
        assert gen in published, f"live generation {gen} was never a state of the primary"
    files = [p for p, r in live.items() if r.kind is Kind.FILE]
    problems = validate_tree(target, files, xroad=True)
    assert problems == [], problems
    strays = all_paths(target) - set(live) - NODE_LOCAL
    assert not strays, f"files in live directories that belong to no generation: {sorted(strays)}"
    if node_local is not None:
        assert read_node_local(target) == node_local
    return gen


def read_node_local(target: Path) -> dict[str, bytes]:
    return {
        p: (target / p).read_bytes()
        for p in NODE_LOCAL
        if (target / p).is_file() and not (target / p).is_symlink()
    }


Step = Callable[[], None]


class XRoadWriter:
    """Changes a primary tree the way X-Road saves it, one atomic step at a time.

    Key changes are prepared in a private shadow copy of ``signer/`` with the tree generator's
    own add/remove functions, then published in X-Road's order: new ``.p12`` files first, then
    ``keyconf.xml`` by rename; on removal ``keyconf.xml`` first, then the ``.p12``. Every file gets
    a new whole-second mtime (a fake clock), so no two versions of a file ever look alike in a
    listing. After each step the tree's generation id is recorded in ``published``.
    """

    def __init__(
        self, root: Path, pf: PathFilter, rng: random.Random, *, record: bool = True
    ) -> None:
        """``record=False``: real mtimes (now) and no generation bookkeeping, as X-Road itself."""
        self.root = root
        self.pf = pf
        self.rng = rng
        self.record = record
        st = os.stat(root)
        self.owner = (st.st_uid, st.st_gid)
        self.clock = int(time.time()) - 200_000
        self.counter = 0
        self.steps = 0
        self.shadow = Path(tempfile.mkdtemp(prefix="syncagent-writer-"))
        self.published: set[str] = {generation_of(root, pf)}
        self.extra_dirs: list[str] = []

    def close(self) -> None:
        shutil.rmtree(self.shadow, ignore_errors=True)

    # ---- single atomic steps -------------------------------------------------------------

    def _record(self) -> None:
        self.steps += 1
        if self.record:
            self.published.add(generation_of(self.root, self.pf))

    def put(self, rel: str, data: bytes, mode: int = 0o640) -> None:
        dest = self.root / rel
        self.counter += 1
        tmp = dest.parent / f"tmpconf{self.counter}.tmp"  # excluded, as X-Road's own temp files
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            os.write(fd, data)
            os.fchmod(fd, mode)
            os.fchown(fd, *self.owner)
        finally:
            os.close(fd)
        if self.record:
            self.clock += 1
            os.utime(tmp, (self.clock, self.clock))
        os.replace(tmp, dest)
        self._record()

    def unlink(self, rel: str) -> None:
        (self.root / rel).unlink()
        self._record()

    def mkdir(self, rel: str) -> None:
        path = self.root / rel
        path.mkdir(mode=0o750)
        os.chown(path, *self.owner)
        self._record()

    def rmdir(self, rel: str) -> None:
        (self.root / rel).rmdir()
        self._record()

    def chmod(self, rel: str, mode: int) -> None:
        os.chmod(self.root / rel, mode)
        self._record()

    # ---- bursts: several steps that belong together ----------------------------------------

    def _shadow_signer(self) -> None:
        shutil.rmtree(self.shadow / "signer", ignore_errors=True)
        (self.shadow / SOFTTOKEN_DIR).mkdir(parents=True)
        shutil.copy2(self.root / KEYCONF, self.shadow / KEYCONF)

    def key_ids(self) -> list[str]:
        return softtoken_key_ids((self.root / KEYCONF).read_bytes())

    def add_keys(self, n: int) -> Iterator[Step]:
        self._shadow_signer()
        new = [add_softtoken_key(self.shadow) for _ in range(n)]
        for key in new:
            p12 = f"{SOFTTOKEN_DIR}/{key}.p12"
            yield functools.partial(self.put, p12, (self.shadow / p12).read_bytes())
        keyconf = (self.shadow / KEYCONF).read_bytes()
        yield lambda: self.put(KEYCONF, keyconf, 0o660)

    def remove_keys(self, n: int) -> Iterator[Step]:
        ids = self.key_ids()
        victims = self.rng.sample(ids, min(n, len(ids) - 1))
        if not victims:
            return
        self._shadow_signer()
        for key in victims:
            remove_softtoken_key(self.shadow, key)
        keyconf = (self.shadow / KEYCONF).read_bytes()
        yield lambda: self.put(KEYCONF, keyconf, 0o660)
        for key in victims:
            yield functools.partial(self.unlink, f"{SOFTTOKEN_DIR}/{key}.p12")

    def edit_ini(self) -> Iterator[Step]:
        n = self.counter
        body = f"[proxy]\nhealth-check-port=5588\n; edit {n}\n" + "; pad\n" * (n % 7)
        yield lambda: self.put("conf.d/local.ini", body.encode())

    def add_dir(self) -> Iterator[Step]:
        rel = f"extra{self.counter}"
        self.extra_dirs.append(rel)
        yield lambda: self.mkdir(rel)
        yield lambda: self.put(f"{rel}/settings.properties", f"a={self.counter}\n".encode())
        yield lambda: self.put(f"{rel}/meta.json", f'{{"n": {self.counter}}}'.encode())

    def remove_dir(self) -> Iterator[Step]:
        if not self.extra_dirs:
            return
        rel = self.extra_dirs.pop(0)
        for name in ("meta.json", "settings.properties"):
            yield functools.partial(self.unlink, f"{rel}/{name}")
        yield lambda: self.rmdir(rel)

    def toggle_mode(self) -> Iterator[Step]:
        rel = "ssl/internal.crt"
        mode = stat.S_IMODE(os.stat(self.root / rel).st_mode)
        yield lambda: self.chmod(rel, 0o640 if mode == 0o660 else 0o660)

    def random_burst(self) -> Iterator[Step]:
        keys = len(self.key_ids())
        choices: list[Callable[[], Iterator[Step]]] = [self.edit_ini, self.toggle_mode]
        if keys < 7:
            choices += [lambda: self.add_keys(self.rng.randint(1, 3))] * 3
        if keys > 2:
            choices += [lambda: self.remove_keys(self.rng.randint(1, 2))] * 2
        choices += [self.add_dir] if len(self.extra_dirs) < 3 else [self.remove_dir]
        return self.rng.choice(choices)()


def reap(pid: int, deadline: float) -> int | None:
    """Exit status of pid if it ended (waits until ``deadline``), else None."""
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.001)


def fork_child(log: Path, work: Callable[[], int]) -> int:
    """Run ``work`` in a forked child, its stdout and stderr in ``log``; returns its pid. The
    child exits with what ``work`` returns (71 if it raised) and never returns to pytest.

    Forked, not started: the modules are already imported, so a cycle costs the work, not a
    Python start."""
    assert threading.active_count() == 1, "fork needs a single-threaded test process"
    pid = os.fork()
    if pid:
        return pid
    code = 70
    try:
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        code = work()
    except BaseException:
        code = 71
    finally:
        os._exit(code)


def decoy_root(root: Path) -> None:
    """What a path escape from a hostile primary's tree would reach: a shadow file and a decoy
    ini beside the secondary, which must never change."""
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "shadow").write_text("root:$6$not-really:19000:0:99999:7:::\n")
    (root / "escape.ini").write_text("[decoy]\nmust-not-change=1\n")
