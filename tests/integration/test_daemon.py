"""The daemon against a real OpenSSH sshd: schedule, outages, control, drift, reload, rotation.

Most tests run the daemon in-process (``support.daemon.running``) so they can read its state;
the ones about signals, pid files, sd_notify and a live promtool scrape run ``syncagent run``
as a subprocess, as supervisord and systemd do.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from support.config import daemon_overrides, daemon_settings, publishing
from support.daemon import Agent, http, metric, running, samples, sum_of, wait_for
from support.sshd import Sshd, free_port, fresh_subdir
from support.tools import require_tool
from support.trees import age, managed

from syncagent import cli, engine
from syncagent.daemon import service as daemon
from syncagent.daemon.control import ControlFiles
from syncagent.daemon.keeper import backoff_ceiling
from syncagent.demo.sample_tree import add_softtoken_key
from syncagent.errors import Reason, SyncError
from syncagent.local.state import StateDir
from syncagent.publish.builder import publish_once
from syncagent.publishdir import parse_head
from syncagent.remote import head_rules
from syncagent.report import Outcome, SyncResult
from syncagent.xroad.paths import softtoken_key_ids


@pytest.fixture
def xlb_flag(target: Path) -> Path:
    """The daemons' sync.disable_flag (support.config keeps it out of the machine's /var/tmp)."""
    return target.parent / "var-tmp-xroad" / "sync-disabled"


def key_ids(root: Path) -> list[str]:
    return softtoken_key_ids((root / "signer/keyconf.xml").read_bytes())


def same_keys(primary: Path, target: Path) -> bool:
    try:
        return key_ids(primary) == key_ids(target)
    except FileNotFoundError:
        return False


# ---- scheduling ------------------------------------------------------------------------------


async def test_short_interval_applies_changes_one_sync_at_a_time(
    sshd: Sshd, primary_tree: Path, target: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    active = 0
    most = 0
    calls = 0
    real_sync = engine.sync

    async def counting(*args: Any, **kw: Any) -> SyncResult:
        nonlocal active, most, calls
        active += 1
        calls += 1
        most = max(most, active)
        try:
            await asyncio.sleep(0.2)  # widen the window an overlap would need
            return await real_sync(*args, **kw)
        finally:
            active -= 1

    monkeypatch.setattr(engine, "sync", counting)
    settings = daemon_settings(sshd, primary_tree, target, sync__interval=0.5, sync__jitter=0.2)
    async with running(settings) as agent:
        d = agent.daemon
        await wait_for(d.first_sync_done.is_set, "the first sync")
        first = d.state.generation
        assert first and await agent.ready()
        job = d.scheduler.get_job("sync") if d.scheduler else None
        assert job is not None and job.trigger.jitter == pytest.approx(0.1)
        assert job.trigger.interval.total_seconds() == 0.5
        # plain functions would run in APScheduler's thread pool, off the event loop
        assert d.scheduler is not None
        assert all(asyncio.iscoroutinefunction(j.func) for j in d.scheduler.get_jobs())

        add_softtoken_key(primary_tree)
        await wait_for(lambda: same_keys(primary_tree, target), "the new key to land")
        await wait_for(lambda: d.state.generation != first, "a new generation")

        before = calls
        for _ in range(20):  # a burst of manual triggers coalesces
            d.sync_now("test")
            await asyncio.sleep(0.01)
        await asyncio.sleep(1.5)
        assert most == 1, "two syncs ran at once"
        assert calls - before <= 6, f"{calls - before} syncs for a burst of 20 triggers"

        text = await agent.metrics()
        assert (metric(text, "syncagent_sync_total", result="applied") or 0) >= 2
        assert (metric(text, "syncagent_sync_total", result="unchanged") or 0) >= 1
        assert (metric(text, "syncagent_files_changed_total", op="added") or 0) >= 1
        assert samples(text, "syncagent_generation_info") == [{"generation": d.state.generation}]
        assert metric(text, "syncagent_connected") == 1
        assert d.state.connects == 1, "one connection is kept across syncs"


async def test_first_sync_retried_with_backoff_until_the_primary_appears(
    fresh_sshd: Sshd, primary_tree: Path, target: Path
) -> None:
    fresh_sshd.stop()
    settings = daemon_settings(fresh_sshd, primary_tree, target)
    async with running(settings) as agent:
        d = agent.daemon
        await wait_for(lambda: d.state.consecutive_failures >= 2, "failed first attempts")
        status, body = await agent.get("/readyz")
        assert status == 503 and "config: FAIL no validated configuration" in body
        assert "[connect]" in body
        assert (await agent.get("/healthz"))[0] == 200, "a missing primary is no reason to restart"
        text = await agent.metrics()
        assert (metric(text, "syncagent_failures_total", reason="connect") or 0) >= 2
        assert metric(text, "syncagent_ready") == 0

        fresh_sshd.start()
        await wait_for(d.first_sync_done.is_set, "the first sync after the primary appeared", 40)
        assert await agent.ready()
        assert same_keys(primary_tree, target)


async def test_primary_loss_stays_ready_backs_off_and_recovers(
    fresh_sshd: Sshd, primary_tree: Path, target: Path
) -> None:
    settings = daemon_settings(fresh_sshd, primary_tree, target)
    async with running(settings) as agent:
        d = agent.daemon
        await wait_for(d.first_sync_done.is_set, "the first sync")
        gen = d.state.generation

        fresh_sshd.stop()
        await wait_for(lambda: not d.state.connected, "the loss to be noticed", 10)
        lost_at = time.monotonic()
        await wait_for(lambda: d.state.consecutive_failures >= 3, "failed syncs", 10)
        await asyncio.sleep(max(0.0, 5 - (time.monotonic() - lost_at)))
        attempts = d.state.reconnect_attempts
        assert 2 <= attempts <= 8, f"{attempts} reconnects in ~5s: backoff not applied"
        assert d.keeper.next_attempt_in is not None
        assert d.keeper.next_attempt_in <= backoff_ceiling(attempts - 1)

        status, body = await agent.get("/readyz")
        assert status == 200, body  # secondaries keep serving without their primary
        assert (await agent.get("/healthz"))[0] == 200
        text = await agent.metrics()
        assert metric(text, "syncagent_connected") == 0
        assert (metric(text, "syncagent_consecutive_failures") or 0) >= 3
        assert (metric(text, "syncagent_failures_total", reason="connect") or 0) >= 3
        doc = await agent.status()
        assert doc["last_reason"] == "connect" and doc["generation"] == gen

        fresh_sshd.start()
        add_softtoken_key(primary_tree)
        await wait_for(lambda: d.state.connected, "the reconnect", 70)
        await wait_for(lambda: same_keys(primary_tree, target), "the change after recovery")
        await wait_for(lambda: d.state.consecutive_failures == 0, "failures reset")
        assert d.state.reconnect_attempts == 0


async def test_restart_with_a_live_generation_is_ready_at_once(
    sshd: Sshd, primary_tree: Path, target: Path
) -> None:
    settings = daemon_settings(sshd, primary_tree, target)
    async with running(settings) as agent:
        await wait_for(agent.daemon.first_sync_done.is_set, "the first sync")
        gen = agent.daemon.state.generation
    # The primary is unreachable now (wrong port): readiness comes from current.json alone.
    offline = daemon_settings(sshd, primary_tree, target, primary__port=free_port())
    async with running(offline) as agent:
        status, body = await agent.get("/readyz")
        assert status == 200, body
        assert f"generation {gen} is live" in body
        assert metric(await agent.metrics(), "syncagent_last_success_timestamp_seconds")


# ---- endpoints -------------------------------------------------------------------------------


async def test_every_endpoint(sshd: Sshd, primary_tree: Path, target: Path) -> None:
    upstream_status = [503]

    async def health(_: web.Request) -> web.Response:
        return web.Response(status=upstream_status[0], text="x-road")

    app = web.Application()
    app.router.add_get("/", health)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        settings = daemon_settings(
            sshd,
            primary_tree,
            target,
            http__upstream_health_url=f"http://127.0.0.1:{port}/",
            http__upstream_timeout=1,
        )
        async with running(settings) as agent:
            await wait_for(agent.daemon.first_sync_done.is_set, "the first sync")
            gen = agent.daemon.state.generation

            status, body = await agent.get("/healthz")
            assert status == 200
            assert body.startswith("scheduler: ok running, heartbeat") and "sync: ok" in body

            status, body = await agent.get("/readyz")
            assert status == 503  # the agent is fine, X-Road's own health check is not
            assert f"config: ok generation {gen} is live" in body
            assert "upstream: FAIL" in body and "answered 503" in body
            upstream_status[0] = 200
            status, body = await agent.get("/readyz")
            assert status == 200 and "upstream: ok" in body

            status, text, headers = await http("GET", agent.url + "/metrics")
            assert status == 200 and headers["Content-Type"].startswith("text/plain")
            assert "syncagent_build_info" in text

            doc = await agent.status()
            for key in (
                "generation",
                "last_attempt",
                "last_success",
                "last_error",
                "last_reason",
                "consecutive_failures",
                "paused",
                "connected",
                "last_change",
                "ready",
                "healthy",
            ):
                assert key in doc, key
            assert doc["generation"] == gen and doc["connected"] and doc["healthy"]
            assert doc["last_change"]["added"] > 0

            for path in ("/healthz", "/readyz", "/metrics", "/status"):
                assert (await http("HEAD", agent.url + path))[0] == 200
                for method in ("POST", "PUT", "DELETE", "PATCH"):
                    assert (await http(method, agent.url + path))[0] == 405, (method, path)
            assert (await http("POST", agent.url + "/anything"))[0] == 405
            assert (await agent.get("/nope"))[0] == 404
            upstream_status[0] = 503
            await runner.cleanup()  # upstream gone entirely: not ready, still live
            status, body = await agent.get("/readyz")
            assert status == 503 and "upstream: FAIL" in body
            assert (await agent.get("/healthz"))[0] == 200
    finally:
        await runner.cleanup()


async def test_max_staleness_ends_readiness(sshd: Sshd, primary_tree: Path, target: Path) -> None:
    settings = daemon_settings(sshd, primary_tree, target, sync__interval=60, sync__max_staleness=1)
    async with running(settings) as agent:
        await wait_for(agent.daemon.first_sync_done.is_set, "the first sync")
        assert await agent.ready()
        await asyncio.sleep(1.5)
        status, body = await agent.get("/readyz")
        assert status == 503 and "staleness: FAIL" in body
        assert metric(await agent.metrics(), "syncagent_ready") == 0


# ---- control ---------------------------------------------------------------------------------


async def test_pause_and_resume_with_both_flag_files(
    sshd: Sshd, primary_tree: Path, target: Path, xlb_flag: Path
) -> None:
    settings = daemon_settings(sshd, primary_tree, target)
    async with running(settings) as agent:
        d = agent.daemon
        await wait_for(d.first_sync_done.is_set, "the first sync")
        before = key_ids(target)

        ControlFiles.of(settings.sync).pause("test")
        t0 = time.monotonic()
        await wait_for(lambda: d.state.paused, "the pause to be noticed", 5)
        assert time.monotonic() - t0 < 1.5, "control files must be noticed within a second"
        add_softtoken_key(primary_tree)
        await asyncio.sleep(2.5)  # two intervals
        assert key_ids(target) == before
        assert await agent.ready(), "pausing does not change readiness"
        assert metric(await agent.metrics(), "syncagent_paused") == 1
        doc = json.loads((settings.sync.state_dir / "status.json").read_text())
        assert doc["paused"] and doc["paused_by"] == [str(settings.sync.state_dir / "paused")]

        ControlFiles.of(settings.sync).unpause()
        await wait_for(lambda: same_keys(primary_tree, target), "the sync after resume", 5)
        assert metric(await agent.metrics(), "syncagent_paused") == 0

        # IG-XLB's habit; its directory does not even exist when the daemon starts watching.
        xlb_flag.parent.mkdir()
        xlb_flag.touch()
        await wait_for(lambda: d.state.paused, "the IG-XLB flag", 5)
        assert d.state.paused_by == (str(xlb_flag),)
        add_softtoken_key(primary_tree)
        await asyncio.sleep(2.5)
        assert not same_keys(primary_tree, target)
        xlb_flag.unlink()
        await wait_for(lambda: same_keys(primary_tree, target), "the sync after the flag went", 5)


async def test_trigger_file_syncs_now(sshd: Sshd, primary_tree: Path, target: Path) -> None:
    settings = daemon_settings(sshd, primary_tree, target, sync__interval=300)
    async with running(settings) as agent:
        await wait_for(agent.daemon.first_sync_done.is_set, "the first sync")
        add_softtoken_key(primary_tree)
        await asyncio.sleep(0.5)
        assert not same_keys(primary_tree, target)
        # (request_sync would SIGHUP the pid file's process: this test process)
        StateDir(settings.sync.state_dir).trigger.touch()
        await wait_for(lambda: same_keys(primary_tree, target), "the requested sync", 5)
        assert not StateDir(settings.sync.state_dir).trigger.exists()


def _rollback(settings: Any, generation: str | None = None) -> int:
    return cli.cmd_rollback(settings, argparse.Namespace(generation=generation, json=True))


def _emitted(out: str) -> dict[str, Any]:
    """The command's --json document among log lines (structlog prints to stdout in tests)."""
    for line in reversed(out.splitlines()):
        with contextlib.suppress(ValueError):
            doc = json.loads(line)
            if isinstance(doc, dict) and "event" not in doc:
                return doc
    raise AssertionError(f"no JSON document in {out!r}")


