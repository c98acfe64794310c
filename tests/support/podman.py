"""podman for the image tests: the one place that knows this machine's container quirks.

Every podman call of the tests goes through ``Podman``, which:

- runs podman as root with its own ``CONTAINERS_CONF`` (no system file touched) holding
  - ``runtime = "runc"``: crun refuses this kernel's hybrid cgroup layout ("cgroups in hybrid
    mode not supported"), runc runs;
  - ``default_ulimits`` no higher than this process's own hard limits: root here has no
    CAP_SYS_RESOURCE, and podman's defaults (nofile 1048576) make the runtime's setrlimit fail
    ("OCI permission denied"); nproc is also capped at 32768, the most conmon gets here;
- builds with ``--format docker`` (OCI images have no SHELL: the Dockerfile's bash pipefail
  would be dropped) and ``--network host`` (apt in the build reaches the mirror as the host
  does), and hands pip a wheelhouse built on the host, so no build step needs the package
  index or its CA (``wheelhouse``);
- runs containers on the host network, so they reach the tests' sshd on 127.0.0.1.

The stand-in bases are built by docker/standin/build.py itself, the script docker/README.md
names; this module only calls it. Caches live under /var/cache/syncagent-test (or
$SYNCAGENT_TEST_CACHE): the stand-in rootfs, the wheelhouse; podman keeps images and layers.
``built`` builds the stand-ins and both images once per test session, for every module that
runs them (test_image.py, test_kube.py).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
import tomllib
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from support import REPO
from support.tools import require_root, require_tool

CACHE = Path(os.environ.get("SYNCAGENT_TEST_CACHE", "/var/cache/syncagent-test"))
STANDIN_BUILD = REPO / "docker" / "standin" / "build.py"
STANDIN = "localhost/xroad-sidecar-standin:secondary"
STANDIN_OLD = "localhost/xroad-sidecar-standin:bullseye-secondary"
STANDIN_PRIMARY = "localhost/xroad-sidecar-standin:primary"
# tag -> (build.py --role, --suite)
STANDINS = {
    STANDIN: ("secondary", "bookworm"),
    STANDIN_OLD: ("secondary", "bullseye"),
    STANDIN_PRIMARY: ("primary", "bookworm"),
}
STANDIN_PYTHON = "3.11"  # bookworm's python3: what the wheelhouse is built for (checked)
IMAGE = "localhost/syncagent-secondary:test"
PRIMARY_IMAGE = "localhost/syncagent-primary:test"
# image tag -> (its Dockerfile, the stand-in it is built on)
IMAGES = {
    IMAGE: (REPO / "docker" / "Dockerfile", STANDIN),
    PRIMARY_IMAGE: (REPO / "docker" / "Dockerfile.primary", STANDIN_PRIMARY),
}
WHEELHOUSE_IN_BUILD = "/wheelhouse"


def _limit(which: int, cap: int) -> int:
    hard = resource.getrlimit(which)[1]
    return cap if hard == resource.RLIM_INFINITY else min(hard, cap)


@dataclass
class Podman:
    conf: Path
    log: list[str] = field(default_factory=list)

    @classmethod
    def here(cls) -> Podman:
        """podman set up for this machine; skips locally, fails in CI, when it cannot be."""
        require_root("rootful podman (containers, images, debootstrap)")
        require_tool("podman")
        runc = require_tool("runc")
        require_tool("debootstrap")
        CACHE.mkdir(parents=True, exist_ok=True)
        conf = CACHE / "containers.conf"
        nofile = _limit(resource.RLIMIT_NOFILE, 1048576)
        nproc = _limit(resource.RLIMIT_NPROC, 32768)
        text = (
            "# written by tests/support/podman.py (see there why)\n"
            "[containers]\n"
            f'default_ulimits = ["nofile={nofile}:{nofile}", "nproc={nproc}:{nproc}"]\n'
            "[engine]\n"
            f'runtime = "{runc}"\n'
        )
        if not conf.exists() or conf.read_text() != text:
            tmp = conf.with_suffix(".tmp")
            tmp.write_text(text)
            tmp.replace(conf)
        return cls(conf)

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "CONTAINERS_CONF": str(self.conf)}

    def __call__(
        self, *args: str, check: bool = True, timeout: float = 120, input: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """``podman ARGS``; with ``check``, a failure raises with podman's own words."""
        t0 = time.monotonic()
        res = subprocess.run(
            ["podman", *args],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=timeout,
            input=input,
        )
        self.log.append(f"{time.monotonic() - t0:6.1f}s podman {' '.join(args)[:160]}")
        if check and res.returncode != 0:
            raise AssertionError(
                f"podman {' '.join(args)} exited {res.returncode}\n{res.stdout[-3000:]}\n"
                f"{res.stderr[-3000:]}"
            )
        return res

    # ---- images ------------------------------------------------------------------------------

    def standin(self, suite: str = "bookworm", role: str = "secondary") -> subprocess.Popen[str]:
        """Start docker/standin/build.py for ``role`` on ``suite`` (cached: usually a no-op)."""
        with self.standin_log(suite, role).open("w") as out:
            return subprocess.Popen(
                [sys.executable, str(STANDIN_BUILD), "--role", role, "--suite", suite],
                stdout=subprocess.PIPE,
                stderr=out,
                text=True,
                env=self.env,
            )

    @staticmethod
    def standin_log(suite: str, role: str) -> Path:
        return CACHE / f"standin-{role}-{suite}.log"

    def build(
        self,
        tag: str,
        context: Path,
        dockerfile: Path,
        *,
        build_args: Mapping[str, str] = {},
        volumes: Sequence[str] = (),
        check: bool = True,
        timeout: float = 600,
    ) -> subprocess.CompletedProcess[str]:
        args = [
            "build",
            "--format",
            "docker",
            "--network",
            "host",
            "--layers",
            "-f",
            str(dockerfile),
            "-t",
            tag,
        ]
        for k, v in build_args.items():
            args += ["--build-arg", f"{k}={v}"]
        for v in volumes:
            args += ["-v", v]
        return self(*args, str(context), check=check, timeout=timeout)

    def python_version(self, image: str) -> str:
        res = self(
            "run",
            "--rm",
            "--network",
            "none",
            image,
            "python3",
            "-c",
            "import sys; print('%d.%d' % sys.version_info[:2])",
        )
        return res.stdout.strip()

    # ---- containers ----------------------------------------------------------------------------

    def start(
        self,
        image: str,
        env: Mapping[str, str],
        *,
        mounts: Sequence[str] = (),
        name: str | None = None,
    ) -> Container:
        """``podman run -d`` on the host network."""
        name = name or f"syncagent-test-{uuid.uuid4().hex[:10]}"
        args = ["run", "-d", "--name", name, "--network", "host", "--stop-timeout", "30"]
        for m in mounts:
            args += ["-v", m]
        for k, v in env.items():
            args += ["-e", f"{k}={v}"]
        self(*args, image)
        return Container(self, name)


