"""The daemon supervises itself, and its probes say what is live on disk.

Issue: "What people do by hand cannot break the agent, and its probes never lie". A command run
as root left ``current.json`` root-owned 0600; the daemon (the target's owner) failed its syncs
with ``Permission denied``, its sync worker died unnoticed after two failures, and /healthz and
/readyz kept answering 200, /readyz naming a generation it could no longer confirm.

The agent runs as a real subprocess against the real sshd. The tests run as root, whom file
modes do not stop, so the agent runs without CAP_DAC_OVERRIDE and CAP_DAC_READ_SEARCH
(``setpriv``), and without CAP_CHOWN and CAP_FOWNER, so it cannot give a file back either: a
file owned by another uid with mode 0600 is then as unreadable to it as a root-owned one is to
the xroad user.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from support.config import daemon_overrides
from support.daemon import Agent, wait_for
from support.sshd import Sshd

from syncagent.daemon.supervise import MAX_RESTARTS
from syncagent.demo.sample_tree import add_softtoken_key
from syncagent.local.state import StateDir
from syncagent.testhooks import FAIL_TASK
from syncagent.xroad.paths import softtoken_key_ids

DAC = "dac_override,-dac_read_search,-chown,-fowner"  # nor may it give the file back
NO_DAC = (f"--bounding-set=-{DAC}", f"--inh-caps=-{DAC}")
SOMEONE_ELSE = 54321


def _setpriv() -> tuple[str, ...]:
    if os.geteuid() != 0:
        pytest.skip("needs root: the agent runs as root without the DAC capabilities")
    for d in ("/usr/bin", "/bin", "/usr/sbin", "/sbin"):
        if os.access(f"{d}/setpriv", os.X_OK):
            return (f"{d}/setpriv", *NO_DAC)
    pytest.skip("setpriv (util-linux) is not installed")


@pytest.fixture
def agent_factory(sshd: Sshd, primary_tree: Path, target: Path, tmp_path: Path) -> Iterator[Any]:
    agents: list[Agent] = []

    def make(extra_env: dict[str, str] | None = None, **extra: Any) -> Agent:
        overrides = daemon_overrides(sshd, primary_tree, target, **extra)
        agent = Agent(overrides, tmp_path, {**(extra_env or {})}, prefix=_setpriv())
        agents.append(agent)
        return agent

    yield make
    for a in agents:
        a.close()


def _same_keys(primary: Path, target: Path) -> bool:
    try:
        read = (primary / "signer/keyconf.xml").read_bytes(), (target / "signer/keyconf.xml")
        return softtoken_key_ids(read[0]) == softtoken_key_ids(read[1].read_bytes())
    except FileNotFoundError:
        return False


def _sync_events(agent: Agent) -> list[dict[str, Any]]:
    return [e for e in agent.events() if e.get("event") == "sync"]


async def test_a_record_it_cannot_read_is_retried_never_ready_and_recovered(
    agent_factory: Any, primary_tree: Path, target: Path
) -> None:
    agent: Agent = agent_factory(sync__interval=1).start()
    await agent.wait_ready()
    state = StateDir(target / ".syncagent")
    live = json.loads(state.current_file.read_bytes())["generation"]

    # what a command run as root leaves behind: the record owned by someone else, 0600, and a
    # live file changed by hand (drift that is judged against the record it cannot read)
    os.chown(state.current_file, SOMEONE_ELSE, SOMEONE_ELSE)
    os.chmod(state.current_file, 0o600)
    with (target / "conf.d/local.ini").open("a") as f:
        f.write("# by hand\n")

    failed_before = len([e for e in _sync_events(agent) if e.get("result") != "unchanged"])
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline:
        status, body = await agent.get("/readyz")
        assert status != 200, f"/readyz said ready while the record is unreadable:\n{body}"
        health, hbody = await agent.get("/healthz")
        assert health == 200 and "tasks: ok" in hbody, hbody  # alive and retrying, says so
        await asyncio.sleep(0.2)
    assert "current.json" in body and "Permission denied" in body, body
    failures = [e for e in _sync_events(agent) if e.get("reason") == "permission"]
    assert len(failures) - failed_before >= 4, "the daemon stopped retrying"

    # SIGHUP is an attempt too
    before = len(_sync_events(agent))
    agent.signal(signal.SIGHUP)
    await wait_for(lambda: len(_sync_events(agent)) > before, "a sync after SIGHUP", 10)
    doc = await agent.status()
    assert doc["ready"] is False and doc["consecutive_failures"] >= 4
    res = agent.cli("status")  # status.json, as the daemon last wrote it
    assert res.returncode == 1 and res.stdout.startswith("NOT READY"), res
    assert "must belong to" in res.stdout and "chown -R" in res.stdout, res  # names the fix

    # fixed by hand: the daemon recovers by itself, and follows the primary again
    os.chown(state.current_file, 0, 0)
    await agent.wait_ready(30)
    status, body = await agent.get("/readyz")
    now = json.loads(state.current_file.read_bytes())["generation"]
    assert f"generation {now} is live" in body and now == live
    await wait_for(lambda: agent.cli("status").returncode == 0, "syncagent status: ready", 20)
    assert agent.cli("status").stdout.startswith(f"ready: generation {live}")
    add_softtoken_key(primary_tree)
    await wait_for(lambda: _same_keys(primary_tree, target), "a primary edit to land", 20)
    assert not (target / "conf.d/local.ini").read_text().endswith("# by hand\n")
    restarts = [e for e in agent.events() if e.get("event") == "task_failed"]
    assert restarts == [], restarts  # nothing crashed: the failure was handled, not survived


async def test_readyz_names_only_the_generation_live_on_disk(
    agent_factory: Any, target: Path
) -> None:
    """A record replaced behind the daemon's back (a rollback, ``syncagent once``) is what the
    probes report at once, not the generation the daemon last applied itself."""
    agent: Agent = agent_factory(sync__interval=300).start()
    await agent.wait_ready()
    state = StateDir(target / ".syncagent")
    state.pause_flag.touch()  # no sync of its own meanwhile (the schedule's phase is random)

    async def idle() -> bool:
        doc = await agent.status()
        return bool(doc.get("paused")) and not doc.get("syncing")

    deadline = time.monotonic() + 20
    while not await idle():
        assert time.monotonic() < deadline, "the daemon did not pause"
        await asyncio.sleep(0.1)
    doc = json.loads(state.current_file.read_bytes())
    doc["generation"] = "0" * 64
    (state.path / "other.json").write_text(json.dumps(doc))
    os.replace(state.path / "other.json", state.current_file)
    status, body = await agent.get("/readyz")
    assert status == 200 and f"generation {'0' * 64} is live" in body, body
    assert (await agent.status())["generation"] == "0" * 64

    state.journal.write_text("{}")  # an apply by another process, interrupted
    status, body = await agent.get("/readyz")
    assert status == 503 and "journal: FAIL" in body, body
    state.journal.unlink()


async def test_a_task_that_cannot_be_kept_alive_fails_healthz_naming_it(
    agent_factory: Any,
) -> None:
    agent: Agent = agent_factory(extra_env={FAIL_TASK: "drift"}, sync__interval=300).start()
    await agent.wait_ready()
    await wait_for(
        lambda: len([e for e in agent.events() if e.get("event") == "task_failed"]) >= 2,
        "the injected fault to be restarted",
        20,
    )
    failed = [e for e in agent.events() if e.get("event") == "task_failed"]
    assert all(e["task"] == "drift" and e["reason"] == "internal" for e in failed)
    assert "injected fault" in failed[0]["exception"], failed[0]  # the traceback is logged
    _, body = await agent.get("/metrics")
    assert 'syncagent_task_restarts_total{task="drift"}' in body

    async def unhealthy() -> tuple[int, str]:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            status, body = await agent.get("/healthz")
            if status == 503:
                return status, body
            assert status == 200, body
            await asyncio.sleep(0.2)
        raise AssertionError(f"/healthz still 200 after {MAX_RESTARTS} restarts of drift")

    _, body = await unhealthy()
    assert "tasks: FAIL drift" in body, body
    assert (await agent.get("/readyz"))[0] == 200, "a dead watcher does not un-ready the config"
