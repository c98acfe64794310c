"""The secondary image for real: docker/Dockerfile built with podman and run.

The base is the stand-in docker/standin/build.py makes (Debian bookworm, Python 3.11; what the
real secondary sidecar image gives the Dockerfile and the agent, with placeholder X-Road
programs), since no registry is reachable here. The Dockerfile is built unchanged; the only
test-specific inputs are BASE and WHEELHOUSE (pip takes every package from wheels the host
downloaded). The containers run on the host network against the tests' real OpenSSH primary
(the `sshd` fixture: `ForceCommand internal-sftp -R` for xroad-slave) with the SSH key and the
primary's known_hosts mounted read-only, as the Kubernetes Secrets are (root-owned, 0644). Each
container gets free ports for the agent's HTTP and the stand-in's health check.

podman's quirks on these machines live in tests/support/podman.py. With CI=true a missing
podman, runc or debootstrap fails the run.
"""

from __future__ import annotations

import configparser
import hashlib
import json
import os
import pwd
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from support import REPO
from support.podman import (
    IMAGE,
    STANDIN,
    STANDIN_OLD,
    STANDIN_PYTHON,
    Container,
    Podman,
    built,
)
from support.sshd import Sshd, free_port, fresh_subdir, make_traversable_dir
from support.trees import age
from support.waiting import get, until

from syncagent.demo.sample_tree import build_primary_tree
from syncagent.excludes import PathFilter
from syncagent.xroad.paths import PROFILES

DOCKER = REPO / "docker"
STANDIN_ROOTFS = DOCKER / "standin" / "rootfs"
STRIP = DOCKER / "strip_first_sync.py"
KEYCONF = "signer/keyconf.xml"
PROGRAMS = ("xroad-confclient", "xroad-signer", "xroad-proxy", "xroad-proxy-ui-api")
SIDECAR = PathFilter.build(PROFILES["sidecar"], protected=("/.syncagent/",))


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def xroad_ids() -> tuple[int, int]:
    pw = pwd.getpwnam("xroad")  # the sshd fixture made the accounts
    return pw.pw_uid, pw.pw_gid


def new_primary(area: Path, *, empty: bool = False) -> Path:
    root = fresh_subdir(area, "xroad")
    if not empty:
        build_primary_tree(root, mtime=time.time() - 3600, owner=xroad_ids())
    return root


# ---- images (built once per session, cached across runs) ----------------------------------------


@dataclass
class Images:
    podman: Podman
    build_output: str
    timings: dict[str, float] = field(default_factory=dict)


@pytest.fixture(scope="module")
def images() -> Iterator[Images]:
    """The stand-ins and the images, built once per session (support.podman.built, shared with
    test_kube.py)."""
    done = built(Podman.here())
    yield Images(done.podman, done.outputs[IMAGE], done.timings)


# ---- the primary and what a pod mounts ----------------------------------------------------------


