"""``syncagent demo``: the real daemon against an embedded primary, on loopback, in one process.

The README's first command has to work on a laptop with nothing set up: no sshd, no X-Road, no
root. So the primary is an asyncssh SFTP server chrooted to a generated X-Road tree, read-only
like the recommended ``internal-sftp -R`` account, with its own host key pinned in a
known_hosts file (strict checking, as in production). The daemon is started through
``daemon.service.serve``, the same function ``syncagent run`` uses, from a config file the demo
writes, so ``syncagent -c <dir>/syncagent.toml status`` and friends work against it too.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from syncagent import logs
from syncagent.daemon.service import Daemon, serve
from syncagent.demo.primary import CHURN_EVERY, Layout, churn, prepare, start_primary
from syncagent.errors import ExitCode
from syncagent.settings import load

INTERVAL = 5.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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


@dataclass(frozen=True)
class Options:
    """What ``syncagent demo`` was asked for."""

    churn: bool
    duration: float | None
    kept: bool = False  # the trees stay (--dir) rather than a temporary directory


def command_name() -> str:
    """How this shell can run syncagent again: the README's install leaves it in .venv/bin,
    not on PATH, so the banner names what actually started this process."""
    started = Path(sys.argv[0])
    if started.name == "syncagent" and started.is_file():
        found = shutil.which("syncagent")
        return "syncagent" if found and Path(found).resolve() == started.resolve() else str(started)
    return f"{sys.executable} -m syncagent"


def banner(layout: Layout, ssh_port: int, http_port: int, args: Options) -> str:
    url = f"http://127.0.0.1:{http_port}"
    cfg = layout.config
    me = command_name()
    return "\n".join(
        [
            "syncagent demo: the real daemon against an embedded read-only SFTP primary",
            f"  primary    sftp://xroad-slave@127.0.0.1:{ssh_port}/etc/xroad  ({layout.primary})",
            f"  secondary  {layout.target}",
            f"  state      {layout.target / '.syncagent'}",
            f"  config     {cfg}",
            f"  probes     {url}/healthz  {url}/readyz",
            f"  metrics    {url}/metrics   status {url}/status",
            f"  try        {me} status -c {cfg}",
            f"             {me} pause -c {cfg}    ({me} resume to follow again)",
            f"             {me} sync-now -c {cfg}",
            f"             {me} rollback -c {cfg}",
            f"             edit a file under {layout.target} and watch it come back (drift)",
            "  churn      "
            + (f"the primary changes every {CHURN_EVERY:g}s" if args.churn else "off (--churn)"),
            "  stop       Ctrl-C" + (f" (or after {args.duration:g}s)" if args.duration else ""),
            "",
        ]
    )


async def _demo(args: Options, overrides: dict[str, Any], layout: Layout) -> int:
    prepare(layout)
    acceptor, ssh_port = await start_primary(layout)
    try:
        write_config(layout, ssh_port, _free_port())
        settings, problems = load(layout.config, env={}, overrides=overrides)
        if settings is None:
            for p in problems:
                print(f"configuration error: {p}", flush=True)
            return int(ExitCode.CONFIG)
        logs.configure(settings.log.format, settings.log.level)
        http_port = settings.http.port
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
        return _outcome(daemon, rc, args.kept)
    finally:
        acceptor.close()
        await acceptor.wait_closed()


def _outcome(daemon: Daemon, rc: int, kept: bool) -> int:
    gen = daemon.state.generation
    if rc == 0 and gen:
        where = (
            f"in {daemon.sync_settings.target}"
            if kept
            else "(the demo's trees are removed now; --dir DIR keeps them)"
        )
        print(f"[demo] done: generation {gen} was live {where}", flush=True)
        return int(ExitCode.OK)
    print("[demo] ended without a live generation: see the log lines above", flush=True)
    return rc or int(ExitCode.FAILED)


def run_demo(
    where: str | None, churn: bool, duration: float | None, overrides: dict[str, Any]
) -> int:
    """``where``: keep the trees there across runs (else a temporary directory)."""
    keep = where is not None
    base = Path(where) if where is not None else Path(tempfile.mkdtemp(prefix="syncagent-demo-"))
    base.mkdir(parents=True, exist_ok=True)
    try:
        options = Options(churn, duration, keep)
        return asyncio.run(_demo(options, dict(overrides), Layout(base.resolve())))
    finally:
        if not keep:
            shutil.rmtree(base, ignore_errors=True)
