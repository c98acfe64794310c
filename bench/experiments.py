"""The side-by-side experiments that run in the foreground, one measurement at a time.

Four ways to keep a secondary in sync, each with its own secondary tree fed by one primary tree:

- ``rsync-ssh``   (a) the sidecar's rsync, a new SSH connection per run (what cron does);
- ``rsync-cm``    (b) the same rsync over an SSH ControlMaster kept open (rsync's best case);
- ``agent``       the agent over one kept connection (how the daemon runs);
- ``agent-fresh`` the agent opening a new connection per sync (like ``syncagent once``);
- ``agent-pub``   the agent following the HEAD a real ``syncagent publish`` on the primary
                  publishes (``primary.publish_dir``), over one kept connection;
- ``agent-pub-fresh`` the same over a new connection per sync;
- ``agent-pub-head`` (no-op rounds only) one read of that HEAD over agent-pub's connection: what
                  the daemon does every ``sync.poll`` s between syncs, a sync only on a change.

Rounds interleave the tools in rotating order, so drift on a shared machine hits all alike. The
publisher runs only while a published contender is measured (or a change is being published):
it is paused (SIGSTOP) while the others run, as their primaries have no publisher.
"""

from __future__ import annotations

import functools
import json
import random
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .infra import (
    COUNTER_FILE,
    ControlMaster,
    Primary,
    agent_overrides,
    bulk_files,
    change_file,
    new_target,
    rsync_cmd,
    write_counter,
)
from .procs import AgentProc, run_rsync
from .publisher import PublisherProc

WALK_TOOLS = ("rsync-ssh", "rsync-cm", "agent", "agent-fresh")
PUB_TOOLS = ("agent-pub", "agent-pub-fresh")
HEAD_TOOL = "agent-pub-head"  # a HEAD read on agent-pub's kept connection
# Round order (rotated each round; the walking contenders keep their order and predecessors):
# the published kept connection and the HEAD read come after a kept-connection run, not right
# after a new connection closed, whose teardown in sshd (~0.3 ms) would be charged to them.
TOOLS = ("rsync-ssh", "rsync-cm", "agent", "agent-pub", "agent-fresh", "agent-pub-fresh")
NOOP_TOOLS = (*TOOLS[:4], HEAD_TOOL, *TOOLS[4:])
AGENTS = ("agent", "agent-fresh", *PUB_TOOLS)
FRESH = ("agent-fresh", "agent-pub-fresh")
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
        publisher: PublisherProc | None = None,
    ) -> None:
        self.primary, self.remote, self.relay = primary, remote, relay
        self.work, self.log_dir = work, log_dir
        self.publisher = publisher
        self.tools = TOOLS if publisher is not None else WALK_TOOLS
        self.port = primary.start_relay().port if relay else primary.port
        self.targets = targets or {t: new_target(work, t) for t in self.tools}
        self.cm = ControlMaster.start(primary, self.port)
        suffix = "-relay" if relay else ""
        extra: dict[str, Any] = {"primary.publish_dir": str(publisher.dir)} if publisher else {}
        self.agents = {
            t: AgentProc(
                [
                    agent_overrides(
                        primary,
                        remote,
                        self.targets[t],
                        port=self.port,
                        **(extra if t in PUB_TOOLS else {}),
                    )
                ],
                log=log_dir / f"{work.name}-{t}{suffix}.log",
            )
            for t in AGENTS
            if t in self.tools
        }
        self.connected: set[str] = set()

    def relayed(self) -> Bed:
        """The same secondaries reached through the byte-counting relay (bytes on the wire)."""
        return Bed(
            self.primary,
            self.remote,
            self.work,
            relay=True,
            targets=self.targets,
            log_dir=self.log_dir,
            publisher=self.publisher,
        )

    def connect(self, tool: str = "agent") -> None:
        answer = self.agents[tool].call({"op": "connect"})
        if not answer["results"][0]["ok"]:
            raise RuntimeError(f"{tool} could not connect: {answer}")
        self.connected.add(tool)

    def run(self, tool: str) -> dict[str, Any]:
        """Run ``tool`` once: wall, syncing-side CPU, primary (sshd) CPU, bytes if relayed."""
        if self.publisher is not None:  # running only for the contender that needs it
            if tool in (*PUB_TOOLS, HEAD_TOOL):
                self.publisher.resume()
            else:
                self.publisher.pause()
        fresh = tool in FRESH
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
            worker = "agent-pub" if tool == HEAD_TOOL else tool
            if not fresh and worker not in self.connected:
                self.connect(worker)
            cmd = {"op": "head"} if tool == HEAD_TOOL else {"op": "sync", "fresh": fresh}
            a = self.agents[worker].call(cmd)
            res = a["results"][0]
            wanted = "walk" if tool in WALK_TOOLS else "published"
            out = {
                "wall": a["wall"],
                "cpu": a["cpu"],
                "ok": res["outcome"] in ("applied", "unchanged") and res["source"] == wanted,
                "outcome": res["outcome"],
                "source": res["source"],
                "sequence": res["sequence"],
                "files_fetched": res["files_fetched"],
                "bytes_fetched": res.get("bytes_fetched", 0),
                "verified": res.get("verified", 0),
                "detail": res["error"] or ("" if res["source"] == wanted else res["source"]),
            }
        p1 = cpu.seconds()
        out["primary_cpu"] = (p1 - p0) if p0 is not None and p1 is not None else None
        if self.relay and self.primary.relay:
            time.sleep(0.05)  # let the relay forward the last segments
            out["bytes"] = self.primary.relay.total() - b0
        return out

    def profile(self, tool: str, path: Path) -> dict[str, Any]:
        if self.publisher is not None:
            self.publisher.pause()
        return self.agents[tool].call({"op": "profile", "fresh": tool in FRESH, "path": str(path)})

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


