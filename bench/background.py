"""The long experiments, each in its own process with its own sshd, so they can run beside the
others without sharing a CPU account, a tree or a child-rusage counter.

    python -m bench.background idle        PARAMS_JSON   (+ the publisher's idle footprint)
    python -m bench.background propagation PARAMS_JSON   (+ a secondary following HEAD)

The result is one JSON document on the last line of stdout.
"""

from __future__ import annotations

import contextlib
import json
import random
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from .infra import (
    COUNTER_FILE,
    MARK,
    Primary,
    agent_overrides,
    build_xroad,
    new_target,
    rsync_cmd,
    write_counter,
)
from .procs import proc_all_cpu, rss, rss_parts, run_rsync, start_agent, wait_synced
from .publisher import PublisherProc


def idle(p: dict[str, Any]) -> dict[str, Any]:
    """An agent with nothing to do, at interval ``interval``, for ``duration`` seconds: its own
    CPU (from /proc/<pid>/stat), its RSS sampled every second, and what it costs the primary."""
    primary = Primary("idle")
    work = Path(p["workdir"]) / "idle"
    work.mkdir(parents=True, exist_ok=True)
    publisher: PublisherProc | None = None
    try:
        remote = primary.new_tree("xroad")
        build_xroad(remote)
        if p.get("publisher"):  # the publisher's idle footprint on this tree, same window
            publisher = PublisherProc(
                "idle", remote, primary.new_publish_dir(), work / "publisher.log"
            )
            publisher.wait_head(60)
            publisher.quiet()
        target = new_target(work, "agent")
        overrides = agent_overrides(primary, remote, target, **{"sync.interval": p["interval"]})
        agent = start_agent(overrides, p["mode"], work / "agent.log")
        try:
            wait_synced(target, agent, 60)
            time.sleep(min(5.0, p["interval"]))  # past start-up work (first sync, imports)
            pub0 = (publisher.cpu(), len(publisher.builds())) if publisher else (0.0, 0)
            cpu0, prim0, t0 = proc_all_cpu(agent.pid), primary.cpu.seconds(), time.monotonic()
            samples: list[int] = []
            while (elapsed := time.monotonic() - t0) < p["duration"]:
                samples.append(rss(agent.pid)[0])
                time.sleep(min(1.0, p["duration"] - elapsed))
            cpu = proc_all_cpu(agent.pid) - cpu0
            prim1 = primary.cpu.seconds()
            elapsed = time.monotonic() - t0
            pub1 = publisher.cpu() if publisher else 0.0
            now, peak = rss(agent.pid)
            parts = rss_parts(agent.pid)
            samples.append(now)
        finally:
            agent.terminate()
            agent.wait(timeout=20)
        pub_idle = None
        if publisher is not None:
            rescans = publisher.builds()[pub0[1] :]
            pub_idle = {
                "window": elapsed,
                "cpu_seconds": pub1 - pub0[0],
                "cpu_percent_of_core": 100 * (pub1 - pub0[0]) / elapsed,
                "rescans": len(rescans),
                "rescan_cpu": sum(b["cpu"] for b in rescans),
                "rss": rss(publisher.proc.pid)[0],
                "summary": publisher.summary(),
            }
        return {
            "publisher": pub_idle,
            "mode": p["mode"],
            "interval": p["interval"],
            "duration": elapsed,
            "cpu_seconds": cpu,
            "cpu_percent_of_core": 100 * cpu / elapsed,
            "rss_median": statistics.median(samples),
            "rss_max": max(samples),
            "vm_hwm": peak,
            "rss_parts": parts,
            "primary_cpu_seconds": (prim1 - prim0)
            if prim0 is not None and prim1 is not None
            else None,
        }
    finally:
        if publisher is not None:
            publisher.close()
        primary.close()


