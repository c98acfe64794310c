"""Child processes the experiments drive: agent workers, the agent daemon (or its stand-in),
rsync runs. Each returns what it cost: wall time, CPU of the syncing side."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import time
from pathlib import Path
from typing import IO, Any

from syncagent.settings import FIELDS_BY_NAME

from .infra import PYTHON, REPO, ControlMaster, children_cpu


class AgentProc:
    """``bench.agent_worker`` holding ``len(agents)`` agents; commands are JSON lines."""

    def __init__(
        self,
        agents: list[dict[str, str]],
        *,
        keepalive: float | None = None,
        log: Path | None = None,
    ) -> None:
        config = json.dumps({"agents": agents, "keepalive": keepalive})
        self.log: IO[bytes] | None = open(log, "ab") if log else None  # noqa: SIM115
        self.proc = subprocess.Popen(
            [PYTHON, "-m", "bench.agent_worker", config],
            cwd=REPO,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log if self.log else subprocess.DEVNULL,
            text=True,
        )
        # Not waited for here: workers started one after another import in parallel, and the
        # first command waits for its worker's "ready" line.
        self.ready = False

    def wait_ready(self) -> None:
        if not self.ready:
            self.ready = True
            hello = self.recv()
            assert hello.get("ready"), hello

    def send(self, cmd: dict[str, Any]) -> None:
        self.wait_ready()
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()

    def recv(self) -> dict[str, Any]:
        self.wait_ready()
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"agent worker exited with {self.proc.wait()}")
        doc: dict[str, Any] = json.loads(line)
        return doc

    def call(self, cmd: dict[str, Any]) -> dict[str, Any]:
        self.send(cmd)
        return self.recv()

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.send({"op": "quit"})
                self.proc.wait(timeout=20)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        if self.log is not None:
            self.log.close()


def run_rsync(cmd: list[str], master: ControlMaster | None = None) -> dict[str, Any]:
    """One rsync run; client CPU = rsync + its ssh (+ the ControlMaster's share, if any)."""
    cpu0 = children_cpu()
    m0 = master.cpu() if master else 0.0
    t0 = time.perf_counter()
    out = subprocess.run(
        cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    wall = time.perf_counter() - t0
    cpu = children_cpu() - cpu0 + ((master.cpu() - m0) if master else 0.0)
    return {"wall": wall, "cpu": cpu, "rc": out.returncode, "stderr": out.stderr[-300:]}


def agent_mode(requested: str) -> str:
    """daemon (``syncagent run``) when it is committed in this checkout, else the loop."""
    if requested != "auto":
        return requested
    tracked = subprocess.run(
        ["git", "ls-files", "--error-unmatch", "syncagent/daemon/service.py"],
        cwd=REPO,
        capture_output=True,
    )
    return "daemon" if tracked.returncode == 0 else "loop"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_agent(overrides: dict[str, str], mode: str, log: Path) -> subprocess.Popen[bytes]:
    """A long-running agent: ``syncagent run`` (daemon) or ``bench.agent_loop`` (loop)."""
    if mode == "daemon":
        values = {"http.listen": f"127.0.0.1:{free_port()}", **overrides}
        argv = [PYTHON, "-m", "syncagent", "run"]
        for name, value in values.items():
            argv += [FIELDS_BY_NAME[name].flag, value]
    else:
        argv = [PYTHON, "-m", "bench.agent_loop", json.dumps(overrides)]
    with open(log, "ab") as fh:
        return subprocess.Popen(
            argv,
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=fh,
            stderr=fh,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )


def wait_synced(target: Path, proc: subprocess.Popen[bytes], timeout: float) -> None:
    """Until the agent's first sync has applied (its record exists)."""
    deadline = time.monotonic() + timeout
    while not (target / ".syncagent" / "current.json").exists():
        if proc.poll() is not None:
            raise RuntimeError(f"agent exited with {proc.returncode} before its first sync")
        if time.monotonic() > deadline:
            raise RuntimeError(f"agent did not sync {target} within {timeout}s")
        time.sleep(0.05)


def proc_all_cpu(pid: int) -> float:
    """utime + stime of a process plus its waited-for children (bash -n of services/*.conf)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def rss(pid: int) -> tuple[int, int]:
    """(VmRSS, VmHWM) in bytes."""
    now = peak = 0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            now = int(line.split()[1]) * 1024
        elif line.startswith("VmHWM:"):
            peak = int(line.split()[1]) * 1024
    return now, peak


def rss_parts(pid: int) -> dict[str, int]:
    """RssAnon (heap) and RssFile (mapped code: interpreter, OpenSSL, extension modules)."""
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key = line.split(":", 1)[0]
        if key in ("RssAnon", "RssFile", "RssShmem"):
            out[key] = int(line.split()[1]) * 1024
    return out
