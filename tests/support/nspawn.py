"""A real systemd, booted in a systemd-nspawn container and driven from the host.

Stdlib only, but for the process-tree walk it shares with tests/support/sshd.py.

Why: what ``systemd/syncagent.service`` promises is done by systemd as PID 1, not by the agent
and not by ``systemd-analyze``, which only reads the file: the unit is active only after
READY=1, the watchdog kills a wedged agent, ``Before=`` holds the X-Road services back, the
sandbox really applies and leaves the agent what it needs, ``Restart=`` and
``RestartPreventExitStatus=`` decide between a restart and ``failed``. The machines the tests
run on have no systemd as PID 1, so the tests boot one: Debian bookworm, as on an IG-XLB
secondary, in a container, in under a second.

    rootfs = ensure_rootfs()                 # debootstrap once, cached per machine
    with Machine(rootfs) as m:               # an overlay on the cache: nothing writes into it
        m.start()                            # boot, wait for is-system-running
        m.systemctl("start", "foo.service")  # nsenter into the container, as its root
        m.journal("foo.service")
    # powered off (hard kill as fallback), overlay unmounted, work dir removed

How, and why this way (measured on a 2-core machine with systemd 252):

* **The rootfs** is ``debootstrap --variant=minbase`` of bookworm plus the few packages the unit
  and its README use, from the host's Debian mirror (~60 s). It is cached as
  ``$SYNCAGENT_NSPAWN_CACHE/rootfs-<key>`` (default ``/var/cache/syncagent-test``; the key
  hashes the debootstrap arguments and ``CACHE_FORMAT``), built under an flock in a temporary
  directory that is renamed into place only when complete: a killed build never leaves a half
  cache. The same goes for the wheelhouse (``ensure_wheelhouse``), so the container installs
  Python packages offline.
* **Booting** is overlayfs (lower: the cache, upper: a per-machine work dir) mounted here, then
  ``systemd-nspawn --boot --register=no --keep-unit``: no systemd, machined or D-Bus needed on
  the host. Boot to ``running`` takes ~0.4 s. ``--ephemeral`` would copy the whole 250 MB tree
  per boot on a filesystem without reflinks (4.6 s); ``--volatile`` loses the state at
  poweroff. With the overlay the host sees the container's files before boot, and the upper
  dir survives a poweroff, so a test can reboot the same machine (boot ordering).
* **The network is the host's** (no ``--private-network``): the container reaches the tests'
  sshd on 127.0.0.1, and its services listen on the host's loopback. So only one machine runs
  at a time: ``Machine.start`` takes an flock that ``close`` releases.
* **Commands** run as ``nsenter -t <its PID 1> -a env -i ...``: every namespace, the container's
  root and a clean environment (the host's, pytest's or CI's does not leak in).
* **Stopping** is SIGRTMIN+4 to the container's PID 1 (what ``machinectl poweroff`` sends),
  with a hard kill as fallback. A SIGKILLed systemd-nspawn does *not* take its container with
  it, so PID 1 is killed directly; nspawn gets SIGTERM when the test process dies
  (PR_SET_PDEATHSIG), and ``reap_stale`` removes whatever a SIGKILLed run left (the container,
  the overlay mount, the work dir).

Host requirements: root, ``systemd-nspawn`` (Debian package systemd-container), ``debootstrap``,
``nsenter`` and ``mount`` (util-linux), overlayfs, and the Debian mirror for the first build.
"""

from __future__ import annotations

import contextlib
import ctypes
import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO

from support.sshd import descendants

CACHE_ROOT = Path(os.environ.get("SYNCAGENT_NSPAWN_CACHE", "/var/cache/syncagent-test"))
# Overlay upper/work dirs and console logs. /var/tmp, not /tmp: an upper dir may grow (a venv,
# the journal) and /tmp may be a small tmpfs.
WORK_ROOT = Path(os.environ.get("SYNCAGENT_NSPAWN_WORK", "/var/tmp/syncagent-nspawn"))
# Bump when _prepare_rootfs changes: it is part of the cache key.
CACHE_FORMAT = 2
MARKER = ".syncagent-rootfs.json"
WHEELS_MARKER = "requirements.txt"

