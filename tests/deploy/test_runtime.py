"""The deployment files at runtime, each with the real tool against the real sshd fixture.

- supervisord runs the *shipped* ``[program:xroad-sync]`` section (docker/supervisor/), changed
  in one line only: the agent's path (``/opt/syncagent`` in the image; here an install that
  ``xroad`` can execute, see ``agent_bin``). Settings reach the agent as SYNCAGENT_* env through
  supervisord, as in the image. It drops to ``xroad`` as shipped, so the target (and with it
  the state dir) and a copy of the SSH key belong to ``xroad``: least privilege, checked.
- docker/syncagent-entrypoint.sh runs as a script (as root, first sync as ``xroad`` through its
  setpriv) with the real agent, once per branch: primary up, not initialized, down, bad config.
  ``SYNCAGENT_EXEC`` is a marker script standing in for the image's start.
- a real Prometheus scrapes two ``syncagent run`` agents with the shipped alert rules loaded,
  and the queries the rules and dashboards rely on give the expected answers.

tests/deploy/test_static.py lints and parses the same files; this proves they work.
"""

from __future__ import annotations

import asyncio
import configparser
import contextlib
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
import xmlrpc.client
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import yaml
from support import REPO
from support.config import daemon_overrides, settings_for
from support.daemon import Agent, metric
from support.grafana import panel_queries
from support.sshd import Sshd, free_port, fresh_subdir, make_traversable_dir
from support.tools import AGENT_BIN, agent_for, require_root, require_tool
from support.trees import age
from support.waiting import get, until

from syncagent.demo.sample_tree import add_softtoken_key, build_secondary_local
from syncagent.engine import sync
from syncagent.publishdir import HEAD_NAME, parse_head
from syncagent.report import Outcome

ROOT = REPO
DOCKER = ROOT / "docker"
PROGRAM = DOCKER / "supervisor" / "xroad-sync.conf"
ENTRYPOINT = DOCKER / "syncagent-entrypoint.sh"
ALERTS = DOCKER / "prometheus" / "syncagent-alerts.yml"
SHIPPED_COMMAND = "command=/opt/syncagent/bin/syncagent run"
KEYCONF = "signer/keyconf.xml"


def ready(url: str) -> bool:
    return get(url + "/readyz")[0] == 200


def json_lines(text: str) -> list[dict[str, Any]]:
    out = []
    for line in text.splitlines():
        with contextlib.suppress(ValueError):
            doc = json.loads(line)
            if isinstance(doc, dict):
                out.append(doc)
    return out


def clean_env() -> dict[str, str]:
    """This process's environment without anything that would configure an agent."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("SYNCAGENT_", "NOTIFY_", "WATCHDOG_", "XROAD_"))
    }


# ---- an unprivileged secondary ----------------------------------------------------------------


@dataclass
class Secondary:
    """What the image gives an agent running as ``xroad``: its target and key, owned by it."""

    base: Path  # 0711, so xroad reaches what is inside
    target: Path  # xroad-owned, like the image's /etc/xroad after the entrypoint's chown
    identity: Path  # a copy of the fixture's client key, xroad 0600 (ssh refuses looser)
    known_hosts: Path
    uid: int
    gid: int

    def env_for_cli(self) -> dict[str, str]:
        """Enough for `syncagent status` to find the agent's state dir."""
        return {
            **clean_env(),
            "SYNCAGENT_SYNC_TARGET": str(self.target),
            "SYNCAGENT_PRIMARY_HOST": "unused",
            "SYNCAGENT_PRIMARY_HOST_KEY_POLICY": "accept-new",
        }

    def env(self, sshd: Sshd, remote: Path, **extra: str) -> dict[str, str]:
        """Agent settings as SYNCAGENT_* env, the way the image passes per-deployment ones."""
        return {
            **clean_env(),
            "SYNCAGENT_PRIMARY_HOST": "127.0.0.1",
            "SYNCAGENT_PRIMARY_PORT": str(sshd.port),
            "SYNCAGENT_PRIMARY_IDENTITY_FILE": str(self.identity),
            "SYNCAGENT_PRIMARY_KNOWN_HOSTS": str(self.known_hosts),
            "SYNCAGENT_PRIMARY_REMOTE_ROOT": str(remote),
            "SYNCAGENT_PRIMARY_CONNECT_TIMEOUT": "3",
            "SYNCAGENT_SYNC_TARGET": str(self.target),
            "SYNCAGENT_SYNC_SETTLE": "0",
            "SYNCAGENT_LOG_FORMAT": "json",
            # never let a real /var/tmp/xroad/sync-disabled on this machine pause the agent
            "SYNCAGENT_SYNC_DISABLE_FLAG": str(self.base / "sync-disabled"),
            **extra,
        }


