"""The side-by-side experiments that run in the foreground, one measurement at a time.

Four ways to keep a secondary in sync, each with its own secondary tree fed by one primary tree:

- ``rsync-ssh``   (a) the sidecar's rsync, a new SSH connection per run (what cron does);
- ``rsync-cm``    (b) the same rsync over an SSH ControlMaster kept open (rsync's best case);
- ``agent``       the agent over one kept connection (how the daemon runs);
- ``agent-fresh`` the agent opening a new connection per sync (like ``syncagent once``).

Rounds interleave the tools in rotating order, so drift on a shared machine hits all alike.
"""

from __future__ import annotations

import random
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from .infra import (
    ControlMaster,
    Primary,
    agent_overrides,
    bulk_files,
    change_file,
    new_target,
    rsync_cmd,
)
from .procs import AgentProc, run_rsync

TOOLS = ("rsync-ssh", "rsync-cm", "agent", "agent-fresh")
BASELINE = "rsync-ssh"


class Bed:
    """One primary tree, one secondary per tool, and a way to run each tool once."""

    def __init__(
        self,
        primary: Primary,
        remote: Path,
        work: Path,
        *,
        relay: bool = False,
        targets: dict[str, Path] | None = None,
        log_dir: Path,
    ) -> None:
        self.primary, self.remote, self.relay = primary, remote, relay
        self.port = primary.start_relay().port if relay else primary.port
        self.targets = targets or {t: new_target(work, t) for t in TOOLS}
        self.cm = ControlMaster.start(primary, self.port)
        suffix = "-relay" if relay else ""
        self.agents = {
            t: AgentProc(
                [agent_overrides(primary, remote, self.targets[t], port=self.port)],
                log=log_dir / f"{work.name}-{t}{suffix}.log",
            )
            for t in ("agent", "agent-fresh")
        }
        self.connected = False

    def connect(self) -> None:
        answer = self.agents["agent"].call({"op": "connect"})
        if not answer["results"][0]["ok"]:
            raise RuntimeError(f"agent could not connect: {answer}")
        self.connected = True

    def run(self, tool: str) -> dict[str, Any]:
        """Run ``tool`` once: wall, syncing-side CPU, primary (sshd) CPU, bytes if relayed."""
        cpu = self.primary.cpu
        b0 = self.primary.relay.total() if self.relay and self.primary.relay else 0
        p0 = cpu.seconds()
        if tool.startswith("rsync"):
            master = self.cm if tool == "rsync-cm" else None
            control = self.cm.path if master else None
            r = run_rsync(
                rsync_cmd(
                    self.primary, self.remote, self.targets[tool], control=control, port=self.port
                ),
                master,
            )
            out = {
                "wall": r["wall"],
                "cpu": r["cpu"],
                "ok": r["rc"] == 0,
                "detail": r["stderr"] if r["rc"] else "",
            }
        else:
            if tool == "agent" and not self.connected:
                self.connect()
            a = self.agents[tool].call({"op": "sync", "fresh": tool == "agent-fresh"})
            res = a["results"][0]
            out = {
                "wall": a["wall"],
                "cpu": a["cpu"],
                "ok": res["outcome"] in ("applied", "unchanged"),
                "outcome": res["outcome"],
                "files_fetched": res["files_fetched"],
                "bytes_fetched": res.get("bytes_fetched", 0),
                "detail": res["error"] or "",
            }
        p1 = cpu.seconds()
        out["primary_cpu"] = (p1 - p0) if p0 is not None and p1 is not None else None
        if self.relay and self.primary.relay:
            time.sleep(0.05)  # let the relay forward the last segments
            out["bytes"] = self.primary.relay.total() - b0
        return out

    def profile(self, tool: str, path: Path) -> dict[str, Any]:
        return self.agents[tool].call(
            {"op": "profile", "fresh": tool == "agent-fresh", "path": str(path)}
        )

    def reset_target(self, tool: str) -> None:
        self.targets[tool] = new_target(self.targets[tool].parent, self.targets[tool].name)

    def close(self) -> None:
        self.cm.close()
        for a in self.agents.values():
            a.close()


def _rounds(
    bed: Bed, repeats: int, tools: tuple[str, ...], before: Any = None, each: Any = None
) -> dict[str, list[dict[str, Any]]]:
    runs: dict[str, list[dict[str, Any]]] = {t: [] for t in tools}
    for r in range(repeats):
        if before:
            before(r)
        for tool in tools[r % len(tools) :] + tools[: r % len(tools)]:
            if each:
                each(tool)
            runs[tool].append(bed.run(tool))
    return runs


def first_sync(bed: Bed, repeats: int) -> dict[str, list[dict[str, Any]]]:
    """Empty secondary (node-local files only) to a full mirror; target re-created each time.
    The last round leaves every secondary in sync for the no-op rounds that follow."""
    return _rounds(bed, repeats, TOOLS, each=bed.reset_target)


def noop(bed: Bed, repeats: int) -> dict[str, list[dict[str, Any]]]:
    return _rounds(bed, repeats, TOOLS)


