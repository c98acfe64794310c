"""A real OpenSSH sshd on loopback, configured like a least-privilege X-Road primary.

Mocks of asyncssh would not tell us how ``internal-sftp -R`` refuses writes, what a ForceCommand
does to an exec request, how mtimes round, or what a host-key change looks like to the client.
So tests run the real daemon: own config, own host key, own port, two accounts (``root`` with a
shell, ``xroad-slave`` read-only SFTP only), the same Match block the notes recommend.

Everything lives under one ``mkdtemp`` directory made traversable (0711), because sshd reads
``authorized_keys`` and internal-sftp serves files *as the logged-in user*, and pytest's
``tmp_path`` parents are 0700.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

SSHD = "/usr/sbin/sshd"
USERS = ("root", "xroad-slave")
START_TIMEOUT = 5.0


def ensure_xroad_accounts() -> None:
    """Create the accounts a primary has: ``xroad`` owns /etc/xroad, ``xroad-slave`` reads it.

    ``-p '*'``: useradd's default password field is ``!`` (locked), and with ``UsePAM no`` sshd
    refuses *any* login, key-based too, to a locked account ("account is locked").
    """
    if os.geteuid() != 0:
        return
    try:
        grp.getgrnam("xroad")
    except KeyError:
        subprocess.run(["groupadd", "-r", "xroad"], check=True)
    for user, extra in (
        ("xroad", ["-g", "xroad", "-s", "/usr/sbin/nologin"]),
        ("xroad-slave", ["-G", "xroad", "-s", "/bin/bash"]),
    ):
        try:
            pwd.getpwnam(user)
        except KeyError:
            subprocess.run(
                ["useradd", "-r", "-M", "-d", "/nonexistent", "-p", "*", *extra, user],
                check=True,
            )
    # An image may have made xroad-slave itself, locked. `passwd -S` says "L" for both "!" and
    # "*" (cannot tell them apart), so set "*" (no password, not locked for sshd) whenever it does.
    status = subprocess.run(["passwd", "-S", "xroad-slave"], capture_output=True, text=True)
    if status.returncode == 0 and status.stdout.split()[1:2] == ["L"]:
        subprocess.run(["usermod", "-p", "*", "xroad-slave"], check=True)


_handed_out: set[int] = set()


def free_port() -> int:
    """Ask the kernel for an unused port, never one this process was already given.

    The caller binds it a moment later (a tiny, accepted race with other processes). Within one
    test the kernel may offer a port again once the probe socket is closed and before its first
    taker binds it: Prometheus and an agent were once both given the same port.
    """
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port not in _handed_out:
            _handed_out.add(port)
            return port


def make_traversable_dir(prefix: str) -> Path:
    """A private temp dir that other users may traverse but not list (sshd drops privileges)."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    path.chmod(0o711)
    return path


def fresh_subdir(parent: Path, name: str) -> Path:
    """An empty ``parent/<unique>/<name>`` with mode 0755, so the basename is what tests asked."""
    holder = Path(tempfile.mkdtemp(prefix=f"{name}-", dir=parent))
    holder.chmod(0o711)
    path = holder / name
    path.mkdir()
    path.chmod(0o755)
    return path


def _keygen(path: Path, key_type: str, comment: str) -> None:
    path.unlink(missing_ok=True)
    Path(f"{path}.pub").unlink(missing_ok=True)
    cmd = ["ssh-keygen", "-q", "-N", "", "-t", key_type, "-C", comment, "-f", str(path)]
    if key_type == "rsa":
        cmd[6:6] = ["-b", "3072"]
    subprocess.run(cmd, check=True, capture_output=True)


def descendants(pid: int) -> list[int]:
    """Descendant pids from /proc, deepest first.

    sshd's per-connection processes call setsid(), so a process-group signal misses them, and
    once the listener is gone they are re-parented and can no longer be found this way.
    """
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry.name))
    found: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(0), []):
            found.append(child)
            todo.append(child)
    return found[::-1]


