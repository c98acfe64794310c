"""SSH/SFTP connection to the primary, with host-key policy and failure classification.

Only the SFTP subsystem is used, so the primary can lock the account down to
``ForceCommand internal-sftp -R``. Key and known_hosts files are read on every connect so a
rotated Kubernetes Secret takes effect without a restart.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
from collections.abc import Awaitable, Callable, Coroutine, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import asyncssh
import structlog

from syncagent.errors import Reason, SyncError
from syncagent.settings import PrimarySettings

log = structlog.get_logger("syncagent.remote.connection")

# AES-GCM first: hardware-accelerated in `cryptography`, where asyncssh's chacha20-poly1305
# builds cipher contexts per packet (profiled: the largest client cost of a full sync).
CIPHERS = (
    "aes128-gcm@openssh.com",
    "aes256-gcm@openssh.com",
    "chacha20-poly1305@openssh.com",
    "aes128-ctr",
    "aes256-ctr",
)
T = TypeVar("T")


@dataclass
class Session:
    """One open connection and its SFTP channel; reused across syncs by the daemon."""

    conn: asyncssh.SSHClientConnection
    sftp: asyncssh.SFTPClient
    io_timeout: float
    timed_out: bool = False  # a request went unanswered: the connection was aborted

    @property
    def closed(self) -> bool:
        return self.conn.is_closed()

    def abort(self) -> None:
        """Drop the connection at once; every pending request fails immediately."""
        self.timed_out = True
        self.conn.abort()

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            self.sftp.exit()
        self.conn.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.conn.wait_closed(), 2)


async def request(session: Session, op: Awaitable[T]) -> T:
    """One SFTP request, answered within ``io_timeout`` or TimeoutError.

    ``asyncio.wait_for`` is not enough: cancelling a stalled asyncssh request runs its cleanup
    (closing the remote handle), which waits on the same silent primary, and wait_for waits for
    that cleanup, so a cut link or a stuck primary held the sync until ``sync.timeout``. At the
    deadline the connection is aborted instead: every pending request fails at once, and each
    reports TimeoutError.
    """
    with answered_within(session):
        return await op


@contextlib.contextmanager
def answered_within(session: Session) -> Iterator[Callable[[], None]]:
    """``request``'s deadline for a stream of answers (a directory's names): the connection is
    aborted when ``io_timeout`` passes without one. Call the yielded function on each answer;
    it only notes the time, since a timer per name was a measurable part of a 10k listing."""
    loop = asyncio.get_running_loop()
    last = loop.time()
    timer: asyncio.TimerHandle

    def check() -> None:
        nonlocal timer
        due = last + session.io_timeout
        if loop.time() >= due:
            session.abort()
        else:
            timer = loop.call_at(due, check)

    def answered() -> None:
        nonlocal last
        last = loop.time()

    timer = loop.call_at(last + session.io_timeout, check)
    try:
        yield answered
    except Exception:
        if session.timed_out:
            raise TimeoutError(f"no answer within io_timeout={session.io_timeout:g}s") from None
        raise
    finally:
        timer.cancel()


async def gather_or_cancel(coros: Iterable[Coroutine[Any, Any, Any]]) -> None:
    """Run SFTP requests concurrently; the first failure cancels the rest and is re-raised as
    itself (not wrapped), so callers keep matching on SyncError and friends."""
    tasks = [asyncio.ensure_future(c) for c in coros]
    try:
        await asyncio.gather(*tasks)
    except BaseException:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        raise


def host_pattern(host: str, port: int) -> str:
    return host if port == 22 else f"[{host}]:{port}"


async def connect(
    primary: PrimarySettings, pin: Path, *, keepalive: float | None = None
) -> Session:
    """Open a session or raise SyncError with the reason an operator needs to act on.

    ``pin`` is where host_key_policy = accept-new keeps the first key it saw.
    """
    host, port = primary.host, primary.port
    policy = primary.host_key_policy
    known_hosts: Any
    if policy == "strict":
        assert primary.known_hosts is not None  # the settings' cross-checks require it
        known_hosts = _read_known_hosts(primary.known_hosts)
    elif policy == "accept-new" and pin.exists():
        known_hosts = _read_known_hosts(pin)
    else:
        known_hosts = None
        if policy == "insecure":
            log.warning(
                "host_key_unchecked",
                host=host,
                policy=policy,
                hint="anyone on the path can impersonate the primary",
            )
    try:
        client_key = asyncssh.read_private_key(str(primary.identity_file))
    except (OSError, asyncssh.KeyImportError) as e:
        why = key_problem(primary.identity_file) or _strerror(e)
        raise SyncError(
            Reason.AUTH, f"cannot read identity_file {primary.identity_file}: {why}"
        ) from None

    timeout = primary.connect_timeout
    try:
        conn = await asyncio.wait_for(
            asyncssh.connect(
                host,
                port=port,
                username=primary.user,
                client_keys=[client_key],
                known_hosts=known_hosts,
                config=[],
                agent_path=None,
                password=None,
                kbdint_auth=False,
                password_auth=False,
                connect_timeout=timeout,
                login_timeout=timeout,
                keepalive_interval=keepalive or 0,
                encryption_algs=CIPHERS,
                keepalive_count_max=3,
            ),
            timeout + 1,
        )
    except BaseException as e:
        if isinstance(e, asyncio.CancelledError):
            raise
        raise classify(e, f"{host}:{port}") from None

    try:
        if policy == "accept-new" and not pin.exists():
            _pin_host_key(conn, pin, host_pattern(host, port))
        sftp = await asyncio.wait_for(conn.start_sftp_client(), timeout)
    except BaseException as e:
        conn.close()
        if isinstance(e, asyncio.CancelledError | SyncError):
            raise
        raise classify(e, f"{host}:{port}") from None
    log.debug("connected", host=host, port=port, user=primary.user)
    return Session(conn, sftp, primary.io_timeout)


def _read_known_hosts(path: Path) -> asyncssh.SSHKnownHosts:
    try:
        return asyncssh.read_known_hosts(str(path))
    except (OSError, ValueError) as e:
        raise SyncError(
            Reason.HOST_KEY, f"cannot read known_hosts {path}: {_strerror(e)}"
        ) from None


def key_problem(path: Path) -> str | None:
    """Why ``path`` is no private key the agent can use, or None. Parsed with asyncssh as a
    connect would; the message names the file and what is wrong, never its content."""
    try:
        data = path.read_bytes()
    except OSError as e:
        return _strerror(e)
    if not data.strip():
        return "the file is empty"
    try:
        asyncssh.import_private_key(data)
    except asyncssh.KeyImportError as e:
        if "assphrase" in str(e):
            return "the key is encrypted: the agent needs a key without a passphrase"
        with contextlib.suppress(asyncssh.KeyImportError, ValueError):
            asyncssh.import_public_key(data)
            return "this is a public key: give the private key (the file without .pub)"
        return "not a private key asyncssh can read (OpenSSH, PEM or PKCS#8)"
    return None


def known_hosts_problems(path: Path) -> list[str]:
    """Lines of a known_hosts file a connect cannot use (asyncssh skips them silently), or
    that it holds no host key at all: either way every strict connect fails as host_key."""
    try:
        text = path.read_text("utf-8", "replace")
    except OSError as e:
        return [_strerror(e)]
    problems: list[str] = []
    entries = 0
    for n, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields or fields[0].startswith("#"):
            continue
        if fields[0] in ("@cert-authority", "@revoked"):
            fields = fields[1:]
        try:
            asyncssh.import_public_key(" ".join(fields[1:3]))
        except (asyncssh.KeyImportError, ValueError):
            problems.append(f"line {n}: not a known_hosts entry (HOSTS KEYTYPE BASE64-KEY)")
            continue
        entries += 1
    if not entries and not problems:
        problems.append("holds no host key: every connect fails host_key")
    return problems


def _pin_host_key(conn: asyncssh.SSHClientConnection, pin: Path, pattern: str) -> None:
    key = conn.get_server_host_key()
    if key is None:
        raise SyncError(Reason.HOST_KEY, "server presented no host key to pin")
    line = f"{pattern} {key.export_public_key().decode().strip()}\n"
    pin.parent.mkdir(parents=True, exist_ok=True)
    tmp = pin.with_suffix(".tmp")
    tmp.write_text(line)
    os.replace(tmp, pin)
    log.warning(
        "host_key_pinned",
        host=pattern,
        fingerprint=key.get_fingerprint(),
        file=str(pin),
        hint="later connections must present this key",
    )


def classify(exc: BaseException, where: str = "") -> SyncError:
    """Map a transport exception to the reason code logs, metrics and exit codes share."""
    if isinstance(exc, SyncError):
        return exc
    prefix = f"{where}: " if where else ""
    if isinstance(exc, asyncssh.HostKeyNotVerifiable):
        return SyncError(Reason.HOST_KEY, f"{prefix}host key not trusted ({exc.reason})")
    if isinstance(exc, asyncssh.PermissionDenied):
        return SyncError(Reason.AUTH, f"{prefix}authentication refused ({exc.reason})")
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return SyncError(Reason.TIMEOUT, f"{prefix}timed out")
    if isinstance(exc, asyncssh.ConnectionLost):
        return SyncError(Reason.CONNECT, f"{prefix}connection lost ({exc.reason})")
    if isinstance(exc, asyncssh.DisconnectError):
        return SyncError(Reason.CONNECT, f"{prefix}disconnected ({exc.reason})")
    if isinstance(exc, asyncssh.ChannelOpenError):
        return SyncError(Reason.REMOTE_IO, f"{prefix}SFTP channel refused ({exc.reason})")
    if isinstance(exc, asyncssh.SFTPPermissionDenied):
        return SyncError(
            Reason.REMOTE_IO,
            f"{prefix}the primary refuses the sync account read access ({exc.reason}): make it "
            "readable through the tree's group (chmod g+r, group xroad) or exclude it "
            "(sync.exclude); nothing is applied until the whole tree can be read",
        )
    if isinstance(exc, asyncssh.SFTPError):
        return SyncError(Reason.REMOTE_IO, f"{prefix}SFTP error ({exc.reason})")
    if isinstance(exc, OSError):
        if exc.errno in (errno.ETIMEDOUT,):
            return SyncError(Reason.TIMEOUT, f"{prefix}{_strerror(exc)}")
        return SyncError(Reason.CONNECT, f"{prefix}{_strerror(exc)}")
    return SyncError(Reason.REMOTE_IO, f"{prefix}{type(exc).__name__}: {exc}")


def _strerror(e: BaseException) -> str:
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return str(e) or type(e).__name__