class _Cron(threading.Thread):
    """rsync (a) at a fixed rate, like cron: runs start at phase + k * interval."""

    def __init__(self, cmd: list[str], interval: float, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.cmd, self.interval, self.stop = cmd, interval, stop
        self.runs: list[dict[str, Any]] = []

    def run(self) -> None:
        phase = time.monotonic() + random.uniform(0, self.interval)
        k = 0
        while not self.stop.is_set():
            at = phase + k * self.interval
            if self.stop.wait(max(0.0, at - time.monotonic())):
                return
            self.runs.append(run_rsync(self.cmd))
            k = max(k + 1, int((time.monotonic() - phase) // self.interval) + 1)


def _counter(path: Path) -> int:
    try:
        data = path.read_bytes()
    except OSError:
        return -1
    i = data.rfind(MARK)
    if i < 0:
        return -1
    try:
        return int(data[i + len(MARK) :].split(b"\n", 1)[0])
    except ValueError:
        return -1


def propagation(p: dict[str, Any]) -> dict[str, Any]:
    """Write on the primary at random moments; time until each write is visible on a secondary
    kept by the agent and on one kept by cron-style rsync (a), both at ``interval``, and (with
    ``published``) on one kept by the daemon following the HEAD of a ``syncagent publish`` on
    the primary, with its own settings (default: poll 2 s, interval 60 s; publisher settle 2 s).
    One write is watched on every secondary at once, so all pipelines see the same events."""
    interval = float(p["interval"])
    primary = Primary(f"prop{interval:g}")
    work = Path(p["workdir"]) / f"prop-{interval:g}"
    work.mkdir(parents=True, exist_ok=True)
    stop = threading.Event()
    publisher: PublisherProc | None = None
    daemons: list[subprocess.Popen[bytes]] = []
    try:
        remote = primary.new_tree("xroad")
        build_xroad(remote)
        base = (remote / COUNTER_FILE).read_bytes()
        t_agent, t_rsync = new_target(work, "agent"), new_target(work, "rsync")
        cmd = rsync_cmd(primary, remote, t_rsync)
        first = run_rsync(cmd)
        if first["rc"] != 0:
            raise RuntimeError(f"first rsync failed: {first['stderr']}")
        extra: dict[str, Any] = {"sync.interval": interval}
        if p.get("settle") is not None:
            extra["sync.settle"] = p["settle"]
        paths = {"agent": t_agent / COUNTER_FILE, "rsync": t_rsync / COUNTER_FILE}
        if p.get("published"):
            publisher = PublisherProc(
                f"prop{interval:g}",
                remote,
                primary.new_publish_dir(),
                work / "publisher.log",
                settle=p.get("pub_settle"),
                probe=False,
            )
        agent = start_agent(
            agent_overrides(primary, remote, t_agent, **extra), p["mode"], work / "agent.log"
        )
        daemons.append(agent)
        if publisher is not None:
            publisher.wait_head(60)  # a HEAD before the daemon's first sync: it follows at once
            t_pub = new_target(work, "published")
            pub_extra: dict[str, Any] = {
                "primary.publish_dir": str(publisher.dir),
                "sync.poll": p.get("pub_poll"),
            }
            daemons.append(
                start_agent(
                    agent_overrides(primary, remote, t_pub, **pub_extra),
                    "daemon",
                    work / "published.log",
                )
            )
            paths["published"] = t_pub / COUNTER_FILE
        cron = _Cron(cmd, interval, stop)
        try:
            wait_synced(t_agent, agent, 60)
            if publisher is not None:
                wait_synced(t_pub, daemons[1], 60)
                _wait_following(t_pub, 20)
            cron.start()
            writes: dict[int, float] = {}
            seen: dict[str, dict[int, float]] = {name: {} for name in paths}
            lo, hi = p["spacing"]
            t0 = time.monotonic()
            next_write, k = t0 + random.uniform(lo, hi), 0
            end_writes = t0 + p["duration"]
            hard_end = end_writes + 1.5 * interval + 15
            while time.monotonic() < hard_end:
                now = time.monotonic()
                if now >= next_write and now < end_writes:
                    k += 1
                    write_counter(remote, base, k)
                    writes[k] = time.monotonic()
                    next_write = now + random.uniform(lo, hi)
                for name, path in paths.items():
                    c = _counter(path)
                    for j in range(1, c + 1):
                        if j in writes and j not in seen[name]:
                            seen[name][j] = time.monotonic()
                if now >= end_writes and all(len(s) == len(writes) for s in seen.values()):
                    break
                time.sleep(0.02)
        finally:
            stop.set()
            for d in daemons:
                d.terminate()
            for d in daemons:
                d.wait(timeout=20)
            if cron.is_alive():
                cron.join(timeout=30)
        out: dict[str, Any] = {"interval": interval, "mode": p["mode"], "writes": len(writes)}
        for name in paths:
            lat = [seen[name][j] - writes[j] for j in sorted(seen[name])]
            out[name] = {"latencies": lat, "unseen": len(writes) - len(lat)}
        if publisher is not None:
            status = _status(t_pub)
            out["published"].update(
                mode="daemon",
                poll=p.get("pub_poll"),
                publisher_settle=p.get("pub_settle"),
                following_head=status.get("following_head"),
                walk_fallbacks=status.get("walk_fallbacks"),
            )
        out["rsync_runs"] = len(cron.runs)
        out["rsync_failures"] = sum(1 for r in cron.runs if r["rc"] != 0)
        return out
    finally:
        stop.set()
        for d in daemons:
            if d.poll() is None:
                d.kill()
                d.wait()
        if publisher is not None:
            publisher.close()
        primary.close()


def _status(target: Path) -> dict[str, Any]:
    try:
        doc: dict[str, Any] = json.loads((target / ".syncagent" / "status.json").read_text())
        return doc
    except (OSError, ValueError):
        return {}


def _wait_following(target: Path, timeout: float) -> None:
    """Until the daemon's status says its last sync followed the primary's HEAD."""
    deadline = time.monotonic() + timeout
    while not _status(target).get("following_head"):
        if time.monotonic() > deadline:
            raise RuntimeError(f"the daemon for {target} does not follow the primary's HEAD")
        time.sleep(0.05)


def main() -> None:
    kind, params = sys.argv[1], json.loads(sys.argv[2])
    result = idle(params) if kind == "idle" else propagation(params)
    print(json.dumps(result), flush=True)


def launch(kind: str, params: dict[str, Any], log: Path) -> subprocess.Popen[str]:
    from .infra import PYTHON, REPO

    with open(log, "ab") as fh:
        return subprocess.Popen(
            [PYTHON, "-m", "bench.background", kind, json.dumps(params)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=fh,
            text=True,
        )


def collect(proc: subprocess.Popen[str], timeout: float) -> dict[str, Any]:
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, _ = proc.communicate()
        return {"error": f"timed out after {timeout:.0f}s"}
    lines = [line for line in out.splitlines() if line.strip()]
    if proc.returncode != 0 or not lines:
        return {"error": f"exited {proc.returncode}"}
    with contextlib.suppress(ValueError):
        doc: dict[str, Any] = json.loads(lines[-1])
        return doc
    return {"error": "no result"}


if __name__ == "__main__":
    main()
