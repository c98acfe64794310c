"""The shipped systemd unit under a real systemd: Debian bookworm booted with systemd-nspawn.

One machine for the module (tests/support/nspawn.py: a cached debootstrap rootfs, an overlay per
run, booted in under a second). syncagent is installed in it the way systemd/README.md's
"Install" says, its commands run as written: a venv in /opt/syncagent (pip offline, from a
wheelhouse the host downloaded once), the example /etc/syncagent/syncagent.toml with the
primary's address filled in, and ``systemd/syncagent.service`` unchanged. Before that the
machine gets what the X-Road packages and the IG-XLB guide leave on a secondary: the ``xroad``
user with its SSH key and known_hosts, ``/etc/xroad`` with ``conf.d/node.ini`` saying
``type = slave``, ``/var/tmp/xroad``. The primary is the tests' real OpenSSH sshd (``sshd``
fixture, ``ForceCommand internal-sftp -R``) on the host's loopback, which the container shares.
Stand-ins for the X-Road services named in ``Before=`` record what they saw when they started.

Tests change the unit only through drop-ins, named in the test and removed after it; before
each test the agent runs with the shipped unit alone. A test that must reboot does so on the
same overlay. Measured on 2 cores: 15-20 s for boot and install, about two minutes for the
module; the first run on a machine adds the rootfs build (60-90 s, needs the Debian mirror)
and the wheelhouse download (~10 s, needs the package index), about 3.3 minutes in all.
"""

from __future__ import annotations

import contextlib
import json
import os
import pwd
import re
import shutil
import socket
import time
import tomllib
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest
from support import REPO, nspawn
from support.sshd import Sshd, ensure_xroad_accounts, free_port, fresh_subdir
from support.tools import require_root, require_tool
from support.trees import age, snapshot
from support.waiting import until

from syncagent.daemon.service import STOP_GRACE
from syncagent.demo.sample_tree import build_primary_tree
from syncagent.excludes import PathFilter
from syncagent.xroad.paths import PROFILES

UNIT = "syncagent.service"
UNIT_FILE = REPO / "systemd" / "syncagent.service"
EXAMPLE_CONFIG = REPO / "systemd" / "syncagent.toml"
SYSTEMD_README = REPO / "systemd" / "README.md"
DEPLOYMENT_DOC = REPO / "docs" / "deployment.md"  # the unit's documented exposure
CONFIG = "/etc/syncagent/syncagent.toml"
CLI = "/opt/syncagent/bin/syncagent"
FLAG = "/var/tmp/xroad/sync-disabled"  # where IG-XLB's operators touch it
SRC = "/root/syncagent-src"  # the checkout the README's pip command installs
WHEELS = "/root/wheels"
DROPINS = f"/etc/systemd/system/{UNIT}.d"
STANDIN_DIR = "/run/standin"  # each stand-in writes what `systemctl is-active syncagent` said
SOURCE = ("pyproject.toml", "README.md", "syncagent", "systemd")  # what pip needs of the repo
OFFLINE_PIP = {"PIP_NO_INDEX": "1", "PIP_FIND_LINKS": WHEELS, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
# What the sandbox must never make the agent (or systemd, about it) say.
BAD = re.compile(
    r"EPERM|EACCES|SIGSYS|status=31|Permission denied|Operation not permitted|"
    r"Read-only file system|EROFS|Traceback",
    re.I,
)

T = TypeVar("T")
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))  # loopback: no proxy


def unit_settings() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for line in UNIT_FILE.read_text().splitlines():
        if "=" in line and not line.startswith(("#", ";")):
            key, _, value = line.partition("=")
            out.setdefault(key.strip(), []).append(value.strip())
    return out


def unit_env() -> dict[str, str]:
    return dict(e.split("=", 1) for e in unit_settings()["Environment"])


FLAG_SEEN_AS = unit_env()["SYNCAGENT_SYNC_DISABLE_FLAG"]  # the same file, through the bind
BEFORE = sorted(" ".join(unit_settings()["Before"]).split())  # the X-Road services
LISTEN = tomllib.loads(EXAMPLE_CONFIG.read_text())["http"]["listen"]
PORT_WAIT = 120  # seconds to wait for LISTEN to be free on the host
CONNECT_TIMEOUT = tomllib.loads(EXAMPLE_CONFIG.read_text())["primary"]["connect_timeout"]
XLB_FILTER = PathFilter.build(PROFILES["xlb"], protected=("/.syncagent/",))

STANDIN = """\
[Unit]
Description=Stand-in for {unit}: records whether syncagent was active when it started

[Service]
Type=oneshot
RemainAfterExit=yes
ExecStart=/bin/sh -c 'mkdir -p {dir} && systemctl is-active {agent} > {dir}/{unit} || true'

[Install]
WantedBy=multi-user.target
"""

