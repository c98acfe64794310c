"""Footprint over time: the daemon through thousands of syncs, a churning primary, injected faults.

    sudo .venv/bin/python -m bench.soak [--quick] [--out DIR]     # ~15 min (--quick: ~3 min)
    .venv/bin/python -m bench.soak --from-json bench/results/<date>-soak.json   # re-render

Two phases, one report (``<out>/<date>-soak[-quick].{json,md,png}``):

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
   ``len(asyncio.all_tasks())`` and ``sys.getallocatedblocks()`` (live Python objects: with
   RssAnon, it tells a Python leak from native memory) to FILE. What it adds to the process is
   ``bench/__init__.py`` (empty), this module's top-level imports (stdlib modules the daemon
   imports anyway) and its few functions. The idle phase runs the plain
   ``python -m syncagent run``.

2. **Idle.** A fresh daemon (plain ``python -m syncagent run``, interval 60 s, defaults
   otherwise) on the X-Road tree, nothing changing, measured for ``--idle-seconds`` (300; 60
   with --quick) after its first sync and a 5 s pause: CPU as utime + stime (+ waited-for
   children) from /proc/<pid>/stat over wall time, RSS sampled every second (median = the
   steady RSS), VmHWM, RssAnon/RssFile.

Where the memory goes beyond that (allocator statistics, per-module import cost, tracemalloc,
heaptrack) was one investigation (2026-12-01, docs/benchmarks.md); its tools were taken out of
the standing bench once it was done and are in the git history of this file.

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


def _probe_daemon(out: str, argv: list[str]) -> None:
    """``python -m syncagent <argv>`` with a timer on its event loop that records task counts."""
    import asyncio.base_events
    import runpy

    path = Path(out)
    original = asyncio.base_events.BaseEventLoop.run_forever
    installed: list[bool] = []

    def run_forever(self: asyncio.base_events.BaseEventLoop) -> None:
        if not installed:
            installed.append(True)
            self.call_soon(_probe_tick, self, path)
        original(self)

    asyncio.base_events.BaseEventLoop.run_forever = run_forever  # type: ignore[method-assign]
    sys.argv = ["syncagent", *argv]
    runpy.run_module("syncagent", run_name="__main__", alter_sys=True)


def _probe_tick(loop: Any, path: Path) -> None:
    import asyncio

    doc = {
        "t": time.time(),
        "tasks": len(asyncio.all_tasks(loop)),
        "blocks": sys.getallocatedblocks(),
    }
    with open(path, "a") as fh:
        fh.write(json.dumps(doc) + "\n")
    loop.call_later(PROBE_EVERY, _probe_tick, loop, path)


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


def soak(work: Path, syncs: int, quick: bool, seed: int) -> dict[str, Any]:
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
        argv = [PYTHON, "-m", "bench.soak", "_probe", str(probe_path), "--"]
        argv += _daemon_argv(overrides)
        with open(log_path, "ab") as fh:
            proc = subprocess.Popen(
                argv,
                cwd=REPO,
                stdin=subprocess.DEVNULL,
                stdout=fh,
                stderr=fh,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        tail = LogTail(log_path)
        pid = proc.pid  # the daemon: python -m bench.soak _probe runs it in this process
        samples: list[dict[str, Any]] = []
        hups = 0
        t0 = time.monotonic()
        next_sample = t0
        next_churn = t0 + 2.0
        next_hup = t0 + rng.uniform(20, 40)

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
            os.kill(pid, signal.SIGTERM)
            t_stop = time.monotonic()
            try:
                rc: int | None = proc.wait(timeout=30)
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
        return {
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
            "loadavg_start": load0,
            "loadavg_end": loadavg(),
        }
    finally:
        primary.close()


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
    loads = [s["load1"] for s in samples]
    out["load1"] = {"min": min(loads), "median": statistics.median(loads), "max": max(loads)}
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


def table(doc: dict[str, Any]) -> str:
    a, s, i = doc["analysis"], doc["soak"], doc["idle"]
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
        "before it. Live Python objects (sys.getallocatedblocks, medians): "
        f"{a['blocks']['at_100']['median']:.0f} -> {a['blocks']['at_end']['median']:.0f}; "
        f"heap (RssAnon) {a['rss_anon_growth'] / 1e6:+.2f} MB; inotify watches "
        f"{_counts(a['inotify_watches'])}.",
        "",
        *_fault_rows(s["faults"]),
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
    if argv[:1] == ["_probe"]:  # _probe FILE -- ARGV: the daemon, with the task probe
        _probe_daemon(argv[1], argv[argv.index("--") + 1 :])
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
        "--from-json", type=Path, help="re-analyse a result JSON: rewrite its .md and .png only"
    )
    args = ap.parse_args(argv)
    if args.from_json:
        doc = json.loads(args.from_json.read_text())
        if "idle" not in doc:
            ap.error(f"{args.from_json} is a diagnostic run's (no idle phase): not this report's")
        doc["analysis"] = analyse(doc)
        args.from_json.write_text(json.dumps(doc, indent=1) + "\n")
        args.from_json.with_suffix(".md").write_text(table(doc))
        plot(doc, args.from_json.with_suffix(".png"))
        print(table(doc), end="")
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
    print(f"soak: {syncs} syncs, then {idle_s:.0f} s idle; logs in {work}", flush=True)
    doc["soak"] = soak(work / "soak", syncs, args.quick, args.seed)
    doc["loadavg_after_soak"] = loadavg()
    print(f"soak done in {doc['soak']['duration_s']:.0f} s; idle phase", flush=True)
    doc["idle"] = idle(work / "idle", idle_s)
    doc["loadavg_end"] = loadavg()
    doc["duration_s"] = time.monotonic() - t0
    args.out.mkdir(parents=True, exist_ok=True)
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
