"""An SFTP "primary" that lies, run in-process under the test's control.

A real sshd can only serve what a real filesystem holds: it cannot send a name with a '/' or a
NUL in it, claim a 10-byte file and stream megabytes, list a million entries without anyone
creating them, or change its listing on every call. This server serves a virtual tree the test
builds and mutates, so each of those lies can be told to the agent over a real SSH connection
(asyncssh on 127.0.0.1, host key pinned in a known_hosts file, client key auth).

Nothing here touches the local filesystem on the client's behalf: every write request is
refused, and the server is chrooted to an empty directory in case a default method slips through.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import stat
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncssh

REMOTE_ROOT = "/etc/xroad"
OLD = int(time.time()) - 3600

_TYPE_BITS = {
    "file": stat.S_IFREG,
    "dir": stat.S_IFDIR,
    "symlink": stat.S_IFLNK,
    "fifo": stat.S_IFIFO,
    "chr": stat.S_IFCHR,
    "blk": stat.S_IFBLK,
    "sock": stat.S_IFSOCK,
}


@dataclass
class Node:
    """One entry of the virtual tree; every field is what the server *says*, true or not."""

    kind: str
    mode: int = 0o640
    data: bytes = b""
    size: int | None = None  # size the listing claims; None: len(data)
    mtime: int = OLD
    link: bytes = b""
    children: dict[bytes, Node] = field(default_factory=dict)
    # Entries streamed after ``children`` without ever being held in memory (a million names).
    lazy: Callable[[], Iterator[tuple[bytes, Node]]] | None = None
    # Replaces the content served by read(offset, size) (stream more than claimed, stall, ...).
    reader: Callable[[int, int], Any] | None = None

    def attrs(self) -> asyncssh.SFTPAttrs:
        size = len(self.data) if self.size is None else self.size
        return asyncssh.SFTPAttrs(
            size=size,
            uid=0,
            gid=0,
            permissions=_TYPE_BITS[self.kind] | self.mode,
            atime=self.mtime,
            mtime=self.mtime,
        )


def file(data: bytes | str, mode: int = 0o640, **kw: Any) -> Node:
    return Node("file", mode, data.encode() if isinstance(data, str) else data, **kw)


def directory(mode: int = 0o750, **kw: Any) -> Node:
    return Node("dir", mode, **kw)


def symlink(target: bytes | str, **kw: Any) -> Node:
    return Node("symlink", 0o777, link=target.encode() if isinstance(target, str) else target, **kw)


def load_tree(root: Path) -> Node:
    """A virtual copy of a real tree (what build_primary_tree wrote), mtimes and modes kept."""
    st = os.lstat(root)
    node = directory(stat.S_IMODE(st.st_mode), mtime=int(st.st_mtime))
    for entry in sorted(os.scandir(root), key=lambda e: e.name):
        est = entry.stat(follow_symlinks=False)
        mode, mtime = stat.S_IMODE(est.st_mode), int(est.st_mtime)
        name = os.fsencode(entry.name)
        if entry.is_symlink():
            node.children[name] = symlink(os.readlink(entry.path), mtime=mtime)
        elif entry.is_dir():
            node.children[name] = load_tree(Path(entry.path))
        else:
            node.children[name] = file(Path(entry.path).read_bytes(), mode, mtime=mtime)
    return node


@dataclass
class Primary:
    """The virtual tree and what the server did with it; shared by every session."""

    root: Node
    names_served: int = 0
    bytes_served: int = 0
    scandirs: int = 0
    writes_refused: int = 0
    auth_attempts: int = 0  # clients that got as far as asking to log in
    on_scandir: Callable[[bytes], None] | None = None
    stall_listing: set[bytes] = field(default_factory=set)  # scandir of these never answers
    # More virtual trees at absolute paths outside REMOTE_ROOT (a publish dir, say).
    mounts: dict[bytes, Node] = field(default_factory=dict)

    def mount(self, at: str, node: Node) -> Node:
        self.mounts[at.rstrip("/").encode()] = node
        return node

    def lookup(self, path: bytes) -> Node:
        for top, mounted in self.mounts.items():
            if path == top or path.startswith(top + b"/"):
                return self._walk(mounted, path, len(top))
        root = REMOTE_ROOT.encode()
        if path != root and not path.startswith(root + b"/"):
            raise asyncssh.SFTPNoSuchFile(f"{path!r} is outside {REMOTE_ROOT}")
        return self._walk(self.root, path, len(root))

    @staticmethod
    def _walk(node: Node, path: bytes, start: int) -> Node:
        for part in path[start:].split(b"/"):
            if not part:
                continue
            child = node.children.get(part)
            if child is None and node.lazy is not None:
                child = next((n for name, n in node.lazy() if name == part), None)
            if child is None:
                raise asyncssh.SFTPNoSuchFile(f"{path!r} does not exist")
            node = child
        return node

    def at(self, rel: str) -> Node:
        """The node at a relative path (for the test to edit)."""
        return self.lookup(f"{REMOTE_ROOT}/{rel}".encode() if rel else REMOTE_ROOT.encode())

    def put(self, rel: str | bytes, node: Node) -> Node:
        """Place ``node`` at ``rel``; the last component may hold any bytes at all."""
        raw = rel.encode() if isinstance(rel, str) else rel
        parent_rel, _, name = raw.rpartition(b"/") if b"/" in raw else (b"", b"", raw)
        parent = self.at(parent_rel.decode()) if parent_rel else self.root
        parent.children[name] = node
        return node

    def put_raw(self, parent_rel: str, name: bytes, node: Node) -> Node:
        """Place ``node`` under ``parent_rel`` with a name that may itself contain '/'."""
        self.at(parent_rel).children[name] = node
        return node

    def remove(self, rel: str) -> None:
        parent_rel, _, name = rel.rpartition("/")
        del self.at(parent_rel).children[name.encode()]


class _Handle:
    def __init__(self, node: Node) -> None:
        self.node = node


def make_server_class(primary: Primary) -> type[asyncssh.SFTPServer]:
    class HostileSFTPServer(asyncssh.SFTPServer):
        """Answers from ``primary``'s virtual tree; refuses every write."""

        async def scandir(self, path: bytes) -> AsyncIterator[asyncssh.SFTPName]:
            primary.scandirs += 1
            if primary.on_scandir is not None:
                primary.on_scandir(path)
            if path in primary.stall_listing:
                await asyncio.sleep(3600)
            node = primary.lookup(path)
            if node.kind != "dir":
                raise asyncssh.SFTPNoSuchFile(f"{path!r} is not a directory")
            for name in (b".", b".."):
                yield asyncssh.SFTPName(name, b"-", node.attrs())
            entries: Iterator[tuple[bytes, Node]] = iter(list(node.children.items()))
            if node.lazy is not None:
                entries = itertools.chain(entries, node.lazy())
            for i, (name, child) in enumerate(entries):
                primary.names_served += 1
                yield asyncssh.SFTPName(name, b"-", child.attrs())
                if i % 128 == 127:
                    await asyncio.sleep(0)

        def lstat(self, path: bytes) -> asyncssh.SFTPAttrs:
            return primary.lookup(path).attrs()

        def stat(self, path: bytes) -> asyncssh.SFTPAttrs:
            return primary.lookup(path).attrs()

        def readlink(self, path: bytes) -> bytes:
            node = primary.lookup(path)
            if node.kind != "symlink":
                raise asyncssh.SFTPNoSuchFile(f"{path!r} is not a symlink")
            return node.link

        def realpath(self, path: bytes) -> bytes:
            return path

        def open(self, path: bytes, pflags: int, attrs: asyncssh.SFTPAttrs) -> object:
            if pflags & ~asyncssh.FXF_READ:
                primary.writes_refused += 1
                raise asyncssh.SFTPPermissionDenied("read-only primary")
            node = primary.lookup(path)
            if node.kind != "file":
                raise asyncssh.SFTPFailure(f"{path!r} is not a regular file")
            return _Handle(node)

        async def read(self, file_obj: object, offset: int, size: int) -> bytes:
            assert isinstance(file_obj, _Handle)
            node = file_obj.node
            if node.reader is not None:
                out = node.reader(offset, size)
                data: bytes = await out if asyncio.iscoroutine(out) else out
            else:
                data = node.data[offset : offset + size]
            primary.bytes_served += len(data)
            return data

        def fstat(self, file_obj: object) -> asyncssh.SFTPAttrs:
            assert isinstance(file_obj, _Handle)
            return file_obj.node.attrs()

        def close(self, file_obj: object) -> None:
            return None

        def _refuse(self, *_args: Any, **_kw: Any) -> None:
            primary.writes_refused += 1
            raise asyncssh.SFTPPermissionDenied("read-only primary")

        write = setstat = fsetstat = remove = rename = posix_rename = _refuse  # type: ignore[assignment]
        mkdir = rmdir = symlink = link = lsetstat = _refuse

    return HostileSFTPServer