# IG-XLB's /etc/systemd/system/xroad-sync.service (the machine has no rsync: ExecStart echoes).
LEGACY_SERVICE = """\
[Unit]
Description=X-Road Sync Task
After=network.target
Before=xroad-proxy.service
Before=xroad-signer.service
Before=xroad-confclient.service
Before=xroad-proxy-ui-api.service

[Service]
User=xroad
Group=xroad
Type=oneshot
Environment=XROAD_USER=xroad-slave
Environment=MASTER=127.0.0.1
ExecStartPre=/usr/bin/test ! -f /var/tmp/xroad/sync-disabled
ExecStart=/bin/echo rsync -e ssh -aqz ${XROAD_USER}@${MASTER}:/etc/xroad/ /etc/xroad/

[Install]
WantedBy=multi-user.target
WantedBy=xroad-proxy.service
"""

LEGACY_TIMER = """\
[Unit]
Description=Sync X-Road configuration

[Timer]
OnBootSec=60
OnUnitActiveSec=60

[Install]
WantedBy=timers.target
"""

# What the X-Road packages and the IG-XLB guide leave on a secondary before syncagent.
XROAD_PREP = """\
grep -q " {name}$" /etc/hosts || echo "127.0.1.1 {name}" >> /etc/hosts
useradd --system --user-group --home-dir /var/lib/xroad --create-home \\
    --shell /usr/sbin/nologin xroad
install -d -o xroad -g xroad -m 0751 /etc/xroad /etc/xroad/conf.d
printf '[node]\\ntype = slave\\n' > /etc/xroad/conf.d/node.ini
chown xroad:xroad /etc/xroad/conf.d/node.ini
chmod 0640 /etc/xroad/conf.d/node.ini
install -d -o xroad -g xroad -m 0700 /var/lib/xroad/.ssh
install -o xroad -g xroad -m 0600 /root/stage/id_rsa /var/lib/xroad/.ssh/id_rsa
install -o xroad -g xroad -m 0644 /root/stage/known_hosts /var/lib/xroad/.ssh/known_hosts
install -d -o xroad -g xroad -m 0750 /var/tmp/xroad
"""
NODE_INI = "[node]\ntype = slave\n"


def readme_commands(heading: str) -> list[str]:
    """The commands of the first indented block after ``heading`` in systemd/README.md."""
    lines = SYSTEMD_README.read_text().splitlines()
    start = lines.index(heading)
    block: list[str] = []
    for line in lines[start + 1 :]:
        if line.startswith("    "):
            block.append(line[4:])
        elif block or line.startswith("#"):  # its end, or the next section
            break
    assert block, f"no command block under {heading!r} in {SYSTEMD_README}"
    return block


def usec_utc(value: str) -> float:
    """``Mon 2026-11-23 10:00:00.123456 UTC`` (systemctl --timestamp=us+utc) as epoch seconds."""
    naive = datetime.strptime(value.removesuffix(" UTC"), "%a %Y-%m-%d %H:%M:%S.%f")
    return naive.replace(tzinfo=UTC).timestamp()


