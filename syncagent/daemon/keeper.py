"""One SSH connection kept open across syncs, re-opened on loss with backoff.

A fresh handshake per sync is what made sshd's MaxStartups drop secondaries that all fired at
:00; one long-lived connection (with asyncssh keepalives to notice a dead peer) costs the
primary nothing between syncs. When it drops, reconnects back off exponentially with full jitter
so an absent primary is not hammered by every replica in step.

Syncs never wait out a backoff: ``session()`` answers at once with the last connect error, which
the sync reports with its reason code. A change to identity_file or known_hosts (a rotated
Kubernetes Secret swaps ``..data`` in the mount directory) opens a new connection with the new
files and retires the old one once no sync uses it.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import structlog

from syncagent import fswatch
from syncagent.daemon.status import DaemonState
from syncagent.errors import Reason, SyncError
from syncagent.remote.connection import Session, classify, connect
from syncagent.settings import PrimarySettings

log = structlog.get_logger("syncagent.daemon.keeper")

BACKOFF_BASE = 1.0
BACKOFF_CAP = 60.0
KEEPALIVE_MAX = 15.0

Connector = Callable[..., Awaitable[Session]]


def backoff_ceiling(attempt: int, base: float = BACKOFF_BASE, cap: float = BACKOFF_CAP) -> float:
    return float(min(cap, base * 2 ** min(attempt, 62)))


def backoff_delay(
    attempt: int,
    base: float = BACKOFF_BASE,
    cap: float = BACKOFF_CAP,
    rng: random.Random | None = None,
) -> float:
    """Full jitter: uniform in [0, min(cap, base * 2**attempt)] (attempt counts from 0).

    Full rather than equal jitter spreads replicas that lost the primary at the same instant.
    """
    return (rng or random).uniform(0.0, backoff_ceiling(attempt, base, cap))


def keepalive_for(interval: float) -> float:
    return max(1.0, min(KEEPALIVE_MAX, interval))


class ConnectionKeeper:
    def __init__(
        self,
        primary: PrimarySettings,
        pin: Path,
        interval: float,
        state: DaemonState,
        *,
        rng: random.Random | None = None,
        on_connected: Callable[[], None] = lambda: None,
        on_change: Callable[[], None] = lambda: None,
        connector: Connector = connect,
    ) -> None:
        """``pin``: the accept-new key file; ``interval``: sync.interval, which sets keepalive."""
        self.primary = primary
        self.pin = pin
        self.state = state
        self.rng = rng or random.Random()
        self.on_connected = on_connected
        self.on_change = on_change
        self.connector = connector
        self.keepalive = keepalive_for(interval)
        self.last_error: SyncError | None = None
        self.next_attempt_in: float | None = None
        self._session: Session | None = None
        self._retired: list[Session] = []
        self._leases = 0
        self._wake = asyncio.Event()
        self._rekey = False
        self._idle = asyncio.Event()  # set while no connect attempt is in flight
        self._idle.set()
        self._attempted = asyncio.Event()  # set once the first attempt has finished
        self._fingerprint = credentials_fingerprint(primary)

    # ---- what syncs use ------------------------------------------------------------------

    @property
    def usable(self) -> bool:
        return self._session is not None and not self._session.closed

    async def session(self) -> Session:
        """The open session, or the reason there is none (without waiting out a backoff)."""
        if not self.usable and not self._idle.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), self.primary.connect_timeout + 2)
        if self._session is not None and not self._session.closed:
            return self._session
        raise self.last_error or SyncError(Reason.CONNECT, "not connected to the primary yet")

    async def wait_first_attempt(self) -> None:
        await self._attempted.wait()

    @contextlib.asynccontextmanager
    async def lease(self) -> AsyncIterator[None]:
        """Marks a session in use, so a rotation does not close it under a running sync."""
        self._leases += 1
        try:
            yield
        finally:
            self._leases -= 1
            if self._leases == 0:
                await self._close_retired()

    def discard(self) -> None:
        """After a timeout the connection may be wedged: replace it."""
        if self._session is not None:
            self._retired.append(self._session)
            self._session = None
            self._set_connected(False)
            self._wake.set()

    def retry_now(self) -> None:
        """An operator asked for a sync: skip what is left of the backoff."""
        if not self.usable:
            self.state.reconnect_attempts = 0
            self._wake.set()

    def request_rekey(self) -> None:
        self._rekey = True
        self.state.reconnect_attempts = 0
        self._wake.set()

    # ---- the loop ------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        try:
            while not stop.is_set():
                if not self.usable:
                    await self._reconnect(stop)
                elif self._rekey:
                    await self._rotate()
                else:
                    await self._wait_for_loss(stop)
        finally:
            await self.close()

    async def _reconnect(self, stop: asyncio.Event) -> None:
        if self._session is not None:  # lost: keepalive or the peer closed it
            log.warning("connection_lost", host=self.primary.host)
            self._retired.append(self._session)
            self._session = None
            self._set_connected(False)
        if self._leases == 0:
            await self._close_retired()
        self._rekey = False
        self._wake.clear()
        session = await self._try_connect()
        if session is not None:
            self.state.reconnect_attempts = 0
            self.next_attempt_in = None
            self._install(session)
            return
        assert self.last_error is not None
        delay = backoff_delay(self.state.reconnect_attempts, rng=self.rng)
        self.state.reconnect_attempts += 1
        self.next_attempt_in = delay
        log.warning(
            "connect_failed",
            reason=str(self.last_error.reason),
            error=self.last_error.message,
            attempt=self.state.reconnect_attempts,
            retry_in=round(delay, 2),
        )
        self.on_change()
        await _wait_any(stop.wait(), self._wake.wait(), timeout=delay)

    async def _rotate(self) -> None:
        self._rekey = False
        session = await self._try_connect()
        if session is None:
            assert self.last_error is not None
            log.warning(
                "credentials_changed_reconnect_failed",
                reason=str(self.last_error.reason),
                error=self.last_error.message,
                hint="keeping the open connection; it is replaced when it drops",
            )
            return
        if self._session is not None:
            self._retired.append(self._session)
        self._install(session)
        log.info("reconnected", why="credentials changed")
        if self._leases == 0:
            await self._close_retired()

    async def _try_connect(self) -> Session | None:
        self._idle.clear()
        try:
            return await self.connector(self.primary, self.pin, keepalive=self.keepalive)
        except SyncError as e:
            self.last_error = e
            return None
        except Exception as e:  # never let the keeper die: it would never reconnect
            self.last_error = classify(e)
            return None
        finally:
            self._idle.set()
            self._attempted.set()

    def _install(self, session: Session) -> None:
        self._session = session
        self.last_error = None
        self.state.connects += 1
        self._set_connected(True)
        log.info(
            "connected",
            host=self.primary.host,
            port=self.primary.port,
            connects=self.state.connects,
        )
        self.on_connected()

    async def _wait_for_loss(self, stop: asyncio.Event) -> None:
        assert self._session is not None
        self._wake.clear()
        await _wait_any(stop.wait(), self._wake.wait(), self._session.conn.wait_closed())

    def _set_connected(self, connected: bool) -> None:
        if self.state.connected != connected:
            self.state.connected = connected
            self.on_change()

    async def _close_retired(self) -> None:
        retired, self._retired = self._retired, []
        for s in retired:
            await s.close()

    async def close(self) -> None:
        if self._session is not None:
            self._retired.append(self._session)
            self._session = None
        self._set_connected(False)
        await self._close_retired()

    # ---- credential rotation -------------------------------------------------------------

    def credential_dirs(self) -> tuple[Path, ...]:
        dirs = {fswatch.existing_ancestor(f.parent) for f in _credential_files(self.primary)}
        return tuple(sorted(dirs))

    def on_credential_event(self, _changes: fswatch.Changes) -> None:
        fp = credentials_fingerprint(self.primary)
        if fp != self._fingerprint:
            self._fingerprint = fp
            log.info("credentials_changed", action="reconnecting with the new files")
            self.request_rekey()

    async def watch_credentials(self, stop: asyncio.Event) -> None:
        await fswatch.watch("credentials", self.credential_dirs, self.on_credential_event, stop)


def _credential_files(primary: PrimarySettings) -> list[Path]:
    return [f for f in (primary.identity_file, primary.known_hosts) if f is not None]


def credentials_fingerprint(primary: PrimarySettings) -> str:
    """A digest of the key and known_hosts bytes: tells a real change from a touched mount.

    Only the digest is kept and it is never logged.
    """
    h = hashlib.sha256()
    for path in _credential_files(primary):
        try:
            h.update(path.read_bytes())
        except OSError as e:
            h.update(f"unreadable:{e.errno}".encode())
        h.update(b"\0")
    return h.hexdigest()


async def _wait_any(*aws: Awaitable[object], timeout: float | None = None) -> None:
    tasks = [asyncio.ensure_future(a) for a in aws]
    try:
        await asyncio.wait(tasks, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
