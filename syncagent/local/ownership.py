"""Whose the state dir is, and keeping it that way whoever runs a command.

The daemon runs unprivileged (systemd's ``User=xroad``, supervisord's ``user=xroad``), but an
operator's shell is often root (``kubectl exec``, ``sudo -i``). A file root writes into the
state dir 0600 (a record, the lock, a journal) is one the daemon can no longer read, and every
sync after it would fail with "Permission denied". So:

- a command run as root first gives back to the agent's user whatever in the state dir is not
  its (``repair``), then becomes that user (``become``): everything it writes afterwards is the
  agent's, with no per-file chown to forget;
- a command run as another unprivileged user is refused, naming the user to run it as;
- the daemon checks at every sync (``repair``): as root it chowns, unprivileged it replaces the
  files whose content it can do without, and names whatever it cannot fix (reason
  ``permission``: the path, its owner, and the command that fixes it).

The agent's user is the running daemon's, else the state dir's owner, else the target's.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import stat
from collections.abc import Iterator
from pathlib import Path

from syncagent.errors import Reason, SyncError
from syncagent.local.state import StateDir, atomic_write

# Files whose content the agent can do without: an unprivileged agent replaces one it may not
# read (a lock and a trigger are empty; a pause flag's text is only a note).
_EXPENDABLE = ("lock", "sync-now", "paused", "status.json", "daemon.pid", "verify.json")


def user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def process_uid(pid: int) -> int | None:
    """The real uid of a live process (the running daemon's, from its pid file)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("Uid:"):
                return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        return None
    return None


def agent_owner(state: StateDir, target: Path, daemon_pid: int | None) -> tuple[int, int] | None:
    """(uid, gid) the agent's files must have: the running daemon's user, else the state
    dir's owner, else the target's (where the daemon will create the state dir)."""
    uid = process_uid(daemon_pid) if daemon_pid is not None else None
    for path in (state.path, target):
        try:
            st = path.stat()
        except OSError:
            continue
        if uid is None or uid == st.st_uid:
            return st.st_uid, st.st_gid
        return uid, _primary_gid(uid, st.st_gid)
    return None if uid is None else (uid, _primary_gid(uid, uid))


def _primary_gid(uid: int, default: int) -> int:
    try:
        return pwd.getpwuid(uid).pw_gid
    except KeyError:
        return default


def become(owner: tuple[int, int], state: StateDir) -> None:
    """Run as ``owner`` from now on; as root, after giving the state dir back to it.

    Raises SyncError(permission) when the caller is neither root nor that user.
    """
    uid, gid = owner
    euid = os.geteuid()
    if euid == uid:
        return
    if euid != 0:
        name = user_name(uid)
        raise SyncError(
            Reason.PERMISSION,
            f"{state.path} belongs to {name}, who runs the agent; run this command as {name} "
            f"(sudo -u {name} syncagent ...) or as root, not as {user_name(euid)}",
        )
    repair(state, owner, deep=True)
    try:
        name = pwd.getpwuid(uid).pw_name
        os.initgroups(name, gid)
    except KeyError:
        os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)


def check_readable(state: StateDir) -> None:
    """A command that only reads (``status``) needs the state dir open to it: its owner's,
    0700, and another user's ``syncagent status`` must say whom to run as, not crash."""
    try:
        st = state.path.stat()
    except FileNotFoundError:
        return
    if os.access(state.path, os.R_OK | os.X_OK):
        return
    name = user_name(st.st_uid)
    raise SyncError(
        Reason.PERMISSION,
        f"{state.path} belongs to {name}, who runs the agent; run this command as {name} "
        f"(sudo -u {name} syncagent ...) or as root, not as {user_name(os.geteuid())}",
    )


def _entries(state: StateDir, deep: bool) -> Iterator[Path]:
    """What must be the agent's: the state dir, its files and directories, the generation
    records and trees; ``deep``: every directory in the trees too (a pruned generation is
    renamed and deleted). Files inside the trees are the target's files, owned as sync.owner
    says, and never touched here."""
    yield state.path
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(state.path):
            yield Path(entry.path)
        for entry in os.scandir(state.generations):
            yield Path(entry.path)
            if deep and entry.is_dir(follow_symlinks=False):
                for root, dirs, _ in os.walk(entry.path):
                    yield from (Path(root, d) for d in dirs)


def repair(state: StateDir, owner: tuple[int, int] | None = None, *, deep: bool = False) -> None:
    """Make everything in the state dir the agent's, or say what cannot be.

    Root chowns. An unprivileged agent replaces the expendable top-level files it does not own
    (it owns the directory, so it may rename over them) and raises SyncError(permission)
    naming the rest. ``owner``: default the caller, or, for root, the state dir's owner (a
    daemon run as root keeps the state dir usable by the user it belongs to).
    """
    if owner is None:
        if os.geteuid() == 0:
            st = state.path.stat()
            owner = (st.st_uid, st.st_gid)
        else:
            owner = (os.geteuid(), os.getegid())
    uid, gid = owner
    stuck: list[tuple[Path, int]] = []
    for path in _entries(state, deep):
        try:
            st = path.lstat()
        except FileNotFoundError:
            continue
        if st.st_uid == uid:
            continue
        if os.geteuid() == 0:
            try:
                os.chown(path, uid, gid, follow_symlinks=False)
            except PermissionError:  # root without CAP_CHOWN (a confined container)
                stuck.append((path, st.st_uid))
        elif (
            path.parent == state.path
            and path.name in _EXPENDABLE
            and stat.S_ISREG(st.st_mode)
            and _replace(path, st)
        ):
            continue
        else:
            stuck.append((path, st.st_uid))
    if stuck:
        me = user_name(uid)
        shown = ", ".join(f"{p} ({user_name(u)})" for p, u in stuck[:3])
        more = f" and {len(stuck) - 3} more" if len(stuck) > 3 else ""
        raise SyncError(
            Reason.PERMISSION,
            f"{shown}{more} in the state dir must belong to {me}, who runs the agent: as root, "
            f"`chown -R {me}: {state.path}` (or run syncagent commands as {me} or root, which "
            "write as the agent's user)",
        )


def _replace(path: Path, st: os.stat_result) -> bool:
    """Our own copy of a file someone else left; False when even that is not possible."""
    try:
        data = path.read_bytes()
    except PermissionError:
        data = b"" if path.name != "paused" else b"recreated by the agent: was another user's\n"
    except OSError:
        return False
    try:
        atomic_write(path, data, stat.S_IMODE(st.st_mode) | 0o600)
    except OSError:
        return False
    return True