def iso(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()


@dataclass
class Host:
    """The booted secondary, and the primary it syncs from."""

    m: nspawn.Machine
    tree: Path  # the primary's /etc/xroad on the host, served by the sshd fixture

    # -- the agent, as systemd and its endpoints see it --

    def props(self, unit: str = UNIT) -> dict[str, str]:
        return self.m.show(
            unit,
            "ActiveState",
            "SubState",
            "Result",
            "MainPID",
            "NRestarts",
            "StatusText",
            "ExecMainStatus",
            "ActiveEnterTimestampMonotonic",
            "ExecMainStartTimestampMonotonic",
            "DropInPaths",
        )

    def active(self) -> bool:
        p = self.m.show(UNIT, "ActiveState", "SubState")
        return (p["ActiveState"], p["SubState"]) == ("active", "running")

    def realtime(self, unit: str, prop: str) -> float:
        out = self.m.systemctl("show", "--timestamp=us+utc", f"--property={prop}", unit).stdout
        return usec_utc(out.strip().partition("=")[2])

    def get(self, path: str) -> str:
        try:
            with _OPENER.open(f"http://{LISTEN}{path}", timeout=3) as resp:
                return str(resp.read().decode())
        except (urllib.error.URLError, OSError):
            return ""

    def status(self) -> dict[str, Any]:
        body = self.get("/status")
        return dict(json.loads(body)) if body else {}

    def events(self, after: str) -> list[dict[str, Any]]:
        """The agent's JSON log lines in the journal since the cursor ``after``."""
        out: list[dict[str, Any]] = []
        for line in self.m.journal(UNIT, after=after, output="cat").splitlines():
            if line.startswith("{"):
                with contextlib.suppress(ValueError):
                    out.append(json.loads(line))
        return out

    def start(self) -> None:
        self.m.systemctl("start", UNIT)
        assert self.active(), self.props()

    def xroad(self, *argv: str, check: bool = True) -> str:
        return self.m.run("sudo", "-u", "xroad", *argv, check=check).stdout

    @contextlib.contextmanager
    def dropin(self, name: str, text: str) -> Iterator[None]:
        path = self.m.path(f"{DROPINS}/50-test-{name}.conf")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        self.m.systemctl("daemon-reload")
        try:
            yield
        finally:
            path.unlink(missing_ok=True)
            self.m.systemctl("daemon-reload")

    # -- trees --

    def put(self, rel: str, content: bytes) -> None:
        """A change on the primary, aged so that ``sync.settle`` does not hold it back."""
        path = self.tree / rel
        path.write_bytes(content)
        age(self.tree)

    def live(self, rel: str = "") -> Path:
        return self.m.path(f"/etc/xroad/{rel}")

    def assert_live_is_primary(self) -> None:
        primary = snapshot(self.tree, XLB_FILTER)
        live = snapshot(self.live(), XLB_FILTER)
        assert live == primary, {
            "missing": sorted(primary.keys() - live.keys()),
            "extra": sorted(live.keys() - primary.keys()),
            "differ": sorted(k for k in primary.keys() & live.keys() if primary[k] != live[k]),
        }
        assert self.live("conf.d/node.ini").read_text() == NODE_INI
        assert not self.live(".syncagent/journal.json").exists()


# ---- fixtures -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def rootfs() -> Path:
    require_root("systemd-nspawn, overlay mounts, the accounts of the primary")
    for tool in ("systemd-nspawn", "debootstrap", "nsenter", "mount"):
        require_tool(tool)
    nspawn.reap_stale()
    return nspawn.ensure_rootfs()


@pytest.fixture(scope="module")
def wheelhouse(rootfs: Path) -> Path:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    reqs = [*project["project"]["dependencies"], *project["build-system"]["requires"], "wheel"]
    return nspawn.ensure_wheelhouse(reqs, nspawn.rootfs_python(rootfs))


@pytest.fixture(scope="module")
def xlb_primary(tree_area: Path) -> Path:
    """A primary's /etc/xroad (owned by xroad, an hour old) that every sshd can serve."""
    ensure_xroad_accounts()
    pw = pwd.getpwnam("xroad")
    root = fresh_subdir(tree_area, "xroad")
    build_primary_tree(root, mtime=time.time() - 3600, owner=(pw.pw_uid, pw.pw_gid))
    return root


def install(m: nspawn.Machine, sshd: Sshd, tree: Path, wheelhouse: Path) -> None:
    stage = m.path("/root/stage")
    stage.mkdir(parents=True)
    shutil.copy2(sshd.client_key, stage / "id_rsa")
    (stage / "known_hosts").write_text(sshd.known_hosts_line())
    shutil.copytree(wheelhouse, m.path(WHEELS))
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "build")
    m.path(SRC).mkdir(parents=True)
    for part in SOURCE:
        src = REPO / part
        if src.is_dir():
            shutil.copytree(src, m.path(f"{SRC}/{part}"), ignore=ignore)
        else:
            shutil.copy2(src, m.path(f"{SRC}/{part}"))
    m.sh(XROAD_PREP.format(name=m.name))

    commands = readme_commands("## Install")
    assert any("/path/to/syncagent" in c for c in commands), commands
    assert any("# then edit host" in c for c in commands), commands
    for command in commands:
        res = m.sh(
            f"cd {SRC} && " + command.replace("/path/to/syncagent", SRC),
            check=False,
            env=OFFLINE_PIP,
            timeout=300,
        )
        assert res.returncode == 0, f"{command}\n{res.stdout}\n{res.stderr}"
        if "# then edit host" in command:  # the operator's edit: where the primary is
            edit_config(m.path(CONFIG), sshd, tree)


def edit_config(path: Path, sshd: Sshd, tree: Path) -> None:
    text = path.read_text()
    for pattern, value in (
        (r'^host = ".*"$', 'host = "127.0.0.1"'),
        (r"^port = 22$", f"port = {sshd.port}"),
        (r'^remote_root = ".*"$', f'remote_root = "{tree}"'),
    ):
        text, n = re.subn(pattern, value, text, count=1, flags=re.M)
        assert n == 1, f"{pattern} not in {path}"
    path.write_text(text)


