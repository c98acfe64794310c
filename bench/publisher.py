"""The publisher on the bench's primary: a real ``syncagent publish`` process, and what it costs.

    python -m bench.publisher PROBE_FILE -- publish <flags>

is ``python -m syncagent publish <flags>`` (``runpy`` of the package, with that argv: what the
command runs) after one patch, as the soak's task probe does for the daemon: ``Publisher.build``
(one generation, or a rescan that confirms HEAD) is wrapped to append a line to PROBE_FILE at
its start and at its end, with ``time.monotonic()`` (the bench's clock: CLOCK_MONOTONIC is
system-wide), the process's CPU from ``getrusage`` (self + waited-for children: ``bash -n``
of ``services/*.conf``; the counters /proc shows) and the outcome. That gives each build's wall
time and CPU, which nothing outside the process can see (the build starts ``publish.settle``
after an inotify batch the bench cannot observe). Between builds the wrapper does nothing.

The bench's side (``PublisherProc``) starts it with the publisher's defaults unless told
otherwise, puts it in its own CPU accounting group (its CPU is never mixed with sshd's), reads
HEAD, and can pause it (SIGSTOP) while other contenders are measured: a primary that runs rsync
or the walk has no publisher, and the publisher's rescan every ``RESCAN_INTERVAL`` would
otherwise land on their measurements.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from syncagent.publishdir import HEAD_NAME, RESCAN_INTERVAL, Head, parse_head
from syncagent.settings import FIELDS_BY_NAME

from .infra import PYTHON, REPO, CpuGroup
from .procs import free_port


def _rusage_cpu() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _probe(out: str, argv: list[str]) -> None:
    """``python -m syncagent <argv>`` with ``Publisher.build`` timed (runs in the publisher)."""
    import runpy

    from syncagent.publish import builder as publisher

    path = Path(out)
    original = publisher.Publisher.build

    def record(doc: dict[str, Any]) -> None:
        with path.open("a") as fh:
            fh.write(json.dumps(doc) + "\n")

    def build(self: publisher.Publisher) -> publisher.PublishOutcome:
        t0, c0 = time.monotonic(), _rusage_cpu()
        record({"event": "start", "t": t0})
        outcome = original(self)
        t1, c1 = time.monotonic(), _rusage_cpu()
        head = outcome.head
        record(
            {
                "event": "end",
                "t": t1,
                "wall": t1 - t0,
                "cpu": c1 - c0,
                "result": outcome.result,
                "sequence": head.sequence if head else None,
                "generation": head.generation if head else None,
            }
        )
        return outcome

    publisher.Publisher.build = build  # type: ignore[method-assign]
    sys.argv = ["syncagent", *argv]
    runpy.run_module("syncagent", run_name="__main__", alter_sys=True)


class PublisherProc:
    """One ``syncagent publish`` of ``source`` into ``pdir`` (probed unless ``probe=False``)."""

    def __init__(
        self,
        name: str,
        source: Path,
        pdir: Path,
        log: Path,
        *,
        settle: float | None = None,
        probe: bool = True,
    ) -> None:
        self.source, self.dir = source, pdir
        self.head_file = pdir / HEAD_NAME
        self.probe_file: Path | None = log.with_suffix(".probe.jsonl") if probe else None
        values = {
            "publish.source": str(source),
            "publish.dir": str(pdir),
            "log.format": "json",
            "log.level": "info",
        }
        if settle is not None:
            values["publish.settle"] = str(settle)
        if "publish.listen" in FIELDS_BY_NAME:  # its HTTP port, as by default, but a free one
            values["publish.listen"] = f"127.0.0.1:{free_port()}"
        self.log = log
        argv = ["publish"]
        for key, value in values.items():
            argv += [FIELDS_BY_NAME[key].flag, value]
        if self.probe_file is not None:
            self.probe_file.unlink(missing_ok=True)
            cmd = [PYTHON, "-m", "bench.publisher", str(self.probe_file), "--", *argv]
        else:
            cmd = [PYTHON, "-m", "syncagent", *argv]
        self.group = CpuGroup(f"publisher-{name}")
        with open(log, "ab") as fh:
            self.proc = subprocess.Popen(
                cmd,
                cwd=REPO,
                stdin=subprocess.DEVNULL,
                stdout=fh,
                stderr=fh,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        self.group.attach(self.proc.pid)
        self.paused = self.closed = False

    @property
    def cpu_kind(self) -> str:
        return self.group.kind if self.group.path is not None else "proc"

    def cpu(self) -> float:
        """CPU seconds of the publisher and its children: its cgroup, else /proc (live only)."""
        got = self.group.seconds()
        if got is not None:
            return got
        fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")

    def head(self) -> Head | None:
        try:
            return parse_head(self.head_file.read_bytes())
        except (OSError, ValueError):
            return None

    def records(self) -> list[dict[str, Any]]:
        if self.probe_file is None:
            return []
        try:
            lines = self.probe_file.read_text().splitlines()
        except FileNotFoundError:
            return []
        out = []
        for line in lines:
            with contextlib.suppress(ValueError):
                out.append(json.loads(line))
        return out

    def builds(self) -> list[dict[str, Any]]:
        """Every finished build (generation or rescan), oldest first."""
        return [r for r in self.records() if r.get("event") == "end"]

    def building(self) -> bool:
        recs = self.records()
        starts = sum(1 for r in recs if r.get("event") == "start")
        return starts > sum(1 for r in recs if r.get("event") == "end")

    def _alive(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"syncagent publish exited with {self.proc.returncode}")

    def wait_head(self, timeout: float = 300.0, after: int = -1) -> Head:
        """Until HEAD names a sequence above ``after``."""
        deadline = time.monotonic() + timeout
        while True:
            head = self.head()
            if head is not None and head.sequence > after:
                return head
            self._alive()
            if time.monotonic() > deadline:
                raise RuntimeError(f"no HEAD above #{after} in {self.dir} within {timeout:.0f}s")
            time.sleep(0.01)

    def pause(self) -> None:
        if not self.paused and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGSTOP)
            self.paused = True

    def resume(self) -> None:
        """Running again and quiet: a rescan that fell due while paused has run."""
        if self.paused:
            os.kill(self.proc.pid, signal.SIGCONT)
            self.paused = False
        builds = self.builds()
        due_in = (builds[-1]["t"] if builds else 0.0) + RESCAN_INTERVAL - time.monotonic()
        if self.probe_file is not None and builds and due_in < 5:
            # due (after a pause its timer fires the moment the loop runs again) or about to
            # be: let it run now rather than during the measurement that follows
            deadline = time.monotonic() + max(0.0, due_in) + 5
            while len(self.builds()) == len(builds) and time.monotonic() < deadline:
                self._alive()
                time.sleep(0.01)
        self.quiet()

    def quiet(self, timeout: float = 300.0) -> None:
        deadline = time.monotonic() + timeout
        while self.building():
            self._alive()
            if time.monotonic() > deadline:
                raise RuntimeError(f"the publisher kept building for {timeout:.0f}s")
            time.sleep(0.01)

    def publish(self, change: Callable[[], None], timeout: float = 300.0) -> dict[str, Any]:
        """Make ``change`` to the source and wait until it is published and the publisher is
        quiet again: time to publish (the write -> HEAD renamed, by HEAD's mtime), the build's
        own wall and CPU (probe), and all the CPU the process spent on it (its cgroup)."""
        self.resume()
        before = self.head()
        after = before.sequence if before is not None else -1
        n = len(self.builds())
        c0, w0, t0 = self.cpu(), time.time(), time.monotonic()
        change()
        head = self.wait_head(timeout, after)
        published_wall = self.head_file.stat().st_mtime_ns / 1e9
        seen = time.monotonic() - t0
        deadline = time.monotonic() + timeout
        while not any(b["sequence"] == head.sequence for b in self.builds()[n:]):
            self._alive()
            if time.monotonic() > deadline:
                raise RuntimeError("HEAD moved but no build of the probe says so")
            time.sleep(0.01)
        self.quiet()
        self._logged(head.sequence, time.monotonic() + 10)
        cpu = self.cpu() - c0
        builds = self.builds()[n:]
        mine = next(b for b in builds if b["sequence"] == head.sequence)
        return {
            "latency": max(0.0, published_wall - w0),
            "seen_after": seen,
            "build_wall": mine["wall"],
            "build_cpu": mine["cpu"],
            "cpu": cpu,
            "builds": len(builds),  # > 1: the source moved during a build (built again)
            "sequence": head.sequence,
            "generation": head.generation,
        }

    def _logged(self, sequence: int, deadline: float) -> None:
        """Until the publisher's own ``publish`` log line for ``sequence``: after the build it
        still takes stock of the publish dir for its metrics; that is part of a generation's
        cost too. (Not waited for past ``deadline``, should the log say it otherwise.)"""
        while time.monotonic() < deadline:
            for line in self.log.read_text(errors="replace").splitlines()[-50:]:
                with contextlib.suppress(ValueError):
                    doc = json.loads(line)
                    if isinstance(doc, dict) and (doc.get("event"), doc.get("sequence")) == (
                        "publish",
                        sequence,
                    ):
                        return
            self._alive()
            time.sleep(0.01)

    def idle(self, window: float) -> dict[str, Any]:
        """Nothing changing for ``window`` seconds: CPU over it, and the rescans in it."""
        self.resume()
        n = len(self.builds())
        c0, t0 = self.cpu(), time.monotonic()
        time.sleep(window)
        cpu, elapsed = self.cpu() - c0, time.monotonic() - t0
        rescans = self.builds()[n:]
        return {
            "window": elapsed,
            "cpu_seconds": cpu,
            "cpu_percent_of_core": 100 * cpu / elapsed,
            "rescans": len(rescans),
            "rescan_cpu": sum(b["cpu"] for b in rescans),
        }

    def summary(self) -> dict[str, Any]:
        """Every build the probe saw, and what the first one (start-up: the whole tree hashed
        and copied) and the rescans (HEAD re-confirmed, nothing new) cost."""
        builds = self.builds()
        return {
            "cpu_accounting": self.cpu_kind,
            "first_build": builds[0] if builds else None,
            "rescans": [
                {"wall": b["wall"], "cpu": b["cpu"]}
                for b in builds[1:]
                if b["result"] == "unchanged"
            ],
            "results": {
                r: sum(b["result"] == r for b in builds) for r in {b["result"] for b in builds}
            },
        }

    def close(self) -> int | None:
        if self.closed:
            return self.proc.returncode
        self.closed = True
        if self.proc.poll() is None:
            if self.paused:
                os.kill(self.proc.pid, signal.SIGCONT)
                self.paused = False
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.group.close()
        return self.proc.returncode


def main() -> None:
    argv = sys.argv[1:]
    split = argv.index("--")
    _probe(argv[0], argv[split + 1 :])


if __name__ == "__main__":
    main()
