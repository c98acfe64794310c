"""``syncagent demo``: the real daemon against an embedded primary, on loopback, in one process.

The README's first command has to work on a laptop with nothing set up: no sshd, no X-Road, no
root. So the primary is an asyncssh SFTP server chrooted to a generated X-Road tree, read-only
like the recommended ``internal-sftp -R`` account, with its own host key pinned in a
known_hosts file (strict checking, as in production). The daemon is started through
``daemon.serve``, the same function ``syncagent run`` uses, from a config file the demo writes,
so ``syncagent -c <dir>/syncagent.toml status`` and friends work against it too.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import socket
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncssh

from . import logs
from .daemon import Daemon, serve
from .errors import ExitCode
from .settings import load
from .xroad_tree import (
    add_softtoken_key,
    build_primary_tree,
    build_secondary_local,
    read_softtoken_key_ids,
    remove_softtoken_key,
)

INTERVAL = 5.0
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


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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


def write_config(layout: Layout, ssh_port: int, http_port: int) -> None:
    layout.config.write_text(
        "# Written by `syncagent demo`; every key is documented by `syncagent check-config`.\n"
        "[primary]\n"
        f'host = "127.0.0.1"\nport = {ssh_port}\n'
        f'identity_file = "{layout.client_key}"\nknown_hosts = "{layout.known_hosts}"\n'
        'host_key_policy = "strict"\nremote_root = "/etc/xroad"\n'
        "[sync]\n"
        f'target = "{layout.target}"\ninterval = {INTERVAL}\ntimeout = 30\n'
        "[http]\n"
        f'listen = "127.0.0.1:{http_port}"\n'
    )


def churn_once(primary: Path, n: int) -> str:
    """One change an admin could make on the primary; cycles through three kinds."""
    kind = n % 3
    if kind == 0:
        return f"added softToken key {add_softtoken_key(primary)}"
    if kind == 1:
        ids = read_softtoken_key_ids((primary / "signer/keyconf.xml").read_bytes())
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


def banner(layout: Layout, ssh_port: int, http_port: int, args: argparse.Namespace) -> str:
    url = f"http://127.0.0.1:{http_port}"
    cfg = layout.config
    return "\n".join(
        [
            "syncagent demo: the real daemon against an embedded read-only SFTP primary",
            f"  primary    sftp://xroad-slave@127.0.0.1:{ssh_port}/etc/xroad  ({layout.primary})",
            f"  secondary  {layout.target}",
            f"  state      {layout.target / '.syncagent'}",
            f"  config     {cfg}",
            f"  probes     {url}/healthz  {url}/readyz",
            f"  metrics    {url}/metrics   status {url}/status",
            f"  try        syncagent status -c {cfg}   |   syncagent pause -c {cfg}",
            f"             syncagent sync-now -c {cfg}  |   syncagent rollback -c {cfg}",
            f"             edit a file under {layout.target} and watch it come back (drift)",
            "  churn      "
            + (f"the primary changes every {CHURN_EVERY:g}s" if args.churn else "off (--churn)"),
            "  stop       Ctrl-C" + (f" (or after {args.duration:g}s)" if args.duration else ""),
            "",
        ]
    )


async def _demo(args: argparse.Namespace, overrides: dict[str, Any], layout: Layout) -> int:
    prepare(layout)
    acceptor, ssh_port = await start_primary(layout)
    try:
        write_config(layout, ssh_port, _free_port())
        settings, problems = load(layout.config, env={}, overrides=overrides)
        if settings is None:
            for p in problems:
                print(f"configuration error: {p}", flush=True)
            return int(ExitCode.CONFIG)
        logs.configure(settings["log.format"], settings["log.level"])
        http_port = int(settings["http.listen"].rpartition(":")[2])
        print(banner(layout, ssh_port, http_port, args), flush=True)
        stop = asyncio.Event()
        daemon = Daemon(settings)
        helpers = [asyncio.create_task(churn(layout.primary, stop))] if args.churn else []
        if args.duration:
            asyncio.get_running_loop().call_later(args.duration, stop.set)
        try:
            rc = await serve(settings, stop, daemon)
        finally:
            stop.set()
            await asyncio.gather(*helpers, return_exceptions=True)
        return _outcome(daemon, rc)
    finally:
        acceptor.close()
        await acceptor.wait_closed()


def _outcome(daemon: Daemon, rc: int) -> int:
    gen = daemon.state.generation
    if rc == 0 and gen:
        print(f"[demo] done: generation {gen} is live in {daemon.settings.target}", flush=True)
        return int(ExitCode.OK)
    print("[demo] ended without a live generation: see the log lines above", flush=True)
    return rc or int(ExitCode.FAILED)


def run_demo(args: argparse.Namespace, overrides: dict[str, Any]) -> int:
    keep = args.dir is not None
    base = Path(args.dir) if keep else Path(tempfile.mkdtemp(prefix="syncagent-demo-"))
    base.mkdir(parents=True, exist_ok=True)
    try:
        return asyncio.run(_demo(args, dict(overrides), Layout(base.resolve())))
    finally:
        if not keep:
            shutil.rmtree(base, ignore_errors=True)