@pytest.fixture(scope="module")
def host(rootfs: Path, wheelhouse: Path, sshd: Sshd, xlb_primary: Path) -> Iterator[Host]:
    # The booted agent listens on the host's loopback, at the example config's port, which the
    # migration notes curl: wait a while for something else there (a test container) to end.
    address, _, port = LISTEN.rpartition(":")

    def port_free() -> bool:
        with socket.socket() as probe:
            try:
                probe.bind((address, int(port)))
            except OSError:
                return False
            return True

    deadline = time.monotonic() + PORT_WAIT
    while not port_free():
        if time.monotonic() > deadline:
            pytest.fail(f"{LISTEN}, where the booted agent listens, is taken on this host")
        time.sleep(1)
    with nspawn.Machine(rootfs) as m:
        m.start()
        install(m, sshd, xlb_primary, wheelhouse)
        for unit in BEFORE:
            m.path(f"/etc/systemd/system/{unit}").write_text(
                STANDIN.format(unit=unit, dir=STANDIN_DIR, agent=UNIT)
            )
        m.systemctl("daemon-reload")
        yield Host(m, xlb_primary)


@pytest.fixture
def agent(host: Host) -> Iterator[Host]:
    """The agent running under the shipped unit alone, /var/tmp/xroad present, no flag."""
    m = host.m
    leftovers = list(m.path(DROPINS).glob("50-test-*.conf")) if m.path(DROPINS).is_dir() else []
    for path in leftovers:
        path.unlink()
    if leftovers:
        m.systemctl("daemon-reload")
    m.sh(f"install -d -o xroad -g xroad -m 0750 /var/tmp/xroad && rm -f {FLAG}")
    if leftovers or not host.active():
        m.systemctl("stop", UNIT, check=False)
        m.systemctl("reset-failed", UNIT, check=False)
        host.start()
    cursor = m.cursor()
    yield host
    print(f"--- journal of {UNIT} during the test ---")
    print("\n".join(m.journal(UNIT, after=cursor).splitlines()[-60:]))


# ---- tests ----------------------------------------------------------------------------------


def test_start_is_active_only_after_ready_which_follows_the_first_sync(agent: Host) -> None:
    m = agent.m
    m.systemctl("stop", UNIT)
    cursor = m.cursor()
    m.systemctl("start", "--no-block", UNIT)
    seen: list[str] = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        p = m.show(UNIT, "ActiveState", "SubState")
        state = f"{p['ActiveState']}/{p['SubState']}"
        if not seen or seen[-1] != state:
            seen.append(state)
        if p["ActiveState"] in ("active", "failed"):
            break
        time.sleep(0.02)
    assert "activating/start" in seen and seen[-1] == "active/running", seen
    # READY=1 came after the first sync: the agent logged it before systemd saw READY.
    started = agent.realtime(UNIT, "ExecMainStartTimestamp")
    active = agent.realtime(UNIT, "ActiveEnterTimestamp")
    first = next(e for e in agent.events(cursor) if e.get("event") == "sync")
    assert first["why"] == "first sync" and first["result"] in ("applied", "unchanged"), first
    assert started < iso(first["timestamp"]) < active, (started, first, active)
    assert agent.props()["StatusText"] == f"generation {agent.status()['generation']}"


def test_first_sync_applies_under_the_full_sandbox(agent: Host) -> None:
    m = agent.m
    m.systemctl("stop", UNIT)
    # A secondary that never synced: only its node-local node.ini, no state dir.
    m.sh(
        "find /etc/xroad -mindepth 1 -not -path /etc/xroad/conf.d "
        "-not -path /etc/xroad/conf.d/node.ini -delete"
    )
    assert sorted(os.listdir(agent.live())) == ["conf.d"]
    cursor = m.cursor()
    agent.start()
    syncs = [e for e in agent.events(cursor) if e.get("event") == "sync"]
    assert syncs and syncs[0]["why"] == "first sync" and syncs[0]["result"] == "applied", syncs
    agent.assert_live_is_primary()
    assert m.sh("find /etc/xroad -not -user xroad -o -not -group xroad").stdout == ""
    # The kernel's view of the agent: the sandbox really applied.
    pid = agent.props()["MainPID"]
    status = m.run("cat", f"/proc/{pid}/status").stdout
    fields = dict(re.findall(r"^(\w+):\s+(.*)$", status, re.M))
    assert fields["NoNewPrivs"] == "1" and fields["Seccomp"] == "2", fields
    for cap in ("CapEff", "CapPrm", "CapBnd", "CapAmb"):
        assert int(fields[cap], 16) == 0, (cap, fields[cap])
    uid = m.run("id", "-u", "xroad").stdout.strip()
    uid_map = [line.split() for line in m.run("cat", f"/proc/{pid}/uid_map").stdout.splitlines()]
    assert sorted(uid_map) == sorted([["0", "0", "1"], [uid, uid, "1"]])  # PrivateUsers
    mounts = {
        f[4]: f[5].split(",")
        for f in (ln.split() for ln in m.run("cat", f"/proc/{pid}/mountinfo").stdout.splitlines())
    }
    assert "ro" in mounts["/"] and "rw" in mounts["/etc/xroad"]
    assert "ro" in mounts["/run/syncagent/host-var-tmp"]
    assert "ro" in mounts["/home"] and "ro" in mounts["/root"]
    assert agent.status()["last_result"] == "applied"