def _chown_tree(root: Path, uid: int, gid: int) -> None:
    os.chown(root, uid, gid)
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            os.lchown(os.path.join(dirpath, name), uid, gid)


@pytest.fixture(scope="session")
def agent_bin(sshd: Sshd) -> Iterator[Path]:
    """The agent as the image has it: an install that ``xroad`` can execute (tools.agent_for)."""
    require_root("the agent runs as xroad")
    with agent_for("xroad") as agent:  # the sshd fixture made the accounts
        yield agent


@pytest.fixture
def secondary(sshd: Sshd) -> Iterator[Secondary]:
    require_root("supervisord and the entrypoint drop to xroad")
    pw = pwd.getpwnam("xroad")  # the sshd fixture made the accounts
    base = make_traversable_dir("syncagent-deploy-")
    target = base / "etc-xroad"
    target.mkdir(mode=0o751)
    build_secondary_local(target)
    _chown_tree(target, pw.pw_uid, pw.pw_gid)
    keys = base / "ssh"
    keys.mkdir(mode=0o700)
    identity = keys / "id_rsa"
    identity.write_bytes(sshd.client_key.read_bytes())
    identity.chmod(0o600)
    known_hosts = keys / "known_hosts"
    known_hosts.write_text(sshd.known_hosts_line())
    known_hosts.chmod(0o644)
    _chown_tree(keys, pw.pw_uid, pw.pw_gid)
    yield Secondary(base, target, identity, known_hosts, pw.pw_uid, pw.pw_gid)
    shutil.rmtree(base, ignore_errors=True)


def proc_status(pid: int) -> dict[str, str]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        out[key] = value.strip()
    return out


def proc_environ(pid: int) -> dict[str, str]:
    raw = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    return dict(item.decode().split("=", 1) for item in raw if b"=" in item)


# ---- 1. supervisord runs the shipped program section ---------------------------------------


def program_for_test(agent: Path) -> str:
    """The shipped section with exactly one line changed: the agent's path.

    Everything else (user, environment, signals, restart policy, logging) is the shipped text.
    Settings reach the agent as the section's comment says: SYNCAGENT_* env that supervisord
    passes on from its own environment.
    """
    text = PROGRAM.read_text()
    assert text.count(SHIPPED_COMMAND + "\n") == 1, "the shipped command line changed"
    return text.replace(SHIPPED_COMMAND, f"command={agent} run")


def program_section(text: str) -> dict[str, str]:
    parser = configparser.RawConfigParser(comment_prefixes=(";", "#"), interpolation=None)
    parser.read_string(text)
    return dict(parser["program:xroad-sync"])


def test_shipped_program_differs_from_the_test_copy_only_in_the_command() -> None:
    shipped = program_section(PROGRAM.read_text())
    used = program_section(program_for_test(AGENT_BIN))
    assert {k for k in shipped if shipped[k] != used[k]} == {"command"}
    assert shipped.keys() == used.keys()
    # What the runtime test below relies on, as shipped:
    assert shipped["user"] == "xroad"
    assert shipped["environment"] == 'HOME="/var/lib/xroad"'
    assert shipped["autostart"] == "true" and shipped["autorestart"] == "true"
    assert shipped["stopsignal"] == "TERM"
    assert shipped["killasgroup"] == "true"
    assert shipped["stdout_logfile"] == "/dev/stdout"
    assert shipped["stdout_logfile_maxbytes"] == "0"
    assert shipped["redirect_stderr"] == "true"