@dataclass
class Container:
    podman: Podman
    name: str

    def logs(self) -> str:
        res = self.podman("logs", self.name, check=False)
        return res.stdout + res.stderr

    def exec(
        self, *cmd: str, user: str | None = None, check: bool = False, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        args = ["exec", *(["--user", user] if user else []), self.name, *cmd]
        return self.podman(*args, check=check, timeout=timeout)

    def inspect(self, fmt: str) -> str:
        return self.podman("inspect", "--format", fmt, self.name).stdout.strip()

    def state(self) -> tuple[str, int]:
        status, _, code = self.inspect("{{.State.Status}} {{.State.ExitCode}}").partition(" ")
        return status, int(code or -1)

    def wait_exit(self, timeout: float) -> int | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            status, code = self.state()
            if status in ("exited", "stopped"):
                return code
            time.sleep(0.2)
        return None

    def upper_dir(self) -> Path:
        """The container's writable layer on the host (native overlay), for watching files."""
        return Path(self.inspect("{{.GraphDriver.Data.UpperDir}}"))

    def host_pids(self, needle: str) -> list[int]:
        """Host pids of the container's processes whose command line contains ``needle``."""
        root = int(self.inspect("{{.State.Pid}}"))
        children: dict[int, list[int]] = {}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError):
                    stat = (entry / "stat").read_text()
                    children.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(
                        int(entry.name)
                    )
        found, todo = [], [root]
        while todo:
            pid = todo.pop()
            with contextlib.suppress(OSError):
                if needle in (
                    Path(f"/proc/{pid}/cmdline")
                    .read_bytes()
                    .replace(b"\0", b" ")
                    .decode(errors="replace")
                ):
                    found.append(pid)
            todo += children.get(pid, [])
        return found

    def remove(self) -> None:
        self.podman("rm", "-f", "-t", "0", self.name, check=False)


# ---- the wheelhouse ------------------------------------------------------------------------------


