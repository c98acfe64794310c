"""Machinery the experiments share: sshd, CPU accounting, the byte-counting relay, trees, commands.

Everything here runs real programs (OpenSSH sshd and ssh, rsync, the agent) on loopback. Nothing
is mocked, because the costs being measured live in those programs.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import pwd
import random
import resource
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from syncagent.demo.sample_tree import build_primary_tree, build_secondary_local
from syncagent.settings import Settings, load

REPO = Path(__file__).resolve().parent.parent
PYTHON = sys.executable

# The sidecar's excludes, verbatim (../shared/xroad-notes.md, "What the agent replaces").
SIDECAR_EXCLUDES = ("/xroad.properties", "/gpghome", "/conf.d/node.ini", "*.tmp")
OLD = time.time() - 3600


# ---- sshd ------------------------------------------------------------------------------------


def support_module(stem: str) -> ModuleType:
    """tests/support/<stem>.py, the test suite's own helpers, loaded by path: the tests are not
    a package the bench could import."""
    name = f"syncagent_bench_{stem}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, REPO / "tests" / "support" / f"{stem}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _sshd_module() -> ModuleType:
    """tests/support/sshd.py: the real-sshd fixture the test suite uses."""
    return support_module("sshd")


def ensure_xroad_accounts() -> None:
    """The accounts a primary has, made exactly as the test suite makes them."""
    _sshd_module().ensure_xroad_accounts()


def xroad_owner() -> tuple[int, int]:
    pw = pwd.getpwnam("xroad")
    return pw.pw_uid, pw.pw_gid


class Primary:
    """One real sshd (default MaxStartups) in its own CPU accounting group, plus its trees."""

    def __init__(self, name: str) -> None:
        if os.geteuid() != 0:
            raise SystemExit("bench: needs root (sshd logins as root and xroad-slave, cgroups)")
        ensure_xroad_accounts()
        self.sshd: Any = _sshd_module().Sshd(sshd_bin=shutil.which("sshd") or "/usr/sbin/sshd")
        self.sshd.start()
        self.cpu = CpuGroup(f"sshd-{name}")
        self.cpu.attach(self.sshd.pid)
        self.relay: Relay | None = None
        # Agents check the host key strictly, through the relay too: trust both ports.
        self.known_hosts = self.sshd.base / "known_hosts.bench"
        self._write_known_hosts()

    @property
    def port(self) -> int:
        return int(self.sshd.port)

    @property
    def key(self) -> Path:
        return Path(self.sshd.client_key)

    def _write_known_hosts(self) -> None:
        key = self.sshd.host_public_key()
        ports = [self.port] + ([self.relay.port] if self.relay else [])
        self.known_hosts.write_text("".join(f"[127.0.0.1]:{p} {key}\n" for p in ports))

    def start_relay(self) -> Relay:
        if self.relay is None:
            self.relay = Relay.start(self.port)
            self._write_known_hosts()
        return self.relay

    def new_tree(self, name: str) -> Path:
        return Path(self.sshd.new_primary_tree(name))

    def new_publish_dir(self, name: str = "publish") -> Path:
        """Beside the trees, never inside one; ``xroad-slave`` can reach it. The publisher
        makes it 0750 in the source's group (xroad), which that account is in."""
        return Path(_sshd_module().fresh_subdir(self.sshd.base / "trees", name))

    def sessions_pss(self) -> int:
        """Proportional set size (bytes) of every sshd process serving this instance."""
        total = 0
        for pid in [self.sshd.pid, *_sshd_module().descendants(self.sshd.pid)]:
            total += pss(pid)
        return total

    def close(self) -> None:
        if self.relay:
            self.relay.close()
        self.sshd.close()
        self.cpu.close()