@dataclass
class Sshd:
    """One sshd instance; ``start()`` it, ``stop()``/``close()`` it. Port and keys survive restarts.

    ``known_hosts`` trusts the host key present at construction time and is deliberately *not*
    updated by ``regenerate_host_key()``: that is what lets a test play a MITM / re-keyed primary.
    Call ``refresh_known_hosts()`` to trust the new key.
    """

    host: str = "127.0.0.1"
    base: Path = field(default_factory=lambda: make_traversable_dir("syncagent-sshd-"))
    port: int = field(default_factory=free_port)
    sshd_bin: str = SSHD
    _proc: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.base.chmod(0o711)
        (self.base / "client").mkdir(mode=0o700, exist_ok=True)
        (self.base / "authorized_keys").mkdir(exist_ok=True)
        (self.base / "authorized_keys").chmod(0o755)
        (self.base / "trees").mkdir(exist_ok=True)
        (self.base / "trees").chmod(0o711)
        _keygen(self.host_key, "ed25519", "syncagent-test-host")
        _keygen(self.client_key, "rsa", "syncagent-test-client")
        _keygen(self.client_key_ed25519, "ed25519", "syncagent-test-client")
        pubs = "".join(
            Path(f"{key}.pub").read_text() for key in (self.client_key, self.client_key_ed25519)
        )
        for user in USERS:
            path = self.base / "authorized_keys" / user
            path.write_text(pubs)
            path.chmod(0o644)
        self.config.write_text(self._config_text())
        self.refresh_known_hosts()

    # ---- paths -----------------------------------------------------------------------------

    @property
    def host_key(self) -> Path:
        return self.base / "ssh_host_ed25519_key"

    @property
    def client_key(self) -> Path:
        """RSA, like the deployment's ``/etc/.ssh/id_rsa``."""
        return self.base / "client" / "id_rsa"

    @property
    def client_key_ed25519(self) -> Path:
        return self.base / "client" / "id_ed25519"

    @property
    def config(self) -> Path:
        return self.base / "sshd_config"

    @property
    def known_hosts(self) -> Path:
        return self.base / "known_hosts"

    @property
    def log_path(self) -> Path:
        return self.base / "sshd.log"

    @property
    def pid_file(self) -> Path:
        return self.base / "sshd.pid"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else None

    def _log_bytes(self, offset: int = 0) -> bytes:
        try:
            with self.log_path.open("rb") as fh:
                fh.seek(offset)
                return fh.read()
        except FileNotFoundError:
            return b""

    def log_text(self) -> str:
        """Everything sshd logged (all runs); its CRLF line ends made LF."""
        return self._log_bytes().decode(errors="replace").replace("\r\n", "\n")

    def new_primary_tree(self, name: str) -> Path:
        """A fresh empty directory (0755) that ``xroad-slave`` can reach through sshd."""
        return fresh_subdir(self.base / "trees", name)

    # ---- host key --------------------------------------------------------------------------

    def host_public_key(self) -> str:
        """``<type> <base64>`` of the current host key, without comment."""
        return " ".join(Path(f"{self.host_key}.pub").read_text().split()[:2])

    def known_hosts_line(self) -> str:
        """OpenSSH writes non-22 ports in bracketed form; asyncssh matches only that form."""
        return f"[{self.host}]:{self.port} {self.host_public_key()}\n"

    def refresh_known_hosts(self) -> Path:
        self.known_hosts.write_text(self.known_hosts_line())
        return self.known_hosts

    def regenerate_host_key(self) -> str:
        """New host key on disk (sshd reads it only at start: restart to serve it)."""
        _keygen(self.host_key, "ed25519", "syncagent-test-host-regenerated")
        return self.host_public_key()

    # ---- lifecycle -------------------------------------------------------------------------

    def _config_text(self) -> str:
        return (
            f"ListenAddress {self.host}\n"
            f"Port {self.port}\n"
            f"HostKey {self.host_key}\n"
            f"PidFile {self.pid_file}\n"
            f"AuthorizedKeysFile {self.base}/authorized_keys/%u\n"
            "StrictModes no\n"
            "UsePAM no\n"
            "PasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\n"
            "PermitRootLogin prohibit-password\n"
            "Subsystem sftp internal-sftp\n"
            "LogLevel VERBOSE\n"
            "\n"
            "Match User xroad-slave\n"
            "    ForceCommand internal-sftp -R\n"
            "    AllowTcpForwarding no\n"
            "    X11Forwarding no\n"
            "    PermitTTY no\n"
        )

    def start(self) -> None:
        if self.pid is not None:
            return
        # Privilege separation needs its empty chroot dir; a container may lack it.
        Path("/run/sshd").mkdir(mode=0o755, parents=True, exist_ok=True)
        log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as log:
            self._proc = subprocess.Popen(
                [self.sshd_bin, "-D", "-e", "-f", str(self.config)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        self._wait_ready(log_offset)

    def _wait_ready(self, log_offset: int) -> None:
        """Wait for the "listening" log line, then prove it with one TCP connect.

        Polling connect() alone would leave a handful of preauth connections in the log.  The
        offset is in bytes: sshd -e ends its lines with CRLF, so text offsets would drift.
        """
        assert self._proc is not None
        marker = f"Server listening on {self.host} port {self.port}".encode()
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                break
            if marker in self._log_bytes(log_offset):
                try:
                    with socket.create_connection((self.host, self.port), timeout=1):
                        return
                except OSError:
                    pass
            time.sleep(0.02)
        rc = self._proc.poll()
        self.kill()
        tail = "\n".join(self.log_text().splitlines()[-30:])
        raise RuntimeError(
            f"sshd did not start on {self.host}:{self.port} within {START_TIMEOUT}s "
            f"(exit code {rc}); config {self.config}; log tail:\n{tail}"
        )

    def _signal(self, sig: signal.Signals, *, drop_sessions: bool) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            # Freeze the listener so no session is forked between listing and signalling.
            os.kill(proc.pid, signal.SIGSTOP)
            for pid in descendants(proc.pid) if drop_sessions else []:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            proc.send_signal(sig)
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGCONT)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        self._proc = None

    def stop(self, *, drop_sessions: bool = True) -> None:
        """SIGTERM the listener and, by default, its live sessions, as when a primary pod dies.

        ``drop_sessions=False`` keeps established connections (sshd's own behaviour on SIGTERM).
        """
        self._signal(signal.SIGTERM, drop_sessions=drop_sessions)

    def kill(self, *, drop_sessions: bool = True) -> None:
        """SIGKILL: a crash, with no chance to say goodbye to clients."""
        self._signal(signal.SIGKILL, drop_sessions=drop_sessions)

    def restart(self) -> None:
        """Same port, same config; serves whatever host key is on disk now."""
        self.stop()
        self.start()

    def close(self) -> None:
        """Stop and delete everything, trees included."""
        self.stop()
        shutil.rmtree(self.base, ignore_errors=True)