@dataclass
class Running:
    primary: Primary
    port: int
    known_hosts: Path
    client_key: Path


def make_ssh_server_class(primary: Primary) -> type[asyncssh.SSHServer]:
    class CountingServer(asyncssh.SSHServer):
        def begin_auth(self, username: str) -> bool:
            primary.auth_attempts += 1
            return True

    return CountingServer


@contextlib.asynccontextmanager
async def serve(primary: Primary, workdir: Path, port: int = 0) -> AsyncIterator[Running]:
    """Listen on 127.0.0.1:``port`` (0: a free one) until the block ends; keys and known_hosts
    in workdir."""
    workdir.mkdir(parents=True, exist_ok=True)
    host_key = asyncssh.generate_private_key("ssh-ed25519")
    client_key = asyncssh.generate_private_key("ssh-ed25519")
    client_path = workdir / "client_key"
    client_key.write_private_key(str(client_path))
    client_path.chmod(0o600)
    empty = workdir / "chroot"
    empty.mkdir(exist_ok=True)
    server_cls = make_server_class(primary)
    authorized = asyncssh.import_authorized_keys(client_key.export_public_key().decode())

    def sftp_factory(chan: asyncssh.SSHServerChannel[bytes]) -> asyncssh.SFTPServer:
        return server_cls(chan, chroot=str(empty).encode())

    server = await asyncssh.listen(
        "127.0.0.1",
        port,
        server_factory=make_ssh_server_class(primary),
        server_host_keys=[host_key],
        authorized_client_keys=authorized,
        sftp_factory=sftp_factory,
        allow_scp=False,
    )
    port = server.sockets[0].getsockname()[1]
    known_hosts = workdir / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{port} {host_key.export_public_key().decode().strip()}\n")
    try:
        yield Running(primary, port, known_hosts, client_path)
    finally:
        server.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), 5)