def test_journal_has_no_permission_errors_and_no_sigsys(agent: Host) -> None:
    """A lifecycle (start, a sync, the CLI next to the unit, pause, stop) twice: with the unit as
    shipped, where a blocked call fails with EPERM, and with a drop-in resetting
    ``SystemCallErrorNumber=``, where any call the filter blocks kills the agent with SIGSYS."""
    m = agent.m

    def lifecycle(probe: str) -> None:
        cursor = m.cursor()
        m.systemctl("restart", UNIT)
        agent.put(f"conf.d/{probe}.ini", f"[probe]\nname = {probe}\n".encode())
        m.systemctl("reload", UNIT)
        until(lambda: agent.live(f"conf.d/{probe}.ini").exists(), "the probe applied", 15)
        for command in ("pause", "status", "resume", "sync-now"):
            agent.xroad(CLI, "--config", CONFIG, command, check=command != "status")
        until(lambda: not agent.status().get("paused"), "resumed", 10)
        before = agent.props()
        m.systemctl("stop", UNIT)
        after = agent.props()
        journal = m.journal(UNIT, after=cursor)
        assert before["NRestarts"] == "0" and before["ActiveState"] == "active", before
        assert (after["Result"], after["ExecMainStatus"]) == ("success", "0"), (after, journal)
        assert [line for line in journal.splitlines() if BAD.search(line)] == [], journal

    lifecycle("shipped")
    with agent.dropin("seccomp-kill", "[Service]\nSystemCallErrorNumber=\n"):
        assert m.show(UNIT, "SystemCallErrorNumber")["SystemCallErrorNumber"] != "1"  # not EPERM
        lifecycle("seccomp-kill")


def test_reload_syncs_now(agent: Host) -> None:
    cursor = agent.m.cursor()
    agent.put("conf.d/reload.ini", b"[probe]\nreload = 1\n")
    agent.m.systemctl("reload", UNIT)
    until(lambda: agent.live("conf.d/reload.ini").exists(), "the reload's sync", 5)
    syncs = [e for e in agent.events(cursor) if e.get("event") == "sync"]
    assert any(e["why"] == "SIGHUP" and e["result"] == "applied" for e in syncs), syncs


def assert_flag_pauses_and_resumes(agent: Host, probe: str, within: float = 3) -> None:
    agent.xroad("touch", FLAG)
    until(lambda: agent.status().get("paused"), "paused by the flag", within)
    assert agent.status()["paused_by"] == [FLAG_SEEN_AS]
    assert "syncagent_paused 1.0" in agent.get("/metrics")
    cursor = agent.m.cursor()
    agent.put(f"conf.d/{probe}.ini", f"[probe]\nname = {probe}\n".encode())
    agent.m.systemctl("reload", UNIT)
    until(
        lambda: any(e.get("event") == "sync_skipped" for e in agent.events(cursor)),
        "the reload's sync skipped",
        10,
    )
    assert not agent.live(f"conf.d/{probe}.ini").exists()
    agent.xroad("rm", FLAG)
    until(lambda: agent.live(f"conf.d/{probe}.ini").exists(), "resumed and applied", within + 3)
    assert agent.status()["paused"] is False
    assert "syncagent_paused 0.0" in agent.get("/metrics")


def test_sync_disabled_flag_pauses_and_its_removal_resumes(agent: Host) -> None:
    assert_flag_pauses_and_resumes(agent, "pause")


def recreate_var_tmp_xroad(agent: Host) -> None:
    """rm -rf and re-creation of /var/tmp/xroad while the agent runs (by hand, by a cleanup
    script, by tmpfiles aging it out); the flag is touched later, as at the next upgrade."""
    agent.m.sh("rm -rf /var/tmp/xroad && install -d -o xroad -g xroad -m 0750 /var/tmp/xroad")
    time.sleep(1)


def test_sync_disabled_flag_works_after_var_tmp_xroad_is_recreated(agent: Host) -> None:
    """The unit binds the host's /var/tmp, so the agent sees the new directory (a bind of
    /var/tmp/xroad itself kept the deleted one: the flag was ignored for good)."""
    recreate_var_tmp_xroad(agent)
    assert_flag_pauses_and_resumes(agent, "recreated")


def test_sync_disabled_flag_is_noticed_at_once_after_var_tmp_xroad_is_recreated(
    agent: Host,
) -> None:
    """syncagent.fswatch starts a watch over when a watched directory itself is deleted (made
    again at once, it may even get the same inode number): noticed in seconds, not at the
    heartbeat."""
    recreate_var_tmp_xroad(agent)
    agent.xroad("touch", FLAG)
    try:
        until(lambda: agent.status().get("paused"), "paused by the flag", 3)
    finally:
        agent.xroad("rm", "-f", FLAG)
        agent.m.systemctl("restart", UNIT)  # rather than wait for the heartbeat


