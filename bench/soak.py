"""Footprint over time: the daemon through thousands of syncs, a churning primary, injected faults.

    sudo .venv/bin/python -m bench.soak [--quick] [--out DIR]     # ~15 min (--quick: ~2 min)
    sudo .venv/bin/python -m bench.soak --tracemalloc 10 --syncs 1200   # diagnostics, below
    sudo .venv/bin/python -m bench.soak --heaptrack --syncs 1200
    .venv/bin/python -m bench.soak --from-json bench/results/<date>-soak.json   # re-render

Three phases, one report (``<out>/<date>-soak[-quick].{json,md,png}``):

1. **Soak.** ``syncagent run`` as deployed (read-only ``xroad-slave`` through a real OpenSSH sshd,
   bench/infra.py's ``Primary``; strict host keys; profile ``sidecar``; every other setting at
   its default, ``log.level = info`` included) but with ``sync.interval = 0.25`` s (jitter 10%),
   so the scheduler alone fires about four syncs a second; every 20-40 s the soak also sends
   SIGHUP (what ``syncagent sync-now`` does), which coalesces with the schedule. It runs until
   the daemon has logged ``--syncs`` sync events (2,000; 300 with --quick), counting every sync
   whatever its outcome (applied, unchanged, failed, rejected), read from the daemon's own log.
   Meanwhile:

   - the primary churns: a burst every 0.4-1.6 s, written the way X-Road saves
     (tests/support/faults.py's ``XRoadWriter``: ``tmpconf*.tmp`` + rename, new ``.p12`` before
     ``keyconf.xml``, ``keyconf.xml`` before a ``.p12`` goes): ``conf.d/local.ini`` edits, new
     and removed directories of files, mode changes, softToken keys added and removed, and
     key rotations (one added, one removed). Steps of a burst are up to 0.15 s apart, so a sync
     may catch a burst half-way (every intermediate state is one X-Road itself produces). Every
     tenth edit gets a current mtime, so the agent's 2 s settle wait runs too; the rest are
     backdated (the writer's fake clock), as a file older than ``settle`` would be.
   - from sync 110 on, faults in rotation, evenly spread: sshd restarted (SIGTERM to listener
     and sessions, same port and host key), killed (SIGKILL) and restarted, stopped for a few
     seconds, frozen (SIGSTOP of listener and sessions, so the connection dies by keepalive);
     and refused trees held for ~10 rejected syncs, then fixed: a malformed ``.ini``, an XML
     file with an entity declaration, a ``services/*.conf`` that fails ``bash -n``, and a
     ``keyconf.xml`` naming a ``.p12`` that is not there yet (the key's ``.p12`` is published
     after its ``keyconf.xml``, X-Road's order reversed; key churn pauses meanwhile).

   Every 2 s the daemon's process is sampled from /proc: VmRSS (and RssAnon/RssFile),
   /proc/<pid>/fd, /proc/<pid>/task, and the inotify watches its inotify descriptors hold
   (/proc/<pid>/fdinfo). At the end the churn stops, every fault is undone, and the live tree
   must converge to the primary's generation and pass the fault tests' own check
   (``check_live_generation``: the tree is exactly its recorded, validated generation, one the
   primary really held); then SIGTERM must stop the daemon with exit 0.

   Targets, as measured: RSS growth is the median VmRSS over the last W syncs minus the median
   over syncs 100 to 100 + W (W = 5% of the run, at least 50), so one sample caught mid-sync
   does not decide it; the least-squares trend from sync 100 on, and the growth from the start
   of the second fault cycle (every fault kind has run once) are reported too. fds, threads
   and tasks are "flat" when the usual value (the mode) over the last W syncs is not above the
   mode over syncs 100 to 100 + W, and the last W syncs' 95th percentile is not above the
   highest value seen before them; transient peaks are syncs in flight (staged files, SFTP
   requests, reconnects), so neither a floor nor one sample's peak is the measure.

   **asyncio task count.** The daemon does not export it, and this bench may not change the
   product. A ``tasks`` field in ``/status`` (``len(asyncio.all_tasks())``) would be cheap, but
   it is an interface for one benchmark; Python 3.11 has no external task introspection (3.14's
   ``python -m asyncio ps`` is the debug-free way once available), and attaching a debugger
   every few seconds would stop the process. So the soak runs the daemon as
   ``python -m bench.soak _probe FILE -- run <flags>``: that is ``runpy`` of the ``syncagent``
   package with the same argv, exactly what ``python -m syncagent run`` executes, after one
   patch: the first event loop to start schedules a ``call_later`` callback (a timer handle:
   no task, no thread, no open file between ticks) that every 0.5 s appends
   ``len(asyncio.all_tasks())``, ``sys.getallocatedblocks()`` (live Python objects, a sharper
   leak signal than RSS), the module count and, every 10th tick, the tasks by coroutine and
   the size of every ``functools`` cache in syncagent's modules to FILE. What it adds to the
   process is ``bench/__init__.py`` (empty), this module's top-level imports (stdlib modules the
   daemon imports anyway) and its few functions. The idle phase runs the plain
   ``python -m syncagent run``.

   Through the same probe, at sync 100, when every fault kind has run once, and at the end, the
   soak asks (a command file the tick picks up) for the allocators' view: live objects
   (``gc.get_objects()``), ``sys._debugmallocstats()`` totals (pymalloc arenas, bytes in used
   blocks) and glibc's ``mallinfo2()`` (bytes in use, free but kept, from sbrk, mmapped); the
   resident memory per mapping is read from /proc/<pid>/smaps at the same moments. After the
   last sample, ``gc.collect()`` + ``malloc_trim(0)`` shows how much of the RSS is memory the
   allocators keep rather than objects. Python thread names (``asyncio_N`` is the loop's
   default executor, ``AnyIO worker thread`` watchfiles' waits) say which pool a new thread
   belongs to.

2. **Idle.** A fresh daemon (plain ``python -m syncagent run``, interval 60 s, defaults
   otherwise) on the X-Road tree, nothing changing, measured for ``--idle-seconds`` (300; 60
   with --quick) after its first sync and a 5 s pause: CPU as utime + stime (+ waited-for
   children) from /proc/<pid>/stat over wall time, RSS sampled every second (median = the
   steady RSS), VmHWM, RssAnon/RssFile, and the resident memory per mapping from
   /proc/<pid>/smaps (which shared objects, how much heap).

3. **What the memory is.** In fresh interpreters: the resident-set cost of every module that
   ``import syncagent.cli`` (what ``python -m syncagent`` loads) brings in, measured around each
   module's own create/exec step by a meta-path finder, so nested imports are not counted
   twice, and attributed to the third-party package (or syncagent module) whose import pulled
   it in first; ``python -X importtime`` self time by package (median of 3); and the marginal
   RSS of the modules ``syncagent.cli`` imports although ``run`` never uses them
   (``syncagent.demo``, ``syncagent.local.rollback``), i.e. what a lazy import there would
   save; what
   replacing each dependency would save (its marginal RSS imported last, after the stdlib
   modules syncagent's own code needs and every other dependency); and the cost of the modules
   the daemon loads only once running (the probe's module list at loop start and later).

Diagnostics (soak only, ``<date>-soak-tracemalloc.*`` / ``<date>-soak-heaptrack.*``; their RSS
includes the tool's own memory): ``--tracemalloc N`` starts tracemalloc (N frames) before the
daemon imports anything and dumps snapshots at the same three moments, then lists the growth
by file and by traceback (sites whose block count grew by 10 or more); ``--heaptrack`` runs the
daemon under heaptrack twice, a soak of --syncs/4 then one of --syncs, and prints
``heaptrack_print --diff``: native allocations the longer soak left unfreed at exit beyond the
shorter one's, by C backtrace (OpenSSL, Rust extensions, glibc: what tracemalloc cannot see).

MB are 10^6 bytes throughout (as in bench/README.md). The machine is shared; the load average
is recorded at every sample.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

INTERVAL = 0.25
SYNCS, QUICK_SYNCS = 2000, 300
IDLE_SECONDS, QUICK_IDLE_SECONDS = 300.0, 60.0
SAMPLE_EVERY = 2.0
PROBE_EVERY = 0.5
FAULTS_FROM = 110  # first fault after the RSS baseline point (sync 100)
REFUSED_HOLD = 10  # rejected syncs a refused tree is held for before it is fixed
RSS_TARGET = 2e6
IDLE_CPU_TARGET = 0.2  # percent of one core
STEADY_RSS_TARGET = 64e6
SSHD_FAULTS = ("sshd_restart", "sshd_kill", "sshd_down", "sshd_freeze")
REFUSED_FAULTS = ("broken_ini", "entity_xml", "broken_services_conf", "missing_p12")
FAULT_ORDER = (
    "sshd_restart",
    "broken_ini",
    "sshd_kill",
    "missing_p12",
    "sshd_down",
    "entity_xml",
    "sshd_freeze",
    "broken_services_conf",
)


# ---- the in-process task probe (runs inside the daemon's process) ------------------------------


def _probe_daemon(out: str, argv: list[str], trace_frames: int = 0) -> None:
    """``python -m syncagent <argv>`` with a timer on its event loop that records task counts
    (and, with ``trace_frames``, tracemalloc on from the start: the diagnostic run only)."""
    import asyncio.base_events
    import runpy

    if trace_frames:
        import tracemalloc

        tracemalloc.start(trace_frames)
    path = Path(out)
    original = asyncio.base_events.BaseEventLoop.run_forever
    installed: list[bool] = []

    def run_forever(self: asyncio.base_events.BaseEventLoop) -> None:
        if not installed:
            installed.append(True)
            self.call_soon(_probe_tick, self, path, 0)
        original(self)

    asyncio.base_events.BaseEventLoop.run_forever = run_forever  # type: ignore[method-assign]
    sys.argv = ["syncagent", *argv]
    runpy.run_module("syncagent", run_name="__main__", alter_sys=True)


def _probe_tick(loop: Any, path: Path, n: int, modules: int = 0) -> None:
    import asyncio

    tasks = asyncio.all_tasks(loop)
    doc: dict[str, Any] = {
        "t": time.time(),
        "tasks": len(tasks),
        "blocks": sys.getallocatedblocks(),
        "modules": len(sys.modules),
    }
    if len(sys.modules) != modules:  # which modules load after start-up (lazy imports)
        doc["module_names"] = sorted(sys.modules)
    cmd = path.with_name(path.name + ".cmd")
    if cmd.exists():  # the soak asks for allocator statistics, a snapshot, a trim
        taken = cmd.with_name(cmd.name + ".taken")
        os.replace(cmd, taken)
        for line in taken.read_text().splitlines():
            op, label = line.split()
            doc[f"{op}:{label}"] = _probe_command(op, path.with_name(f"{path.name}.{label}"))
    if n % 10 == 0:
        coros: dict[str, int] = {}
        for task in tasks:
            coro = task.get_coro()
            name = getattr(coro, "__qualname__", type(coro).__name__)
            coros[name] = coros.get(name, 0) + 1
        doc["coros"] = coros
        caches: dict[str, int] = {}
        for mod_name, mod in list(sys.modules.items()):
            if not mod_name.startswith("syncagent") or mod is None:
                continue
            for attr, value in list(vars(mod).items()):
                info = getattr(value, "cache_info", None)
                if callable(info) and getattr(value, "__module__", None) == mod_name:
                    caches[f"{mod_name}.{attr}"] = int(info().currsize)
        doc["caches"] = caches
        import threading

        names: dict[str, int] = {}
        for thread in threading.enumerate():  # "asyncio_3" -> "asyncio": which pool grew
            kind = thread.name.rstrip("0123456789").rstrip("_-") or thread.name
            names[kind] = names.get(kind, 0) + 1
        doc["threads"] = names
    with open(path, "a") as fh:
        fh.write(json.dumps(doc) + "\n")
    loop.call_later(PROBE_EVERY, _probe_tick, loop, path, n + 1, len(sys.modules))


def _self_rss() -> int:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


def _mallinfo() -> dict[str, int]:
    """glibc's mallinfo2(), all arenas: bytes malloc has from the system (sbrk'd ``arena``,
    mmapped ``hblkhd``), in use (``uordblks``) and free but kept (``fordblks``)."""
    import ctypes

    fields = ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks")
    fields += ("uordblks", "fordblks", "keepcost")

    class Info(ctypes.Structure):
        _fields_ = [(f, ctypes.c_size_t) for f in fields]

    libc = ctypes.CDLL(None)
    libc.mallinfo2.restype = Info
    info = libc.mallinfo2()
    return {f: int(getattr(info, f)) for f in ("arena", "hblkhd", "uordblks", "fordblks")}


def _pymalloc_stats() -> dict[str, int]:
    """sys._debugmallocstats() (written to fd 2), the totals: arenas, bytes in used blocks."""
    import tempfile

    with tempfile.TemporaryFile() as tmp:
        sys.stderr.flush()
        saved = os.dup(2)
        try:
            os.dup2(tmp.fileno(), 2)
            sys._debugmallocstats()
        finally:
            os.dup2(saved, 2)
            os.close(saved)
        tmp.seek(0)
        text = tmp.read().decode(errors="replace")
    out = {}
    for line in text.splitlines():
        key, eq, value = line.rpartition("=")
        value = value.strip().replace(",", "")
        if eq and value.isdigit():
            name = key.strip(" #").split("*")[0].strip()
            if name in (
                "arenas allocated current",
                "arenas highwater mark",
                "bytes in allocated blocks",
                "bytes in available blocks",
            ):
                out[name] = int(value)
    return out


def _probe_command(op: str, dest: Path) -> dict[str, Any]:
    import gc

    if op == "stats":
        doc: dict[str, Any] = {"rss": _self_rss(), "blocks": sys.getallocatedblocks()}
        doc["gc_objects"] = len(gc.get_objects())
        doc["malloc"] = _mallinfo()
        doc["pymalloc"] = _pymalloc_stats()
        return doc
    if op == "trim":  # what the allocators hold that no object uses: returned to the system
        import ctypes

        before = _self_rss()
        gc.collect()
        collected = _self_rss()
        ctypes.CDLL(None).malloc_trim(0)
        return {"rss": before, "after_gc": collected, "after_trim": _self_rss()}
    if op == "snapshot":
        import tracemalloc

        if not tracemalloc.is_tracing():
            return {"error": "not tracing"}
        tracemalloc.take_snapshot().dump(str(dest))
        current, peak = tracemalloc.get_traced_memory()
        return {"traced": current, "traced_peak": peak, "file": str(dest)}
    return {"error": f"unknown {op}"}


# ---- per-module import cost (runs in a fresh interpreter) --------------------------------------


def _status_kb() -> dict[str, int]:
    out = {}
    with open("/proc/self/status") as fh:
        for line in fh:
            key = line.split(":", 1)[0]
            if key in ("VmRSS", "RssAnon", "RssFile"):
                out[key] = int(line.split()[1]) * 1024
    return out


def _meter_imports(modules: list[str]) -> None:
    """Import ``modules`` in order; print, as JSON, the RSS each step added and the RSS every
    module cost in its own create/exec (nested imports excluded), with the package it is
    attributed to: the first module on the import stack that is not syncagent's (a dependency
    of a dependency counts for the one syncagent imported), else the syncagent module itself.

    Runs as ``python -c`` with only this function's source (see ``_meter``), so the baseline is
    the bare interpreter: nothing but ``sys`` and the already loaded ``importlib`` is used
    before the finder is installed (no importlib.abc, which would load typing)."""
    import importlib

    stdlib = set(sys.stdlib_module_names)
    cost: dict[str, list[int]] = {}  # module -> [rss, anon, file]
    owner_of: dict[str, str] = {}
    stack: list[list[Any]] = []  # [name, child rss, child anon, child file]

    def owner(name: str) -> str:
        for frame in [*stack, [name]]:
            top = frame[0].split(".")[0]
            if top != "syncagent":
                return "stdlib" if top in stdlib else top
        return name

    def measured(name: str, fn: Any, *args: Any) -> Any:
        if name not in owner_of:
            owner_of[name] = owner(name)
        before = _status_kb()
        stack.append([name, 0, 0, 0])
        try:
            return fn(*args)
        finally:
            after = _status_kb()
            frame = stack.pop()
            incl = [after[k] - before[k] for k in ("VmRSS", "RssAnon", "RssFile")]
            acc = cost.setdefault(name, [0, 0, 0])
            for i in range(3):
                acc[i] += incl[i] - frame[i + 1]
                if stack:
                    stack[-1][i + 1] += incl[i]

    class Loader:
        def __init__(self, real: Any, name: str) -> None:
            self.real, self.name = real, name

        def create_module(self, spec: Any) -> Any:
            create = getattr(self.real, "create_module", None)
            return measured(self.name, create, spec) if create else None

        def exec_module(self, module: Any) -> None:
            try:
                measured(self.name, self.real.exec_module, module)
            finally:
                module.__loader__ = self.real
                if module.__spec__ is not None:
                    module.__spec__.loader = self.real

        def __getattr__(self, attr: str) -> Any:
            return getattr(self.real, attr)

    class Finder:
        def find_spec(self, name: str, path: Any, target: Any = None) -> Any:
            for finder in sys.meta_path:
                if finder is self or not hasattr(finder, "find_spec"):
                    continue
                spec = finder.find_spec(name, path, target)
                if spec is not None:
                    break
            else:
                return None
            if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                spec.loader = Loader(spec.loader, name)
            return spec

    baseline = _status_kb()
    preloaded = len(sys.modules)
    sys.meta_path.insert(0, Finder())
    steps = []
    failed = []
    for module in modules:
        before = _status_kb()
        try:
            importlib.import_module(module)
        except Exception:
            failed.append(module)
            continue
        after = _status_kb()
        steps.append({"module": module, **{k: after[k] - before[k] for k in after}})
    final = _status_kb()
    doc = {
        "baseline": baseline,
        "preloaded_modules": preloaded,
        "final": final,
        "modules": len(sys.modules),
        "steps": steps,
        "failed": failed,
        "cost": {m: [*c, owner_of.get(m, "?")] for m, c in cost.items()},
    }
    import json

    print(json.dumps(doc))


def _meter(modules: list[str]) -> Any:
    """``_meter_imports(modules)`` in a bare ``python -c`` interpreter; its JSON answer."""
    import inspect
    import subprocess

    from .infra import PYTHON, REPO

    code = "\n".join(
        [
            "from __future__ import annotations",
            "import sys",
            inspect.getsource(_status_kb),
            inspect.getsource(_meter_imports),
            f"_meter_imports({modules!r})",
        ]
    )
    out = subprocess.run([PYTHON, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.splitlines()[-1])


# ---- watchfiles under directory churn (runs in a fresh interpreter) ----------------------------


def _inotify_watches_self() -> int:
    n = 0
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/self/fd/{fd}") == "anon_inode:inotify":
                text = Path(f"/proc/self/fdinfo/{fd}").read_text()
                n += sum(1 for line in text.splitlines() if line.startswith("inotify wd:"))
    return n


def _watchfiles_churn(mode: str, n: int) -> None:
    """syncagent.fswatch.watch(recursive=True), as the drift watcher runs it, over a directory
    where ``n`` times: a tree of 3 directories is created and removed (``dirs``); or the state
    dir's cycle, a candidate tree of 11 directories built in ``staging/``, renamed into
    ``generations/`` and the generation 4 before it removed (``generations``, what an applied
    sync does with keep_generations = 3); or a file is replaced (``files``). Prints, as JSON,
    malloc'd bytes in use, RSS and inotify watches at checkpoints, and after the watch has
    stopped."""
    import asyncio
    import gc
    import shutil
    import tempfile

    from syncagent import fswatch

    root = Path(tempfile.mkdtemp(prefix="syncagent-watchfiles-"))
    points: list[dict[str, Any]] = []
    events = [0]

    def point(label: str) -> None:
        m = _mallinfo()
        points.append(
            {
                "at": label,
                "malloc_in_use": m["uordblks"] + m["hblkhd"],
                "rss": _self_rss(),
                "inotify_watches": _inotify_watches_self(),
                "events": events[0],
            }
        )

    tree = ["conf.d/addons", "services", "signer/softtoken", "ssl", "jetty", "backup.d", "extra"]

    def churn() -> None:
        (root / "staging").mkdir()
        (root / "generations").mkdir()
        for i in range(n):
            if mode == "generations":
                farm = root / "staging" / "tree"
                for rel in tree:  # 11 directories with the parents
                    (farm / rel).mkdir(parents=True, exist_ok=True)
                (farm / "conf.d" / "local.ini").write_text("a = 1\n")
                os.rename(farm, root / "generations" / f"g{i}")
                shutil.rmtree(root / "generations" / f"g{i - 4}", ignore_errors=True)
                time.sleep(0.005)
            elif mode == "dirs":
                d = root / f"staging-{i}" / "conf.d" / "addons"
                d.mkdir(parents=True)
                (d / "local.ini").write_text("a = 1\n")
                time.sleep(0.005)
                shutil.rmtree(root / f"staging-{i}")
            else:
                (root / "tmpconf.tmp").write_text(f"a = {i}\n")
                os.replace(root / "tmpconf.tmp", root / "local.ini")
                time.sleep(0.005)
            if (i + 1) % (n // 4) == 0:
                time.sleep(1.0)  # let the watcher catch up
                point(str(i + 1))

    async def main() -> None:
        stop = asyncio.Event()

        def on_change(changes: Any) -> None:
            events[0] += len(changes)

        task = asyncio.create_task(
            fswatch.watch("bench", lambda: (root,), on_change, stop, recursive=True)
        )
        await asyncio.sleep(1.0)
        point("0")
        await asyncio.to_thread(churn)
        stop.set()
        await task
        await asyncio.sleep(0.5)

    asyncio.run(main())
    gc.collect()
    point("watch stopped")
    shutil.rmtree(root, ignore_errors=True)
    print(json.dumps({"mode": mode, "n": n, "points": points}))


def watchfiles_check(n: int) -> dict[str, Any]:
    import subprocess

    from .infra import PYTHON, REPO

    out: dict[str, Any] = {}
    for mode in ("generations", "dirs", "files"):
        run = subprocess.run(
            [PYTHON, "-m", "bench.soak", "_watchfiles", mode, str(n)],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        )
        doc = json.loads(run.stdout.splitlines()[-1])
        pts = doc["points"]
        grew = pts[-2]["malloc_in_use"] - pts[0]["malloc_in_use"]
        doc["malloc_growth"] = grew
        doc["bytes_per_change"] = grew / n
        doc["freed_when_stopped"] = pts[-2]["malloc_in_use"] - pts[-1]["malloc_in_use"]
        out[mode] = doc
    return out


def watchfiles_table(doc: dict[str, Any]) -> str:
    rows = [
        f"syncagent.fswatch.watch(recursive=True) (watchfiles "
        f"{doc['watchfiles_version']}), as the drift watcher runs it ({doc['started']}):",
        "",
        "| churn | changes | malloc in use at each quarter | RSS | inotify watches | per "
        "change | freed when the watch stops |",
        "|---|---|---|---|---|---|---|",
    ]
    for mode, what in (
        (
            "generations",
            "an applied sync's: 11 dirs staged, renamed to a generation, oldest removed",
        ),
        ("dirs", "3-directory tree created and removed"),
        ("files", "file replaced"),
    ):
        d = doc[mode]
        pts = d["points"][:-1]
        rows.append(
            f"| {what} | {d['n']} | "
            + " -> ".join(_mb(p["malloc_in_use"]) for p in pts)
            + f" | {_mb(pts[0]['rss'])} -> {_mb(pts[-1]['rss'])} | "
            + " -> ".join(str(p["inotify_watches"]) for p in pts)
            + f" | {d['bytes_per_change']:.0f} B | {_mb(d['freed_when_stopped'])} |"
        )
    return "\n".join(rows) + "\n"


# ---- the soak's machinery ----------------------------------------------------------------------


def _faults_module() -> Any:
    """tests/support/faults.py (XRoadWriter, generation_of, check_live_generation)."""
    from .infra import support_module

    return support_module("faults")


def proc_sample(pid: int) -> dict[str, int]:
    """VmRSS, RssAnon, RssFile, VmHWM (bytes), open fds and threads of one live process."""
    out: dict[str, int] = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key = line.split(":", 1)[0]
        if key in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
            out[key] = int(line.split()[1]) * 1024
    fds = os.listdir(f"/proc/{pid}/fd")
    out["fds"] = len(fds)
    out["threads"] = len(os.listdir(f"/proc/{pid}/task"))
    watches = 0
    for fd in fds:  # inotify watches the daemon holds (watchfiles: one per watched directory)
        with contextlib.suppress(OSError):
            if os.readlink(f"/proc/{pid}/fd/{fd}") == "anon_inode:inotify":
                info = Path(f"/proc/{pid}/fdinfo/{fd}").read_text()
                watches += sum(1 for line in info.splitlines() if line.startswith("inotify wd:"))
    out["inotify_watches"] = watches
    return out


def smaps_by_mapping(pid: int, top: int = 14) -> dict[str, Any]:
    """Resident bytes per mapping (shared object, [heap], anonymous), largest first."""
    sizes: dict[str, int] = {}
    name = "anonymous"
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        head = line.split(None, 5)
        if len(head) >= 5 and "-" in head[0] and ":" not in head[0]:
            path = head[5].strip() if len(head) == 6 else ""
            name = os.path.basename(path) if path.startswith("/") else (path or "anonymous")
        elif line.startswith("Rss:"):
            sizes[name] = sizes.get(name, 0) + int(line.split()[1]) * 1024
    ranked = sorted(sizes.items(), key=lambda kv: -kv[1])
    rest = sum(v for _, v in ranked[top:])
    return {"top": dict(ranked[:top]), "rest": rest, "total": sum(sizes.values())}


class LogTail:
    """The daemon's JSON log, read as it grows: one ``sync`` event per sync."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.partial = b""
        self.syncs = 0
        self.by_result: dict[str, int] = {}
        self.by_reason: dict[str, int] = {}
        self.warnings: dict[str, int] = {}

    def poll(self) -> list[dict[str, Any]]:
        try:
            with self.path.open("rb") as fh:
                fh.seek(self.offset)
                data = fh.read()
        except FileNotFoundError:
            return []
        self.offset += len(data)
        lines = (self.partial + data).split(b"\n")
        self.partial = lines.pop()
        events = []
        for raw in lines:
            if not raw.startswith(b"{"):
                continue
            try:
                doc = json.loads(raw)
            except ValueError:
                continue
            level = doc.get("level")
            if doc.get("event") == "sync":
                self.syncs += 1
                result = str(doc.get("result"))
                self.by_result[result] = self.by_result.get(result, 0) + 1
                if doc.get("reason"):
                    reason = str(doc["reason"])
                    self.by_reason[reason] = self.by_reason.get(reason, 0) + 1
                doc["n"] = self.syncs
                events.append(doc)
            elif level in ("warning", "error", "critical"):
                key = f"{level}:{doc.get('event')}"
                self.warnings[key] = self.warnings.get(key, 0) + 1
        return events


