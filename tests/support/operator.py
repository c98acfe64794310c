"""An unprivileged agent, the way the image and the unit run it, and a person's commands
beside it: as root (``kubectl exec``) or as the agent's own user."""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

from support.sshd import Sshd
from syncagent.demo.sample_tree import build_secondary_local

Run = Callable[..., subprocess.CompletedProcess[str]]


def xroad_ids() -> tuple[int, int]:
    pw = pwd.getpwnam("xroad")
    return pw.pw_uid, pw.pw_gid


def as_user(user: str | None) -> list[str]:
    """The command prefix that runs as ``user`` the way the entrypoint starts the agent."""
    return ["setpriv", f"--reuid={user}", f"--regid={user}", "--init-groups"] if user else []


def runner(agent: Path, env: dict[str, str]) -> Run:
    def run(
        *args: str, user: str | None = None, extra: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """``syncagent ARGS`` as root, or as ``user``."""
        return subprocess.run(
            [*as_user(user), str(agent), *args],
            env={**env, **(extra or {})},
            capture_output=True,
            text=True,
            timeout=120,
        )

    return run


def xroad_secondary(
    agent: Path, sshd: Sshd, primary_tree: Path, area: Path
) -> tuple[Run, Path, dict[str, str]]:
    """A secondary's /etc/xroad and credentials owned by xroad, and the environment the agent
    runs with (SFTP to the real sshd, settle 0, IG-XLB's pause flag inside ``area``)."""
    uid, gid = xroad_ids()
    target = area / "etc-xroad"
    target.mkdir(mode=0o751)
    build_secondary_local(target)
    keys = area / "keys"
    keys.mkdir()
    for src in (sshd.client_key, sshd.known_hosts):
        shutil.copy(src, keys / src.name)
    for p in (target, *target.rglob("*"), keys, *keys.iterdir()):
        os.lchown(p, uid, gid)
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNCAGENT_")}
    env.update(
        SYNCAGENT_PRIMARY_HOST="127.0.0.1",
        SYNCAGENT_PRIMARY_PORT=str(sshd.port),
        SYNCAGENT_PRIMARY_IDENTITY_FILE=str(keys / sshd.client_key.name),
        SYNCAGENT_PRIMARY_KNOWN_HOSTS=str(keys / sshd.known_hosts.name),
        SYNCAGENT_PRIMARY_REMOTE_ROOT=str(primary_tree),
        SYNCAGENT_SYNC_TARGET=str(target),
        SYNCAGENT_SYNC_SETTLE="0",
        SYNCAGENT_SYNC_DISABLE_FLAG=str(area / "xroad-tmp" / "sync-disabled"),
        SYNCAGENT_LOG_FORMAT="json",
        HOME="/nonexistent",
    )
    return runner(agent, env), target, env