async def test_rollback_restores_the_previous_generation_and_sticks(
    sshd: Sshd, primary_tree: Path, target: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = daemon_settings(sshd, primary_tree, target)
    async with running(settings) as agent:
        d = agent.daemon
        await wait_for(d.first_sync_done.is_set, "the first sync")
        gen_a, tree_a = d.state.generation, managed(target, settings)
        add_softtoken_key(primary_tree)
        await wait_for(lambda: d.state.generation != gen_a, "generation B")
        gen_b = d.state.generation
        signer_inode = os.stat(target / "signer").st_ino
        await asyncio.sleep(1)
        capsys.readouterr()

        assert await asyncio.to_thread(_rollback, settings) == 0
        out = _emitted(capsys.readouterr().out)
        assert out["generation"] == gen_a and out["previous_generation"] == gen_b
        assert out["paused"] is True
        assert managed(target, settings) == tree_a
        assert os.stat(target / "signer").st_ino == signer_inode  # directories keep inodes
        await wait_for(lambda: d.state.generation == gen_a and d.state.paused, "daemon follows")
        await asyncio.sleep(2.5)
        assert managed(target, settings) == tree_a, "the rollback must stick while paused"
        assert await agent.ready()

        ControlFiles.of(settings.sync).unpause()
        await wait_for(lambda: d.state.generation == gen_b, "the primary's generation again")
        assert same_keys(primary_tree, target)


async def test_rollback_refuses_a_tampered_or_unknown_generation(
    sshd: Sshd, primary_tree: Path, target: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    settings = daemon_settings(sshd, primary_tree, target)
    first = await engine.sync(settings)
    add_softtoken_key(primary_tree)
    second = await engine.sync(settings)
    assert first.outcome is second.outcome is Outcome.APPLIED
    live = managed(target, settings)
    capsys.readouterr()

    assert await asyncio.to_thread(_rollback, settings, "0123456789abcdef") == 1
    assert "is not kept" in _emitted(capsys.readouterr().out)["error"]

    kept = StateDir(settings.sync.state_dir).generation_dir(first.generation or "")
    (kept / "signer/keyconf.xml").write_text("<tampered/>")  # not linked to the live file
    assert await asyncio.to_thread(_rollback, settings) == 3  # validation: README's exit 3
    doc = _emitted(capsys.readouterr().out)
    assert doc["reason"] == "validation" and doc["problems"][0]["path"] == "signer/keyconf.xml"
    assert managed(target, settings) == live
    assert not StateDir(settings.sync.state_dir).pause_flag.exists(), "a refused rollback unpauses"


# ---- drift -----------------------------------------------------------------------------------


async def test_drift_is_logged_counted_and_repaired(
    sshd: Sshd, primary_tree: Path, target: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(daemon, "DRIFT_MIN_GAP", 0.5)
    settings = daemon_settings(sshd, primary_tree, target, sync__interval=300)
    async with running(settings) as agent:
        d = agent.daemon
        await wait_for(d.first_sync_done.is_set, "the first sync")
        await asyncio.sleep(1)
        assert metric(await agent.metrics(), "syncagent_drift_total") == 0, "own apply is no drift"
        want = managed(primary_tree, settings)

        (target / "conf.d/local.ini").write_text("[proxy]\nhand-edited=1\n")
        await wait_for(lambda: managed(target, settings) == want, "the edit to be reverted")
        (target / "devices.ini").unlink()
        await wait_for(lambda: managed(target, settings) == want, "the deleted file back", 5)
        (target / "conf.d/extra.ini").write_text("[x]\n")
        await wait_for(lambda: managed(target, settings) == want, "the extra file removed", 5)
        drift = metric(await agent.metrics(), "syncagent_drift_total") or 0
        assert drift >= 3

        node_ini = target / "conf.d/node.ini"
        node_ini.write_text("[node]\ntype = slave\n# local\n")
        await asyncio.sleep(2)
        assert metric(await agent.metrics(), "syncagent_drift_total") == drift
        assert node_ini.read_text().endswith("# local\n"), "node-local files are not drift"


# ---- reload rules ----------------------------------------------------------------------------


def _reload_config(tmp_path: Path, log: Path) -> Path:
    record = f"import os; open({str(log)!r}, 'a').write(os.environ['SYNCAGENT_RULE'] + '\\n')"
    cfg = tmp_path / "reload.toml"
    cfg.write_text(
        "[[reload]]\n"
        'name = "signer"\n'
        'paths = ["/signer/"]\n'
        f'command = [{json.dumps(sys.executable)}, "-c", {json.dumps(record)}]\n'
        "[[reload]]\n"
        'name = "proxy"\n'
        'paths = ["/conf.d/*.ini"]\n'
        f'command = [{json.dumps(sys.executable)}, "-c", {json.dumps(record)}]\n'
        "[[reload]]\n"
        'name = "broken"\n'
        'paths = ["/conf.d/"]\n'
        'command = ["false"]\n'
    )
    return cfg


async def test_reload_rule_runs_once_per_apply(
    sshd: Sshd, primary_tree: Path, target: Path, tmp_path: Path
) -> None:
    log = tmp_path / "reloads.log"
    cfg = _reload_config(tmp_path, log)
    settings = daemon_settings(sshd, primary_tree, target, config=cfg)

    def runs() -> list[str]:
        return log.read_text().split() if log.exists() else []

    async with running(settings) as agent:
        d = agent.daemon
        await wait_for(d.first_sync_done.is_set, "the first sync")
        await d.reloader.idle()
        assert sorted(runs()) == ["proxy", "signer"]  # the first apply added everything

        gen = d.state.generation
        add_softtoken_key(primary_tree)  # a .p12 and keyconf.xml: two paths, one run
        await wait_for(lambda: d.state.generation != gen, "the new key's generation")
        await d.reloader.idle()
        assert sorted(runs()) == ["proxy", "signer", "signer"]

        with (primary_tree / "conf.d/local.ini").open("a") as fh:
            fh.write("; changed\n")
        age(primary_tree)
        gen = d.state.generation
        await wait_for(lambda: d.state.generation != gen, "the local.ini change")
        await d.reloader.idle()
        assert sorted(runs()) == ["proxy", "proxy", "signer", "signer"]

        text = await agent.metrics()
        assert metric(text, "syncagent_reload_total", rule="signer", result="ok") == 2
        assert metric(text, "syncagent_reload_total", rule="proxy", result="ok") == 2
        assert metric(text, "syncagent_reload_total", rule="broken", result="failed") == 2
        assert (target / "conf.d/local.ini").read_text().endswith("; changed\n"), (
            "a failing reload never rolls the configuration back"
        )
        assert await agent.ready()

        # A rollback is an apply too: the programs reading conf.d must restart again.
        assert await asyncio.to_thread(_rollback, settings) == 0
        await wait_for(lambda: runs().count("proxy") == 3, "the reload after the rollback", 5)
        await d.reloader.idle()
        assert sorted(runs()) == ["proxy", "proxy", "proxy", "signer", "signer"]


# ---- key rotation ----------------------------------------------------------------------------


def _secret_mount(base: Path, key: Path, version: int) -> None:
    """Kubernetes AtomicWriter: a new timestamped dir, then ``..data`` swapped by rename."""
    data = base / f"..2026_01_01_00_00_0{version}"
    data.mkdir()
    (data / "id_rsa").write_bytes(key.read_bytes())
    (data / "id_rsa").chmod(0o600)
    tmp = base / "..data_tmp"
    tmp.symlink_to(data.name)
    os.replace(tmp, base / "..data")
    if not (base / "id_rsa").is_symlink():
        (base / "id_rsa").symlink_to("..data/id_rsa")


def _fingerprint(pub: Path) -> str:
    out = subprocess.run(
        ["ssh-keygen", "-l", "-f", str(pub)], capture_output=True, text=True, check=True
    ).stdout
    return out.split()[1]


async def test_key_rotation_is_picked_up_without_restart(
    fresh_sshd: Sshd, primary_tree: Path, target: Path, tmp_path: Path
) -> None:
    mount = tmp_path / "etc-ssh"
    mount.mkdir()
    _secret_mount(mount, fresh_sshd.client_key, 1)
    settings = daemon_settings(
        fresh_sshd, primary_tree, target, primary__identity_file=mount / "id_rsa"
    )
    new_key = tmp_path / "new_id"
    subprocess.run(
        ["ssh-keygen", "-q", "-N", "", "-t", "ed25519", "-C", "rotated", "-f", str(new_key)],
        check=True,
    )
    async with running(settings) as agent:
        d = agent.daemon
        await wait_for(d.first_sync_done.is_set, "the first sync")
        assert d.state.connects == 1

        authorized = fresh_sshd.base / "authorized_keys" / "xroad-slave"
        authorized.write_text(Path(f"{new_key}.pub").read_text())  # the old key is revoked
        _secret_mount(mount, new_key, 2)
        await wait_for(lambda: d.state.connects == 2, "a reconnect with the new key", 10)
        accepted = "Accepted publickey for xroad-slave from 127.0.0.1"
        lines = [ln for ln in fresh_sshd.log_text().splitlines() if accepted in ln]
        assert _fingerprint(Path(f"{new_key}.pub")) in lines[-1]

        add_softtoken_key(primary_tree)
        await wait_for(lambda: same_keys(primary_tree, target), "a sync over the new connection")
        fresh_sshd.stop()  # later reconnects use the new key too
        fresh_sshd.start()
        await wait_for(lambda: d.state.connects == 3, "a reconnect after the loss", 40)
        assert d.keeper.last_error is None


# ---- the real process: signals, pid file, sd_notify, promtool --------------------------------


@pytest.fixture
def agent_factory(
    sshd: Sshd, primary_tree: Path, target: Path, tmp_path: Path, xlb_flag: Path
) -> Iterator[Any]:
    agents: list[Agent] = []

    def make(extra_env: dict[str, str] | None = None, **extra: Any) -> Agent:
        overrides = daemon_overrides(sshd, primary_tree, target, **extra)
        agent = Agent(
            overrides,
            tmp_path,
            {**(extra_env or {})},
        )
        agents.append(agent)
        return agent

    yield make
    for a in agents:
        a.close()


async def test_sighup_and_sync_now_and_sigterm(
    agent_factory: Any, primary_tree: Path, target: Path
) -> None:
    agent: Agent = agent_factory(sync__interval=300).start()
    await agent.wait_ready()
    pid_file = StateDir(target / ".syncagent").pid_file
    assert pid_file.read_text().split()[0] == str(agent.proc.pid if agent.proc else 0)

    add_softtoken_key(primary_tree)
    agent.signal(signal.SIGHUP)
    await wait_for(lambda: same_keys(primary_tree, target), "the SIGHUP sync", 10)

    add_softtoken_key(primary_tree)
    res = agent.cli("sync-now")
    assert res.returncode == 0 and "sent SIGHUP to the daemon" in res.stdout, res
    await wait_for(lambda: same_keys(primary_tree, target), "the sync-now sync", 10)

    res = agent.cli("status")
    assert res.returncode == 0 and res.stdout.startswith("ready: generation "), res
    doc = json.loads(agent.cli("status", "--json").stdout)
    assert doc["ready"] and doc["daemon_running"] and doc["connected"]

    t0 = time.monotonic()
    agent.signal(signal.SIGTERM)
    assert agent.wait(10) == 0
    assert time.monotonic() - t0 < 5
    assert not pid_file.exists()
    events = [e["event"] for e in agent.events()]
    assert "stopped" in events and "sync" in events
    res = agent.cli("status")
    assert res.returncode == 1 and "daemon not running" in res.stdout


async def test_a_sync_the_stop_cuts_short_is_cancelled_not_failed(
    sshd: Sshd, primary_tree: Path, target: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On SIGTERM the kept connection closes under a running sync, which then fails with
    remote_io: that is the stop's doing, so it is `cancelled`, never counted as a failure."""
    real_sync = engine.sync
    cut_short = asyncio.Event()
    calls = 0

    async def interrupted(*args: Any, **kw: Any) -> SyncResult:
        nonlocal calls
        calls += 1
        if calls == 1:
            return await real_sync(*args, **kw)
        cut_short.set()
        await stopping.wait()
        return SyncResult(
            Outcome.FAILED, error=SyncError(Reason.REMOTE_IO, "connection lost (closed)")
        )

    monkeypatch.setattr(engine, "sync", interrupted)
    settings = daemon_settings(sshd, primary_tree, target, sync__interval=300)
    async with running(settings) as agent:
        d = agent.daemon
        stopping = agent.stop
        await wait_for(d.first_sync_done.is_set, "the first sync")
        generation = d.state.generation
        d.sync_now("test")
        await asyncio.wait_for(cut_short.wait(), 10)
    text = d.metrics.render().decode()
    assert metric(text, "syncagent_sync_total", result="cancelled") == 1
    assert metric(text, "syncagent_failures_total", reason="remote_io") == 0
    assert d.state.consecutive_failures == 0 and d.state.generation == generation
    assert d.state.last_result is not None and d.state.last_result.outcome is Outcome.APPLIED


async def test_verification_mismatches_and_passes_are_metrics_and_status(
    sshd: Sshd, primary_tree: Path, target: Path
) -> None:
    settings = daemon_settings(sshd, primary_tree, target, sync__verify_interval=0)
    async with running(settings) as agent:
        d = agent.daemon
        await wait_for(d.first_sync_done.is_set, "the first sync")
        local_ini = primary_tree / "conf.d" / "local.ini"
        st = local_ini.stat()
        data = local_ini.read_bytes()
        local_ini.write_bytes(data.replace(b"=", b":", 1))
        os.utime(local_ini, ns=(st.st_atime_ns, st.st_mtime_ns))
        await wait_for(
            lambda: (target / "conf.d" / "local.ini").read_bytes() == local_ini.read_bytes(),
            "verification to bring the same-size, same-mtime rewrite",
        )
        # the file is live before the daemon folds the sync's result into its metrics
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            text = await agent.metrics()
            if metric(text, "syncagent_verify_mismatches_total", side="primary"):
                break
            await asyncio.sleep(0.05)
        assert metric(text, "syncagent_verify_mismatches_total", side="primary") == 1
        assert metric(text, "syncagent_verify_mismatches_total", side="local") == 0
        assert (metric(text, "syncagent_last_verified_timestamp_seconds") or 0) > time.time() - 60
        doc = await agent.status()
        assert doc["verify_mismatches"] == {"primary": 1, "local": 0}
        assert doc["last_verified"] > time.time() - 60


async def test_version_skew_holds_stays_ready_and_resumes_by_itself(
    sshd: Sshd, primary_tree: Path, target: Path, tmp_path: Path
) -> None:
    node_version = tmp_path / "VERSION"
    node_version.write_text("7.6.2\n")
    settings = daemon_settings(sshd, primary_tree, target, sync__version_source=node_version)
    async with running(settings) as agent:
        d = agent.daemon
        await wait_for(d.first_sync_done.is_set, "the first sync")
        node_version.write_text("7.5.0\n")  # the primary was upgraded first, say
        before = key_ids(target)
        add_softtoken_key(primary_tree)
        await wait_for(lambda: d.state.version_skew, "the hold")
        text = await agent.metrics()
        assert metric(text, "syncagent_version_skew") == 1
        assert await agent.ready(), "the node still runs a validated configuration"
        doc = await agent.status()
        assert doc["version_check"]["primary"] == "7.6.2"
        assert doc["version_check"]["local"] == "7.5.0" and doc["version_check"]["skew"]
        assert doc["last_reason"] == "version_skew"
        await asyncio.sleep(1.5)
        assert key_ids(target) == before, "nothing is applied while held"
        node_version.write_text("7.6.2-1.ubuntu24.04\n")
        # the files land before the daemon has folded the sync's result in
        await wait_for(
            lambda: same_keys(primary_tree, target) and not d.state.version_skew,
            "the sync to resume by itself",
        )
        assert metric(await agent.metrics(), "syncagent_version_skew") == 0


async def test_a_second_agent_or_a_taken_port_exits_1_config_errors_exit_2(
    agent_factory: Any, tmp_path: Path
) -> None:
    """systemd's RestartPreventExitStatus=2 stops a unit whose configuration is wrong; what
    may clear up by itself (another instance, a port in use) exits 1 so it is retried."""
    first: Agent = agent_factory().start()
    await first.wait_ready()
    second: Agent = agent_factory()
    second.log_dir = tmp_path / "second"
    second.log_dir.mkdir()
    assert second.start().wait(20) == 1
    assert "already_running" in [e["event"] for e in second.events()]
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        busy: Agent = agent_factory(http__listen=f"127.0.0.1:{port}")
        busy.log_dir = tmp_path / "busy"
        busy.log_dir.mkdir()
        first.signal(signal.SIGTERM)
        assert first.wait(15) == 0
        assert busy.start().wait(20) == 1
        assert "cannot_listen" in [e["event"] for e in busy.events()]
    bad: Agent = agent_factory(http__listen="192.0.2.1:9")  # an address this host lacks
    bad.log_dir = tmp_path / "bad"
    bad.log_dir.mkdir()
    assert bad.start().wait(20) == 2


async def test_a_published_change_lands_within_the_poll_not_the_interval(
    sshd: Sshd,
    primary_tree: Path,
    target: Path,
    tree_area: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With the primary publishing, the daemon checks HEAD every sync.poll seconds and syncs
    only when it changed; without a HEAD it walks again, and says so; when the publisher is
    back, a poll (every WALKING_POLL while walking, shortened here) follows it again."""
    monkeypatch.setattr(head_rules, "WALKING_POLL", 0.6)
    pub = fresh_subdir(tree_area, "publish")
    settings = daemon_settings(
        sshd,
        primary_tree,
        target,
        sync__interval=300,
        sync__poll=0.3,
        **publishing(primary_tree, pub),
    )
    assert (await publish_once(settings)).result == "published"
    async with running(settings) as agent:
        d = agent.daemon
        await wait_for(d.first_sync_done.is_set, "the first sync")
        assert d.state.following_head
        assert metric(await agent.metrics(), "syncagent_following_head") == 1
        add_softtoken_key(primary_tree)
        assert (await publish_once(settings)).result == "published"
        t0 = time.monotonic()
        await wait_for(lambda: same_keys(primary_tree, target), "the published change", 10)
        assert time.monotonic() - t0 < 5, "a poll, not the 300 s interval, brought it"
        (pub / "HEAD").unlink()  # the publisher is gone
        await wait_for(lambda: not d.state.following_head, "the walk to take over", 10)
        text = await agent.metrics()
        assert metric(text, "syncagent_following_head") == 0
        assert metric(text, "syncagent_walk_fallbacks_total") == 1
        assert (await agent.status())["walk_fallbacks"] == 1
        before = sum_of(await agent.metrics(), "syncagent_sync_total")
        await asyncio.sleep(5 * 0.6)  # five walking polls
        assert not d.state.following_head
        after = sum_of(await agent.metrics(), "syncagent_sync_total")
        assert after == before, "no HEAD: a poll while walking must not start syncs"
        assert (await publish_once(settings)).result == "published"  # the publisher is back
        t0 = time.monotonic()
        await wait_for(lambda: d.state.following_head, "the HEAD to be followed again", 10)
        assert time.monotonic() - t0 < 5, "a poll, not the 300 s interval, went back to HEAD"
        assert metric(await agent.metrics(), "syncagent_following_head") == 1


async def test_the_poll_sees_a_head_rewritten_within_the_same_second(
    sshd: Sshd, primary_tree: Path, target: Path, tree_area: Path
) -> None:
    """The poll stats HEAD and reads it only when the stat cannot vouch for it: two publishes
    inside one second give HEADs of one size and one whole-second mtime (SFTP v3)."""
    pub = fresh_subdir(tree_area, "publish")
    settings = daemon_settings(
        sshd,
        primary_tree,
        target,
        sync__interval=300,
        sync__poll=0.2,
        **publishing(primary_tree, pub),
    )
    assert (await publish_once(settings)).result == "published"
    async with running(settings) as agent:
        d = agent.daemon
        await wait_for(d.first_sync_done.is_set, "the first sync")
        head = pub / "HEAD"

        def padded() -> os.stat_result:
            """HEAD as the publisher wrote it, padded to one length (JSON allows the spaces),
            replaced by rename as the publisher does."""
            tmp = pub / ".HEAD.test"
            tmp.write_bytes(head.read_bytes().ljust(1024))
            os.chmod(tmp, head.stat().st_mode)
            os.chown(tmp, -1, head.stat().st_gid)
            os.replace(tmp, head)
            return head.stat()

        for _ in range(3):
            second_of_both = int(time.time()) + 5  # one whole second for both HEADs
            add_softtoken_key(primary_tree)
            assert (await publish_once(settings)).result == "published"
            padded()
            os.utime(head, (second_of_both, second_of_both))
            first = parse_head(head.read_bytes())
            named = (first.generation, first.sequence)

            def read_first(want: tuple[str, int] = named) -> bool:
                return d._head_stat is not None and d._head_stat.named == want

            await wait_for(read_first, "the poll to read the first HEAD", 10)
            add_softtoken_key(primary_tree)  # within a second of that read
            assert (await publish_once(settings)).result == "published"
            padded()
            os.utime(head, (second_of_both, second_of_both))
            await wait_for(lambda: same_keys(primary_tree, target), "the second publish", 10)


SLOW = "sleep 37.25"  # distinctive, so pgrep finds only ours


async def test_sigterm_during_a_sync_leaves_one_generation(
    sshd: Sshd, agent_factory: Any, primary_tree: Path, target: Path
) -> None:
    first = await engine.sync(daemon_settings(sshd, primary_tree, target))
    assert first.outcome is Outcome.APPLIED
    # validate_command runs only for a tree with changes: it holds the next sync mid-way.
    agent: Agent = agent_factory(sync__interval=300, sync__validate_command=SLOW)
    agent.start()
    await agent.wait_ready()
    add_softtoken_key(primary_tree)
    agent.signal(signal.SIGHUP)

    deadline = time.monotonic() + 10
    while not (await agent.status()).get("syncing"):
        assert time.monotonic() < deadline, "the sync never started"
        await asyncio.sleep(0.05)
    await asyncio.sleep(0.5)
    t0 = time.monotonic()
    agent.signal(signal.SIGTERM)
    assert agent.wait(15) == 0
    assert time.monotonic() - t0 < daemon.STOP_GRACE + 3
    assert "sync_abandoned" in [e["event"] for e in agent.events()]
    state = StateDir(target / ".syncagent")
    current = state.current()
    assert current is not None and current.generation == first.generation
    assert not state.journal.exists()
    assert key_ids(target) != key_ids(primary_tree)  # the old generation, whole
    leftovers = subprocess.run(["pgrep", "-fx", SLOW], capture_output=True, text=True)
    pids = [int(p) for p in leftovers.stdout.split()]
    for pid in pids:
        os.kill(pid, signal.SIGKILL)
    assert pids == [], "validate_command outlived the cancelled sync"


async def test_live_scrape_passes_promtool(agent_factory: Any) -> None:
    promtool = require_tool("promtool")
    agent: Agent = agent_factory().start()
    await agent.wait_ready()
    status, text = await agent.get("/metrics")
    assert status == 200
    res = subprocess.run(
        [promtool, "check", "metrics"], input=text.encode(), capture_output=True, timeout=30
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.strip() == b"" and res.stderr.strip() == b"", res
    assert metric(text, "syncagent_ready") == 1
    agent.signal(signal.SIGTERM)
    assert agent.wait(10) == 0


async def test_sd_notify_ready_watchdog_stopping(agent_factory: Any, tmp_path: Path) -> None:
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        sock.settimeout(0.2)
        agent: Agent = agent_factory(
            {"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "1000000"}
        ).start()
        got: list[str] = []
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and got.count("WATCHDOG=1") < 3:
            try:
                got.append(sock.recv(4096).decode())
            except TimeoutError:
                await asyncio.sleep(0)
        ready = [m for m in got if m.startswith("READY=1")]
        assert ready, got
        assert got.count("WATCHDOG=1") >= 3, got
        agent.signal(signal.SIGTERM)
        assert agent.wait(10) == 0
        rest = []
        while True:
            try:
                rest.append(sock.recv(4096).decode())
            except TimeoutError:
                break
        assert "STOPPING=1" in rest