class Churn:
    """The primary changing the way X-Road saves it, one burst at a time."""

    def __init__(self, writer: Any, rng: Any) -> None:
        self.writer = writer
        self.rng = rng
        self.counts: dict[str, int] = {}
        self.live_mtimes = 0

    def _run(self, steps: Any) -> None:
        for i, step in enumerate(list(steps)):
            if i:
                time.sleep(self.rng.uniform(0.0, 0.15))
            step()

    def burst(self, keys_allowed: bool) -> None:
        w = self.writer
        keys = len(w.key_ids())
        kinds = ["edit", "edit", "mode", "dir"]
        if keys_allowed:
            if keys < 7:
                kinds += ["add_keys", "add_keys"]
            if keys > 2:
                kinds += ["remove_keys"]
            if keys >= 2:
                kinds += ["rotate", "rotate"]
        kind = self.rng.choice(kinds)
        self.counts[kind] = self.counts.get(kind, 0) + 1
        if kind == "edit":
            self._run(w.edit_ini())
            if self.counts[kind] % 10 == 0:  # a fresh mtime: the agent waits for it to settle
                os.utime(w.root / "conf.d/local.ini", None)
                self.live_mtimes += 1
        elif kind == "mode":
            self._run(w.toggle_mode())
        elif kind == "dir":
            self._run(w.add_dir() if len(w.extra_dirs) < 3 else w.remove_dir())
        elif kind == "add_keys":
            self._run(w.add_keys(self.rng.randint(1, 2)))
        elif kind == "remove_keys":
            self._run(w.remove_keys(1))
        else:
            self._run(w.add_keys(1))
            self._run(w.remove_keys(1))