def first_sync(
    bed: Bed, repeats: int, once: tuple[str, ...] = ("agent-pub",)
) -> dict[str, list[dict[str, Any]]]:
    """Empty secondary (node-local files only) to a full mirror; target re-created each time.
    The tools in ``once`` run only once, after the rounds (the target is the new-connection
    contender; a first sync is not where a kept connection differs). The last round leaves
    every secondary in sync for the no-op rounds that follow."""
    rounds = tuple(t for t in bed.tools if t not in once)
    runs = _rounds(bed, repeats, rounds, each=bed.reset_target)
    for tool in bed.tools:
        if tool in once:
            bed.reset_target(tool)
            runs[tool] = [bed.run(tool)]
    return runs


def noop(bed: Bed, repeats: int) -> dict[str, list[dict[str, Any]]]:
    """Nothing changed since the last sync. With a publisher, one HEAD read (the daemon's
    check between syncs) is measured beside the published contenders' no-op syncs."""
    tools = NOOP_TOOLS if bed.publisher else bed.tools
    return _rounds(bed, repeats, tools)


def one_change(
    bed: Bed,
    repeats: int,
    tools: tuple[str, ...] | None = None,
    seed: int = 7,
    change: Callable[[int], None] | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """Rewrite one random file of the bulk tree on the primary, then every tool syncs it.

    ``change``, if given, makes round ``r``'s change instead (``change(r)``, on the primary):
    for trees whose files the agent validates, where random bytes would be refused (the
    security server tree: a counter line in conf.d/local.ini, ``infra.change_counter``).

    With a publisher, the change is published before any tool runs (the publisher alone on the
    machine: the time to publish it is measured, and no build lands on another tool's sync);
    the published contenders' runs carry that round's publish numbers, and ``end_to_end`` =
    time to publish + their sync: write -> applied for a secondary that read HEAD the moment
    it moved (the daemon reads it every ``sync.poll``: the propagation experiment)."""
    tools = tools or bed.tools
    files = bulk_files(bed.remote) if change is None else []
    rng = random.Random(seed)
    published: list[dict[str, Any]] = []
    publisher = bed.publisher if any(t in PUB_TOOLS for t in tools) else None

    def before(r: int) -> None:
        write: Callable[[], None] = (
            functools.partial(change_file, rng.choice(files))
            if change is None
            else functools.partial(change, r)
        )
        if publisher is None:
            write()
        else:
            published.append(publisher.publish(write))

    runs = _rounds(bed, repeats, tools, before=before)
    for tool in PUB_TOOLS:
        for run, pub in zip(runs.get(tool, []), published, strict=False):
            run["publish"] = pub
            run["publish_latency"] = pub["latency"]
            run["end_to_end"] = pub["latency"] + run["wall"]
            run["ok"] = run["ok"] and run["sequence"] == pub["sequence"]
    return runs


def publish_generations(publisher: PublisherProc, remote: Path, repeats: int) -> list[Any]:
    """``repeats`` one-line edits of conf.d/local.ini, each published alone: the publisher's
    time to publish, build wall and CPU per generation of this tree."""
    base = (remote / COUNTER_FILE).read_bytes()
    return [
        publisher.publish(functools.partial(write_counter, remote, base, 10_000 + k))
        for k in range(repeats)
    ]


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


def _connect_storm(primary: Primary, procs: list[AgentProc]) -> dict[str, Any]:
    """Every agent connects at the same instant (refused ones retry with the daemon's
    backoff): how many got in at once, how long the last took, what it cost the primary."""
    p0 = primary.cpu.seconds()
    for p in procs:
        p.send({"op": "connect", "retry": True})
    conns = [r for p in procs for r in p.recv()["results"]]
    p1 = primary.cpu.seconds()
    return {
        "connected": sum(1 for c in conns if c["ok"]),
        "first_try": sum(1 for c in conns if c["ok"] and c["attempts"] == 1),
        "refused_attempts": sum(len(c["errors"]) for c in conns),
        "all_connected_after": max(c["seconds"] for c in conns),
        "primary_cpu": (p1 - p0) if p0 is not None and p1 is not None else None,
    }


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
            for p in procs:  # all imported and waiting, so the connects start together
                p.wait_ready()
            row["agent_connect"] = _connect_storm(primary, procs)
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


# ---- fan-out in publish mode -----------------------------------------------------------------


def _sync_all(procs: list[AgentProc]) -> tuple[list[dict[str, Any]], float]:
    for p in procs:
        p.send({"op": "sync"})
    answers = [p.recv() for p in procs]
    return [r for a in answers for r in a["results"]], sum(a["cpu"] for a in answers)


def _published_round(
    primary: Primary, procs: list[AgentProc], n: int, sequence: int | None
) -> dict[str, Any]:
    """N syncs at the same instant over kept connections, each expected to follow HEAD."""
    p0, t0 = primary.cpu.seconds(), time.perf_counter()
    results, agent_cpu = _sync_all(procs)
    wall = time.perf_counter() - t0
    p1 = primary.cpu.seconds()
    ok = [r["outcome"] in ("applied", "unchanged") and r["source"] == "published" for r in results]
    return {
        "ok": sum(ok),
        "n": n,
        "wall": wall,
        "agent_cpu": agent_cpu,
        "primary_cpu": (p1 - p0) if p0 is not None and p1 is not None else None,
        "head_sequence": sequence,
        # the HEAD sequence each agent followed and holds after the round (None: it failed or
        # walked), in the workers' order; "outcomes" says which applied and which had it already
        "sequences": [r["sequence"] if ok[i] else None for i, r in enumerate(results)],
        "outcomes": _count(f"{r['outcome']}/{r['source']}" for r in results),
        "verified": sum(r.get("verified", 0) for r in results),
        "errors": sorted({r["error"] for r in results if r["error"]})[:5],
    }


def _count(items: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for item in items:
        out[item] = out.get(item, 0) + 1
    return out


def fanout_published(
    primary: Primary,
    remote: Path,
    publisher: PublisherProc,
    work: Path,
    ns: tuple[int, ...],
    rounds: int,
    workers: int,
    poll_every: float,
    poll_window: float,
    log_dir: Path,
) -> list[dict[str, Any]]:
    """N secondaries following one publisher's HEAD, against one sshd with default MaxStartups.

    They connect all at once (the daemon's backoff, as in ``fanout``) and take the published
    generation; then ``rounds`` times: one edit on the primary, published (the publisher alone),
    then N syncs at the same instant. Every agent must apply exactly the sequence HEAD named
    in every round: the per-agent lists of applied sequences must all be the same list. Then a
    round of N no-op syncs (each with the verification share a minute brings, as the daemon's
    scheduled sync once a minute has), and ``poll_window`` s of every agent reading HEAD every
    ``poll_every`` s from a random phase (the daemon's poll job): the primary's cost of N
    secondaries watching one HEAD.
    """
    head = publisher.wait_head()
    base = (remote / COUNTER_FILE).read_bytes()
    targets = [new_target(work, f"s{i:03d}") for i in range(max(ns))]
    extra: dict[str, Any] = {"primary.publish_dir": str(publisher.dir)}
    out = []
    for n in ns:
        row: dict[str, Any] = {"n": n}
        w = min(workers, n)
        procs = [
            AgentProc(
                [agent_overrides(primary, remote, targets[i], **extra) for i in range(j, n, w)],
                keepalive=15.0,
                log=log_dir / f"fanout-pub-{n}-w{j}.log",
            )
            for j in range(w)
        ]
        order = [i for j in range(w) for i in range(j, n, w)]  # agent index of each result
        try:
            for p in procs:  # all imported and waiting, so the connects start together
                p.wait_ready()
            row["agent_connect"] = _connect_storm(primary, procs)
            head = publisher.wait_head()
            first = _published_round(primary, procs, n, head.sequence)
            row["first_sync"] = first
            published = [head.sequence]
            agent_rounds = []
            for r in range(rounds):
                k = 1_000_000 + 1000 * n + r
                pub = publisher.publish(functools.partial(write_counter, remote, base, k))
                published.append(pub["sequence"])
                done = _published_round(primary, procs, n, pub["sequence"])
                agent_rounds.append({**done, "publish": pub})
            row["agent_rounds"] = agent_rounds
            # the scheduled sync (sync.interval 60 s) carries the verification share a minute
            # brings (sync.verify_interval): move each cursor 60 s back, as a minute would
            for p in procs:
                p.call({"op": "verify_clock", "seconds": 60.0})
            row["noop_round"] = _published_round(primary, procs, n, published[-1])
            # per agent: the sequence it applied in each round (first sync included)
            lists: list[list[int | None]] = [[None] * (rounds + 1) for _ in range(n)]
            for col, rnd in enumerate([first, *agent_rounds]):
                for pos, seq in enumerate(rnd["sequences"]):
                    lists[order[pos]][col] = seq
            distinct = _count(json.dumps(seqs) for seqs in lists)
            row["published_sequences"] = published
            row["agent_sequences"] = [
                {"sequences": json.loads(k), "agents": v} for k, v in distinct.items()
            ]
            row["sequences_consistent"] = list(distinct) == [json.dumps(published)]
            p0, t0 = primary.cpu.seconds(), time.monotonic()
            for p in procs:
                p.send({"op": "poll", "every": poll_every, "duration": poll_window})
            polled = [r for p in procs for r in p.recv()["results"]]
            elapsed = time.monotonic() - t0
            p1 = primary.cpu.seconds()
            polls = sum(r["polls"] for r in polled)
            row["poll"] = {
                "every": poll_every,
                "window": elapsed,
                "polls": polls,
                "errors": sorted({e for r in polled for e in r["errors"]})[:5],
                "stale_reads": sum(1 for r in polled if r["sequences"] != [published[-1]]),
                "primary_cpu": (p1 - p0) if p0 is not None and p1 is not None else None,
                "primary_cpu_per_s": ((p1 - p0) / elapsed)
                if p0 is not None and p1 is not None
                else None,
            }
            row["sshd_pss_bytes_with_agents"] = primary.sessions_pss()
        finally:
            for p in procs:
                p.close()
        out.append(row)
    shutil.rmtree(work, ignore_errors=True)
    return out