def test_sync_disabled_flag_works_when_var_tmp_xroad_is_created_after_start(agent: Host) -> None:
    agent.m.systemctl("stop", UNIT)
    agent.m.run("rm", "-rf", "/var/tmp/xroad")
    agent.start()
    agent.m.run("install", "-d", "-o", "xroad", "-g", "xroad", "-m", "0750", "/var/tmp/xroad")
    assert_flag_pauses_and_resumes(agent, "created-later")


def test_watchdog_kills_a_stopped_agent_and_restart_leaves_a_consistent_tree(agent: Host) -> None:
    """The shipped WatchdogSec=60s is shortened to 5s by a drop-in (the mechanism is the same);
    RestartSec stays as shipped. The primary changes while the agent hangs."""
    m = agent.m
    with agent.dropin("watchdog", "[Service]\nWatchdogSec=5s\n"):
        m.systemctl("restart", UNIT)
        before = agent.props()
        pid = before["MainPID"]
        environ = m.run("cat", f"/proc/{pid}/environ").stdout.split("\0")
        assert "PYTHONFAULTHANDLER=1" in environ
        cursor = m.cursor()
        m.run("kill", "-STOP", pid)
        agent.put("conf.d/watchdog.ini", b"[probe]\nwatchdog = 1\n")
        until(
            lambda: agent.active() and agent.props()["MainPID"] not in ("0", pid),
            "killed by the watchdog and restarted",
            30,
        )
        after = agent.props()
    assert int(after["NRestarts"]) == int(before["NRestarts"]) + 1
    journal = m.journal(UNIT, after=cursor)
    assert "Watchdog timeout" in journal and "signal SIGABRT" in journal, journal
    # PYTHONFAULTHANDLER: where the agent was when it was killed, every thread's stack.
    assert "Fatal Python error: Aborted" in journal, journal
    assert re.search(r"(Current thread|Thread) 0x[0-9a-f]+", journal), journal
    until(lambda: agent.live("conf.d/watchdog.ini").exists(), "the change applied", 10)
    agent.assert_live_is_primary()
    assert agent.status()["last_result"] in ("applied", "unchanged")


def test_a_bad_setting_ends_failed_not_in_a_restart_loop(agent: Host) -> None:
    m = agent.m
    cursor = m.cursor()
    with agent.dropin("bad-setting", "[Service]\nEnvironment=SYNCAGENT_SYNC_INTERVAL=sixty\n"):
        res = m.systemctl("restart", UNIT, check=False)
        assert res.returncode != 0
        restart_sec = int(m.show(UNIT, "RestartUSec")["RestartUSec"].removesuffix("s"))
        time.sleep(restart_sec + 1.5)  # past the moment a restart would have come
        p = agent.props()
    assert (p["ActiveState"], p["SubState"], p["Result"]) == ("failed", "failed", "exit-code"), p
    assert (p["ExecMainStatus"], p["NRestarts"]) == ("2", "0"), p
    journal = m.journal(UNIT, after=cursor)
    assert journal.count("sync.interval (env SYNCAGENT_SYNC_INTERVAL)") == 1, journal
    assert "Scheduled restart job" not in journal, journal


def test_stop_is_clean_within_timeout_stop_sec(agent: Host) -> None:
    m = agent.m
    limit = m.show(UNIT, "TimeoutStopUSec")["TimeoutStopUSec"]
    assert limit == "30s"
    cursor = m.cursor()
    started = time.monotonic()
    m.systemctl("stop", UNIT)
    took = time.monotonic() - started
    p = agent.props()
    journal = m.journal(UNIT, after=cursor)
    assert took < 5, took  # a stop is seconds; 30 s would mean a SIGKILL
    assert (p["ActiveState"], p["Result"], p["ExecMainStatus"]) == ("inactive", "success", "0"), p
    assert [e["event"] for e in agent.events(cursor)][-1] == "stopped", journal
    assert not re.search(r"SIGKILL|timed out|Killing", journal), journal


def start_xroad_standins(agent: Host) -> dict[str, str]:
    """Start every stand-in with the agent stopped; return what each saw of the agent.

    xroad-proxy first: it pulls the enabled agent in (``WantedBy=``), and ``Before=`` orders
    the other services' jobs after the agent's once that is queued. (systemctl queues each unit
    named on its command line as its own transaction, in order; at boot all are one.)"""
    m = agent.m
    m.systemctl("stop", *BEFORE, UNIT)
    m.run("rm", "-rf", STANDIN_DIR)
    m.systemctl("start", "xroad-proxy.service", *(u for u in BEFORE if u != "xroad-proxy.service"))
    return {unit: m.run("cat", f"{STANDIN_DIR}/{unit}").stdout.strip() for unit in BEFORE}