REFUSED_INI = b"[proxy\nthis line is no setting\n"
VALID_INI = b"[proxy]\nsoak-fixed = true\n"
ENTITY_XML = b'<?xml version="1.0"?>\n<!DOCTYPE x [<!ENTITY a "b">]>\n<x>&a;</x>\n'
VALID_XML = b'<?xml version="1.0"?>\n<x>fixed</x>\n'
BROKEN_CONF = b"if then; fi (\n"


class Faults:
    """Faults in rotation at given sync counts; each one's start, end and recovery recorded."""

    def __init__(self, primary: Any, writer: Any, at: list[int], quick: bool) -> None:
        self.primary = primary
        self.writer = writer
        self.plan = [(n, FAULT_ORDER[i % len(FAULT_ORDER)]) for i, n in enumerate(at)]
        self.down_for = 3.0 if quick else 5.0
        self.freeze_for = 6.0
        self.active: dict[str, Any] | None = None
        self.done: list[dict[str, Any]] = []
        self._fix: Any = None
        self._frozen: list[int] = []

    @property
    def keys_allowed(self) -> bool:
        return self.active is None or self.active["kind"] != "missing_p12"

    def _sshd_pids(self) -> list[int]:
        from .infra import _sshd_module

        pid = self.primary.sshd.pid
        return [] if pid is None else [pid, *_sshd_module().descendants(pid)]

    def step(self, syncs: int, events: list[dict[str, Any]]) -> None:
        now = time.monotonic()
        for ev in events:
            self._observe(ev)
        if self.active is not None:
            a = self.active
            if a["kind"] in REFUSED_FAULTS:
                timed_out = now - a["t"] > 90
                if a["rejected"] >= REFUSED_HOLD or timed_out:
                    self._fix()
                    self._end(syncs, timed_out=timed_out)
            elif now >= a["until"]:
                if a["kind"] == "sshd_down":
                    self.primary.sshd.start()
                elif a["kind"] == "sshd_freeze":
                    import signal

                    for pid in self._frozen:
                        with contextlib.suppress(ProcessLookupError):
                            os.kill(pid, signal.SIGCONT)
                self._end(syncs)
            return
        if self.plan and syncs >= self.plan[0][0]:
            self._start(self.plan.pop(0)[1], syncs)

    def _observe(self, ev: dict[str, Any]) -> None:
        ok = ev.get("result") in ("applied", "unchanged")
        if self.active is not None:
            key = "rejected" if ev.get("result") == "rejected" else str(ev.get("result"))
            self.active[key] = self.active.get(key, 0) + 1
        for f in self.done:
            if f["recovered_at_sync"] is None:
                if ok:
                    f["recovered_at_sync"] = ev["n"]
                    f["recovery_s"] = round(time.monotonic() - f["_ended"], 2)
                else:
                    f[f"after_{ev.get('result')}"] = f.get(f"after_{ev.get('result')}", 0) + 1

    def _start(self, kind: str, syncs: int) -> None:
        import signal

        w, sshd = self.writer, self.primary.sshd
        now = time.monotonic()
        self.active = {"kind": kind, "start_sync": syncs, "t": now, "until": now, "rejected": 0}
        if kind == "sshd_restart":
            sshd.restart()
        elif kind == "sshd_kill":
            sshd.kill()
            sshd.start()
        elif kind == "sshd_down":
            sshd.stop()
            self.active["until"] = now + self.down_for
        elif kind == "sshd_freeze":
            self._frozen = self._sshd_pids()
            for pid in self._frozen:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGSTOP)
            self.active["until"] = now + self.freeze_for
        elif kind == "broken_ini":
            w.put("conf.d/soak-refused.ini", REFUSED_INI)
            self._fix = lambda: w.put("conf.d/soak-refused.ini", VALID_INI)
        elif kind == "entity_xml":
            w.put("conf.d/soak-refused.xml", ENTITY_XML)
            self._fix = lambda: w.put("conf.d/soak-refused.xml", VALID_XML)
        elif kind == "broken_services_conf":
            w.put("services/soak-refused.conf", BROKEN_CONF)
            self._fix = lambda: w.unlink("services/soak-refused.conf")
        elif kind == "missing_p12":
            steps = list(w.add_keys(1))  # .p12 puts, then keyconf.xml
            steps[-1]()

            def publish_p12() -> None:
                for step in steps[:-1]:
                    step()

            self._fix = publish_p12
        if kind in ("sshd_restart", "sshd_kill"):
            self._end(syncs)

    def _end(self, syncs: int, timed_out: bool = False) -> None:
        assert self.active is not None
        a, self.active = self.active, None
        a.update(
            end_sync=syncs,
            held_s=round(time.monotonic() - a.pop("t"), 2),
            recovered_at_sync=None,
            _ended=time.monotonic(),
        )
        a.pop("until", None)
        if a["kind"] not in REFUSED_FAULTS:
            a.pop("rejected", None)
        if timed_out:
            a["timed_out"] = True
        self._fix = None
        self.done.append(a)

    def undo(self, syncs: int) -> None:
        """The soak is over: no more faults, and the active one ends now."""
        self.plan.clear()
        if self.active is None:
            return
        a = self.active
        a["until"] = 0.0
        if a["kind"] in REFUSED_FAULTS:
            a["rejected"] = REFUSED_HOLD
        self.step(syncs, [])

    def report(self) -> list[dict[str, Any]]:
        return [{k: v for k, v in f.items() if not k.startswith("_")} for f in self.done]