def pss(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


# ---- CPU accounting ------------------------------------------------------------------------


class CpuGroup:
    """CPU time of a process and every descendant, exited ones included.

    sshd forks a process per connection and another per session, and they exit before anyone can
    read their /proc entry, so per-process sampling misses most of the cost. A cgroup charges the
    CPU as it is used, whoever exits. Tried in order: cgroup v1 ``cpuacct``, cgroup v2 (hybrid
    ``unified`` mount or pure v2). Without a writable cgroup the numbers are None, never guessed.
    """

    def __init__(self, name: str) -> None:
        self.path: Path | None = None
        self.kind = "unavailable"
        leaf = f"syncagent-bench-{name}-{os.getpid()}"
        candidates = [
            (Path("/sys/fs/cgroup/cpuacct"), "cgroup-v1-cpuacct", "cpuacct.usage"),
            (Path("/sys/fs/cgroup/unified"), "cgroup-v2", "cpu.stat"),
            (Path("/sys/fs/cgroup"), "cgroup-v2", "cpu.stat"),
        ]
        for base, kind, probe in candidates:
            if not (base / "cgroup.procs").exists():
                continue
            path = base / leaf
            try:
                path.mkdir(exist_ok=True)
            except OSError:
                continue
            if (path / probe).exists():
                self.path, self.kind = path, kind
                break
            with contextlib.suppress(OSError):
                path.rmdir()

    def attach(self, pid: int | None) -> None:
        if self.path is None or pid is None:
            return
        try:
            (self.path / "cgroup.procs").write_text(f"{pid}\n")
        except OSError:
            self.kind, self.path = "unavailable", None

    def seconds(self) -> float | None:
        if self.path is None:
            return None
        if self.kind == "cgroup-v1-cpuacct":
            return int((self.path / "cpuacct.usage").read_text()) / 1e9
        for line in (self.path / "cpu.stat").read_text().splitlines():
            if line.startswith("usage_usec"):
                return int(line.split()[1]) / 1e6
        return None

    def close(self) -> None:
        if self.path is None:
            return
        for _ in range(50):
            try:
                self.path.rmdir()
                return
            except OSError:
                time.sleep(0.1)


def proc_cpu(pid: int) -> float:
    """utime + stime of one live process, seconds."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu() -> float:
    """CPU of every descendant this process has waited for (rsync waits for its ssh)."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


# ---- the byte-counting relay ---------------------------------------------------------------


@dataclass
class Relay:
    """``python -m bench.relay`` in front of sshd: counts every byte of every connection."""

    proc: subprocess.Popen[str]
    port: int
    stats_port: int

    @classmethod
    def start(cls, upstream: int) -> Relay:
        proc = subprocess.Popen(
            [PYTHON, "-m", "bench.relay", str(upstream)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None
        ports = json.loads(proc.stdout.readline())
        return cls(proc, int(ports["port"]), int(ports["stats_port"]))

    def total(self) -> int:
        with socket.create_connection(("127.0.0.1", self.stats_port), timeout=5) as s:
            data = b""
            while chunk := s.recv(4096):
                data += chunk
        doc = json.loads(data)
        return int(doc["up"]) + int(doc["down"])

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


# ---- trees -----------------------------------------------------------------------------------


def build_xroad(root: Path, keys: int = 3) -> None:
    """The realistic tree (demo/sample_tree.py): ~35 files as a primary's /etc/xroad holds them."""
    build_primary_tree(root, keys=keys, mtime=OLD, owner=xroad_owner())


def build_bulk(root: Path, files: int, total_bytes: int, seed: int = 1) -> None:
    """The realistic tree plus ``bulk/dNNN/fNNNNN.dat``: ``files`` files, ``total_bytes`` in all.

    Sizes are log-normal around the mean (many small files, some large), content is half random
    and half repetitive text, so rsync's -z compression has something, but not everything, to
    squeeze. Names end in .dat so the agent's content validators do not parse them.
    """
    build_xroad(root)
    rng = random.Random(seed)
    weights = [rng.lognormvariate(0, 1) for _ in range(files)]
    scale = total_bytes / sum(weights)
    sizes = [max(1, int(w * scale)) for w in weights]
    per_dir = 100
    uid, gid = xroad_owner()
    bulk = root / "bulk"
    text = b"".join(
        b"key.%06d = value %06d ; a configuration-like line\n" % (i, i) for i in range(4096)
    )
    for i, size in enumerate(sizes):
        d = bulk / f"d{i // per_dir:03d}"
        if i % per_dir == 0:
            d.mkdir(parents=True, exist_ok=True)
        half = size // 2
        (d / f"f{i:05d}.dat").write_bytes(
            rng.randbytes(half) + text[: size - half].ljust(size - half, b"x")
        )
    for path in [bulk, *bulk.rglob("*")]:
        os.lchown(path, uid, gid)
        path.chmod(0o750 if path.is_dir() else 0o640)
    for path in sorted([bulk, *bulk.rglob("*")], key=lambda p: len(p.parts), reverse=True):
        os.utime(path, (OLD, OLD))
    os.utime(root, (OLD, OLD))


def build_security_server(root: Path) -> int:
    """The security server tree: what X-Road 7's packages install in /etc/xroad plus the files
    the guides tell an operator to create (``tests/support/xroad_etc.py: build_xroad7_etc``,
    ~70 files: every conf.d INI and logback XML, services/*.conf, jetty, a real keyconf.xml
    and softToken ``.p12`` keys, globalconf, ssl keys, gpghome). Modes are the builder's (real
    X-Road's: softtoken 0750, .p12 0640, ssl keys 0660, gpghome 0700); owned ``xroad:xroad``
    like the other trees, so the read-only ``xroad-slave`` (group xroad) reads it; every mtime
    an hour old. ``xroad.properties`` lands beside the tree (root's), not in it. Returns the
    number of files the builder wrote."""
    # The builder is the test suite's fixture code, not shipped in the syncagent package: the
    # bench imports it from the tests' support package (tests/support), and only here.
    tests = str(REPO / "tests")
    if tests not in sys.path:
        sys.path.insert(0, tests)
    from support.xroad_etc import build_xroad7_etc

    tree = build_xroad7_etc(root)
    uid, gid = xroad_owner()
    paths = [root, *root.rglob("*")]
    for path in paths:
        os.lchown(path, uid, gid)
    for path in sorted(paths, key=lambda p: len(p.parts), reverse=True):
        os.utime(path, (OLD, OLD), follow_symlinks=False)
    return len(tree.readers)


def bulk_files(root: Path) -> list[Path]:
    return sorted((root / "bulk").rglob("*.dat"))


def change_file(path: Path, *, age: float = 10.0) -> None:
    """Rewrite one file with new content of the same size, atomically, as the primary would;
    backdated by ``age`` s so the agent's settle rule (default 2 s) does not apply."""
    st = path.stat()
    tmp = path.with_name(path.name + ".new.tmp")
    tmp.write_bytes(os.urandom(st.st_size))
    os.chown(tmp, st.st_uid, st.st_gid)
    tmp.chmod(st.st_mode & 0o7777)
    os.replace(tmp, path)
    t = time.time() - age
    os.utime(path, (t, t))


COUNTER_FILE = "conf.d/local.ini"
MARK = b"; bench-propagation "


def write_counter(remote: Path, base: bytes, k: int) -> None:
    """Append counter ``k`` to ``base`` as conf.d/local.ini, as the primary saves: a .tmp in
    the same directory, then rename over the file."""
    path = remote / COUNTER_FILE
    st = path.stat()
    tmp = path.with_name(f"tmpconf{k}.tmp")
    tmp.write_bytes(base + MARK + b"%d\n" % k)
    os.chown(tmp, st.st_uid, st.st_gid)
    tmp.chmod(0o640)
    os.replace(tmp, path)


def change_counter(remote: Path, base: bytes, k: int, *, age: float = 10.0) -> None:
    """A valid one-file change for trees whose files the agent validates (the security server
    tree): counter ``k`` appended to conf.d/local.ini as ``write_counter`` saves it (an INI
    comment line), backdated by ``age`` s like ``change_file`` so the settle rule does not
    apply."""
    write_counter(remote, base, k)
    t = time.time() - age
    os.utime(remote / COUNTER_FILE, (t, t))


def new_target(parent: Path, name: str) -> Path:
    """A secondary's /etc/xroad before its first sync: only the node-local files."""
    target = parent / name
    if target.exists():
        shutil.rmtree(target)
    target.mkdir(mode=0o751, parents=True)
    build_secondary_local(target)
    return target


# ---- commands --------------------------------------------------------------------------------


def ssh_base(primary: Primary, port: int | None = None) -> list[str]:
    """The sidecar's ssh options, plus what a loopback bench needs (port, no known_hosts file,
    no user/system ssh_config, quiet about the unknown host key)."""
    return [
        "ssh",
        "-F",
        "/dev/null",
        "-p",
        str(port or primary.port),
        "-i",
        str(primary.key),
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "ConnectTimeout=5",
        "-o",
        "LogLevel=ERROR",
    ]


def rsync_cmd(
    primary: Primary,
    remote: Path,
    target: Path,
    *,
    control: Path | None = None,
    port: int | None = None,
) -> list[str]:
    """The sidecar's rsync line, verbatim flags; as root (xroad-slave cannot run rsync)."""
    ssh = ssh_base(primary, port)
    if control is not None:
        ssh += ["-o", "ControlMaster=no", "-o", f"ControlPath={control}"]
    cmd = [
        "rsync",
        "-e",
        " ".join(ssh),
        "-avz",
        "--timeout=10",
        "--delete-delay",
        "--delay-updates",
    ]
    for pattern in SIDECAR_EXCLUDES:
        cmd += ["--exclude", pattern]
    return [*cmd, f"root@127.0.0.1:{remote}/", f"{target}/"]


@dataclass
class ControlMaster:
    """Baseline (b): one ssh master kept open; every rsync multiplexes a channel over it."""

    proc: subprocess.Popen[bytes]
    path: Path

    @classmethod
    def start(cls, primary: Primary, port: int | None = None) -> ControlMaster:
        path = primary.sshd.base / f"cm-{port or primary.port}-{os.getpid()}.sock"
        path.unlink(missing_ok=True)
        cmd = [
            *ssh_base(primary, port),
            "-M",
            "-N",
            "-o",
            f"ControlPath={path}",
            "-o",
            "ControlPersist=no",
            "root@127.0.0.1",
        ]
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not path.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"ssh ControlMaster did not start: {cmd}")
            time.sleep(0.02)
        return cls(proc, path)

    def cpu(self) -> float:
        return proc_cpu(self.proc.pid)

    def close(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)
        self.path.unlink(missing_ok=True)


def agent_overrides(
    primary: Primary, remote: Path, target: Path, *, port: int | None = None, **extra: Any
) -> dict[str, str]:
    """The agent as deployed: read-only xroad-slave, strict host keys, sidecar profile."""
    values = {
        "primary.host": "127.0.0.1",
        "primary.port": str(port or primary.port),
        "primary.user": "xroad-slave",
        "primary.identity_file": str(primary.key),
        "primary.known_hosts": str(primary.known_hosts),
        "primary.host_key_policy": "strict",
        "primary.remote_root": str(remote),
        "sync.target": str(target),
        "log.level": "warning",
    }
    values.update({k: str(v) for k, v in extra.items() if v is not None})
    return values


def make_settings(overrides: dict[str, str]) -> Settings:
    settings, problems = load(None, env={}, overrides=overrides)
    if settings is None:
        raise SystemExit(f"bench: bad agent settings: {problems}")
    return settings


def machine() -> dict[str, Any]:
    mem = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem = int(line.split()[1]) * 1024
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    versions = {}
    for tool, args in (("rsync", ["--version"]), ("ssh", ["-V"])):
        with contextlib.suppress(OSError):
            out = subprocess.run([tool, *args], capture_output=True, text=True)
            versions[tool] = (out.stdout or out.stderr).splitlines()[0]
    import asyncssh

    versions["asyncssh"] = asyncssh.__version__
    versions["python"] = sys.version.split()[0]
    return {
        "cores": os.cpu_count(),
        "memory_gib": round(mem / 2**30, 1),
        "cpu_model": model,
        "kernel": os.uname().release,
        "versions": versions,
    }


def loadavg() -> list[float]:
    return [float(x) for x in Path("/proc/loadavg").read_text().split()[:3]]
