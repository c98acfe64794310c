"""Crash consistency: SIGKILL the agent at random moments while the primary keeps changing.

Each cycle starts an agent process, lets a writer change the primary the way X-Road saves
(tests/support/faults.py: .p12 files before keyconf.xml, every file by rename), and SIGKILLs the
agent at a random moment: either after a random delay (anywhere in connect, listing, fetch,
validation, apply, prune) or right after a random apply operation (``SYNCAGENT_TEST_KILL_AFTER_OP``,
which also fires inside a recovery). Then it restarts the way the agent does (journal roll
forward) and checks that the live tree is exactly one generation:

- equal, path by path (kind, mode, sha256, link), to the manifest in current.json, whose id it
  also has when recomputed from disk;
- a state the primary really passed through (the writer records the id after every step);
- valid (validate_tree with the X-Road rules: every keyconf key has its .p12);
- with no stray file (staging, temp, half-renamed) anywhere in the live directories, and the
  node-local files untouched.

The bulk of the cycles fork the agent from the test process (the agent's modules are already
imported, so a cycle costs the sync, not a Python start); a smaller run kills the real
``python -m syncagent once`` command line.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from support.config import cli_env, settings_for
from support.faults import (
    Step,
    XRoadWriter,
    check_live_generation,
    fork_child,
    read_node_local,
    reap,
)
from support.sshd import Sshd

from syncagent import testhooks
from syncagent.engine import sync
from syncagent.local import apply as applying
from syncagent.local.state import StateDir
from syncagent.report import Outcome
from syncagent.settings import Settings

CYCLES = int(os.environ.get("SYNCAGENT_FAULT_CRASH_CYCLES", "220"))
CLI_CYCLES = int(os.environ.get("SYNCAGENT_FAULT_CLI_CYCLES", "16"))
SEED = int(os.environ.get("SYNCAGENT_FAULT_SEED", str(int(time.time()))))
STUCK = 30.0  # no agent run may take longer than this (sync.timeout is far above a sync here)


def fork_agent(settings: Settings, kill_after: int | None, log: Path) -> int:
    """Start one sync in a forked child; returns its pid."""

    def work() -> int:
        if kill_after is not None:
            os.environ[testhooks.KILL_AFTER_OP] = str(kill_after)
        else:
            os.environ.pop(testhooks.KILL_AFTER_OP, None)
        return int(asyncio.run(sync(settings)).exit_code)

    return fork_child(log, work)


def restart(settings: Settings) -> None:
    """What every agent start does first: finish an interrupted apply."""
    applying.recover(StateDir(settings.sync.state_dir), settings.sync.target)


def test_sigkill_at_random_moments_while_the_primary_changes(
    sshd: Sshd, primary_tree: Path, target: Path, tmp_path: Path
) -> None:
    rng = random.Random(SEED)
    settings = settings_for(sshd, primary_tree, target)
    pf = settings.sync.path_filter()
    writer = XRoadWriter(primary_tree, pf, rng)
    local = read_node_local(target)
    first = asyncio.run(sync(settings))
    assert first.outcome is Outcome.APPLIED, first.summary()
    log = tmp_path / "agent.log"

    # How long one sync takes here decides the window the random kills are spread over.
    timings = []
    for _ in range(3):
        for step in writer.add_keys(1):
            step()
        started = time.monotonic()
        status = reap(fork_agent(settings, None, log), time.monotonic() + STUCK)
        assert status is not None and os.waitstatus_to_exitcode(status) == 0, log.read_text()
        timings.append(time.monotonic() - started)
    window = 1.3 * max(timings)
    print(f"one sync takes {max(timings):.3f}s here")

    stats: collections.Counter[str] = collections.Counter()
    gens: set[str] = set()
    burst: Iterator[Step] = iter(())
    queued: Step | None = None  # the next step of the burst in progress
    for cycle in range(CYCLES):
        by_op = rng.random() < 0.45
        kill_after = rng.randrange(0, 4) if by_op else None
        kill_at = STUCK if by_op else rng.uniform(0.0, window)
        if queued is None and rng.random() < 0.9:  # a burst always runs to its end
            burst = writer.random_burst()
            queued = next(burst, None)
        started = time.monotonic()
        pid = fork_agent(settings, kill_after, log)
        next_step = started + rng.uniform(0.0, 0.5 * window)
        status = None
        while status is None:
            now = time.monotonic()
            if now - started >= kill_at:
                journal_at_kill = (target / ".syncagent" / "journal.json").exists()
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                status = reap(pid, now + 5)
                assert status is not None
                if os.WIFSIGNALED(status):
                    stats["killed mid-apply" if journal_at_kill else "killed before apply"] += 1
                break
            if now >= next_step and queued is not None:
                queued()
                queued = next(burst, None)
                next_step = now + rng.uniform(0.0, 0.3 * window)
            status = reap(pid, min(started + kill_at, now + 0.005))
        if os.WIFSIGNALED(status):
            if kill_after is not None and os.WTERMSIG(status) == signal.SIGKILL:
                stats["killed after apply op"] += 1
        else:
            code = os.waitstatus_to_exitcode(status)
            assert code in (0, 1), f"cycle {cycle}: agent exited {code}: {log.read_text()[-2000:]}"
            stats["ran to the end" if code == 0 else "failed cleanly"] += 1
        assert time.monotonic() - started < STUCK + 5, f"cycle {cycle}: agent hung"

        if rng.random() < 0.25 and (target / ".syncagent" / "journal.json").exists():
            stats["journal left for the next agent"] += 1
            continue  # the next agent recovers it (and may itself be killed doing so)
        restart(settings)
        try:
            gens.add(
                check_live_generation(
                    target,
                    settings.sync.state_dir,
                    pf,
                    published=writer.published,
                    node_local=local,
                )
            )
        except AssertionError as e:
            raise AssertionError(f"cycle {cycle} (seed {SEED}, {stats}): {e}") from e
        stats["restarts checked"] += 1

    writer.close()
    print(
        f"seed {SEED}: {dict(stats)}; {len(gens)} generations seen live, "
        f"{writer.steps} writer steps"
    )
    assert stats["restarts checked"] >= min(200, CYCLES * 3 // 4)
    assert stats["killed mid-apply"] + stats["killed after apply op"] >= CYCLES // 10, stats
    assert stats["killed before apply"] >= CYCLES // 10, stats
    assert len(gens) >= CYCLES // 10, "the primary's changes did not reach the live tree"

    # and in the end the agent converges on the primary
    final = asyncio.run(sync(settings))
    assert final.error is None, final.summary()
    check_live_generation(target, settings.sync.state_dir, pf, published=writer.published)


def test_sigkill_of_the_command_line_at_random_moments(
    sshd: Sshd, primary_tree: Path, target: Path
) -> None:
    """The production entrypoint (``python -m syncagent once``), killed at random moments."""
    rng = random.Random(SEED + 1)
    settings = settings_for(sshd, primary_tree, target)
    pf = settings.sync.path_filter()
    writer = XRoadWriter(primary_tree, pf, rng)
    local = read_node_local(target)
    env = {**os.environ, **cli_env(settings)}
    env.pop(testhooks.KILL_AFTER_OP, None)
    argv = [sys.executable, "-m", "syncagent", "once"]

    def agent() -> subprocess.Popen[bytes]:
        return subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    assert agent().wait(STUCK) == 0

    def noop_run() -> float:
        started = time.monotonic()
        assert agent().wait(STUCK) == 0  # a no-op run: Python start, connect, list
        return time.monotonic() - started

    # The fastest of three: one run slowed by a moment's load would put every kill after the
    # runs end (a loaded machine once killed 0 of 16).
    noop = min(noop_run() for _ in range(3))
    killed = 0
    for cycle in range(CLI_CYCLES):
        for step in writer.random_burst():
            step()
        proc = agent()
        try:
            # the first half of a run is mostly the interpreter starting: kill in the second
            proc.wait(rng.uniform(0.4 * noop, 1.2 * noop))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
            killed += 1
        else:
            assert proc.returncode in (0, 1), f"cycle {cycle}: exit {proc.returncode}"
        restart(settings)
        check_live_generation(
            target, settings.sync.state_dir, pf, published=writer.published, node_local=local
        )
    writer.close()
    print(f"cli: one no-op run {noop:.2f}s; killed {killed} of {CLI_CYCLES}")
    assert agent().wait(STUCK) == 0  # and left alone, it converges on the primary
    check_live_generation(target, settings.sync.state_dir, pf, published=writer.published)
    assert killed >= CLI_CYCLES // 4, f"only {killed} of {CLI_CYCLES} runs were killed"
