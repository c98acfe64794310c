"""Man in the middle: the primary's host key changes, or an impostor answers on the primary's
address with a perfectly valid tree. Under ``strict`` and ``accept-new`` the agent refuses
with reason ``host_key``, applies nothing, and never even asks the impostor to log it in (so
the impostor learns nothing of the agent's key and serves it nothing).
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import pytest
from support import hostile_primary as hp
from support.config import cli_env, daemon_settings, settings_for
from support.daemon import metric, running, wait_for
from support.sshd import Sshd
from support.tools import run_syncagent
from support.trees import age, live_state

from syncagent.demo.sample_tree import add_softtoken_key
from syncagent.engine import sync
from syncagent.errors import Reason
from syncagent.report import Outcome, SyncResult
from syncagent.settings import Settings

POLICIES = ("strict", "accept-new")


def run(settings: Settings) -> SyncResult:
    return asyncio.run(sync(settings))


def make_settings(sshd: Sshd, primary: Path, target: Path, policy: str) -> Settings:
    extra: dict[str, Any] = {"primary__host_key_policy": policy}
    if policy == "accept-new":
        extra["primary__known_hosts"] = ""
    return settings_for(sshd, primary, target, **extra)


def assert_refused(result: SyncResult, before: dict[str, Any], target: Path) -> None:
    assert result.error is not None and result.error.reason is Reason.HOST_KEY, result.summary()
    assert result.outcome is Outcome.FAILED and result.exit_code == 1
    assert (result.files_fetched, result.bytes_fetched) == (0, 0)
    assert live_state(target) == before


@pytest.mark.parametrize("policy", POLICIES)
def test_changed_host_key_is_refused(
    fresh_sshd: Sshd, primary_tree: Path, target: Path, policy: str
) -> None:
    settings = make_settings(fresh_sshd, primary_tree, target, policy)
    assert run(settings).outcome is Outcome.APPLIED
    pin = target / ".syncagent" / "known_hosts.pinned"
    pinned = pin.read_bytes() if policy == "accept-new" else None
    add_softtoken_key(primary_tree)  # something the agent would apply if it trusted the key
    age(primary_tree)
    fresh_sshd.regenerate_host_key()
    fresh_sshd.restart()
    before = live_state(target)

    assert_refused(run(settings), before, target)
    assert_refused(run(settings), before, target)  # and again: nothing is learned from a refusal
    if pinned is not None:
        assert pin.read_bytes() == pinned, "accept-new re-pinned a changed key"

    # the command line says the same, as JSON with the reason an alert can match on
    env = {**os.environ, **cli_env(settings)}
    env["SYNCAGENT_PRIMARY_HOST_KEY_POLICY"] = policy
    if policy == "accept-new":
        env["SYNCAGENT_PRIMARY_KNOWN_HOSTS"] = ""
    cli = run_syncagent("once", "--json", env=env, timeout=60)
    doc = json.loads(cli.stdout)
    assert cli.returncode == 1 and doc["reason"] == "host_key", (cli.stdout, cli.stderr)
    assert live_state(target) == before


@pytest.mark.parametrize("policy", POLICIES)
def test_impostor_on_the_primarys_address_is_refused(
    fresh_sshd: Sshd, primary_tree: Path, target: Path, tmp_path: Path, policy: str
) -> None:
    """The primary goes away and another server takes its address and port, serving a valid
    tree with one more key: it is never asked to authenticate, so it serves nothing."""
    settings = make_settings(fresh_sshd, primary_tree, target, policy)
    assert run(settings).outcome is Outcome.APPLIED
    port = fresh_sshd.port
    add_softtoken_key(primary_tree)
    age(primary_tree)
    fresh_sshd.stop()
    before = live_state(target)

    async def impostor() -> tuple[hp.Primary, SyncResult]:
        fake = hp.Primary(hp.load_tree(primary_tree))
        async with hp.serve(fake, tmp_path / "impostor", port=port):
            result = await sync(settings)
        return fake, result

    fake, result = asyncio.run(impostor())
    assert_refused(result, before, target)
    assert fake.auth_attempts == 0, "the agent offered its key to an unverified server"
    assert fake.scandirs == 0 and fake.bytes_served == 0


def test_control_insecure_policy_does_talk_to_the_impostor(
    fresh_sshd: Sshd, primary_tree: Path, target: Path, tmp_path: Path
) -> None:
    """The counters above can see a client: with host keys unchecked, the impostor is asked to
    authenticate the agent and serves it (which is why ``insecure`` warns in every log)."""
    settings = make_settings(fresh_sshd, primary_tree, target, "insecure")
    assert run(settings).outcome is Outcome.APPLIED
    port = fresh_sshd.port
    fresh_sshd.stop()

    async def impostor() -> tuple[hp.Primary, SyncResult]:
        fake = hp.Primary(hp.load_tree(primary_tree))
        fake.put("conf.d/impostor.ini", hp.file("[x]\nfrom-the-impostor=1\n"))
        async with hp.serve(fake, tmp_path / "impostor", port=port):
            result = await sync(settings)
        return fake, result

    fake, result = asyncio.run(impostor())
    assert fake.auth_attempts >= 1
    # the impostor only knows its own client key, so it refuses the agent's: which it was offered
    assert result.error is not None and result.error.reason is Reason.AUTH, result.summary()


async def test_daemon_counts_host_key_failures_and_keeps_serving(
    fresh_sshd: Sshd, primary_tree: Path, target: Path
) -> None:
    """The daemon's view of a re-keyed primary: ``syncagent_failures_total{reason="host_key"}``
    rises, /readyz stays 200 on the last good generation, and nothing new is applied."""
    settings = daemon_settings(fresh_sshd, primary_tree, target)
    async with running(settings) as agent:
        d = agent.daemon
        await wait_for(d.first_sync_done.is_set, "the first sync")
        gen = d.state.generation
        add_softtoken_key(primary_tree)
        age(primary_tree)
        fresh_sshd.regenerate_host_key()
        await asyncio.to_thread(fresh_sshd.restart)
        before = live_state(target)

        async def host_key_failures() -> float:
            return metric(await agent.metrics(), "syncagent_failures_total", reason="host_key") or 0

        deadline = asyncio.get_running_loop().time() + 30
        while await host_key_failures() < 2:
            assert asyncio.get_running_loop().time() < deadline, await agent.metrics()
            await asyncio.sleep(0.2)
        assert (await agent.get("/readyz"))[0] == 200
        doc = await agent.status()
        assert doc["last_reason"] == "host_key" and doc["generation"] == gen
        assert live_state(target) == before