def _http_get(port: int, path: str) -> bytes:
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
        data: bytes = resp.read()
        return data


def _metric_totals(text: str, name: str) -> dict[str, float]:
    """``name{label="x"} value`` lines of a Prometheus exposition, by the one label's value."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(name + "{"):
            label = line.split('"', 2)[1]
            out[label] = float(line.rsplit(" ", 1)[1])
    return out


def _last_probe(path: Path) -> dict[str, Any] | None:
    try:
        with path.open("rb") as fh:
            fh.seek(0, os.SEEK_END)
            size = fh.tell()
            fh.seek(max(0, size - 8192))
            lines = fh.read().splitlines()
    except FileNotFoundError:
        return None
    for raw in reversed(lines):
        with contextlib.suppress(ValueError):
            doc: dict[str, Any] = json.loads(raw)
            return doc
    return None


def _daemon_argv(overrides: dict[str, str]) -> list[str]:
    from syncagent.settings import FIELDS_BY_NAME

    argv = ["run"]
    for name, value in overrides.items():
        argv += [FIELDS_BY_NAME[name].flag, value]
    return argv


class ProbeChannel:
    """Commands to the in-process probe (``stats``/``trim``/``snapshot`` LABEL), answered in
    its next tick's line of the probe file."""

    def __init__(self, probe_path: Path) -> None:
        self.path = probe_path
        self.cmd = probe_path.with_name(probe_path.name + ".cmd")

    def ask(self, *commands: str) -> None:
        deadline = time.monotonic() + 5
        while self.cmd.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        tmp = self.cmd.with_name(self.cmd.name + ".tmp")
        tmp.write_text("".join(f"{c}\n" for c in commands))
        os.replace(tmp, self.cmd)

    def wait(self, key: str, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if key.encode() in self.path.read_bytes()[-200_000:]:
                return
            time.sleep(0.1)


def _tracemalloc_diffs(work: Path, probe_path: Path, labels: list[str]) -> dict[str, Any]:
    """Top allocation growth between tracemalloc snapshots, by file and by traceback."""
    import tracemalloc

    snaps = {}
    for label in labels:
        path = probe_path.with_name(f"{probe_path.name}.{label}")
        if path.exists():
            snaps[label] = tracemalloc.Snapshot.load(str(path)).filter_traces(
                [
                    tracemalloc.Filter(False, tracemalloc.__file__),
                    tracemalloc.Filter(False, "<unknown>"),
                ]
            )
    out: dict[str, Any] = {}
    first = labels[0]
    for label in labels[1:]:
        if first not in snaps or label not in snaps:
            continue
        key = f"{first}->{label}"
        by_file = snaps[label].compare_to(snaps[first], "filename")
        # growth in numbers of blocks, not one large buffer that happened to be alive
        by_tb = [
            st for st in snaps[label].compare_to(snaps[first], "traceback") if st.count_diff >= 10
        ]
        out[key] = {
            "traced_before": sum(t.size for t in snaps[first].traces),
            "traced_after": sum(t.size for t in snaps[label].traces),
            "by_file": [
                [st.traceback[0].filename, st.size_diff, st.count_diff] for st in by_file[:15]
            ],
            "by_traceback": [
                {
                    "size_diff": st.size_diff,
                    "count_diff": st.count_diff,
                    "frames": [f"{f.filename}:{f.lineno}" for f in st.traceback][-6:],
                }
                for st in by_tb[:15]
            ],
        }
    return out


def heaptrack_leaks(long: Path, short: Path | None = None) -> dict[str, Any]:
    """heaptrack_print's "leaked" (allocated, never freed before exit) by backtrace; with
    ``short``, the difference between the two recordings: what a longer soak left more of."""
    import subprocess

    argv = ["heaptrack_print", "-f", str(long), *(["-d", str(short)] if short else [])]
    argv += ["-l", "1", "-p", "0", "-a", "0", "-T", "0", "-n", "12", "-s", "3"]
    text = subprocess.run(argv, capture_output=True, text=True).stdout
    totals = [line for line in text.splitlines() if line.startswith("total ")]
    leaks = text.split("MEMORY LEAKS", 1)[-1] if "MEMORY LEAKS" in text else text[-4000:]
    return {"argv": argv, "totals": totals, "leaks": leaks[:30000]}


def heaptrack_peaks(long: Path, short: Path) -> dict[str, Any]:
    """The peak heap of the long recording minus the short one's, by backtrace: memory that
    more syncs hold at once (and free at exit), which "leaked" cannot show."""
    import subprocess

    argv = ["heaptrack_print", "-f", str(long), "-d", str(short), "-p", "1", "-a", "0"]
    argv += ["-T", "0", "-l", "0", "-n", "6", "-s", "2"]
    text = subprocess.run(argv, capture_output=True, text=True).stdout
    totals = [line for line in text.splitlines() if line.startswith(("peak heap", "total "))]
    body = text.split("PEAK MEMORY CONSUMERS", 1)[-1]
    return {"argv": argv, "totals": totals, "peaks": body[:30000]}


def soak(
    work: Path,
    syncs: int,
    quick: bool,
    seed: int,
    trace_frames: int = 0,
    heaptrack: bool = False,
    daemon_env: dict[str, str] | None = None,
) -> dict[str, Any]:
    import random
    import signal
    import subprocess

    from .infra import PYTHON, REPO, Primary, agent_overrides, build_xroad, loadavg, new_target
    from .procs import free_port

    faults_mod = _faults_module()
    rng = random.Random(seed)
    primary = Primary("soak")
    work.mkdir(parents=True, exist_ok=True)
    try:
        remote = primary.new_tree("xroad")
        build_xroad(remote)
        target = new_target(work, "agent")
        port = free_port()
        overrides = agent_overrides(
            primary,
            remote,
            target,
            **{"sync.interval": INTERVAL, "log.level": "info", "http.listen": f"127.0.0.1:{port}"},
        )
        from .infra import make_settings

        settings = make_settings(overrides)
        pf = settings.sync.path_filter()
        writer = faults_mod.XRoadWriter(remote, pf, rng)
        churn = Churn(writer, rng)
        span = syncs - FAULTS_FROM - 40
        count = 2 * len(FAULT_ORDER) if not quick else len(FAULT_ORDER)
        at = [FAULTS_FROM + round(i * span / count) for i in range(count)]
        faults = Faults(primary, writer, at, quick)
        log_path, probe_path = work / "daemon.log", work / "probe.jsonl"
        probe_path.unlink(missing_ok=True)
        heap_file = work / "heaptrack.daemon"
        argv = ["heaptrack", "-o", str(heap_file)] if heaptrack else []
        argv += [PYTHON, "-m", "bench.soak", "_probe", str(probe_path)]
        argv += [str(trace_frames), "--"] if trace_frames else ["--"]
        argv += _daemon_argv(overrides)
        with open(log_path, "ab") as fh:
            proc = subprocess.Popen(
                argv,
                cwd=REPO,
                stdin=subprocess.DEVNULL,
                stdout=fh,
                stderr=fh,
                env={**os.environ, "PYTHONUNBUFFERED": "1", **(daemon_env or {})},
            )
        tail = LogTail(log_path)
        pid = proc.pid  # the daemon: python -m bench.soak _probe runs it in this process
        if heaptrack:  # proc is heaptrack's wrapper script; the daemon writes its pid file
            pid_file = settings.sync.state_dir / "daemon.pid"
            deadline = time.monotonic() + 60
            while not pid_file.exists() and time.monotonic() < deadline:
                time.sleep(0.1)
            pid = int(pid_file.read_text().split()[0])
        samples: list[dict[str, Any]] = []
        hups = 0
        t0 = time.monotonic()
        next_sample = t0
        next_churn = t0 + 2.0
        next_hup = t0 + rng.uniform(20, 40)
        channel = ProbeChannel(probe_path)
        smaps: dict[str, Any] = {}
        marks: dict[str, int] = {}

        def mark(label: str) -> None:
            """Allocator statistics (and a tracemalloc snapshot) now, and the smaps."""
            marks[label] = tail.syncs
            channel.ask(f"stats {label}", *([f"snapshot {label}"] if trace_frames else []))
            smaps[label] = smaps_by_mapping(pid, top=1000)["top"]

        try:
            while True:
                events = tail.poll()
                n = tail.syncs
                if proc.poll() is not None:
                    raise RuntimeError(f"daemon exited with {proc.returncode}; see {log_path}")
                now = time.monotonic()
                if now >= next_sample and n > 0:
                    s = proc_sample(pid)
                    probe = _last_probe(probe_path) or {}
                    s.update(
                        t=round(now - t0, 2),
                        wall=time.time(),
                        syncs=n,
                        tasks=probe.get("tasks"),
                        blocks=probe.get("blocks"),
                        load1=loadavg()[0],
                    )
                    samples.append(s)
                    next_sample = max(next_sample + SAMPLE_EVERY, now)
                if n >= syncs:
                    break
                if n >= 100 and "s100" not in marks:
                    mark("s100")
                if len(faults.done) == len(FAULT_ORDER) and "cycle2" not in marks:
                    mark("cycle2")  # every fault kind has run once
                faults.step(n, events)
                if now >= next_churn and n > 0:
                    churn.burst(faults.keys_allowed)
                    next_churn = time.monotonic() + rng.uniform(0.4, 1.6)
                if now >= next_hup:
                    os.kill(pid, signal.SIGHUP)
                    hups += 1
                    next_hup = now + rng.uniform(20, 40)
                time.sleep(0.02)
            soak_s = time.monotonic() - t0
            mark("end")
            # The end: no more churn, every fault undone, the live tree must converge.
            faults.undo(tail.syncs)
            state_dir = settings.sync.state_dir
            want = faults_mod.generation_of(remote, pf)
            deadline = time.monotonic() + 90
            converged_in = None
            while time.monotonic() < deadline:
                faults.step(tail.syncs, tail.poll())
                cur = state_dir / "current.json"
                with contextlib.suppress(OSError, ValueError):
                    if json.loads(cur.read_bytes()).get("generation") == want:
                        converged_in = round(time.monotonic() - t0 - soak_s, 2)
                        break
                time.sleep(0.1)
            time.sleep(1.0)  # past the apply (the record is written last)
            faults.step(tail.syncs, tail.poll())
            try:
                gen = faults_mod.check_live_generation(
                    target, state_dir, pf, published=writer.published
                )
                check = "ok" if gen == want else f"live {gen} is not the primary's {want}"
            except AssertionError as e:
                check = f"failed: {e}"
            final = proc_sample(pid)
            metrics_text = _http_get(port, "/metrics").decode()
            status = json.loads(_http_get(port, "/status"))
            channel.ask("trim end")  # after the last sample: frees what no object holds
            channel.wait('"trim:end"')
            os.kill(pid, signal.SIGTERM)
            t_stop = time.monotonic()
            try:
                rc: int | None = proc.wait(timeout=600 if heaptrack else 30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
                rc = None
            stop_s = time.monotonic() - t_stop
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            writer.close()
        tail.poll()
        ticks = []
        for raw in probe_path.read_text().splitlines():
            with contextlib.suppress(ValueError):
                ticks.append(json.loads(raw))
        probe_answers = {k: (t["t"], v) for t in ticks for k, v in t.items() if ":" in k}
        traced = (
            _tracemalloc_diffs(
                work, probe_path, [k for k in ("s100", "cycle2", "end") if k in marks]
            )
            if trace_frames
            else None
        )
        return {
            "daemon_env": daemon_env or {},
            "heaptrack_file": next((str(p) for p in work.glob("heaptrack.daemon*")), None),
            "tracemalloc_frames": trace_frames,
            "tracemalloc": traced,
            "marks": marks,
            "smaps": smaps,
            "probe_answers": probe_answers,
            "interval": INTERVAL,
            "target_syncs": syncs,
            "duration_s": round(soak_s, 1),
            "syncs_logged": tail.syncs,
            "by_result": tail.by_result,
            "by_reason": tail.by_reason,
            "warnings_logged": tail.warnings,
            "metrics_sync_total": _metric_totals(metrics_text, "syncagent_sync_total"),
            "metrics_failures_total": {
                k: v
                for k, v in _metric_totals(metrics_text, "syncagent_failures_total").items()
                if v
            },
            "connects": status.get("connects"),
            "sighups": hups,
            "churn": churn.counts,
            "churn_live_mtimes": churn.live_mtimes,
            "primary_states": len(writer.published),
            "faults": faults.report(),
            "converged_after_s": converged_in,
            "final_check": check,
            "final_process": final,
            "exit_code": rc,
            "stop_s": round(stop_s, 2),
            "samples": samples,
            "probe_ticks": ticks,
        }
    finally:
        primary.close()


def idle(work: Path, seconds: float) -> dict[str, Any]:
    import statistics

    from .infra import Primary, agent_overrides, build_xroad, loadavg, new_target
    from .procs import proc_all_cpu, start_agent, wait_synced

    primary = Primary("soak-idle")
    work.mkdir(parents=True, exist_ok=True)
    try:
        remote = primary.new_tree("xroad")
        build_xroad(remote)
        target = new_target(work, "agent")
        overrides = agent_overrides(
            primary, remote, target, **{"sync.interval": 60, "log.level": "info"}
        )
        agent = start_agent(overrides, "daemon", work / "daemon.log")
        try:
            wait_synced(target, agent, 60)
            time.sleep(5.0)
            load0 = loadavg()
            cpu0, t0 = proc_all_cpu(agent.pid), time.monotonic()
            rss: list[int] = []
            while (elapsed := time.monotonic() - t0) < seconds:
                rss.append(proc_sample(agent.pid)["VmRSS"])
                time.sleep(min(1.0, seconds - elapsed))
            cpu = proc_all_cpu(agent.pid) - cpu0
            elapsed = time.monotonic() - t0
            final = proc_sample(agent.pid)
            smaps = smaps_by_mapping(agent.pid)
            rss.append(final["VmRSS"])
        finally:
            agent.terminate()
            agent.wait(timeout=20)
        syncs = sum(
            1
            for line in (work / "daemon.log").read_text().splitlines()
            if '"event": "sync"' in line
        )
        return {
            "interval": 60,
            "seconds": round(elapsed, 1),
            "syncs_total": syncs,
            "cpu_s": cpu,
            "cpu_percent_of_core": 100 * cpu / elapsed,
            "rss_median": statistics.median(rss),
            "rss_min": min(rss),
            "rss_max": max(rss),
            "final": final,
            "smaps": smaps,
            "loadavg_start": load0,
            "loadavg_end": loadavg(),
        }
    finally:
        primary.close()


def _importtime_by_owner(stderr: str) -> dict[str, int]:
    """``-X importtime`` self times summed by the package a module is attributed to, as the
    meter attributes RSS: the outermost non-syncagent module on its import chain."""
    stdlib = set(sys.stdlib_module_names)
    rows = []
    for line in stderr.splitlines():
        if not line.startswith("import time:") or "self [us]" in line:
            continue
        self_us, _cum, name = line[len("import time:") :].split("|")
        depth = (len(name) - len(name.lstrip()) - 1) // 2
        rows.append((depth, name.strip(), int(self_us)))
    out: dict[str, int] = {}
    stack: list[str] = []
    for depth, name, self_us in reversed(rows):  # post-order reversed: parents first
        del stack[depth:]
        owner = name
        for ancestor in [*stack, name]:
            top = ancestor.split(".")[0]
            if top != "syncagent":
                owner = "stdlib" if top in stdlib else top
                break
        else:
            owner = "syncagent"
        out[owner] = out.get(owner, 0) + self_us
        stack.append(name)
    return out


# What replacing one dependency would save: its marginal RSS when everything else the daemon
# loads is already there: the stdlib modules syncagent's own code imports (directly or through
# the stdlib), asyncssh, defusedxml and the other dependencies. A stdlib module that only the
# candidate (among those) needs counts for the candidate.
DEPENDENCIES = {
    "aiohttp": ["aiohttp.web"],
    "apscheduler": [
        "apscheduler.schedulers.asyncio",
        "apscheduler.triggers.interval",
        "apscheduler.executors.asyncio",
    ],
    "prometheus_client": ["prometheus_client"],
    "watchfiles + anyio": ["watchfiles", "anyio._backends._asyncio", "anyio.to_thread"],
    "structlog": ["structlog"],
}


def marginal_costs(stdlib_direct: list[str]) -> dict[str, int]:
    out = {}
    for name, modules in DEPENDENCIES.items():
        others = [m for k, ms in DEPENDENCIES.items() if k != name for m in ms]
        doc = _meter([*stdlib_direct, "asyncssh", "defusedxml.ElementTree", *others, *modules])
        out[name] = sum(s["VmRSS"] for s in doc["steps"] if s["module"] in modules)
    return out


def memory(loaded_later: list[str]) -> dict[str, Any]:
    """Import cost per package and per syncagent module; import time; candidate cuts; and what
    the modules the daemon imports only once running (``loaded_later``) add."""
    import statistics
    import subprocess

    from .infra import PYTHON, REPO

    meter = _meter(["syncagent.cli"])
    by_owner: dict[str, list[int]] = {}
    own: dict[str, int] = {}
    for module, (rss, anon, file, owner) in meter["cost"].items():
        acc = by_owner.setdefault(owner.split(".")[0], [0, 0, 0, 0])
        acc[0] += rss
        acc[1] += anon
        acc[2] += file
        acc[3] += 1
        if module.startswith("syncagent"):
            own[module] = rss
    attributed = sum(v[0] for v in by_owner.values())
    replaceable = marginal_costs([m for m, c in meter["cost"].items() if c[3] == "stdlib"])
    total = meter["final"]["VmRSS"] - meter["baseline"]["VmRSS"]
    # Marginal cost of what ``syncagent.cli`` imports beyond what ``run`` needs.
    marginal = _meter(["syncagent.daemon.service", "syncagent.demo", "syncagent.local.rollback"])
    cuts = {s["module"]: s["VmRSS"] for s in marginal["steps"][1:]}
    later = [m for m in loaded_later if not m.startswith("encodings.")]
    runtime = _meter(["syncagent.cli", *later]) if later else None
    lazy: dict[str, int] = {}
    if runtime is not None:
        for module, (rss, _a, _f, _o) in runtime["cost"].items():
            if module in later:
                top = module.split(".")[0]
                lazy[top] = lazy.get(top, 0) + rss
    # Import time, self microseconds by top-level package (median of 3 runs).
    runs: list[dict[str, int]] = []
    for _ in range(3):
        out = subprocess.run(
            [PYTHON, "-X", "importtime", "-c", "import syncagent.cli"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        )
        runs.append(_importtime_by_owner(out.stderr))
    keys = {k for r in runs for k in r}
    importtime = {k: statistics.median(r.get(k, 0) for r in runs) for k in keys}
    return {
        "interpreter_rss": meter["baseline"]["VmRSS"],
        "preloaded_modules": meter["preloaded_modules"],
        "import_syncagent_cli_rss": total,
        "after_import_rss": meter["final"]["VmRSS"],
        "modules_after_import": meter["modules"],
        "unattributed": total - attributed,
        "by_package": dict(sorted(by_owner.items(), key=lambda kv: -kv[1][0])),
        "syncagent_modules": dict(sorted(own.items(), key=lambda kv: -kv[1])),
        "top_modules": [
            [module, rss, owner]
            for module, (rss, _a, _f, owner) in sorted(
                meter["cost"].items(), key=lambda kv: -kv[1][0]
            )[:20]
        ],
        "cli_only_imports": cuts,
        "marginal_if_replaced": replaceable,
        "loaded_at_runtime": {"modules": later, "rss_by_package": lazy},
        "importtime_self_us": dict(sorted(importtime.items(), key=lambda kv: -kv[1])),
    }


# ---- analysis, table, plot ---------------------------------------------------------------------


def _window(samples: list[dict[str, Any]], lo: int, hi: int, key: str) -> list[float]:
    return [s[key] for s in samples if lo <= s["syncs"] <= hi and s.get(key) is not None]


def _ticks_with_syncs(doc: dict[str, Any]) -> list[tuple[float, dict[str, Any]]]:
    """Probe ticks placed on the sync axis (interpolated between the 2 s samples)."""
    samples = doc["samples"]
    out = []
    j = 0
    for tick in doc["probe_ticks"]:
        t = tick["t"]
        if not samples or not samples[0]["wall"] <= t <= samples[-1]["wall"]:
            continue  # before the first sync, or in the convergence check and shutdown
        while j + 1 < len(samples) and samples[j + 1]["wall"] < t:
            j += 1
        a = samples[j]
        b = samples[j + 1] if j + 1 < len(samples) else a
        span = b["wall"] - a["wall"]
        x = a["syncs"] + ((t - a["wall"]) / span * (b["syncs"] - a["syncs"]) if span > 0 else 0)
        out.append((x, tick))
    return out


def analyse(doc: dict[str, Any]) -> dict[str, Any]:
    import itertools
    import statistics

    soak_doc = doc["soak"]
    samples = soak_doc["samples"]
    last = samples[-1]["syncs"]
    w = max(50, round(0.05 * soak_doc["target_syncs"]))
    first = (100, 100 + w)
    end = (last - w, last)
    out: dict[str, Any] = {"window_syncs": w}

    def stats(values: list[float]) -> dict[str, float]:
        ranked = sorted(values)
        return {
            "min": ranked[0],
            "mode": max(statistics.multimode(values)),
            "median": statistics.median(values),
            "p95": ranked[min(len(ranked) - 1, round(0.95 * (len(ranked) - 1)))],
            "max": ranked[-1],
        }

    rss_a, rss_b = _window(samples, *first, "VmRSS"), _window(samples, *end, "VmRSS")
    growth = statistics.median(rss_b) - statistics.median(rss_a)
    after = [s for s in samples if s["syncs"] >= 100]
    xs = [s["syncs"] for s in after]
    ys = [s["VmRSS"] for s in after]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sum(
        (x - mx) ** 2 for x in xs
    )
    out["rss"] = {
        "at_100": statistics.median(rss_a),
        "at_end": statistics.median(rss_b),
        "growth": growth,
        "max_after_100": max(ys),
        "min_after_100": min(ys),
        "slope_per_1000_syncs": slope * 1000,
        "met": growth <= RSS_TARGET,
    }
    faults = soak_doc["faults"]
    if len(faults) > len(FAULT_ORDER):  # every fault kind has run once: repeats are steady state
        c2 = faults[len(FAULT_ORDER)]["start_sync"]
        at_c2 = statistics.median(_window(samples, c2 - w, c2, "VmRSS"))
        out["rss"]["second_fault_cycle"] = {
            "from_sync": c2,
            "rss_at_start": at_c2,
            "growth_to_end": statistics.median(rss_b) - at_c2,
        }
    anon_a, anon_b = _window(samples, *first, "RssAnon"), _window(samples, *end, "RssAnon")
    out["rss_anon_growth"] = statistics.median(anon_b) - statistics.median(anon_a)
    ticks = _ticks_with_syncs(soak_doc)
    series: dict[str, tuple[list[float], list[float]]] = {
        "fds": (_window(samples, *first, "fds"), _window(samples, *end, "fds")),
        "threads": (_window(samples, *first, "threads"), _window(samples, *end, "threads")),
        "inotify_watches": (
            _window(samples, *first, "inotify_watches"),
            _window(samples, *end, "inotify_watches"),
        ),
        "tasks": (
            [t["tasks"] for x, t in ticks if first[0] <= x <= first[1]],
            [t["tasks"] for x, t in ticks if end[0] <= x <= end[1]],
        ),
        "blocks": (
            [t["blocks"] for x, t in ticks if first[0] <= x <= first[1]],
            [t["blocks"] for x, t in ticks if end[0] <= x <= end[1]],
        ),
    }
    before_end = {
        "fds": [s["fds"] for s in samples if 100 <= s["syncs"] < end[0]],
        "threads": [s["threads"] for s in samples if 100 <= s["syncs"] < end[0]],
        "tasks": [t["tasks"] for x, t in ticks if 100 <= x < end[0]],
    }
    for name, (a, b) in series.items():
        sa, sb = stats(a), stats(b)
        entry: dict[str, Any] = {"at_100": sa, "at_end": sb}
        if name in before_end:
            # flat: the usual value (mode) did not rise, and the last window's peaks (p95: one
            # sample caught mid-sync is not a trend) are not above the highest seen before it
            high = max(before_end[name] or a)
            entry["flat"] = sb["mode"] <= sa["mode"] and sb["p95"] <= high
            entry["max_before_end_window"] = high
        out[name] = entry
    whole = [s for s in samples if s["syncs"] >= 100]
    out["fds"]["range_after_100"] = [min(s["fds"] for s in whole), max(s["fds"] for s in whole)]
    out["threads"]["range_after_100"] = [
        min(s["threads"] for s in whole),
        max(s["threads"] for s in whole),
    ]
    task_all = [t["tasks"] for x, t in ticks if x >= 100]
    out["tasks"]["range_after_100"] = [min(task_all), max(task_all)]
    coros = [t["coros"] for x, t in ticks if "coros" in t]
    if coros:
        out["tasks"]["coros_first"], out["tasks"]["coros_last"] = coros[0], coros[-1]
    named = [(x, t["threads"]) for x, t in ticks if "threads" in t]
    if named:
        after_100 = [n for x, n in named if x >= 100] or [named[0][1]]
        out["threads"]["python_threads_first"] = after_100[0]
        out["threads"]["python_threads_last"] = named[-1][1]
        changes = []
        for (_, a_), (x, b_) in itertools.pairwise(named):
            if a_ != b_:
                changes.append([round(x), b_])
        out["threads"]["python_thread_changes"] = changes[:20]
    caches = [t["caches"] for _, t in ticks if "caches" in t]
    if caches:
        out["caches_first"], out["caches_last"] = caches[0], caches[-1]
    mods = [t["modules"] for x, t in ticks if x >= 100]
    out["modules_after_100"] = [min(mods), max(mods)]
    lists = [t["module_names"] for t in soak_doc["probe_ticks"] if "module_names" in t]
    if lists:
        out["modules_at_loop_start"] = len(lists[0])
        out["modules_loaded_later"] = sorted(set(lists[-1]) - set(lists[0]))
    answers = soak_doc.get("probe_answers", {})
    out["allocator"] = {k: v for k, (_t, v) in answers.items()}
    smaps = soak_doc.get("smaps", {})
    if "s100" in smaps and "end" in smaps:
        a_map, b_map = smaps["s100"], smaps["end"]
        grew = {k: b_map.get(k, 0) - a_map.get(k, 0) for k in set(a_map) | set(b_map)}
        out["smaps_growth"] = dict(sorted(grew.items(), key=lambda kv: -abs(kv[1]))[:6])
    loads = [s["load1"] for s in samples]
    out["load1"] = {"min": min(loads), "median": statistics.median(loads), "max": max(loads)}
    if "idle" not in doc:  # the tracemalloc diagnostic runs the soak only
        return out
    idle_doc = doc["idle"]
    out["idle_cpu"] = {
        "percent": idle_doc["cpu_percent_of_core"],
        "met": idle_doc["cpu_percent_of_core"] <= IDLE_CPU_TARGET,
    }
    out["steady_rss"] = {
        "median": idle_doc["rss_median"],
        "met": idle_doc["rss_median"] <= STEADY_RSS_TARGET,
    }
    return out


def _mb(n: float) -> str:
    return f"{n / 1e6:.1f} MB"


def _yes(ok: bool) -> str:
    return "yes" if ok else "**no**"


def _names(counts: dict[str, int]) -> str:
    return ", ".join(f"{v} {k}" for k, v in sorted(counts.items()))


def _counts(d: dict[str, Any]) -> str:
    a, b = d["at_100"], d["at_end"]
    return f"{a['min']:g}/{a['mode']:g}/{a['max']:g} -> {b['min']:g}/{b['mode']:g}/{b['max']:g}"


def _fault_rows(faults: list[dict[str, Any]]) -> list[str]:
    import statistics

    rows = [
        "| fault | times | syncs failed / rejected while it lasted | and after, until the first "
        "success | first success after it ended: median (max) |",
        "|---|---|---|---|---|",
    ]
    kinds: dict[str, list[dict[str, Any]]] = {}
    for f in faults:
        kinds.setdefault(f["kind"], []).append(f)
    for kind, fs in kinds.items():
        during = sum(f.get("failed", 0) + f.get("rejected", 0) for f in fs)
        after = sum(f.get("after_failed", 0) + f.get("after_rejected", 0) for f in fs)
        rec = [f["recovery_s"] for f in fs if f.get("recovery_s") is not None]
        never = len(fs) - len(rec)
        took = f"{statistics.median(rec):.2f} s ({max(rec):.2f} s)" if rec else "-"
        rows.append(
            f"| {kind} | {len(fs)} | {during} | {after} | {took}"
            f"{f'; {never} never recovered' if never else ''} |"
        )
    return rows


def _allocator_rows(a: dict[str, Any], s: dict[str, Any]) -> list[str]:
    """Where RSS growth is: live objects, or memory the allocators keep."""
    al = a.get("allocator", {})
    b, e, trim = al.get("stats:s100"), al.get("stats:end"), al.get("trim:end")
    rows = []
    if b and e:
        pb, pe, mb, me = b["pymalloc"], e["pymalloc"], b["malloc"], e["malloc"]
        used = "bytes in allocated blocks"
        pymalloc = (
            f"pymalloc: bytes in used blocks {_mb(pb[used])} -> {_mb(pe[used])}, arenas (1 MiB) "
            f"{pb['arenas allocated current']} -> {pe['arenas allocated current']} (high-water "
            f"{pe['arenas highwater mark']}); "
            if used in pb and used in pe
            else ""
        )
        rows.append(
            f"Where the memory went (the probe's statistics at sync {s['marks']['s100']} and at "
            f"sync {s['marks']['end']}): RSS {_mb(b['rss'])} -> {_mb(e['rss'])}; live Python "
            f"objects (gc) {b['gc_objects']} -> {e['gc_objects']}, allocated blocks "
            f"{b['blocks']} -> {e['blocks']}; {pymalloc}glibc malloc: in use "
            f"{_mb(mb['uordblks'])} -> "
            f"{_mb(me['uordblks'])}, free but kept {_mb(mb['fordblks'])} -> "
            f"{_mb(me['fordblks'])}, from sbrk {_mb(mb['arena'])} -> {_mb(me['arena'])}, "
            f"mmapped {_mb(mb['hblkhd'])} -> {_mb(me['hblkhd'])}."
        )
    if trim:
        rows.append(
            f"After the last sample, gc.collect() and malloc_trim(0) took RSS from "
            f"{_mb(trim['rss'])} to {_mb(trim['after_gc'])} and {_mb(trim['after_trim'])} "
            f"({(trim['after_trim'] - trim['rss']) / 1e6:+.2f} MB)."
        )
    if a.get("smaps_growth"):
        rows.append(
            "Resident memory by mapping, sync 100 -> end: "
            + ", ".join(f"{k} {v / 1e6:+.2f} MB" for k, v in a["smaps_growth"].items())
            + "."
        )
    return [" ".join(rows)] if rows else []


def _frames_only(text: str) -> str:
    """heaptrack_print backtraces without the 'at file:line' / 'in library' lines."""
    keep = [ln for ln in text.splitlines() if not ln.strip().startswith(("at ", "in "))]
    return "\n".join(keep)


def diagnosis_table(doc: dict[str, Any]) -> str:
    """A diagnostic run: RSS, allocator statistics, and the top allocation growth (tracemalloc)
    or the native allocations still live at exit that were made after heaptrack attached."""
    a, s = doc["analysis"], doc["soak"]
    rss = a["rss"]
    if s.get("tracemalloc_frames"):
        how = f"under tracemalloc ({s['tracemalloc_frames']} frames"
    elif s.get("daemon_env"):
        how = "with " + " ".join(f"{k}={v}" for k, v in s["daemon_env"].items()) + " ("
        how += "an environment variable, no code change"
    else:
        how = f"under heaptrack (and one of {doc['soak_short']['syncs_logged']} syncs before it"
    caveat = (
        ""
        if s.get("daemon_env")
        else " The tool's own memory inflates RSS: compare allocations, not this RSS with the "
        "plain run's."
    )
    rows = [
        f"Soak {how}; {doc['started']}; {s['syncs_logged']} syncs; load "
        f"{a['load1']['median']:.2f} median).{caveat}",
        "",
        f"RSS {_mb(rss['at_100'])} -> {_mb(rss['at_end'])} ({rss['growth'] / 1e6:+.2f} MB).",
        "",
        *_allocator_rows(a, s),
        "",
    ]
    ht = doc.get("heaptrack")
    if ht:
        rows += [
            "heaptrack: allocated and not freed before exit, the long soak minus the short one "
            "(what more syncs left behind), by native backtrace:",
            "",
            "```",
            "long soak alone: " + "; ".join(ht["long"]["totals"]),
            "long minus short: " + "; ".join(ht["diff"]["totals"]),
            "",
            ht["diff"]["leaks"][:3000].strip(),
            "...",
            "```",
            "",
            "Peak heap, long minus short (what more syncs hold at once and free at exit), by "
            "backtrace, innermost first:",
            "",
            "```",
            *ht.get("peak_diff", {}).get("totals", []),
            "",
            _frames_only(ht.get("peak_diff", {}).get("peaks", ""))[:5000].strip(),
            "...",
            "```",
            "",
        ]
    for key, d in (s.get("tracemalloc") or {}).items():
        rows += [
            f"Python allocations {key}: {_mb(d['traced_before'])} -> {_mb(d['traced_after'])} "
            f"({(d['traced_after'] - d['traced_before']) / 1e6:+.2f} MB). By file:",
            "",
            "| file | size diff | blocks diff |",
            "|---|---|---|",
            *(f"| `{f}` | {sz / 1e3:+.1f} kB | {n:+d} |" for f, sz, n in d["by_file"][:10]),
            "",
            "By traceback (innermost frame last):",
            "",
            *(
                f"- {t['size_diff'] / 1e3:+.1f} kB, {t['count_diff']:+d} blocks: "
                + " <- ".join(f"`{fr}`" for fr in reversed(t["frames"][-3:]))
                for t in d["by_traceback"][:8]
            ),
            "",
        ]
    return "\n".join(rows) + "\n"


def table(doc: dict[str, Any]) -> str:
    a, s, i, m = doc["analysis"], doc["soak"], doc["idle"], doc["memory"]
    rss = a["rss"]
    w = a["window_syncs"]
    res = ", ".join(f"{v} {k}" for k, v in sorted(s["by_result"].items(), key=lambda kv: -kv[1]))
    reasons = ", ".join(
        f"{v} {k}" for k, v in sorted(s["by_reason"].items(), key=lambda kv: -kv[1])
    )
    kinds: dict[str, int] = {}
    for f in s["faults"]:
        kinds[f["kind"]] = kinds.get(f["kind"], 0) + 1
    rows = [
        f"Soak ({doc['started']}, {doc['machine']['cores']} cores, load average "
        f"{doc['loadavg_start'][0]:.2f} at start, {a['load1']['median']:.2f} median and "
        f"{a['load1']['max']:.2f} max during the soak, {doc['loadavg_end'][0]:.2f} at the end; "
        f"{doc['duration_s'] / 60:.1f} min in all):",
        "",
        f"- {s['syncs_logged']} syncs in {s['duration_s'] / 60:.1f} min at interval "
        f"{s['interval']:g} s (+ {s['sighups']} SIGHUPs): {res}; reasons: {reasons or 'none'}.",
        f"- churn: {', '.join(f'{v} {k}' for k, v in s['churn'].items())} bursts "
        f"({s['primary_states']} distinct primary states); faults: "
        f"{', '.join(f'{v} {k}' for k, v in kinds.items())}; {s['connects']} connects.",
        f"- end: converged to the primary's generation {s['converged_after_s']} s after the churn "
        f"stopped; live-tree check: {s['final_check']}; SIGTERM -> exit {s['exit_code']} in "
        f"{s['stop_s']} s.",
        "",
        "| Target | Result | Met |",
        "|---|---|---|",
        f"| RSS from sync 100 to the end grows <= 2 MB | {_mb(rss['at_100'])} -> "
        f"{_mb(rss['at_end'])} (medians of syncs 100-{100 + w} and the last {w}): "
        f"{rss['growth'] / 1e6:+.2f} MB; trend {rss['slope_per_1000_syncs'] / 1e6:+.2f} MB per "
        f"1000 syncs; range {_mb(rss['min_after_100'])}-{_mb(rss['max_after_100'])}"
        + (
            f"; from sync {rss['second_fault_cycle']['from_sync']} (every fault kind has run "
            f"once) to the end: {rss['second_fault_cycle']['growth_to_end'] / 1e6:+.2f} MB"
            if "second_fault_cycle" in rss
            else ""
        )
        + f" | {_yes(rss['met'])} |",
        f"| open fds flat | {_counts(a['fds'])} (range after sync 100: "
        f"{a['fds']['range_after_100'][0]}-{a['fds']['range_after_100'][1]}) | "
        f"{_yes(a['fds']['flat'])} |",
        f"| threads flat | {_counts(a['threads'])} (range "
        f"{a['threads']['range_after_100'][0]}-{a['threads']['range_after_100'][1]}) | "
        f"{_yes(a['threads']['flat'])} |",
        f"| asyncio tasks flat | {_counts(a['tasks'])} (range "
        f"{a['tasks']['range_after_100'][0]}-{a['tasks']['range_after_100'][1]}) | "
        f"{_yes(a['tasks']['flat'])} |",
        f"| idle CPU at interval 60 s <= 0.2% of a core | {i['cpu_percent_of_core']:.3f}% "
        f"({i['cpu_s']:.2f} s over {i['seconds']:.0f} s, {i['syncs_total']} syncs in all) | "
        f"{_yes(a['idle_cpu']['met'])} |",
        f"| steady RSS <= 64 MB | {_mb(i['rss_median'])} median "
        f"(heap {_mb(i['final']['RssAnon'])}, "
        f"mapped files {_mb(i['final']['RssFile'])}; VmHWM {_mb(i['final']['VmHWM'])}) | "
        f"{_yes(a['steady_rss']['met'])} |",
        "",
        f"Counts are min/mode/max over syncs 100-{100 + w} -> over the last {w} syncs (transient "
        "peaks are syncs in flight: staged files, SFTP requests, reconnects); flat = the usual "
        "value (mode) did not rise and the last window's p95 is not above the highest value "
        "before it. Python blocks "
        "(sys.getallocatedblocks): "
        f"{a['blocks']['at_100']['median']:.0f} -> {a['blocks']['at_end']['median']:.0f} "
        f"(medians); heap (RssAnon) {a['rss_anon_growth'] / 1e6:+.2f} MB. Modules: "
        f"{a.get('modules_at_loop_start')} when the event loop started, "
        f"{len(a.get('modules_loaded_later', []))} loaded later; after sync 100: "
        f"{a['modules_after_100'][0]}-{a['modules_after_100'][1]}."
        + (
            " Python threads by name, first -> last: "
            f"{_names(a['threads']['python_threads_first'])} -> "
            f"{_names(a['threads']['python_threads_last'])}; changes (at sync): "
            + (
                "; ".join(f"{x}: {_names(n)}" for x, n in a["threads"]["python_thread_changes"])
                or "none"
            )
            + f". inotify watches: {_counts(a['inotify_watches'])}."
            if "python_threads_first" in a["threads"]
            else ""
        ),
        "",
        *_allocator_rows(a, s),
        "",
        *_fault_rows(s["faults"]),
        "",
        f"Memory: the interpreter alone {_mb(m['interpreter_rss'])}; `import syncagent.cli` adds "
        f"{_mb(m['import_syncagent_cli_rss'])} ({_mb(m['after_import_rss'])}, "
        f"{m['modules_after_import']} modules); the idle daemon is "
        f"{_mb(i['rss_median'] - m['after_import_rss'])} above that. By package (with what it "
        "pulls in first, in the daemon's import order):",
        "",
        "| package | RSS | heap | mapped files | modules | import time (self) |",
        "|---|---|---|---|---|---|",
    ]
    imp = m["importtime_self_us"]
    for pkg, (r, anon, file, n) in list(m["by_package"].items())[:14]:
        t = imp.get(pkg)
        rows.append(
            f"| {pkg} | {_mb(r)} | {_mb(anon)} | {_mb(file)} | {n} | "
            f"{f'{t / 1000:.0f} ms' if t is not None else '-'} |"
        )
    rows += [
        "",
        "Imported by `syncagent.cli` although `run` never uses them (marginal RSS after "
        "`syncagent.daemon.service`): "
        + ", ".join(f"`{k}` {v / 1e6:.2f} MB" for k, v in m["cli_only_imports"].items())
        + ".",
        "",
        "What replacing a dependency would save (its marginal RSS with everything else the "
        "daemon imports already loaded): "
        + ", ".join(f"{k} {v / 1e6:.2f} MB" for k, v in m["marginal_if_replaced"].items())
        + ".",
        "",
        "Loaded only once the daemon runs (not in the import cost above): "
        + (
            ", ".join(
                f"{k} {v / 1e6:.2f} MB" for k, v in m["loaded_at_runtime"]["rss_by_package"].items()
            )
            or "nothing"
        )
        + ".",
        "",
        "Idle daemon, resident memory by mapping: "
        + ", ".join(f"{k} {_mb(v)}" for k, v in i["smaps"]["top"].items())
        + f", other {_mb(i['smaps']['rest'])}.",
    ]
    return "\n".join(rows) + "\n"


def plot(doc: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = doc["soak"]
    samples = s["samples"]
    x = [p["syncs"] for p in samples]
    ticks = _ticks_with_syncs(s)
    fig, axes = plt.subplots(4, 1, figsize=(11, 10), sharex=True)
    a = doc["analysis"]
    at_100 = a["rss"]["at_100"] / 1e6
    axes[0].axhspan(at_100, at_100 + RSS_TARGET / 1e6, color="C0", alpha=0.08, lw=0)
    axes[0].plot(x, [p["VmRSS"] / 1e6 for p in samples], label="VmRSS", color="C0")
    axes[0].set_ylabel("VmRSS (MB)")
    heap = axes[0].twinx()
    heap.plot(x, [p["RssAnon"] / 1e6 for p in samples], color="C1", lw=0.8)
    heap.set_ylabel("RssAnon, heap (MB)", color="C1")
    axes[0].plot([], [], color="C1", lw=0.8, label="RssAnon (right axis)")
    axes[0].fill_between([], [], color="C0", alpha=0.08, label="target: sync-100 RSS + 2 MB")
    axes[1].step(x, [p["fds"] for p in samples], where="post", color="C2")
    axes[1].set_ylabel("open fds")
    axes[2].step(x, [p["threads"] for p in samples], where="post", color="C3")
    axes[2].set_ylabel("threads")
    axes[3].plot([t[0] for t in ticks], [t[1]["tasks"] for t in ticks], color="C4", lw=0.7)
    axes[3].set_ylabel("asyncio tasks")
    axes[3].set_xlabel("syncs")
    colors = {"sshd_restart": "red", "sshd_kill": "black", "sshd_down": "orange"}
    colors["sshd_freeze"] = "purple"
    seen: set[str] = set()
    for f in s["faults"]:
        for ax in axes:
            if f["kind"] in REFUSED_FAULTS:
                ax.axvspan(f["start_sync"], f["end_sync"], color="grey", alpha=0.25, lw=0)
            else:
                ax.axvline(f["start_sync"], color=colors[f["kind"]], ls="--", lw=0.8)
        label = "refused tree" if f["kind"] in REFUSED_FAULTS else f["kind"]
        if label not in seen:
            seen.add(label)
            if f["kind"] in REFUSED_FAULTS:
                axes[0].axvspan(0, 0, color="grey", alpha=0.25, label=label)
            else:
                axes[0].plot([], [], color=colors[f["kind"]], ls="--", label=label)
    for ax in axes:
        ax.axvline(100, color="black", lw=0.6, alpha=0.5)
        ax.grid(alpha=0.3)
    axes[0].legend(loc="lower right", fontsize=7, ncol=4)
    fig.suptitle(
        f"syncagent run through {s['syncs_logged']} syncs (interval {s['interval']:g} s, churning "
        f"primary, {len(s['faults'])} faults) - {doc['started'][:10]}, load "
        f"{a['load1']['median']:.1f} median\nRSS sync 100 -> end: "
        f"{a['rss']['growth'] / 1e6:+.2f} MB",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---- main --------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_watchfiles"]:
        _watchfiles_churn(argv[1], int(argv[2]))
        return 0
    if argv[:1] == ["_probe"]:  # _probe FILE [FRAMES] -- ARGV
        split = argv.index("--")
        frames = int(argv[2]) if split > 2 else 0
        _probe_daemon(argv[1], argv[split + 1 :], frames)
        return 0
    import tempfile
    from datetime import UTC, datetime

    from .infra import loadavg, machine

    ap = argparse.ArgumentParser(prog="python -m bench.soak")
    ap.add_argument("--quick", action="store_true", help="300 syncs, 60 s idle")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    ap.add_argument("--syncs", type=int, default=None, help="syncs to soak for")
    ap.add_argument("--idle-seconds", type=float, default=None)
    ap.add_argument("--seed", type=int, default=13)
    ap.add_argument(
        "--tracemalloc",
        type=int,
        default=0,
        metavar="FRAMES",
        help="diagnostic: the soak only, under tracemalloc, with allocation diffs (<date>-soak-"
        "tracemalloc.*); its RSS is tracemalloc's too, not the daemon's",
    )
    ap.add_argument(
        "--heaptrack",
        action="store_true",
        help="diagnostic: the daemon under heaptrack, a soak of --syncs/4 then one of --syncs; "
        "what the longer one left allocated at exit that the shorter did not, by native "
        "backtrace (<date>-soak-heaptrack.*)",
    )
    ap.add_argument(
        "--daemon-env",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="diagnostic: the soak only, the daemon with this in its environment (e.g. "
        "MALLOC_ARENA_MAX=2), written to <date>-soak-env-<name>-<value>.*",
    )
    ap.add_argument(
        "--watchfiles-check",
        type=int,
        default=0,
        metavar="N",
        help="only: malloc'd memory of the drift watcher's recursive watch over N directory "
        "trees created and removed, against N file replacements (<date>-soak-watchfiles.*)",
    )
    ap.add_argument(
        "--from-json", type=Path, help="re-analyse a result JSON: rewrite its .md and .png only"
    )
    args = ap.parse_args(argv)
    if args.watchfiles_check:
        import watchfiles

        started = datetime.now(UTC)
        wdoc = {
            "started": started.isoformat(timespec="seconds"),
            "watchfiles_version": watchfiles.__version__,
            **watchfiles_check(args.watchfiles_check),
        }
        args.out.mkdir(parents=True, exist_ok=True)
        stem = args.out / f"{started:%Y-%m-%d}-soak-watchfiles"
        stem.with_suffix(".json").write_text(json.dumps(wdoc, indent=1) + "\n")
        stem.with_suffix(".md").write_text(watchfiles_table(wdoc))
        print(watchfiles_table(wdoc), end="")
        return 0
    if args.from_json:
        doc = json.loads(args.from_json.read_text())
        ht = doc.get("heaptrack")
        if ht and "peak_diff" not in ht and doc["soak"].get("heaptrack_file"):
            ht["peak_diff"] = heaptrack_peaks(
                Path(doc["soak"]["heaptrack_file"]), Path(doc["soak_short"]["heaptrack_file"])
            )
        doc["analysis"] = analyse(doc)
        args.from_json.write_text(json.dumps(doc, indent=1) + "\n")
        render = diagnosis_table if "idle" not in doc else table
        args.from_json.with_suffix(".md").write_text(render(doc))
        plot(doc, args.from_json.with_suffix(".png"))
        print(render(doc), end="")
        return 0
    syncs = args.syncs or (QUICK_SYNCS if args.quick else SYNCS)
    idle_s = args.idle_seconds or (QUICK_IDLE_SECONDS if args.quick else IDLE_SECONDS)
    started = datetime.now(UTC)
    work = Path(tempfile.mkdtemp(prefix="syncagent-bench-soak-"))
    t0 = time.monotonic()
    doc: dict[str, Any] = {
        "started": started.isoformat(timespec="seconds"),
        "machine": machine(),
        "loadavg_start": loadavg(),
        "quick": args.quick,
        "seed": args.seed,
        "workdir": str(work),
    }
    then = (
        "(diagnostic: soak only)"
        if args.tracemalloc or args.heaptrack or args.daemon_env
        else (f"then {idle_s:.0f} s idle")
    )
    print(f"soak: {syncs} syncs, {then}; logs in {work}", flush=True)
    short: dict[str, Any] = {}
    if args.heaptrack:
        short = soak(work / "short", syncs // 4, True, args.seed, heaptrack=True)
        doc["soak_short"] = {k: short[k] for k in ("syncs_logged", "heaptrack_file", "marks")}
    env = dict(kv.split("=", 1) for kv in args.daemon_env)
    doc["soak"] = soak(
        work / "soak", syncs, args.quick, args.seed, args.tracemalloc, args.heaptrack, env
    )
    if args.heaptrack and doc["soak"]["heaptrack_file"] and short.get("heaptrack_file"):
        long_file = Path(doc["soak"]["heaptrack_file"])
        doc["heaptrack"] = {
            "long": heaptrack_leaks(long_file),
            "diff": heaptrack_leaks(long_file, Path(short["heaptrack_file"])),
            "peak_diff": heaptrack_peaks(long_file, Path(short["heaptrack_file"])),
        }
    doc["loadavg_after_soak"] = loadavg()
    args.out.mkdir(parents=True, exist_ok=True)
    if args.tracemalloc or args.heaptrack or env:
        doc["loadavg_end"] = loadavg()
        doc["duration_s"] = time.monotonic() - t0
        kind = "tracemalloc" if args.tracemalloc else "heaptrack" if args.heaptrack else "env"
        for name, value in env.items():
            kind += f"-{name.lower()}-{value}"
        stem = args.out / f"{started:%Y-%m-%d}-soak-{kind}{'-quick' if args.quick else ''}"
        stem.with_suffix(".json").write_text(json.dumps(doc, indent=1) + "\n")  # raw, in case
        doc["analysis"] = analyse(doc)
        stem.with_suffix(".json").write_text(json.dumps(doc, indent=1) + "\n")
        stem.with_suffix(".md").write_text(diagnosis_table(doc))
        plot(doc, stem.with_suffix(".png"))
        print(diagnosis_table(doc), end="")
        return 0
    print(f"soak done in {doc['soak']['duration_s']:.0f} s; idle phase", flush=True)
    doc["idle"] = idle(work / "idle", idle_s)
    print("idle done; memory breakdown", flush=True)
    ticks = [t for t in doc["soak"]["probe_ticks"] if "module_names" in t]
    later = sorted(set(ticks[-1]["module_names"]) - set(ticks[0]["module_names"])) if ticks else []
    doc["memory"] = memory(later)
    doc["loadavg_end"] = loadavg()
    doc["duration_s"] = time.monotonic() - t0
    stem = args.out / f"{started:%Y-%m-%d}-soak{'-quick' if args.quick else ''}"
    stem.with_suffix(".json").write_text(json.dumps(doc, indent=1) + "\n")  # raw, in case
    doc["analysis"] = analyse(doc)
    stem.with_suffix(".json").write_text(json.dumps(doc, indent=1) + "\n")
    stem.with_suffix(".md").write_text(table(doc))
    plot(doc, stem.with_suffix(".png"))
    print(table(doc), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