def assert_standins_after_ready(agent: Host, seen: dict[str, str]) -> None:
    assert set(seen.values()) == {"active"}, seen
    agent_p = agent.props()
    ready = int(agent_p["ActiveEnterTimestampMonotonic"])
    assert int(agent_p["ExecMainStartTimestampMonotonic"]) < ready
    for unit in BEFORE:
        assert int(agent.props(unit)["ExecMainStartTimestampMonotonic"]) >= ready, unit


def test_xroad_services_start_after_ready(agent: Host) -> None:
    agent.m.systemctl("enable", UNIT)
    assert agent.m.path(f"/etc/systemd/system/xroad-proxy.service.wants/{UNIT}").is_symlink()
    assert_standins_after_ready(agent, start_xroad_standins(agent))


def test_xroad_services_start_after_ready_when_the_primary_refuses(agent: Host) -> None:
    """READY=1 follows the first sync *attempt*: a refused connection holds X-Road back for
    at most connect_timeout + 2 s (the agent's bound on that attempt), not until it succeeds."""
    agent.m.systemctl("enable", UNIT)
    closed = free_port()
    with agent.dropin("refused", f"[Service]\nEnvironment=SYNCAGENT_PRIMARY_PORT={closed}\n"):
        seen = start_xroad_standins(agent)
        assert_standins_after_ready(agent, seen)
        status = agent.status()
        exec_start = int(agent.props()["ExecMainStartTimestampMonotonic"])
        proxy = int(agent.props("xroad-proxy.service")["ExecMainStartTimestampMonotonic"])
    assert status["last_result"] == "failed" and status["generation"], status
    assert (proxy - exec_start) / 1e6 < CONNECT_TIMEOUT + 2


def test_xroad_services_start_after_timeout_start_sec_when_the_primary_hangs(
    agent: Host,
) -> None:
    """A primary that accepts TCP but never speaks SSH keeps the first attempt (and READY)
    waiting for connect_timeout (5 s); a drop-in shortens TimeoutStartSec to 3 s, below it, so
    systemd gives up the start (SIGTERM), and once the agent has stopped (within twice
    STOP_GRACE: the sync worker, then the other tasks) the X-Road services start. Restart=
    then retries the agent."""
    m = agent.m
    m.systemctl("enable", UNIT)
    with socket.socket() as hung:
        hung.bind(("127.0.0.1", 0))
        hung.listen(16)  # never accepted: the kernel completes the handshakes, nobody answers
        port = hung.getsockname()[1]
        text = f"[Service]\nEnvironment=SYNCAGENT_PRIMARY_PORT={port}\nTimeoutStartSec=3s\n"
        with agent.dropin("hung", text):
            cursor = m.cursor()
            seen = start_xroad_standins(agent)
            exec_start = int(agent.props()["ExecMainStartTimestampMonotonic"])
            waited = [
                (int(agent.props(unit)["ExecMainStartTimestampMonotonic"]) - exec_start) / 1e6
                for unit in BEFORE
            ]
            journal = m.journal(UNIT, after=cursor)
            m.systemctl("stop", UNIT)
    assert "active" not in seen.values(), seen
    assert all(3.0 <= w < 3.0 + 2 * STOP_GRACE + 1.0 for w in waited), waited
    assert "start operation timed out" in journal, journal
    assert "Failed with result 'timeout'" in journal, journal


def test_xroad_services_start_after_ready_at_boot(agent: Host) -> None:
    m = agent.m
    m.systemctl("enable", UNIT, *BEFORE)
    assert m.poweroff(), m.console_tail()
    m.start()
    until(
        lambda: all(m.path(f"{STANDIN_DIR}/{u}").exists() for u in BEFORE),
        "the stand-ins started at boot",
        60,
    )
    seen = {u: m.path(f"{STANDIN_DIR}/{u}").read_text().strip() for u in BEFORE}
    assert_standins_after_ready(agent, seen)


def test_security_exposure_in_the_booted_system_is_the_documented_one(agent: Host) -> None:
    claims = [
        re.findall(r"exposure \*\*([\d.]+ \w+)\*\*", DEPLOYMENT_DOC.read_text()),
        re.findall(r"rates it \*\*([\d.]+ \w+)\*\*", SYSTEMD_README.read_text()),
    ]
    assert claims == [["1.2 OK"], ["1.2 OK"]], claims
    assert agent.props()["DropInPaths"] == ""  # the shipped unit, nothing else
    for argv in (
        ("systemd-analyze", "security", "--no-pager", UNIT),
        (
            "systemd-analyze",
            "security",
            "--no-pager",
            "--offline=yes",
            f"/etc/systemd/system/{UNIT}",
        ),
    ):
        out = agent.m.run(*argv, check=False).stdout
        found = re.search(r"Overall exposure level for \S+: ([\d.]+ \w+)", out)
        assert found and found.group(1) == "1.2 OK", out[-1500:]