def one_change(
    bed: Bed, repeats: int, tools: tuple[str, ...] = TOOLS, seed: int = 7
) -> dict[str, list[dict[str, Any]]]:
    """Rewrite one random file of the bulk tree on the primary, then every tool syncs it."""
    files = bulk_files(bed.remote)
    rng = random.Random(seed)
    return _rounds(bed, repeats, tools, before=lambda _r: change_file(rng.choice(files)))


# ---- fan-out ---------------------------------------------------------------------------------


def _rsync_round(primary: Primary, remote: Path, targets: list[Path]) -> dict[str, Any]:
    """N rsync processes started at the same instant, as N cron daemons firing at :00."""
    cmds = [rsync_cmd(primary, remote, t) for t in targets]
    p0, t0 = primary.cpu.seconds(), time.perf_counter()
    procs = [
        subprocess.Popen(
            c,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for c in cmds
    ]
    errors: dict[str, int] = {}
    ok = 0
    for proc in procs:
        _, err = proc.communicate()
        if proc.returncode == 0:
            ok += 1
        else:
            key = (err.strip().splitlines() or [f"exit {proc.returncode}"])[0][:120]
            errors[key] = errors.get(key, 0) + 1
    wall = time.perf_counter() - t0
    p1 = primary.cpu.seconds()
    return {
        "ok": ok,
        "n": len(targets),
        "wall": wall,
        "primary_cpu": (p1 - p0) if p0 is not None and p1 is not None else None,
        "errors": errors,
    }


def _warm_rsync(primary: Primary, remote: Path, targets: list[Path], parallel: int = 8) -> None:
    for i in range(0, len(targets), parallel):
        _rsync_round(primary, remote, targets[i : i + parallel])


def fanout(
    primary: Primary,
    remote: Path,
    work: Path,
    ns: tuple[int, ...],
    rounds: int,
    workers: int,
    idle_window: float,
    log_dir: Path,
) -> list[dict[str, Any]]:
    """N secondaries against one sshd with default MaxStartups (10:30:100).

    cron + rsync (a): N runs at once, each a new SSH connection; a failed run is retried only by
    the next minute's cron. Agents: ``workers`` processes holding N/workers asyncio agents each,
    every agent with its own connection and secondary. They connect all at once (retrying with
    the daemon's backoff), then sync all at once over their kept connections.
    """
    big = max(ns)
    rsync_targets = [new_target(work / "rsync", f"s{i:03d}") for i in range(big)]
    agent_targets = [new_target(work / "agent", f"s{i:03d}") for i in range(big)]
    _warm_rsync(primary, remote, rsync_targets)
    out = []
    for n in ns:
        row: dict[str, Any] = {"n": n}
        row["rsync_rounds"] = [
            _rsync_round(primary, remote, rsync_targets[:n]) for _ in range(rounds)
        ]
        w = min(workers, n)
        procs = [
            AgentProc(
                [agent_overrides(primary, remote, agent_targets[i]) for i in range(j, n, w)],
                keepalive=15.0,
                log=log_dir / f"fanout-{n}-w{j}.log",
            )
            for j in range(w)
        ]
        try:
            p0 = primary.cpu.seconds()
            for p in procs:
                p.send({"op": "connect", "retry": True})
            conns = [r for p in procs for r in p.recv()["results"]]
            p1 = primary.cpu.seconds()
            row["agent_connect"] = {
                "connected": sum(1 for c in conns if c["ok"]),
                "first_try": sum(1 for c in conns if c["ok"] and c["attempts"] == 1),
                "refused_attempts": sum(len(c["errors"]) for c in conns),
                "all_connected_after": max(c["seconds"] for c in conns),
                "primary_cpu": (p1 - p0) if p0 is not None and p1 is not None else None,
            }
            for p in procs:  # first sync (warm-up; a no-op for targets synced at a smaller N)
                p.send({"op": "sync"})
            warm = [r for p in procs for r in p.recv()["results"]]
            row["agent_first_sync_ok"] = sum(
                1 for r in warm if r["outcome"] in ("applied", "unchanged")
            )
            agent_rounds = []
            for _ in range(rounds):
                p0, t0 = primary.cpu.seconds(), time.perf_counter()
                for p in procs:
                    p.send({"op": "sync"})
                answers = [p.recv() for p in procs]
                wall = time.perf_counter() - t0
                p1 = primary.cpu.seconds()
                results = [r for a in answers for r in a["results"]]
                agent_rounds.append(
                    {
                        "ok": sum(1 for r in results if r["outcome"] in ("applied", "unchanged")),
                        "n": n,
                        "wall": wall,
                        "agent_cpu": sum(a["cpu"] for a in answers),
                        "primary_cpu": (p1 - p0) if p0 is not None and p1 is not None else None,
                        "errors": sorted({r["error"] for r in results if r["error"]})[:5],
                    }
                )
            row["agent_rounds"] = agent_rounds
            p0 = primary.cpu.seconds()
            time.sleep(idle_window)
            p1 = primary.cpu.seconds()
            row["agent_idle_primary_cpu_per_s"] = (
                (p1 - p0) / idle_window if p0 is not None and p1 is not None else None
            )
            row["sshd_pss_bytes_with_agents"] = primary.sessions_pss()
        finally:
            for p in procs:
                p.close()
        out.append(row)
    shutil.rmtree(work, ignore_errors=True)
    return out