DEFAULT_INCLUDE = (
    "systemd",
    "systemd-sysv",
    "dbus",
    "python3",
    "python3-venv",
    # Not in minbase, but on every real security server, and used by the unit or its README:
    "procps",  # /bin/kill (the unit's ExecReload=)
    "curl",  # the migration notes: curl -s 127.0.0.1:9101/status
    "sudo",  # the install notes: sudo -u xroad ... check-config
)

# The environment commands inside get, and nothing else.
INNER_ENV = {
    "PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
    "LANG": "C.UTF-8",
    "TERM": "dumb",
    "SYSTEMD_PAGER": "",
    "SYSTEMD_COLORS": "0",
    "HOME": "/root",
}

PR_SET_PDEATHSIG = 1


class NspawnError(RuntimeError):
    pass


# ---- caches ---------------------------------------------------------------------------------


def _rmtree(path: Path) -> None:
    """rm -rf, also for trees with read-only directories (debootstrap makes some); never
    crosses into another filesystem (a mount left inside)."""
    subprocess.run(["rm", "-rf", "--one-file-system", str(path)], check=False)


def _cached(final: Path, marker: str, build: Callable[[Path], None]) -> Path:
    """``final`` if it holds ``marker``; else ``build(tmp)`` under an flock, renamed into place."""
    if (final / marker).is_file():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    with open(final.parent / f"{final.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another run may be building the same key
        if (final / marker).is_file():
            return final
        if final.exists():  # no marker: not a complete cache entry
            _rmtree(final)
        for stale in final.parent.glob(f".build-{final.name}-*"):
            _rmtree(stale)  # a build killed earlier (we hold the lock: nobody uses it)
        tmp = Path(tempfile.mkdtemp(prefix=f".build-{final.name}-", dir=final.parent))
        try:
            tmp.chmod(0o755)
            build(tmp)
            if not (tmp / marker).is_file():
                raise NspawnError(f"building {final} wrote no {marker}")
            os.rename(tmp, final)
        except BaseException:
            _rmtree(tmp)
            raise
    return final


def host_debian_mirror(default: str = "http://deb.debian.org/debian") -> str:
    """The Debian archive this host's apt uses (one-line ``.list`` or deb822 ``.sources``)."""
    paths = [Path("/etc/apt/sources.list")]
    listdir = Path("/etc/apt/sources.list.d")
    if listdir.is_dir():
        paths += sorted(p for p in listdir.iterdir() if p.suffix in (".list", ".sources"))
    uris: list[str] = []
    for path in paths:
        try:
            text = path.read_text()
        except OSError:
            continue
        if path.suffix == ".sources":
            for stanza in re.split(r"\n\s*\n", text):
                if re.search(r"(?m)^Enabled:\s*no\b", stanza):
                    continue
                if not re.search(r"(?m)^Types:.*\bdeb\b", stanza):
                    continue
                m = re.search(r"(?m)^URIs:\s*(.+)$", stanza)
                if m:
                    uris += m.group(1).split()
        else:
            for line in text.splitlines():
                m = re.match(r"\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)", line)
                if m:
                    uris.append(m.group(1))
    for uri in uris:
        if re.search(r"/debian/?$", uri):  # the main archive, not debian-security or others
            return uri.rstrip("/")
    return default


@dataclass(frozen=True)
class RootfsSpec:
    suite: str = "bookworm"
    mirror: str = field(default_factory=host_debian_mirror)
    variant: str = "minbase"
    include: tuple[str, ...] = DEFAULT_INCLUDE

    def debootstrap_args(self, target: str | Path) -> list[str]:
        return [
            "debootstrap",
            f"--variant={self.variant}",
            f"--include={','.join(self.include)}",
            self.suite,
            str(target),
            self.mirror,
        ]

    def key(self) -> str:
        doc = {"args": self.debootstrap_args("ROOT"), "format": CACHE_FORMAT}
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


def _prepare_rootfs(root: Path) -> None:
    """Make the debootstrapped tree a template for many boots."""
    # Empty machine-id: every boot gets its own (nspawn passes one), no shared identity.
    (root / "etc/machine-id").write_text("")
    # No getty on the console nspawn gives the container.
    with contextlib.suppress(FileNotFoundError):
        (root / "etc/systemd/system/getty.target.wants/getty@tty1.service").unlink()
    # debootstrap copies the build host's /etc/hostname, and minbase has no /etc/hosts: let the
    # machine name be the hostname, and give sudo a hosts file.
    with contextlib.suppress(FileNotFoundError):
        (root / "etc/hostname").unlink()
    if not (root / "etc/hosts").exists():
        (root / "etc/hosts").write_text("127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost\n")
    # Persistent journal: survives a reboot of the same overlay.
    (root / "var/log/journal").mkdir(parents=True, exist_ok=True)
    shutil.rmtree(root / "var/cache/apt/archives", ignore_errors=True)
    (root / "var/cache/apt/archives/partial").mkdir(parents=True, exist_ok=True)


def ensure_rootfs(
    spec: RootfsSpec | None = None, cache_root: Path = CACHE_ROOT, timeout: float = 900
) -> Path:
    """A complete cached rootfs for ``spec``, debootstrapped first if there is none."""
    spec = spec or RootfsSpec()
    key = spec.key()
    log = cache_root / f"rootfs-{key}.build.log"

    def build(tmp: Path) -> None:
        started = time.monotonic()
        with log.open("wb") as out:
            res = subprocess.run(
                spec.debootstrap_args(tmp),
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=timeout,
                env={"PATH": INNER_ENV["PATH"], "LANG": "C.UTF-8"},
                check=False,
            )
        if res.returncode != 0:
            tail = log.read_text(errors="replace").splitlines()[-20:]
            raise NspawnError(f"debootstrap failed ({res.returncode}), {log}:\n" + "\n".join(tail))
        _prepare_rootfs(tmp)
        marker = {
            "spec": asdict(spec),
            "key": key,
            "format": CACHE_FORMAT,
            "built_at": time.time(),
            "build_seconds": round(time.monotonic() - started, 1),
        }
        (tmp / MARKER).write_text(json.dumps(marker, indent=1) + "\n")

    return _cached(cache_root / f"rootfs-{key}", MARKER, build)


def rootfs_python(rootfs: Path) -> str:
    """``3.11``: the version of the rootfs's ``python3`` (what its venvs run)."""
    target = os.readlink(rootfs / "usr/bin/python3")
    m = re.fullmatch(r"python(\d+\.\d+)", target)
    if not m:
        raise NspawnError(f"cannot tell the python version of {rootfs}: python3 -> {target}")
    return m.group(1)


def ensure_wheelhouse(
    requirements: Sequence[str], python_version: str, cache_root: Path = CACHE_ROOT
) -> Path:
    """Binary wheels of ``requirements`` for CPython ``python_version`` on this platform,
    downloaded once by the host's pip (its index and certificates) and cached, so that pip in
    the container can install offline (``PIP_NO_INDEX=1 PIP_FIND_LINKS=<dir>``)."""
    reqs = sorted(requirements)
    key = hashlib.sha256(json.dumps([python_version, reqs]).encode()).hexdigest()[:16]

    def build(tmp: Path) -> None:
        res = subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "-q",
                "--disable-pip-version-check",
                "-d",
                str(tmp),
                "--only-binary=:all:",
                "--python-version",
                python_version,
                *reqs,
            ],
            capture_output=True,
            text=True,
            check=False,
            timeout=600,
        )
        if res.returncode != 0:
            raise NspawnError(f"pip download failed ({res.returncode}):\n{res.stderr[-3000:]}")
        (tmp / WHEELS_MARKER).write_text("\n".join(reqs) + "\n")

    return _cached(cache_root / f"wheels-{key}", WHEELS_MARKER, build)