PUBLISH_UNIT = "syncagent-publish.service"


def test_the_publisher_unit_publishes_under_its_sandbox(agent: Host) -> None:
    """systemd/syncagent-publish.service, for IG-XLB primaries, run as shipped but for where its
    source is (a drop-in: this machine is a secondary, the primary's tree is copied in)."""
    m = agent.m
    unit = m.path(f"/etc/systemd/system/{PUBLISH_UNIT}")
    unit.write_text((REPO / "systemd" / PUBLISH_UNIT).read_text())
    source = "/srv/primary/etc-xroad"
    shutil.copytree(agent.tree, m.path(source), symlinks=True)
    m.sh(f"chown -R xroad:xroad /srv/primary && chmod 0751 /srv/primary {source}")
    dropins = m.path(f"/etc/systemd/system/{PUBLISH_UNIT}.d")
    dropins.mkdir(exist_ok=True)
    (dropins / "50-test-source.conf").write_text(
        f"[Service]\nEnvironment=SYNCAGENT_PUBLISH_SOURCE={source}\n"
        "Environment=SYNCAGENT_PUBLISH_SETTLE=0\n"
    )
    m.systemctl("daemon-reload")
    cursor = m.cursor()
    try:
        m.systemctl("start", PUBLISH_UNIT)
        head = m.path("/var/lib/syncagent/publish/HEAD")
        until(head.exists, "the publisher's first HEAD", 30)
        assert m.show(PUBLISH_UNIT, "ActiveState")["ActiveState"] == "active"
        pub = m.path("/var/lib/syncagent/publish")
        xroad_gid = int(m.run("id", "-g", "xroad").stdout)
        assert oct(pub.stat().st_mode & 0o777) == "0o750" and pub.stat().st_gid == xroad_gid
        assert oct(head.stat().st_mode & 0o777) == "0o640" and head.stat().st_gid == xroad_gid
        out = m.run("systemd-analyze", "security", "--no-pager", PUBLISH_UNIT, check=False).stdout
        found = re.search(r"Overall exposure level for \S+: ([\d.]+) (\w+)", out)
        assert found and float(found.group(1)) <= 0.5, out[-1500:]
        m.systemctl("stop", PUBLISH_UNIT)
        props = m.show(PUBLISH_UNIT, "Result", "ExecMainStatus")
        assert props == {"Result": "success", "ExecMainStatus": "0"}, props
        journal = m.journal(PUBLISH_UNIT, after=cursor)
        for word in ("EPERM", "EACCES", "SIGSYS", "Permission denied", "Traceback"):
            assert word not in journal, journal[-3000:]
    finally:
        m.systemctl("stop", PUBLISH_UNIT, check=False)
        shutil.rmtree(dropins, ignore_errors=True)
        unit.unlink(missing_ok=True)
        m.systemctl("daemon-reload")


def test_migration_from_xroad_sync_runs_as_written(agent: Host) -> None:
    """A host as IG-XLB left it (xroad-sync.service + timer enabled, the timer running) with
    syncagent installed but not enabled; then the README's commands, verbatim."""
    m = agent.m
    m.systemctl("disable", "--now", UNIT)
    m.path("/etc/systemd/system/xroad-sync.service").write_text(LEGACY_SERVICE)
    m.path("/etc/systemd/system/xroad-sync.timer").write_text(LEGACY_TIMER)
    m.systemctl("daemon-reload")
    m.systemctl("enable", "--now", "xroad-sync.timer")
    m.systemctl("enable", "xroad-sync.service")
    wants = "ls /etc/systemd/system/*.wants/"
    before = m.sh(wants).stdout
    assert "xroad-sync.timer" in before and "xroad-sync.service" in before and UNIT not in before

    outputs = []
    for command in readme_commands("## Migrating from xroad-sync.service + timer"):
        res = m.sh(command, check=False)
        assert res.returncode == 0, f"{command}\n{res.stdout}\n{res.stderr}"
        outputs.append(res.stdout)

    after = m.sh(wants).stdout
    assert "xroad-sync" not in after, after
    for wanted_by in ("multi-user.target", "xroad-proxy.service"):
        assert m.path(f"/etc/systemd/system/{wanted_by}.wants/{UNIT}").is_symlink()
    listed = m.systemctl("list-unit-files", "xroad-sync*", check=False).stdout
    assert "0 unit files listed" in listed, listed
    assert m.systemctl("is-active", "xroad-sync.timer", check=False).stdout.strip() == "inactive"
    assert agent.active()
    status = json.loads(outputs[-1].strip().splitlines()[-1])  # curl's, after systemctl's
    assert status["last_result"] in ("applied", "unchanged"), status