def _platforms() -> list[str]:
    """manylinux tags a bookworm (glibc 2.36) interpreter accepts, for pip download."""
    arch = platform.machine()
    return [f"manylinux_2_{minor}_{arch}" for minor in range(36, 16, -1)] + [
        f"manylinux2014_{arch}"
    ]


def wheelhouse(python: str = STANDIN_PYTHON) -> Path:
    """Every package the image's ``pip install /src`` needs, as wheels for ``python``.

    Downloaded once per dependency set and interpreter into the cache (binary wheels only, so
    what the image installs is what the host fetched; the build stage never reaches an index).
    """
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    requirements = [*project["build-system"]["requires"], "wheel"]
    lock = REPO / "requirements" / "runtime.lock"  # what the image installs, hashes checked
    spec = {
        "python": python,
        "platforms": _platforms(),
        "requirements": requirements,
        "lock": hashlib.sha256(lock.read_bytes()).hexdigest(),
    }
    key = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]
    dest = CACHE / "wheelhouse" / key
    if (dest / ".complete").exists():
        return dest
    tmp = dest.with_name(key + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    abi = "cp" + python.replace(".", "")
    cmd = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--quiet",
        "--disable-pip-version-check",
        "--dest",
        str(tmp),
        "--only-binary=:all:",
        "--python-version",
        python,
        "--implementation",
        "cp",
        "--abi",
        abi,
        "--abi",
        "abi3",
        "--abi",
        "none",
    ]
    for plat in _platforms():
        cmd += ["--platform", plat]
    env = {k: v for k, v in os.environ.items() if k != "PIP_FIND_LINKS"}  # the index only
    for args in (requirements, ["--require-hashes", "-r", str(lock)]):
        res = subprocess.run([*cmd, *args], capture_output=True, text=True, env=env, timeout=600)
        if res.returncode != 0:
            break
    assert res.returncode == 0, f"pip download failed:\n{res.stdout}\n{res.stderr}"
    (tmp / ".complete").write_text(json.dumps(spec, indent=1))
    shutil.rmtree(dest, ignore_errors=True)
    tmp.rename(dest)
    return dest


# ---- everything the image tests build, once per session -----------------------------------------


@dataclass
class Built:
    """What ``built`` made this session: each build's output and how long each step took."""

    podman: Podman
    outputs: dict[str, str] = field(default_factory=dict)  # image tag -> podman build's output
    timings: dict[str, float] = field(default_factory=dict)


_SESSION: dict[str, Built] = {}


def built(podman: Podman) -> Built:
    """The stand-in bases (docker/standin/build.py, all at once: debootstrap takes about a minute
    each when cold) and both images (docker/Dockerfile, docker/Dockerfile.primary) on them, with
    pip taking every package from the host's wheelhouse. The first caller of a session pays;
    later ones (another module) get the same result."""
    if "built" in _SESSION:
        return _SESSION["built"]
    result = Built(podman)
    t0 = time.monotonic()
    procs = {tag: podman.standin(suite, role) for tag, (role, suite) in STANDINS.items()}
    wheels = wheelhouse()
    result.timings["wheelhouse"] = time.monotonic() - t0
    for tag, proc in procs.items():
        proc.communicate(timeout=900)
        role, suite = STANDINS[tag]
        log = podman.standin_log(suite, role).read_text()
        assert proc.returncode == 0, (
            f"docker/standin/build.py --role {role} --suite {suite}:\n{log[-4000:]}"
        )
        result.timings[f"standin {role} {suite}"] = time.monotonic() - t0
    for tag in (STANDIN, STANDIN_PRIMARY):
        assert podman.python_version(tag) == STANDIN_PYTHON, f"{tag}: the wheelhouse is for 3.11"
    for tag, (dockerfile, base) in IMAGES.items():
        t1 = time.monotonic()
        res = podman.build(
            tag,
            REPO,
            dockerfile,
            build_args={"BASE": base, "WHEELHOUSE": WHEELHOUSE_IN_BUILD},
            volumes=[f"{wheels}:{WHEELHOUSE_IN_BUILD}:ro"],
        )
        result.outputs[tag] = res.stdout + res.stderr
        result.timings[f"build {tag}"] = time.monotonic() - t1
    print(f"image setup: {json.dumps({k: round(v, 1) for k, v in result.timings.items()})}")
    _SESSION["built"] = result
    return result


@contextlib.contextmanager
def removing(containers: list[Container]) -> Iterator[list[Container]]:
    """Remove every container put in the list, whatever happens."""
    try:
        yield containers
    finally:
        for c in containers:
            c.remove()