@dataclass
class Pod:
    """What the Deployment gives the container: Secrets mounted read-only, env."""

    sshd: Sshd
    base: Path

    @classmethod
    def for_sshd(cls, sshd: Sshd) -> Pod:
        base = make_traversable_dir("syncagent-pod-")
        ssh = base / "ssh"  # secret-ssh-keys: items id_rsa, id_rsa.pub, mode 0644, root's
        ssh.mkdir(mode=0o755)
        shutil.copyfile(sshd.client_key, ssh / "id_rsa")
        shutil.copyfile(f"{sshd.client_key}.pub", ssh / "id_rsa.pub")
        known = base / "known_hosts"  # secret-primary-known-hosts, defaultMode 0444
        known.mkdir(mode=0o755)
        (known / "known_hosts").write_text(sshd.known_hosts_line())
        for f in (ssh / "id_rsa", ssh / "id_rsa.pub", known / "known_hosts"):
            f.chmod(0o644 if f.parent == ssh else 0o444)
        return cls(sshd, base)

    @property
    def mounts(self) -> list[str]:
        return [
            f"{self.base / 'ssh'}:/etc/.ssh:ro",
            f"{self.base / 'known_hosts'}:/etc/syncagent/known_hosts:ro",
        ]

    def env(self, remote: Path, **extra: str) -> dict[str, str]:
        health = free_port()
        return {
            "XROAD_PRIMARY_DNS": "127.0.0.1",
            "SYNCAGENT_PRIMARY_PORT": str(self.sshd.port),
            "SYNCAGENT_PRIMARY_REMOTE_ROOT": str(remote),
            "SYNCAGENT_PRIMARY_CONNECT_TIMEOUT": "3",
            "SYNCAGENT_HTTP_LISTEN": f"127.0.0.1:{free_port()}",
            "SYNCAGENT_HTTP_UPSTREAM_HEALTH_URL": f"http://127.0.0.1:{health}/",
            "XROAD_STANDIN_HEALTH_PORT": str(health),
            "SYNCAGENT_SYNC_INTERVAL": "1",
            "SYNCAGENT_SYNC_SETTLE": "0",
            "SYNCAGENT_FIRST_SYNC_BUDGET": "30",
            "SYNCAGENT_FIRST_SYNC_RETRY": "1",
            "XROAD_ADMIN_USER": "xrd-admin",
            "XROAD_ADMIN_PASSWORD": "not-a-real-password",
            **extra,
        }

    def close(self) -> None:
        shutil.rmtree(self.base, ignore_errors=True)


@dataclass
class Secondary:
    c: Container
    env: dict[str, str]
    remote: Path

    @property
    def url(self) -> str:
        return "http://" + self.env["SYNCAGENT_HTTP_LISTEN"]

    def get(self, path: str) -> tuple[int, str]:
        return get(self.url + path)

    def readyz(self) -> int:
        return self.get("/readyz")[0]

    def metrics(self) -> str:
        status, body = self.get("/metrics")
        assert status == 200, status
        return body

    def record(self, program: str) -> dict[str, Any] | None:
        """What a stand-in X-Road program recorded when it started (None: never started)."""
        res = self.c.exec("cat", f"/var/run/xroad/standin/{program}.json")
        return json.loads(res.stdout) if res.returncode == 0 else None

    def tree(self) -> dict[str, tuple[str, str]]:
        """/etc/xroad in the container: path -> (kind, sha256), state dir left out."""
        script = (
            "import hashlib, json, os\n"
            "out = {}\n"
            "for d, dirs, files in os.walk('/etc/xroad'):\n"
            "    rel = os.path.relpath(d, '/etc/xroad')\n"
            "    dirs[:] = [x for x in dirs if not (rel == '.' and x == '.syncagent')]\n"
            "    for x in dirs:\n"
            "        out[os.path.normpath(os.path.join(rel, x))] = ['dir', '']\n"
            "    for x in files:\n"
            "        p = os.path.join(d, x)\n"
            "        out[os.path.normpath(os.path.join(rel, x))] = ['file', hashlib.sha256("
            "open(p, 'rb').read()).hexdigest()]\n"
            "print(json.dumps(out))\n"
        )
        res = self.c.exec("python3", "-c", script, check=True)
        return {k: tuple(v) for k, v in json.loads(res.stdout).items()}

    def diagnostics(self) -> str:
        return f"--- podman logs {self.c.name}:\n{self.c.logs()[-6000:]}"


def managed(rel: str, is_dir: bool) -> bool:
    """Whether the sidecar profile syncs ``rel``, or seeds it (globalconf/, the profile's
    default sync.seed: copied from the primary while the node has none, as here)."""
    if rel == "globalconf" or rel.startswith("globalconf/"):
        return True
    parts = rel.split("/")
    if not all(SIDECAR.descend("/".join(parts[:i])) for i in range(1, len(parts))):
        return False
    return not SIDECAR.excluded(rel, is_dir)


def primary_view(remote: Path) -> dict[str, tuple[str, str]]:
    """What a fresh secondary gets of the primary's tree: path -> (kind, sha256)."""
    out: dict[str, tuple[str, str]] = {}
    for dirpath, dirnames, filenames in os.walk(remote):
        rel_dir = os.path.relpath(dirpath, remote)
        for name in dirnames:
            rel = os.path.normpath(os.path.join(rel_dir, name))
            if managed(rel, True):
                out[rel] = ("dir", "")
        for name in filenames:
            rel = os.path.normpath(os.path.join(rel_dir, name))
            if managed(rel, False):
                out[rel] = ("file", sha256(Path(dirpath) / name))
    return out