@dataclass
class Supervisord:
    base: Path
    proc: subprocess.Popen[bytes]
    http: str  # the agent's http.listen, as a URL

    @property
    def conf(self) -> Path:
        return self.base / "supervisord.conf"

    @property
    def stdout_path(self) -> Path:
        return self.base / "stdout"

    @property
    def log_path(self) -> Path:
        return self.base / "supervisord.log"

    def stdout(self) -> str:
        return self.stdout_path.read_text(errors="replace")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except FileNotFoundError:
            return ""

    def rpc(self) -> Any:
        from supervisor.xmlrpc import SupervisorTransport

        transport = SupervisorTransport(None, None, f"unix://{self.base}/supervisor.sock")
        return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)

    def info(self, program: str = "xroad-sync") -> dict[str, Any]:
        try:
            doc: dict[str, Any] = self.rpc().supervisor.getProcessInfo(program)
        except (OSError, xmlrpc.client.Fault):
            return {}
        return doc

    def ctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(Path(sys.executable).parent / "supervisorctl"), "-c", str(self.conf), *args],
            capture_output=True,
            text=True,
            timeout=60,
        )

    def diagnostics(self) -> str:
        return f"supervisord log:\n{self.log()[-3000:]}\nstdout:\n{self.stdout()[-3000:]}"

    def running(self, other_than: int | None = None) -> dict[str, Any] | None:
        info = self.info()
        assert self.proc.poll() is None, "supervisord died\n" + self.diagnostics()
        if info.get("statename") == "RUNNING" and info.get("pid") not in (0, other_than):
            return info
        assert info.get("statename") not in ("FATAL", "BACKOFF"), f"{info}\n{self.diagnostics()}"
        return None


