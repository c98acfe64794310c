"""The demo's primary: a generated X-Road tree behind a read-only asyncssh SFTP server.

Read-only like the recommended ``internal-sftp -R`` account, with its own host key pinned in a
known_hosts file (strict checking, as in production); ``churn`` changes the tree the way an
admin would.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncssh

from syncagent.demo.sample_tree import (
    add_softtoken_key,
    build_primary_tree,
    build_secondary_local,
    remove_softtoken_key,
)
from syncagent.xroad.paths import KEYCONF_PATH, softtoken_key_ids

CHURN_EVERY = 4.0
KEEP_KEYS = 5


@dataclass(frozen=True)
class Layout:
    base: Path

    @property
    def chroot(self) -> Path:
        return self.base / "primary"

    @property
    def primary(self) -> Path:
        return self.chroot / "etc" / "xroad"

    @property
    def target(self) -> Path:
        return self.base / "secondary" / "etc" / "xroad"

    @property
    def keys(self) -> Path:
        return self.base / "keys"

    @property
    def client_key(self) -> Path:
        return self.keys / "id_ed25519"

    @property
    def known_hosts(self) -> Path:
        return self.keys / "known_hosts"

    @property
    def config(self) -> Path:
        return self.base / "syncagent.toml"


class ReadOnlySFTP(asyncssh.SFTPServer):
    """Refuses every write, as ``ForceCommand internal-sftp -R`` does on a real primary."""

    def __init__(self, chan: asyncssh.SSHServerChannel[bytes], root: Path) -> None:
        super().__init__(chan, chroot=os.fsencode(root))

    def open(self, path: bytes, pflags: int, attrs: asyncssh.SFTPAttrs) -> object:
        if pflags & ~asyncssh.FXF_READ:
            raise asyncssh.SFTPPermissionDenied("read-only")
        return super().open(path, pflags, attrs)

    def open56(
        self, path: bytes, desired_access: int, flags: int, attrs: asyncssh.SFTPAttrs
    ) -> object:
        raise asyncssh.SFTPPermissionDenied("read-only")

    def _refuse(self, *_: Any) -> None:
        raise asyncssh.SFTPPermissionDenied("read-only")

    write = remove = rename = posix_rename = mkdir = rmdir = _refuse  # type: ignore[assignment]
    setstat = fsetstat = lsetstat = symlink = link = _refuse  # type: ignore[assignment]


def prepare(layout: Layout) -> None:
    """Trees are kept across runs with --dir (a restart shows readiness surviving it)."""
    if not layout.primary.exists():
        build_primary_tree(layout.primary, mtime=time.time() - 3600)
    if not layout.target.exists():
        build_secondary_local(layout.target)
    layout.keys.mkdir(mode=0o700, parents=True, exist_ok=True)
    if not layout.client_key.exists():
        key = asyncssh.generate_private_key("ssh-ed25519", comment="syncagent-demo")
        key.write_private_key(str(layout.client_key))
        layout.client_key.chmod(0o600)
        key.write_public_key(f"{layout.client_key}.pub")


async def start_primary(layout: Layout) -> tuple[asyncssh.SSHAcceptor, int]:
    host_key = asyncssh.generate_private_key("ssh-ed25519", comment="syncagent-demo-host")
    client_pub = asyncssh.read_public_key(f"{layout.client_key}.pub")
    authorized = asyncssh.import_authorized_keys(client_pub.export_public_key().decode())
    acceptor = await asyncssh.listen(
        "127.0.0.1",
        0,
        server_host_keys=[host_key],
        authorized_client_keys=authorized,
        sftp_factory=lambda chan: ReadOnlySFTP(chan, layout.chroot),
        allow_scp=False,
    )
    port = acceptor.get_port()
    line = f"[127.0.0.1]:{port} {host_key.export_public_key().decode().strip()}\n"
    layout.known_hosts.write_text(line)
    return acceptor, port


def churn_once(primary: Path, n: int) -> str:
    """One change an admin could make on the primary; cycles through three kinds."""
    kind = n % 3
    if kind == 0:
        return f"added softToken key {add_softtoken_key(primary)}"
    if kind == 1:
        ids = softtoken_key_ids((primary / KEYCONF_PATH).read_bytes())
        if len(ids) > KEEP_KEYS:
            remove_softtoken_key(primary, ids[1])  # keep the AUTHENTICATION key
            return f"removed softToken key {ids[1]}"
        return f"added softToken key {add_softtoken_key(primary)}"
    local = primary / "conf.d/local.ini"
    with local.open("a") as fh:
        fh.write(f"; demo edit {n} at {time.strftime('%H:%M:%S')}\n")
    return "edited conf.d/local.ini"


async def churn(primary: Path, stop: asyncio.Event) -> None:
    n = 0
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), CHURN_EVERY)
            return
        print(f"[demo] primary: {churn_once(primary, n)}", flush=True)
        n += 1