# ---- processes ------------------------------------------------------------------------------


def _nspid(pid: int) -> list[int]:
    """The pid in each nested pid namespace, outermost first (``NSpid:`` of /proc/PID/status)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("NSpid:"):
                return [int(x) for x in line.split()[1:]]
    except OSError:
        pass
    return []


def _starttime(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _alive(pid: int) -> bool:
    """Exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _set_pdeathsig() -> None:
    """In the child before exec: nspawn gets SIGTERM (and shuts the container down) when the
    test process dies, instead of a container outliving a killed pytest."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


def _wait_gone(pid: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.02)


# ---- the machine ----------------------------------------------------------------------------


class Machine:
    """One container booted from a cached rootfs through an overlay (see the module docstring).

    ``start()`` boots it, ``poweroff()`` stops it (``start()`` again reboots the same overlay),
    ``close()`` (or leaving the ``with`` block) stops it and deletes everything it wrote.
    """

    def __init__(
        self,
        rootfs: Path,
        *,
        name: str | None = None,
        work_root: Path = WORK_ROOT,
        lock_timeout: float = 600,
    ) -> None:
        if not (rootfs / MARKER).is_file():
            raise NspawnError(f"{rootfs} is not a complete cached rootfs (no {MARKER})")
        self.rootfs = rootfs
        self.name = name or f"sa-{uuid.uuid4().hex[:10]}"
        self.work_root = work_root
        self.lock_timeout = lock_timeout
        work_root.mkdir(parents=True, exist_ok=True)
        self.work = Path(tempfile.mkdtemp(prefix=f"{self.name}-", dir=work_root))
        (self.work / "owner.pid").write_text(f"{os.getpid()}\n")
        self.proc: subprocess.Popen[bytes] | None = None
        self.leader: int | None = None  # the container's PID 1, as a host pid
        self.boots = 0
        self._mounted = False
        self._lock: IO[str] | None = None

    # -- paths --

    @property
    def merged(self) -> Path:
        return self.work / "merged"

    @property
    def console_log(self) -> Path:
        return self.work / f"console-{self.boots}.log"

    def path(self, inner: str | Path) -> Path:
        """The host path of ``inner`` in the container: read and write its files from here.

        While the machine runs, through its PID 1's root, so that what is mounted inside (the
        tmpfs on /run) is seen too; before boot and after poweroff, in the overlay.
        """
        rel = str(inner).lstrip("/")
        if self.leader is not None and _alive(self.leader):
            return Path(f"/proc/{self.leader}/root") / rel
        self._mount()
        return self.merged / rel

    # -- overlay and lock --

    def _mount(self) -> None:
        if self._mounted:
            return
        for d in ("upper", "ovl-work", "merged"):
            (self.work / d).mkdir(exist_ok=True)
        opts = (
            f"lowerdir={self.rootfs},upperdir={self.work / 'upper'},"
            f"workdir={self.work / 'ovl-work'}"
        )
        res = subprocess.run(
            ["mount", "-t", "overlay", "overlay", "-o", opts, str(self.merged)],
            capture_output=True,
            text=True,
            check=False,
        )
        if res.returncode != 0:
            raise NspawnError(f"overlay mount failed: {res.stderr.strip()}")
        self._mounted = True

    def _umount(self) -> None:
        if not self._mounted:
            return
        res = subprocess.run(["umount", str(self.merged)], capture_output=True, check=False)
        if res.returncode != 0:  # still busy: detach lazily rather than leak a mount
            subprocess.run(["umount", "-l", str(self.merged)], capture_output=True, check=False)
        self._mounted = False

    def _take_lock(self) -> None:
        """One machine at a time on this host: they share its network (ports)."""
        if self._lock is not None:
            return
        lock = open(self.work_root / "machine.lock", "w")  # noqa: SIM115 (held until close)
        deadline = time.monotonic() + self.lock_timeout
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    lock.close()
                    raise NspawnError(
                        f"another machine held {self.work_root}/machine.lock for "
                        f"{self.lock_timeout:g}s"
                    ) from None
                time.sleep(0.5)
        self._lock = lock

    def _release_lock(self) -> None:
        if self._lock is not None:
            self._lock.close()
            self._lock = None

    # -- lifecycle --

    def start(self, timeout: float = 90) -> None:
        """Boot and wait until ``systemctl is-system-running`` says running (or degraded)."""
        if self.proc is not None and self.proc.poll() is None:
            raise NspawnError("already running")
        self._take_lock()
        self._mount()
        self.boots += 1
        argv = [
            "systemd-nspawn",
            "--boot",
            "--register=no",
            "--keep-unit",
            "--settings=no",
            f"--machine={self.name}",
            "--link-journal=no",
            "--resolv-conf=copy-host",
            "--timezone=off",
            "--console=read-only",
            "-D",
            str(self.merged),
        ]
        started = time.monotonic()
        with self.console_log.open("wb") as log:
            self.proc = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env={"PATH": INNER_ENV["PATH"], "LANG": "C.UTF-8", "SYSTEMD_LOG_COLOR": "0"},
                start_new_session=True,  # a Ctrl-C reaches pytest, which shuts down cleanly
                preexec_fn=_set_pdeathsig,
            )
        try:
            self.leader = self._find_leader(started + timeout)
            (self.work / "leader").write_text(f"{self.leader} {_starttime(self.leader)}\n")
            self.wait_running(started + timeout)
        except BaseException:
            self.kill()
            raise

    def _find_leader(self, deadline: float) -> int:
        """The container's PID 1: a descendant of nspawn whose innermost pid is 1."""
        assert self.proc is not None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise NspawnError(
                    f"systemd-nspawn exited ({self.proc.returncode}) before the container "
                    f"started; console:\n{self.console_tail()}"
                )
            for pid in descendants(self.proc.pid):
                ns = _nspid(pid)
                if len(ns) >= 2 and ns[-1] == 1:
                    return pid
            time.sleep(0.02)
        raise NspawnError(f"no container init in time; console:\n{self.console_tail()}")

    def wait_running(self, deadline: float) -> str:
        state = "?"
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise NspawnError(
                    f"container exited ({self.proc.returncode}) during boot; "
                    f"console:\n{self.console_tail()}"
                )
            res = self.run("systemctl", "is-system-running", check=False, timeout=10)
            state = res.stdout.strip() or res.stderr.strip()
            if state in ("running", "degraded"):
                return state
            time.sleep(0.1)
        raise NspawnError(f"not running in time (last: {state!r}); console:\n{self.console_tail()}")

    def poweroff(self, timeout: float = 30) -> bool:
        """Clean shutdown (SIGRTMIN+4 to PID 1); hard kill on timeout. True if it was clean."""
        if self.proc is None:
            return True
        clean = True
        if self.proc.poll() is None and self.leader is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.leader, signal.SIGRTMIN + 4)
            try:
                self.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                clean = False
        else:
            clean = False  # nspawn is gone; its container may not be
        self.kill()
        return clean and self.proc.returncode == 0

    def kill(self) -> None:
        """Hard stop: SIGKILL the container's PID 1 (takes its pid namespace along), then nspawn."""
        if self.proc is None:
            return
        if self.leader is not None and _alive(self.leader):
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.leader, signal.SIGKILL)
            _wait_gone(self.leader, 10)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=10)
        self.leader = None
        with contextlib.suppress(FileNotFoundError):
            (self.work / "leader").unlink()
        # nspawn leaves an empty /run/systemd/nspawn/propagate/<name> where /run is no tmpfs.
        with contextlib.suppress(OSError):
            Path(f"/run/systemd/nspawn/propagate/{self.name}").rmdir()

    def close(self) -> None:
        try:
            self.poweroff()
        finally:
            self._umount()
            _rmtree(self.work)
            self._release_lock()

    def __enter__(self) -> Machine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def console_tail(self, lines: int = 40) -> str:
        try:
            text = self.console_log.read_text(errors="replace")
        except OSError:
            return "(no console log)"
        return "\n".join(text.replace("\r\n", "\n").splitlines()[-lines:])

    # -- inside --

    def run(
        self,
        *argv: str,
        check: bool = True,
        timeout: float = 120,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """``argv`` in all of the container's namespaces, as its root, with ``INNER_ENV``."""
        if self.leader is None:
            raise NspawnError("the machine is not running")
        full_env = {**INNER_ENV, **(env or {})}
        cmd = [
            "nsenter",
            "-t",
            str(self.leader),
            "-a",
            "env",
            "-i",
            *(f"{k}={v}" for k, v in full_env.items()),
            *argv,
        ]
        res = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
            check=False,
        )
        if check and res.returncode != 0:
            raise NspawnError(
                f"{' '.join(argv)} -> {res.returncode}\nstdout: {res.stdout}\nstderr: {res.stderr}"
            )
        return res

    def sh(
        self,
        script: str,
        *,
        check: bool = True,
        timeout: float = 120,
        env: Mapping[str, str] | None = None,
    ) -> subprocess.CompletedProcess[str]:
        return self.run("/bin/sh", "-ec", script, check=check, timeout=timeout, env=env)

    def systemctl(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run("systemctl", "--no-pager", *args, check=check)

    def show(self, unit: str, *props: str) -> dict[str, str]:
        res = self.systemctl("show", unit, *(f"--property={p}" for p in props))
        return dict(line.split("=", 1) for line in res.stdout.splitlines() if "=" in line)

    def cursor(self) -> str:
        """The journal cursor of the newest entry, for ``journal(after=...)``."""
        res = self.run("journalctl", "-q", "-n", "0", "--show-cursor", check=False)
        m = re.search(r"-- cursor: (\S+)", res.stdout)
        return m.group(1) if m else ""

    def journal(
        self,
        unit: str | None = None,
        *,
        after: str | None = None,
        output: str = "short-precise",
        extra: Sequence[str] = (),
    ) -> str:
        argv = ["journalctl", "-q", "--no-pager", "-o", output]
        if unit:
            argv += ["-u", unit]
        if after:
            argv.append(f"--after-cursor={after}")
        return self.run(*argv, *extra, check=False).stdout


def reap_stale(work_root: Path = WORK_ROOT) -> list[Path]:
    """Kill containers, unmount overlays and delete work dirs that a run killed before its
    cleanup left behind (its process is gone)."""
    reaped: list[Path] = []
    if not work_root.is_dir():
        return reaped
    for d in work_root.iterdir():
        try:
            owner = int((d / "owner.pid").read_text())
        except (OSError, ValueError):
            continue
        if _alive(owner):
            continue
        with contextlib.suppress(OSError, ValueError):
            pid_s, start_s = (d / "leader").read_text().split()
            pid = int(pid_s)
            if str(_starttime(pid)) == start_s and _nspid(pid)[-1:] == [1]:  # not a reused pid
                os.kill(pid, signal.SIGKILL)
                _wait_gone(pid, 10)
        with contextlib.suppress(OSError):
            Path(f"/run/systemd/nspawn/propagate/{d.name.rsplit('-', 1)[0]}").rmdir()
        if os.path.ismount(d / "merged"):
            subprocess.run(["umount", "-l", str(d / "merged")], capture_output=True, check=False)
        _rmtree(d)
        reaped.append(d)
    return reaped