@contextlib.contextmanager
def running_supervisord(
    programs: dict[str, str], env: dict[str, str], http: str = ""
) -> Iterator[Supervisord]:
    """A real supervisord with ``programs`` (file name -> section text) in its conf.d."""
    supervisord_bin = Path(sys.executable).parent / "supervisord"
    if not supervisord_bin.exists():
        supervisord_bin = Path(require_tool("supervisord"))
    base = make_traversable_dir("syncagent-sv-")  # short: unix socket paths are limited
    (base / "conf.d").mkdir()
    for name, text in programs.items():
        (base / "conf.d" / name).write_text(text)
    (base / "supervisord.conf").write_text(
        "[unix_http_server]\n"
        f"file={base}/supervisor.sock\n"
        "chmod=0700\n"
        "[supervisord]\n"
        "nodaemon=true\n"
        f"logfile={base}/supervisord.log\n"
        f"pidfile={base}/supervisord.pid\n"
        f"childlogdir={base}\n"
        "[rpcinterface:supervisor]\n"
        "supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface\n"
        "[supervisorctl]\n"
        f"serverurl=unix://{base}/supervisor.sock\n"
        "[include]\n"
        f"files = {base}/conf.d/*.conf\n"
    )
    with (base / "stdout").open("ab") as out:
        proc = subprocess.Popen(
            [str(supervisord_bin), "-c", str(base / "supervisord.conf")],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    sv = Supervisord(base, proc, http)
    try:
        yield sv
    finally:
        agent_pid = sv.info().get("pid") if proc.poll() is None else None
        if proc.poll() is None:
            proc.terminate()  # supervisord stops its programs, then exits
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if agent_pid and Path(f"/proc/{agent_pid}").exists():  # supervisord failed to stop it
            with contextlib.suppress(ProcessLookupError):
                os.kill(agent_pid, signal.SIGKILL)
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def supervisord(
    sshd: Sshd, primary_tree: Path, secondary: Secondary, agent_bin: Path
) -> Iterator[Supervisord]:
    env = secondary.env(
        sshd,
        primary_tree,
        SYNCAGENT_HTTP_LISTEN=f"127.0.0.1:{free_port()}",
        SYNCAGENT_SYNC_INTERVAL="2",
    )
    programs = {"xroad-sync.conf": program_for_test(agent_bin)}
    with running_supervisord(programs, env, "http://" + env["SYNCAGENT_HTTP_LISTEN"]) as sv:
        yield sv


def test_supervisord_runs_the_shipped_program(
    supervisord: Supervisord, secondary: Secondary, primary_tree: Path
) -> None:
    sv = supervisord
    section = program_section(PROGRAM.read_text())
    stopwait = float(section["stopwaitsecs"])
    startsecs = float(section["startsecs"])
    url = sv.http

    info = until(sv.running, "xroad-sync RUNNING", startsecs + 20)
    assert info is not None
    pid = info["pid"]
    # user=xroad and environment=HOME as shipped; settings came through supervisord's env.
    status = proc_status(pid)
    assert status["Uid"].split()[:2] == [str(secondary.uid)] * 2, status["Uid"]
    assert status["Gid"].split()[0] == str(secondary.gid), status["Gid"]
    assert proc_environ(pid)["HOME"] == "/var/lib/xroad"

    until(lambda: (secondary.target / KEYCONF).exists(), "the first sync", 20)
    until(partial(ready, url), "/readyz 200", 20)
    assert (secondary.target / KEYCONF).read_bytes() == (primary_tree / KEYCONF).read_bytes()
    state_dir = secondary.target / ".syncagent"
    assert state_dir.stat().st_uid == secondary.uid, "the state dir belongs to the agent's user"
    assert (secondary.target / KEYCONF).stat().st_uid == secondary.uid

    # stdout_logfile=/dev/stdout: the agent's JSON lines land on supervisord's stdout.
    def synced_in_stdout() -> list[dict[str, Any]]:
        return [e for e in json_lines(sv.stdout()) if e.get("event") == "sync"]

    events = until(synced_in_stdout, "the agent's JSON 'sync' line on supervisord's stdout", 10)
    assert events[0].get("result") in ("applied", "unchanged"), events[0]

    # A crash: supervisord restarts it (autorestart=true), and the new agent is ready again.
    os.kill(pid, signal.SIGKILL)
    info = until(lambda: sv.running(other_than=pid), "a restarted xroad-sync", startsecs + 20)
    assert info is not None
    new_pid = info["pid"]
    assert new_pid != pid
    assert "exited: xroad-sync (terminated by SIGKILL; not expected)" in sv.log()
    until(partial(ready, url), "/readyz 200 after the restart", 20)
    assert json.loads(get(url + "/status")[1])["pid"] == new_pid

    # `supervisorctl stop`: SIGTERM, and the agent exits 0 well before stopwaitsecs.
    t0 = time.monotonic()
    res = sv.ctl("stop", "xroad-sync")
    took = time.monotonic() - t0
    assert res.returncode == 0 and "xroad-sync: stopped" in res.stdout, res
    assert took < stopwait, f"stop took {took:.1f}s (stopwaitsecs={stopwait:g})"
    info = sv.info()
    assert info["statename"] == "STOPPED" and info["exitstatus"] == 0, info
    assert "stopped: xroad-sync (exit status 0)" in sv.log(), sv.diagnostics()
    assert not Path(f"/proc/{new_pid}").exists()
    until(
        lambda: "stopped" in [e.get("event") for e in json_lines(sv.stdout())],
        "the agent's 'stopped' line on supervisord's stdout",
        5,
    )
    assert not (state_dir / "daemon.pid").exists()


STAND_INS = {  # what the X-Road launchers exec, as the process table shows it
    "xroad-proxy": "org.niis.xroad.proxy.application.ProxyMain",
    "xroad-signer": "ee.ria.xroad.signer.SignerMain",
}


def stand_in_programs() -> str:
    sleep = "/usr/bin/perl -e 'sleep 1e7'"  # perl-base is essential: on every Debian
    return "".join(
        f"[program:{name}]\ncommand={sleep} {main}\nuser=xroad\nautostart=false\nstartsecs=0\n"
        for name, main in STAND_INS.items()
    )


def test_a_change_waits_for_the_programs_that_read_it_until_they_restart(
    supervisord: Supervisord, secondary: Secondary, primary_tree: Path
) -> None:
    """Real supervisord runs the agent and stand-ins for xroad-proxy and xroad-signer (their
    process looks like the java the upstream launcher execs); the agent tells which of them
    still run with the old files."""
    sv = supervisord
    until(partial(ready, sv.http), "/readyz 200", 40)
    (sv.base / "conf.d" / "xroad.conf").write_text(stand_in_programs())
    res = sv.ctl("update")
    assert res.returncode == 0, res
    for name in STAND_INS:
        res = sv.ctl("start", name)
        assert res.returncode == 0 and "started" in res.stdout, res

    def pending() -> dict[str, float | None]:
        text = get(sv.http + "/metrics")[1]
        return {n: metric(text, "syncagent_restart_pending", program=n) for n in STAND_INS}

    assert pending() == {"xroad-proxy": 0, "xroad-signer": 0}, "started after the apply"
    local_ini = primary_tree / "conf.d" / "local.ini"
    local_ini.write_text(local_ini.read_text() + "; a change both programs read at start\n")
    age(primary_tree)
    until(
        lambda: pending() == {"xroad-proxy": 1, "xroad-signer": 1},
        "both programs pending a restart",
        20,
    )
    since = metric(
        get(sv.http + "/metrics")[1],
        "syncagent_restart_pending_since_timestamp_seconds",
        program="xroad-proxy",
    )
    assert since is not None and time.time() - 60 < since <= time.time()
    doc = json.loads(get(sv.http + "/status")[1])
    assert set(doc["restart_pending"]) == {"xroad-proxy", "xroad-signer"}

    res = sv.ctl("restart", "xroad-proxy")
    assert res.returncode == 0, res
    until(
        lambda: pending() == {"xroad-proxy": 0, "xroad-signer": 1},
        "the restarted proxy cleared, the signer still pending",
        20,
    )
    status = subprocess.run(
        [str(Path(sys.executable).parent / "syncagent"), "status"],
        env=secondary.env_for_cli(),
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert "restart pending: xroad-signer" in status.stdout, status
    sv.ctl("stop", "xroad-signer")
    until(
        lambda: pending() == {"xroad-proxy": 0, "xroad-signer": 0},
        "a stopped signer reads the new files when it starts",
        20,
    )


PUBLISH_PROGRAM = DOCKER / "supervisor" / "syncagent-publish.conf"
PUBLISH_COMMAND = "command=/opt/syncagent/bin/syncagent publish"


def test_supervisord_runs_the_shipped_publisher(
    sshd: Sshd, primary_tree: Path, tree_area: Path, target: Path, agent_bin: Path
) -> None:
    """The primary image's program, as shipped but for the agent's path: publishes as xroad,
    follows a change, and a secondary follows its HEAD through the read-only account."""
    text = PUBLISH_PROGRAM.read_text()
    assert text.count(PUBLISH_COMMAND + "\n") == 1, "the shipped command line changed"
    section = text.replace(PUBLISH_COMMAND, f"command={agent_bin} publish")
    xroad = pwd.getpwnam("xroad")
    pub = fresh_subdir(tree_area, "publish")
    os.chown(pub, xroad.pw_uid, xroad.pw_gid)
    env = {
        **clean_env(),
        "SYNCAGENT_PUBLISH_SOURCE": str(primary_tree),
        "SYNCAGENT_PUBLISH_DIR": str(pub),
        "SYNCAGENT_PUBLISH_SETTLE": "0",
        "SYNCAGENT_SYNC_VERSION_SOURCE": "none",
        "SYNCAGENT_LOG_FORMAT": "json",
    }
    with running_supervisord({"syncagent-publish.conf": section}, env) as sv:
        info = until(
            lambda: (
                sv.info("syncagent-publish").get("statename") == "RUNNING"
                and sv.info("syncagent-publish")
            ),
            "syncagent-publish RUNNING",
            20,
        )
        assert info
        assert proc_status(info["pid"])["Uid"].split()[0] == str(xroad.pw_uid)
        until(lambda: (pub / HEAD_NAME).exists(), "the first HEAD", 30)
        first = parse_head((pub / HEAD_NAME).read_bytes())
        settings = settings_for(
            sshd, primary_tree, target, primary__publish_dir=pub, sync__version_source="none"
        )
        result = asyncio.run(sync(settings))
        assert result.outcome is Outcome.APPLIED and result.source == "published", result
        assert result.generation == first.generation

        key = add_softtoken_key(primary_tree)
        until(
            lambda: parse_head((pub / HEAD_NAME).read_bytes()).sequence > first.sequence,
            "a new HEAD for the change",
            30,
        )
        again = asyncio.run(sync(settings))
        assert again.outcome is Outcome.APPLIED and again.source == "published", again
        assert (target / f"signer/softtoken/{key}.p12").exists()
        res = sv.ctl("stop", "syncagent-publish")
        assert res.returncode == 0 and "stopped" in res.stdout, res
        assert sv.info("syncagent-publish")["exitstatus"] == 0


# ---- 2. the image's entrypoint with the real agent ------------------------------------------


@dataclass
class EntrypointRun:
    res: subprocess.CompletedProcess[str]
    took: float
    marker: Path

    @property
    def started(self) -> str | None:
        """What the marker (the services' stand-in) recorded, or None if it never ran."""
        return self.marker.read_text() if self.marker.exists() else None


def run_entrypoint(
    agent: Path, secondary: Secondary, env: dict[str, str], timeout: float = 90
) -> EntrypointRun:
    marker = secondary.base / "services-started"
    marker.unlink(missing_ok=True)
    script = secondary.base / "start-services.sh"
    script.write_text('#!/bin/sh\necho "uid=$(id -u) args=$*" >"$1"\n')
    script.chmod(0o755)
    full = {
        **env,
        "SYNCAGENT_BIN": str(agent),
        # word-split by the entrypoint, like the image's /root/entrypoint.sh
        "SYNCAGENT_EXEC": f"{script} {marker} supervisord",
    }
    t0 = time.monotonic()
    res = subprocess.run(
        ["bash", str(ENTRYPOINT)], env=full, capture_output=True, text=True, timeout=timeout
    )
    return EntrypointRun(res, time.monotonic() - t0, marker)


def test_entrypoint_primary_up(
    sshd: Sshd, primary_tree: Path, secondary: Secondary, agent_bin: Path
) -> None:
    # SYNCAGENT_RUN_AS left at its default (xroad): the entrypoint runs as root, as in the image.
    run = run_entrypoint(agent_bin, secondary, secondary.env(sshd, primary_tree))
    assert run.res.returncode == 0, run.res.stderr
    assert run.started == f"uid=0 args={run.marker} supervisord\n"
    assert "first sync done (attempt 1)" in run.res.stdout
    assert (secondary.target / KEYCONF).read_bytes() == (primary_tree / KEYCONF).read_bytes()
    # the first sync ran as xroad: what it created belongs to xroad, not root
    assert (secondary.target / ".syncagent").stat().st_uid == secondary.uid
    assert (secondary.target / KEYCONF).stat().st_uid == secondary.uid
    assert "sync" in [e.get("event") for e in json_lines(run.res.stderr)]


def test_entrypoint_primary_not_initialized(
    sshd: Sshd, tree_area: Path, secondary: Secondary, agent_bin: Path
) -> None:
    empty = fresh_subdir(tree_area, "xroad")  # the primary's /etc/xroad before its setup
    run = run_entrypoint(
        agent_bin, secondary, secondary.env(sshd, empty, SYNCAGENT_FIRST_SYNC_BUDGET="60")
    )
    assert run.res.returncode == 0, run.res.stderr
    assert run.started is not None, "services not started"
    assert "primary not initialized yet (exit 4): starting not-ready" in run.res.stderr
    assert run.took < 20, f"took {run.took:.1f}s: should start at once, not spend the budget"
    assert not (secondary.target / KEYCONF).exists()


def test_entrypoint_primary_down(
    sshd: Sshd, primary_tree: Path, secondary: Secondary, agent_bin: Path
) -> None:
    budget = 4
    run = run_entrypoint(
        agent_bin,
        secondary,
        secondary.env(
            sshd,
            primary_tree,
            SYNCAGENT_FIRST_SYNC_BUDGET=str(budget),
            SYNCAGENT_FIRST_SYNC_RETRY="1",
            SYNCAGENT_PRIMARY_PORT=str(free_port()),
        ),  # nothing listens there
        timeout=60,
    )
    assert run.res.returncode == 0, run.res.stderr
    assert run.started is not None, "services not started after the budget"
    assert f"first sync failed (exit 1) for {budget}s" in run.res.stderr
    assert "starting not-ready" in run.res.stderr
    assert "retrying in" in run.res.stderr  # it did retry within the budget
    # bash's SECONDS ticks whole seconds, so the budget may end up to 1 s early
    assert budget - 1 <= run.took < budget + 15, f"took {run.took:.1f}s"
    reasons = {e.get("reason") for e in json_lines(run.res.stderr) if e.get("event") == "sync"}
    assert reasons == {"connect"}, reasons
    assert not (secondary.target / KEYCONF).exists()


def test_entrypoint_bad_config(
    sshd: Sshd, primary_tree: Path, secondary: Secondary, agent_bin: Path
) -> None:
    run = run_entrypoint(
        agent_bin,
        secondary,
        secondary.env(sshd, primary_tree, SYNCAGENT_SYNC_INTERVAL="every minute"),
    )
    assert run.res.returncode == 2, run.res.stderr
    assert run.started is None, "services started despite a configuration error"
    assert "sync.interval (env SYNCAGENT_SYNC_INTERVAL)" in run.res.stderr
    assert "configuration error (syncagent exit 2)" in run.res.stderr
    assert "not starting" in run.res.stderr
    assert run.took < 20, "a configuration error is not retried"


# ---- 3. a real Prometheus scraping two agents, with the shipped rules -----------------------


@dataclass
class Prometheus:
    base: Path
    port: int
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, targets: list[str]) -> None:
        config = {
            "global": {
                "scrape_interval": "1s",
                "scrape_timeout": "1s",
                "evaluation_interval": "1s",
            },
            "rule_files": [str(ALERTS)],  # the shipped file itself, not a copy
            "scrape_configs": [{"job_name": "syncagent", "static_configs": [{"targets": targets}]}],
        }
        (self.base / "prometheus.yml").write_text(yaml.safe_dump(config))
        with (self.base / "prometheus.log").open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    require_tool("prometheus"),
                    f"--config.file={self.base / 'prometheus.yml'}",
                    f"--storage.tsdb.path={self.base / 'data'}",
                    f"--web.listen-address=127.0.0.1:{self.port}",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                cwd=self.base,
            )

    def log(self) -> str:
        return (self.base / "prometheus.log").read_text(errors="replace")[-3000:]

    def wait_ready(self, timeout: float = 30) -> None:
        def ready() -> bool:
            assert self.proc is not None and self.proc.poll() is None, self.log()
            return get(self.url + "/-/ready")[0] == 200

        until(ready, "prometheus /-/ready", timeout)

    def api(self, path: str, **params: str) -> Any:
        status, body = get(f"{self.url}/api/v1/{path}?{urllib.parse.urlencode(params)}")
        assert status == 200, (status, body)
        doc = json.loads(body)
        assert doc["status"] == "success", doc
        return doc["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        data = self.api("query", query=expr)
        assert data["resultType"] == "vector", data
        result: list[dict[str, Any]] = data["result"]
        return result

    def by_instance(self, expr: str) -> dict[str, float]:
        return {r["metric"]["instance"]: float(r["value"][1]) for r in self.query(expr)}

    def scalar(self, expr: str) -> float | None:
        result = self.query(expr)
        assert len(result) <= 1, result
        return float(result[0]["value"][1]) if result else None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[Prometheus]:
    require_tool("prometheus")
    base = tmp_path / "prometheus"
    base.mkdir()
    # Debian's package may run its own service on :9090; ours has a port of its own.
    prom = Prometheus(base, free_port())
    yield prom
    prom.stop()


ALERT_NAMES = {
    "XRoadSyncStale",
    "XRoadSyncFailing",
    "XRoadSyncGenerationsDiverge",
    "XRoadSecondaryNotReady",
    "XRoadSyncPausedTooLong",
    "XRoadSyncVersionSkew",
    "XRoadRestartPending",
    "XRoadPublishFailing",
    "XRoadSyncAgentTaskRestarted",
}
DISTINCT_GENERATIONS = "count(count by (generation) (syncagent_generation_info))"


def test_prometheus_scrapes_agents_with_the_shipped_rules(
    fresh_sshd: Sshd, primary_tree: Path, tmp_path: Path, prometheus: Prometheus
) -> None:
    agents: list[Agent] = []
    for name in ("a", "b"):
        d = tmp_path / name
        target = d / "etc-xroad"
        target.mkdir(parents=True, mode=0o751)
        build_secondary_local(target)
        agents.append(
            Agent(
                daemon_overrides(fresh_sshd, primary_tree, target, sync__interval=1),
                d,
                {"SYNCAGENT_SYNC_DISABLE_FLAG": str(d / "sync-disabled")},
            )
        )
    a, b = agents
    ia, ib = (x.overrides["http.listen"] for x in agents)
    try:
        for agent in agents:
            agent.start()
        prometheus.start([ia, ib])
        prometheus.wait_ready()
        for agent in agents:
            until(partial(ready, agent.url), f"{agent.url} ready", 30)
        _check_dashboard(prometheus, {ia, ib})
        _check_prometheus(prometheus, fresh_sshd, primary_tree, a, b, ia, ib)
    finally:
        for agent in agents:
            agent.close()


def _check_dashboard(prom: Prometheus, instances: set[str]) -> None:
    """Every panel of the shipped Grafana dashboard returns series for both replicas."""
    for title, exprs in panel_queries(job="syncagent").items():
        for expr in exprs:

            def answered(e: str = expr) -> bool:
                result = prom.query(e)
                seen = {r["metric"].get("instance") for r in result}
                return bool(result) and (seen == {None} or instances <= seen)

            until(answered, f"panel {title!r}: {expr} returns series", 20)


def _status(agent: Agent) -> dict[str, Any]:
    status, body = get(agent.url + "/status")
    assert status == 200, (status, body)
    doc: dict[str, Any] = json.loads(body)
    return doc


def _check_prometheus(
    prom: Prometheus, sshd: Sshd, primary: Path, a: Agent, b: Agent, ia: str, ib: str
) -> None:
    # Both agents scraped and ready.
    until(
        lambda: prom.by_instance("syncagent_ready") == {ia: 1.0, ib: 1.0},
        "syncagent_ready == 1 for both agents",
        20,
    )

    # syncagent_generation_info: one series per agent, labelled with its /status generation.
    gen = _status(a)["generation"]
    assert gen and _status(b)["generation"] == gen, "same primary, same generation"

    def generations() -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for r in prom.query("syncagent_generation_info"):
            out.setdefault(r["metric"]["instance"], []).append(r["metric"]["generation"])
        return out

    until(
        lambda: generations() == {ia: [gen], ib: [gen]},
        f"one generation_info series per agent with generation {gen}",
        15,
    )
    assert prom.scalar(DISTINCT_GENERATIONS) == 1

    ages = prom.by_instance("time() - syncagent_last_success_timestamp_seconds")
    assert ages.keys() == {ia, ib} and all(-2 < v < 30 for v in ages.values()), ages
    until(
        lambda: prom.by_instance("syncagent_consecutive_failures") == {ia: 0.0, ib: 0.0},
        "no failures against a healthy primary",
        10,
    )

    # The shipped rules are loaded, evaluated without errors, and quiet in a healthy cluster.
    def rules_ok() -> dict[str, Any] | None:
        groups = prom.api("rules")["groups"]
        ok = all(r["health"] == "ok" for g in groups for r in g["rules"])
        return {"groups": groups} if ok and groups else None

    loaded = until(rules_ok, "the shipped rules evaluated with health ok", 15)
    assert loaded is not None
    groups = loaded["groups"]
    assert [g["name"] for g in groups] == ["syncagent"]
    assert groups[0]["file"] == str(ALERTS)
    assert {r["name"] for r in groups[0]["rules"]} == ALERT_NAMES
    assert all(r["type"] == "alerting" and not r.get("lastError") for r in groups[0]["rules"])
    # (a scrape from before an agent's first sync may have made XRoadSecondaryNotReady pending)
    until(lambda: not prom.query("ALERTS"), "no alerts pending in a healthy cluster", 10)

    # b paused (upgrade habit), then the primary changes: a moves on, b stays behind.
    res = b.cli("pause")
    assert res.returncode == 0, res

    def paused_and_idle() -> bool:
        doc = _status(b)
        return bool(doc["paused"] and not doc["syncing"])

    until(paused_and_idle, "b paused and idle", 10)
    add_softtoken_key(primary)

    def moved_on() -> str | None:
        current: str = _status(a)["generation"]
        return current if current != gen else None

    new = until(moved_on, "a new generation on a", 20)
    assert _status(b)["generation"] == gen
    until(
        lambda: generations() == {ia: [new], ib: [gen]},
        "prometheus to see the new generation on a only",
        15,
    )
    assert prom.scalar(DISTINCT_GENERATIONS) == 2
    # b's scrapes run on their own clock: its latest may still predate the pause
    until(
        lambda: prom.by_instance("syncagent_paused") == {ia: 0.0, ib: 1.0},
        "syncagent_paused 1 for b only",
        10,
    )

    # ... and the shipped rules see it: divergence and pause alerts pending (their `for:` is long).
    def pending() -> set[tuple[str, str]]:
        return {
            (r["metric"]["alertname"], r["metric"].get("instance", ""))
            for r in prom.query('ALERTS{alertstate="pending"}')
        }

    until(
        lambda: pending() == {("XRoadSyncGenerationsDiverge", ""), ("XRoadSyncPausedTooLong", ib)},
        "XRoadSyncGenerationsDiverge and XRoadSyncPausedTooLong pending",
        15,
    )

    # The primary goes away: a counts failures but stays ready on its last good generation.
    lost_at = time.monotonic()
    sshd.stop()
    until(
        lambda: prom.by_instance(f'syncagent_consecutive_failures{{instance="{ia}"}} > 0'),
        "syncagent_consecutive_failures > 0 for a in prometheus",
        20,
    )
    window = int(time.monotonic() - lost_at) + 3
    assert prom.by_instance(f'min_over_time(syncagent_ready{{instance="{ia}"}}[{window}s])') == {
        ia: 1.0
    }, "a stopped being ready when the primary went away"
    assert prom.by_instance("syncagent_ready") == {ia: 1.0, ib: 1.0}
    # (the first failure may be the dropped session itself; the retries cannot connect)
    until(lambda: _status(a)["last_reason"] == "connect", "a's failures to be [connect]", 15)
    until(
        lambda: prom.by_instance(
            f'syncagent_failures_total{{instance="{ia}", reason="connect"}} >= 1'
        ),
        'syncagent_failures_total{reason="connect"} in prometheus',
        10,
    )