def assert_tree_is_the_primarys(sec: Secondary) -> None:
    want = primary_view(sec.remote)
    got = sec.tree()
    differ = sorted(p for p in want if got.get(p) != want[p])
    assert not differ, f"differs from the primary: {differ[:10]}"
    extra = sorted(p for p in got if p not in want and managed(p, got[p][0] == "dir"))
    assert not extra, f"synced paths the primary does not have: {extra[:10]}"


def start(
    images: Images,
    pod: Pod,
    remote: Path,
    image: str = IMAGE,
    mounts: tuple[str, ...] = (),
    **env: str,
) -> Secondary:
    full = pod.env(remote, **env)
    c = images.podman.start(image, full, mounts=[*pod.mounts, *mounts])
    return Secondary(c, full, remote)


def wait_ready(sec: Secondary, timeout: float = 60) -> None:
    try:
        until(lambda: sec.readyz() == 200, f"{sec.c.name} /readyz 200", timeout)
    except AssertionError as e:
        raise AssertionError(f"{e}\n{sec.get('/readyz')}\n{sec.diagnostics()}") from None


@pytest.fixture(scope="module")
def pod(sshd: Sshd) -> Iterator[Pod]:
    p = Pod.for_sshd(sshd)
    yield p
    p.close()


# ---- 1. the stand-in base and the build ---------------------------------------------------------


def test_standin_base_gives_what_the_secondary_image_gives(images: Images) -> None:
    podman = images.podman
    facts = podman(
        "run",
        "--rm",
        "--network",
        "none",
        STANDIN,
        "bash",
        "-c",
        r"""
        set -u
        echo "python=$(python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
        echo "xroad=$(getent passwd xroad | cut -d: -f3,6)"
        for t in crudini cron rsync ssh supervisord supervisorctl setpriv; do
            command -v "$t" >/dev/null && echo "tool=$t"
        done
        echo "verify=$(dpkg --verify supervisor; echo rc=$?)"
        echo "node=$(crudini --get /etc/xroad/conf.d/node.ini node type)"
        echo "version=$(cat /usr/share/xroad/config/VERSION)/$(cat /etc/xroad/VERSION)"
        grep -q '^files = /etc/supervisor/conf.d/\*.conf$' /etc/supervisor/supervisord.conf \
            && echo include=conf.d
    """,
    ).stdout.splitlines()
    got: dict[str, list[str]] = {}
    for line in facts:
        k, _, v = line.partition("=")
        got.setdefault(k, []).append(v)
    assert got["python"] == [STANDIN_PYTHON]
    assert got["xroad"] == ["999:/var/lib/xroad"]
    assert set(got["tool"]) == {
        "crudini",
        "cron",
        "rsync",
        "ssh",
        "supervisord",
        "supervisorctl",
        "setpriv",
    }
    # the distribution's stock supervisord.conf: dpkg finds nothing changed in the package
    assert got["verify"] == ["rc=0"]
    assert got["include"] == ["conf.d"]
    assert got["node"] == ["slave"]
    assert got["version"] == ["7.6.2-1.ubuntu24.04/7.6.2-1.ubuntu24.04"]
    assert json.loads(
        podman("image", "inspect", "--format", "{{json .Config.Cmd}}", STANDIN).stdout
    ) == ["/root/entrypoint.sh"]

    conf = configparser.RawConfigParser(interpolation=None)
    conf.read_string(
        podman(
            "run", "--rm", "--network", "none", STANDIN, "cat", "/etc/supervisor/conf.d/xroad.conf"
        ).stdout
    )
    assert conf["program:cron"]["command"] == "/usr/sbin/cron -f"
    assert conf["program:cron"]["user"] == "root"
    for prog in PROGRAMS:
        assert conf[f"program:{prog}"]["user"] == "xroad"
        assert conf[f"program:{prog}"]["environment"] == 'HOME="/var/lib/xroad"'
    # /root/entrypoint.sh is the stand-in file, in the 7.4.1-7.8.0 shape: the same statements
    # go as from the fixture of that shape
    shipped = podman(
        "run", "--rm", "--network", "none", STANDIN, "cat", "/root/entrypoint.sh"
    ).stdout
    assert shipped == (STANDIN_ROOTFS / "root" / "entrypoint.sh").read_text()
    fixture = REPO / "tests" / "deploy" / "fixtures" / "entrypoints" / "7.4.1-7.8.0.sh"
    assert removed_roles(STANDIN_ROOTFS / "root" / "entrypoint.sh") == removed_roles(fixture)


def removed_roles(path: Path) -> list[str]:
    res = subprocess.run(
        [sys.executable, str(STRIP), str(path)], capture_output=True, text=True, timeout=60
    )
    assert res.returncode == 0, res.stderr
    return re.findall(r"^  lines? [\d-]+: (.+)$", res.stderr, re.M)


def test_build_refuses_a_base_before_7_5_0(images: Images) -> None:
    """A base with Python < 3.11 (here bullseye's 3.9, like focal's 3.8) stops at the first
    step with the reason, before apt or pip run."""
    res = images.podman.build(
        "localhost/syncagent-secondary:too-old",
        REPO,
        DOCKER / "Dockerfile",
        build_args={"BASE": STANDIN_OLD},
        check=False,
    )
    out = res.stdout + res.stderr
    assert res.returncode != 0
    assert (
        "syncagent needs a sidecar base image of X-Road 7.5.0 or later (Python >= 3.11); "
        "this base has Python 3.9."
    ) in out
    assert "build FROM a 7.5.0+ secondary tag" in out
    assert "Traceback" not in out and "pip" not in out.replace("pipefail", "")
    assert "STEP 4/" not in out, "steps after the check ran"


def test_image_edits_only_the_sync(images: Images) -> None:
    podman = images.podman

    def cat(path: str, image: str = IMAGE) -> str:
        return podman("run", "--rm", "--network", "none", image, "cat", path).stdout

    standin_entrypoint = STANDIN_ROOTFS / "root" / "entrypoint.sh"
    stripped = subprocess.run(
        [sys.executable, str(STRIP), str(standin_entrypoint)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert stripped.returncode == 0, stripped.stderr
    assert cat("/root/entrypoint.sh") == stripped.stdout
    assert cat("/root/entrypoint.sh.with-rsync") == standin_entrypoint.read_text()
    assert cat("/root/entrypoint.sh.stripped") == stripped.stderr
    # xroad.conf: exactly the [program:cron] section's lines are gone
    before = cat("/etc/supervisor/conf.d/xroad.conf", STANDIN).splitlines()
    after = cat("/etc/supervisor/conf.d/xroad.conf").splitlines()
    start = before.index("[program:cron]")
    end = next((i for i in range(start + 1, len(before)) if before[i].startswith("[")), len(before))
    assert after == before[:start] + before[end:]
    assert cat("/etc/supervisor/supervisord.conf") == cat(
        "/etc/supervisor/supervisord.conf", STANDIN
    )
    assert (
        cat("/etc/supervisor/conf.d/xroad-sync.conf")
        == (DOCKER / "supervisor" / "xroad-sync.conf").read_text()
    )
    control = configparser.RawConfigParser()
    control.read_string(cat("/etc/supervisor/conf.d/xroad-sync-control.conf"))
    assert dict(control["unix_http_server"]) == {"chown": "root:xroad", "chmod": "0770"}
    config = json.loads(podman("image", "inspect", "--format", "{{json .Config}}", IMAGE).stdout)
    assert config["Cmd"] == ["/usr/local/bin/syncagent-entrypoint"]
    assert "SYNCAGENT_EXEC=/root/entrypoint.sh" in config["Env"]
    assert "SYNCAGENT_FIRST_SYNC_BUDGET=120" in config["Env"]
    assert (
        podman("image", "inspect", "--format", "{{.ManifestType}}", IMAGE).stdout.strip()
        == "application/vnd.docker.distribution.manifest.v2+json"
    )
    res = podman(
        "run",
        "--rm",
        "--network",
        "none",
        IMAGE,
        "bash",
        "-c",
        "ls /etc/cron.d; /opt/syncagent/bin/python -c 'import pip'",
        check=False,
    )
    assert "xroad-state-sync" not in res.stdout
    assert "No module named 'pip'" in res.stderr


def test_builds_honour_the_dockerfiles_shell(images: Images) -> None:
    """The helper builds Docker-format images, where SHELL works (OCI has no field for it and
    buildah drops it): a RUN whose pipeline fails only under bash's pipefail must fail."""
    ctx = Path(tempfile.mkdtemp(prefix="syncagent-shell-"))
    try:
        (ctx / "Containerfile").write_text(
            f'FROM {STANDIN}\nSHELL ["/bin/bash", "-o", "pipefail", "-c"]\nRUN false | true\n'
        )
        res = images.podman.build(
            "localhost/syncagent-shell-probe:test", ctx, ctx / "Containerfile", check=False
        )
    finally:
        shutil.rmtree(ctx, ignore_errors=True)
    assert res.returncode != 0, "RUN ran without pipefail: SHELL was ignored"
    assert "SHELL is not supported for OCI image format" not in res.stdout + res.stderr


# ---- 2. a healthy secondary ---------------------------------------------------------------------


def reload_config() -> str:
    """The image's syncagent.toml plus the [[reload]] rules docs/operating.md suggests."""
    doc = (REPO / "docs" / "operating.md").read_text()
    m = re.search(r"Suggested rules for\s+the sidecar.*?```toml\n(.*?)```", doc, re.S)
    assert m, "the suggested reload rules in docs/operating.md"
    assert m.group(1).count("[[reload]]") == 3, m.group(1)
    return (DOCKER / "syncagent.toml").read_text() + "\n" + m.group(1)


@pytest.fixture(scope="module")
def healthy(images: Images, pod: Pod, tree_area: Path) -> Iterator[Secondary]:
    remote = new_primary(tree_area)
    config = pod.base / "syncagent.toml"
    config.write_text(reload_config())
    config.chmod(0o444)
    sec = start(images, pod, remote, mounts=(f"{config}:/etc/syncagent/syncagent.toml:ro",))
    try:
        wait_ready(sec)
        yield sec
    finally:
        sec.c.remove()


def test_first_sync_lands_before_the_xroad_programs_start(healthy: Secondary) -> None:
    logs = healthy.c.logs()
    assert "first sync done (attempt 1)" in logs, healthy.diagnostics()
    assert "starting: /root/entrypoint.sh" in logs
    # Each stand-in program recorded, when supervisord started it, the keyconf.xml it found:
    # the primary's, so the first sync had landed.
    want = sha256(healthy.remote / KEYCONF)
    for prog in PROGRAMS:
        rec = healthy.record(prog)
        assert rec is not None, f"{prog} never started\n{healthy.diagnostics()}"
        assert rec["keyconf"] == want, prog
        assert rec["user"] == "xroad" and rec["home"] == "/var/lib/xroad", rec
    # ... and the steps the strip kept ran: admin account, gRPC keys, /var/tmp/xroad
    res = healthy.c.exec(
        "bash",
        "-c",
        "getent passwd xrd-admin >/dev/null && "
        "test -s /var/run/xroad/xroad-grpc-internal-env.properties && "
        "stat -c %U /var/tmp/xroad",
    )
    assert res.returncode == 0 and res.stdout.strip() == "xroad", res


def test_supervisord_runs_xroad_sync_and_no_cron(healthy: Secondary) -> None:
    def status() -> dict[str, str]:
        res = healthy.c.exec("supervisorctl", "status")
        return {line.split()[0]: line.split()[1] for line in res.stdout.splitlines()}

    until(lambda: status().get("xroad-sync") == "RUNNING", "xroad-sync RUNNING", 15)
    assert set(status()) == {"xroad-sync", *PROGRAMS}, "cron is gone, nothing else changed"
    assert set(status().values()) == {"RUNNING"}
    ps = healthy.c.exec("ps", "-eo", "user:12,args", check=True).stdout
    agents = [line for line in ps.splitlines() if "/opt/syncagent/bin/syncagent run" in line]
    assert len(agents) == 1 and agents[0].split()[0] == "xroad", ps
    assert not re.search(r"\b(cron|rsync|ssh)\b", ps), ps
    assert "xroad-state-sync" not in healthy.c.exec("ls", "/etc/cron.d").stdout


def test_the_tree_is_the_primarys(healthy: Secondary) -> None:
    assert_tree_is_the_primarys(healthy)
    # node-local files are the image's own, and everything belongs to xroad
    res = healthy.c.exec(
        "bash",
        "-c",
        "crudini --get /etc/xroad/conf.d/node.ini node type; find /etc/xroad ! -user xroad",
    )
    assert res.stdout.splitlines() == ["slave"], res


def test_the_secret_mount_is_read_only(healthy: Secondary) -> None:
    res = healthy.c.exec(
        "bash",
        "-c",
        "stat -c '%U %a %n' /etc/.ssh/id_rsa "
        "/etc/syncagent/known_hosts/known_hosts; touch /etc/.ssh/x",
    )
    assert res.stdout.splitlines() == [
        "root 644 /etc/.ssh/id_rsa",
        "root 444 /etc/syncagent/known_hosts/known_hosts",
    ]
    assert "Read-only file system" in res.stderr
    assert re.search(r"^syncagent_connected 1\.0$", healthy.metrics(), re.M)


def test_readyz_follows_x_roads_health_check(healthy: Secondary) -> None:
    assert healthy.readyz() == 200
    flag = "/var/tmp/xroad/standin-unhealthy"
    healthy.c.exec("touch", flag, user="xroad", check=True)
    try:
        until(lambda: healthy.readyz() == 503, "/readyz 503 while 5588 fails", 10)
        assert "upstream" in healthy.get("/readyz")[1]
        assert healthy.get("/healthz")[0] == 200
    finally:
        healthy.c.exec("rm", "-f", flag, check=True)
    until(lambda: healthy.readyz() == 200, "/readyz 200 once 5588 is healthy", 10)


def reloads(sec: Secondary) -> dict[tuple[str, str], float]:
    out = {}
    for m in re.finditer(r"^syncagent_reload_total\{(.*?)\} (\S+)$", sec.metrics(), re.M):
        labels = dict(re.findall(r'(\w+)="([^"]*)"', m.group(1)))
        out[labels["rule"], labels["result"]] = float(m.group(2))
    return out


def test_a_change_arrives_and_every_suggested_reload_rule_runs(healthy: Secondary) -> None:
    before = {p: healthy.record(p) for p in PROGRAMS}
    local_ini = healthy.remote / "conf.d" / "local.ini"
    local_ini.write_text(local_ini.read_text() + "; changed by test_image\n")
    age(healthy.remote)
    new = sha256(local_ini)
    until(
        lambda: healthy.tree().get("conf.d/local.ini") == ("file", new),
        "the change inside the container",
        20,
    )
    rules = ("proxy", "signer", "proxy-ui-api")
    until(
        lambda: all(reloads(healthy).get((r, "ok"), 0) >= 1 for r in rules),
        f"reload rules {rules} ok",
        30,
    )
    assert not any(v for (_, result), v in reloads(healthy).items() if result != "ok")
    # each rule restarted its program, which then read the new file
    for rule in rules:
        prog = f"xroad-{rule}"

        def restarted(p: str = prog) -> dict[str, Any] | None:
            r = healthy.record(p)
            return r if r and r["local_ini"] == new else None

        rec = until(restarted, f"{prog} restarted on the new conf.d/local.ini", 20)
        old = before[prog]
        assert rec is not None and old is not None
        assert rec["pid"] != old["pid"]
    assert healthy.record("xroad-confclient") == before["xroad-confclient"], "no rule for it"
    wait_ready(healthy, 20)


def test_podman_stop_ends_within_the_grace_period_with_exit_0(
    images: Images, healthy: Secondary
) -> None:
    """(Last of the healthy container's tests: it stops it.)"""
    t0 = time.monotonic()
    images.podman("stop", "-t", "30", healthy.c.name, timeout=60)
    took = time.monotonic() - t0
    status, code = healthy.c.state()
    assert (status, code) == ("exited", 0), healthy.diagnostics()
    assert took < 15, f"podman stop took {took:.1f}s of its 30 s grace"
    assert re.search(r"stopped: xroad-sync \(exit status 0\)", healthy.c.logs()), (
        healthy.diagnostics()
    )


# ---- 3. the entrypoint's branches ---------------------------------------------------------------


def test_entrypoint_branches_as_documented(images: Images, pod: Pod, tree_area: Path) -> None:
    rejected = new_primary(tree_area)
    keyconf = rejected / KEYCONF
    good = keyconf.read_bytes()
    keyconf.write_bytes(good[: len(good) // 2])  # truncated XML: validation refuses it
    age(rejected)
    empty = new_primary(tree_area, empty=True)  # the primary's /etc/xroad before its setup
    started = time.monotonic()
    cases = {
        "rejected": start(images, pod, rejected),
        "not-initialized": start(images, pod, empty),
        "bad-config": start(images, pod, new_primary(tree_area), SYNCAGENT_SYNC_INTERVAL="-5"),
    }
    try:
        # 2: stop with the message, never start supervisord
        bad = cases["bad-config"]
        assert bad.c.wait_exit(30) == 2, bad.diagnostics()
        logs = bad.c.logs()
        assert "configuration error (syncagent exit 2)" in logs and "not starting" in logs
        assert "sync.interval (env SYNCAGENT_SYNC_INTERVAL)" in logs
        assert "supervisord" not in logs.replace("exec /usr/bin/supervisord", "")
        # 3 and 4: start not-ready at once, long before the 30 s budget
        for name, word in (
            ("rejected", "rejected by validation (exit 3)"),
            ("not-initialized", "primary not initialized yet (exit 4)"),
        ):
            sec = cases[name]

            def healthz_ok(s: Secondary = sec) -> bool:
                return s.get("/healthz")[0] == 200

            until(healthz_ok, f"{name}: /healthz", 30)
            assert time.monotonic() - started < 25, f"{name}: spent the budget"
            assert f"{word}: starting not-ready" in sec.c.logs(), sec.diagnostics()
            assert sec.readyz() == 503
            assert all(sec.record(p) for p in PROGRAMS), "the X-Road programs started"
            signer = sec.record("xroad-signer")
            assert signer is not None
            assert signer["keyconf"] is None
        # the daemon keeps trying: a fixed primary makes the rejected one ready
        keyconf.write_bytes(good)
        age(rejected)
        wait_ready(cases["rejected"], 30)
        assert_tree_is_the_primarys(cases["rejected"])
    finally:
        for sec in cases.values():
            sec.c.remove()


def test_budget_exceeded_then_readiness_follows_the_sync(
    images: Images, fresh_sshd: Sshd, tree_area: Path
) -> None:
    """Primary down at start: retries for the budget, starts not-ready; ready once it is up;
    with sync.max_staleness, not ready again while it is down."""
    pod = Pod.for_sshd(fresh_sshd)
    remote = new_primary(tree_area)
    fresh_sshd.stop()
    sec = start(
        images, pod, remote, SYNCAGENT_FIRST_SYNC_BUDGET="4", SYNCAGENT_SYNC_MAX_STALENESS="4"
    )
    try:
        until(lambda: sec.get("/healthz")[0] == 200, "/healthz after the budget", 40)
        logs = sec.c.logs()
        assert re.search(
            r"first sync failed \(exit 1\) for 4s, \d+ attempt\(s\): "
            "starting not-ready",
            logs,
        ), sec.diagnostics()
        assert "first sync failed (exit 1), attempt 1; retrying in" in logs
        assert sec.readyz() == 503
        fresh_sshd.start()
        wait_ready(sec, 30)
        assert_tree_is_the_primarys(sec)
        fresh_sshd.stop()
        until(lambda: sec.readyz() == 503, "/readyz 503 once the sync is stale", 20)
        assert "stale" in sec.get("/readyz")[1].lower() or "staleness" in sec.get("/readyz")[1]
        assert sec.get("/healthz")[0] == 200, "a stale sync never fails liveness"
        fresh_sshd.start()
        wait_ready(sec, 30)
    finally:
        sec.c.remove()
        pod.close()


# ---- 4. crash and ownership ---------------------------------------------------------------------


def test_podman_kill_then_start_recovers_a_consistent_tree(
    images: Images, pod: Pod, tree_area: Path
) -> None:
    """SIGKILL the whole container while an apply is half done (the agent is frozen with its
    journal on disk), then `podman start`: the first sync rolls the journal forward and the
    tree is exactly the primary's."""
    remote = new_primary(tree_area)
    sec = start(images, pod, remote)
    try:
        wait_ready(sec)
        (agent,) = until(
            lambda: sec.c.host_pids("/opt/syncagent/bin/syncagent run"), "the agent's pid", 15
        )
        journal = sec.c.upper_dir() / "etc" / "xroad" / ".syncagent" / "journal.json"
        caught = False
        for round_ in range(3):
            bulk = remote / f"bulk{round_}"
            for d in range(60):
                (bulk / f"d{d:02}").mkdir(parents=True)
                for f in range(25):
                    (bulk / f"d{d:02}" / f"f{f:02}.txt").write_text(f"{round_} {d} {f}\n")
            subprocess.run(["chown", "-R", "{}:{}".format(*xroad_ids()), str(bulk)], check=True)
            age(remote)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not journal.exists():
                time.sleep(0.0005)
            if journal.exists():
                os.kill(agent, signal.SIGSTOP)
                if journal.exists():
                    caught = True
                    break
                os.kill(agent, signal.SIGCONT)
            until(lambda: not journal.exists(), "the apply to finish", 30)
        assert caught, "never caught an apply in flight"
        images.podman("kill", "-s", "KILL", sec.c.name)
        sec.c.wait_exit(30)
        assert journal.exists(), "the journal of the interrupted apply"
        images.podman("start", sec.c.name)
        wait_ready(sec)
        assert "journal_roll_forward" in sec.c.logs()
        assert not journal.exists()
        assert_tree_is_the_primarys(sec)
    finally:
        sec.c.remove()


def test_first_sync_works_on_root_owned_directories(
    images: Images, pod: Pod, tree_area: Path
) -> None:
    """A base (or a fresh volume) with root-owned directories in /etc/xroad: the entrypoint
    makes the tree xroad's first, as the base entrypoint's `chown -R` did before its rsync, so
    the first try succeeds instead of failing with EACCES for the whole budget."""
    ctx = Path(tempfile.mkdtemp(prefix="syncagent-rootowned-"))
    try:
        (ctx / "Containerfile").write_text(
            f"FROM {IMAGE}\n"
            "RUN mkdir -p /etc/xroad/signer \\\n"
            "    && chown root:root /etc/xroad /etc/xroad/signer /etc/xroad/services \\\n"
            "        /etc/xroad/ssl /etc/xroad/conf.d \\\n"
            "    && chmod 0755 /etc/xroad/signer /etc/xroad/services /etc/xroad/ssl\n"
        )
        tag = "localhost/syncagent-secondary:test-rootowned"
        images.podman.build(tag, ctx, ctx / "Containerfile")
    finally:
        shutil.rmtree(ctx, ignore_errors=True)
    assert (
        images.podman(
            "run", "--rm", "--network", "none", tag, "stat", "-c", "%U", "/etc/xroad/signer"
        ).stdout.strip()
        == "root"
    )
    sec = start(images, pod, new_primary(tree_area), image=tag, SYNCAGENT_FIRST_SYNC_BUDGET="10")
    try:
        wait_ready(sec, 40)
        logs = sec.c.logs()
        assert "first sync done (attempt 1)" in logs, sec.diagnostics()
        assert "Permission denied" not in logs and "first sync failed" not in logs
        assert sec.c.exec("find", "/etc/xroad", "!", "-user", "xroad").stdout == ""
        assert_tree_is_the_primarys(sec)
    finally:
        sec.c.remove()
