"""A lying primary: every lie is refused with its named reason, in bounded memory, and nothing is
written anywhere but the agent's staging area.

The primary here is tests/support/hostile_primary.py, an asyncssh SFTP server serving a virtual
copy of a real X-Road tree, which each case then corrupts in one way. Every case first syncs the
honest tree (so the live tree holds a real generation), then tells its lie and checks:

- the result's reason code (and that the problem names the offending path where there is one);
- the live tree and everything around it (the test's whole directory, state dir included) are
  byte-for-byte and inode-for-inode what they were, and staging is empty afterwards;
- the Python heap of the process running agent *and* server stayed under ``MEMORY_BUDGET``
  (tracemalloc peak), and for the million-name cases the server was stopped early.
"""

from __future__ import annotations

import asyncio
import os
import stat
import time
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncssh
import pytest
from support import hostile_primary as hp
from support.faults import decoy_root
from support.trees import snapshot

from syncagent.demo.sample_tree import build_primary_tree, build_secondary_local
from syncagent.engine import sync
from syncagent.errors import Reason
from syncagent.excludes import PathFilter
from syncagent.remote.listing import READDIR_CONCURRENCY
from syncagent.report import Outcome, SyncResult
from syncagent.settings import Settings, load

MEMORY_BUDGET = 48 * 1024**2  # tracemalloc peak of one hostile sync, agent + server together
IO_TIMEOUT = 2.0
MILLION = 1_000_000
# names the server may have sent past the limit: one readdir reply (128) per concurrent listing,
# plus the honest tree's own names
IN_FLIGHT = READDIR_CONCURRENCY * 128 + 100


@dataclass
class World:
    root: Path  # everything the agent could reach by a path escape lives below here
    source: Path  # the honest primary tree the virtual one is loaded from
    target: Path


@pytest.fixture
def world(tmp_path: Path) -> World:
    root = tmp_path / "world"
    decoy_root(root)
    source = tmp_path / "honest"
    build_primary_tree(source, mtime=time.time() - 3600)
    target = root / "etc-xroad"
    target.mkdir(mode=0o751)
    build_secondary_local(target)
    return World(root, source, target)


def settings_for(running: hp.Running, target: Path, **extra: Any) -> Settings:
    overrides = {
        "primary.host": "127.0.0.1",
        "primary.port": str(running.port),
        "primary.identity_file": str(running.client_key),
        "primary.known_hosts": str(running.known_hosts),
        "primary.remote_root": hp.REMOTE_ROOT,
        "primary.io_timeout": str(IO_TIMEOUT),
        "sync.target": str(target),
        "sync.settle": "0",
        "sync.timeout": "120",
        **{k.replace("__", "."): str(v) for k, v in extra.items()},
    }
    settings, problems = load(None, env={}, overrides=overrides)
    assert settings is not None, problems
    return settings


def everything(world: World, *, state: bool = True) -> dict[str, tuple[object, ...]]:
    """The whole world, metadata included, except the agent's scratch space (and, with
    ``state=False``, its record of the live generation, which a no-op sync refreshes)."""
    scratch = "/etc-xroad/.syncagent/staging/" if state else "/etc-xroad/.syncagent/"
    return snapshot(world.root, PathFilter.build(protected=(scratch,)), with_ids=True)


def staging_leftovers(world: World) -> list[str]:
    staging = world.target / ".syncagent" / "staging"
    return sorted(p.name for p in staging.iterdir()) if staging.exists() else []


@dataclass
class Case:
    honest: SyncResult
    hostile: SyncResult
    primary: hp.Primary
    peak: int
    seconds: float


def run_case(
    world: World, lie: Callable[[hp.Primary], None], *, state: bool = True, **extra: Any
) -> tuple[Case, dict[str, tuple[object, ...]], dict[str, tuple[object, ...]]]:
    """Honest sync, then ``lie``, then the hostile sync measured; returns world before/after."""

    async def scenario() -> tuple[Case, dict[str, Any], dict[str, Any]]:
        primary = hp.Primary(hp.load_tree(world.source))
        async with hp.serve(primary, world.root.parent / "server") as running:
            settings = settings_for(running, world.target, **extra)
            honest = await sync(settings)
            assert honest.outcome is Outcome.APPLIED, honest.summary()
            lie(primary)
            primary.names_served = primary.bytes_served = primary.scandirs = 0
            before = everything(world, state=state)
            tracemalloc.start()
            started = time.monotonic()
            try:
                hostile = await sync(settings)
                peak = tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()
            seconds = time.monotonic() - started
            after = everything(world, state=state)
            return Case(honest, hostile, primary, peak, seconds), before, after

    return asyncio.run(scenario())


def assert_refused(
    world: World,
    lie: Callable[[hp.Primary], None],
    reason: Reason,
    names: str | None = None,
    **extra: Any,
) -> Case:
    out, before, after = run_case(world, lie, **extra)
    r = out.hostile
    assert r.error is not None, f"the lie was accepted: {r.summary()}"
    assert r.error.reason is reason, r.summary()
    if names is not None:
        assert names in str(r.error) or any(names in p.path for p in r.error.problems), str(r.error)
    assert r.generation == out.honest.generation
    assert after == before, "something outside staging changed"
    assert staging_leftovers(world) == []
    assert out.primary.writes_refused == 0
    assert out.peak < MEMORY_BUDGET, f"peak {out.peak / 2**20:.1f} MiB"
    return out


# --- names ------------------------------------------------------------------------------------

BAD_NAMES = {
    "dotdot-slash": b"../../escape.ini",
    "slash": b"sub/evil.ini",
    "absolute": b"/etc/shadow",
    "nul": b"evil\x00.ini",
    "newline": b"evil\n.ini",
    "control": b"evil\x1b[2J.ini",
    "non-utf8": b"caf\xe9.ini",
    "empty": b"",
    "too-long": b"x" * 256,
}


@pytest.mark.parametrize("case", sorted(BAD_NAMES))
def test_unsafe_names_are_refused(world: World, case: str) -> None:
    name = BAD_NAMES[case]

    def lie(p: hp.Primary) -> None:
        p.put_raw("conf.d", name, hp.file("[x]\ny=1\n"))

    assert_refused(world, lie, Reason.VALIDATION, names="conf.d/")


@pytest.mark.parametrize("name", [b".", b".."])
def test_dot_entries_are_never_taken_as_content(world: World, name: bytes) -> None:
    """Every readdir starts with '.' and '..'; one that claims to be a file is still skipped."""

    def lie(p: hp.Primary) -> None:
        p.put_raw("conf.d", name, hp.file("[x]\nescaped=1\n"))
        p.put_raw("", name, hp.file("[x]\nescaped=1\n"))

    out, before, after = run_case(world, lie, state=False)
    assert out.hostile.outcome is Outcome.UNCHANGED, out.hostile.summary()
    assert out.hostile.generation == out.honest.generation
    assert after == before
    assert (world.root / "escape.ini").read_text() == "[decoy]\nmust-not-change=1\n"


# --- what entries are ----------------------------------------------------------------------


BAD_SYMLINKS = {
    "shadow": "/etc/shadow",
    "climbs-out": "../../../../../../etc/shadow",
    "climbs-out-of-subdir": "../softtoken/../../../escape.ini",
    "dangling": "no-such-file.ini",
    "control": "local\n.ini",
}


@pytest.mark.parametrize("case", sorted(BAD_SYMLINKS))
def test_unsafe_symlinks_are_refused(world: World, case: str) -> None:
    def lie(p: hp.Primary) -> None:
        p.put("conf.d/link.ini", hp.symlink(BAD_SYMLINKS[case]))

    assert_refused(world, lie, Reason.VALIDATION, names="conf.d/link.ini")


@pytest.mark.parametrize("kind", ["fifo", "chr", "blk", "sock"])
def test_special_files_are_refused(world: World, kind: str) -> None:
    def lie(p: hp.Primary) -> None:
        p.put("conf.d/special", hp.Node(kind, 0o660))

    assert_refused(world, lie, Reason.VALIDATION, names="conf.d/special")


def test_entry_without_a_type_is_refused(world: World) -> None:
    def lie(p: hp.Primary) -> None:
        node = p.put("conf.d/typeless.ini", hp.file("[a]\n"))
        node.attrs = lambda: asyncssh.SFTPAttrs(size=4)  # type: ignore[method-assign]

    assert_refused(world, lie, Reason.REMOTE_IO, names="conf.d/typeless.ini")


def test_setuid_setgid_sticky_and_world_write_bits_are_stripped(world: World) -> None:
    def lie(p: hp.Primary) -> None:
        p.put("services/suid.conf", hp.file("X=1\n", 0o4777))
        p.put("services/sgid.conf", hp.file("X=2\n", 0o2775))
        p.put("ww.properties", hp.file("a=b\n", 0o666))
        p.put("tmpdir", hp.directory(0o1777)).children[b"f.json"] = hp.file("{}", 0o7777)

    out, _, _ = run_case(world, lie)
    assert out.hostile.outcome is Outcome.APPLIED, out.hostile.summary()
    special = stat.S_ISUID | stat.S_ISGID | stat.S_ISVTX | stat.S_IWOTH
    modes = {}
    for rel in (
        "services/suid.conf",
        "services/sgid.conf",
        "ww.properties",
        "tmpdir",
        "tmpdir/f.json",
    ):
        mode = stat.S_IMODE(os.lstat(world.target / rel).st_mode)
        modes[rel] = oct(mode)
        assert not mode & special, f"{rel} kept {oct(mode)}"
    assert modes == {
        "services/suid.conf": "0o775",
        "services/sgid.conf": "0o775",
        "ww.properties": "0o664",
        "tmpdir": "0o775",
        "tmpdir/f.json": "0o775",
    }


# --- sizes, counts, depth ----------------------------------------------------------------------


def test_file_over_max_file_bytes_is_refused_before_fetching(world: World) -> None:
    def lie(p: hp.Primary) -> None:
        p.put("conf.d/huge.ini", hp.file("[a]\n", size=65 * 1024**2))

    out = assert_refused(world, lie, Reason.LIMITS, names="conf.d/huge.ini")
    assert out.hostile.bytes_fetched == 0 and out.primary.bytes_served == 0


def test_tree_over_max_total_bytes_is_refused_before_fetching(world: World) -> None:
    def lie(p: hp.Primary) -> None:
        for i in range(5):
            p.put(f"conf.d/big{i}.ini", hp.file("[a]\n", size=60 * 1024**2))

    out = assert_refused(world, lie, Reason.LIMITS, names="max_total_bytes")
    assert out.primary.bytes_served == 0


def _endless(offset: int, size: int) -> bytes:
    return b"A" * size


def test_file_that_streams_more_than_its_listed_size(world: World) -> None:
    """Claims 10 bytes, then never stops: the agent reads at most one byte past the claim."""

    def lie(p: hp.Primary) -> None:
        p.put("conf.d/grows.ini", hp.file("[a]\nb=1\n", size=10, reader=_endless))

    out = assert_refused(world, lie, Reason.REMOTE_IO, names="kept changing")
    assert out.hostile.attempts == 4
    # 4 attempts, each stopped by the first reply past the listed size
    assert out.primary.bytes_served <= 4 * 1024, out.primary.bytes_served


def test_reply_larger_than_the_request(world: World) -> None:
    """Asked for 11 bytes, sends a megabyte per reply: refused, and no megabyte is kept."""

    def lie(p: hp.Primary) -> None:
        p.put(
            "conf.d/fat.ini",
            hp.file("[a]\nb=1\n", size=10, reader=lambda off, size: b"B" * 1024**2),
        )

    out, before, after = run_case(world, lie)
    r = out.hostile
    assert r.error is not None and r.error.reason is Reason.REMOTE_IO, r.summary()
    assert after == before and staging_leftovers(world) == []
    assert out.peak < MEMORY_BUDGET


def test_file_that_streams_less_than_its_listed_size(world: World) -> None:
    def lie(p: hp.Primary) -> None:
        p.put("conf.d/short.ini", hp.file("[a]\n", size=4096))

    assert_refused(world, lie, Reason.REMOTE_IO, names="kept changing")


def _names(count: int, suffix: str) -> Callable[[], Iterator[tuple[bytes, hp.Node]]]:
    def gen() -> Iterator[tuple[bytes, hp.Node]]:
        for i in range(count):
            yield f"f{i:07d}{suffix}".encode(), hp.file("[a]\n")

    return gen


@pytest.mark.parametrize("suffix", [".ini", ".tmp"], ids=["listed", "excluded"])
def test_a_million_entries_stop_at_max_files_in_bounded_memory(world: World, suffix: str) -> None:
    """Streamed by the server (never held), stopped by the agent at max_files, either way."""

    def lie(p: hp.Primary) -> None:
        p.put("conf.d/many", hp.directory(lazy=_names(MILLION, suffix)))

    out = assert_refused(world, lie, Reason.LIMITS, names="max_files=20000")
    # the agent closed the directory soon after the limit: a few readdir replies of 128 past it
    assert 20_000 < out.primary.names_served < 20_000 + IN_FLIGHT, out.primary.names_served


def _chain(depth_left: int | None) -> Callable[[], Iterator[tuple[bytes, hp.Node]]]:
    def gen() -> Iterator[tuple[bytes, hp.Node]]:
        nxt = None if depth_left is None else depth_left - 1
        if nxt is None or nxt >= 0:
            yield b"d", hp.directory(lazy=_chain(nxt))

    return gen


def test_endless_nesting_stops_at_max_depth(world: World) -> None:
    def lie(p: hp.Primary) -> None:
        p.put("deep", hp.directory(lazy=_chain(None)))

    out = assert_refused(world, lie, Reason.LIMITS, names="max_depth=32")
    assert out.primary.scandirs < 40 + 20, out.primary.scandirs


def test_wide_and_deep_tree_stops_at_max_files(world: World) -> None:
    """Every directory holds 64 more: names cannot be counted per directory only."""

    def fan(level: int) -> Callable[[], Iterator[tuple[bytes, hp.Node]]]:
        def gen() -> Iterator[tuple[bytes, hp.Node]]:
            for i in range(64):
                yield f"d{i:02d}".encode(), hp.directory(lazy=fan(level + 1))

        return gen

    def lie(p: hp.Primary) -> None:
        p.put("fan", hp.directory(lazy=fan(0)))

    out = assert_refused(world, lie, Reason.LIMITS, names="max_files=5000", sync__max_files=5000)
    assert out.primary.names_served < 5_000 + IN_FLIGHT, out.primary.names_served


def test_path_longer_than_path_max_is_refused(world: World) -> None:
    """32 levels of 200-byte names: within max_depth, but no local path can hold it."""
    name = b"n" * 200

    def lie(p: hp.Primary) -> None:
        node = p.put("long", hp.directory())
        for _ in range(25):
            node = node.children.setdefault(name, hp.directory())
        node.children[b"leaf.ini"] = hp.file("[a]\n")

    # The local filesystem refuses the path (ENAMETOOLONG) while staging: reported as `apply`
    # today; `limits` (a path-length check while listing, like max_depth) would name the cause
    # better, so either is accepted.
    out, before, after = run_case(world, lie)
    r = out.hostile
    assert r.error is not None and r.error.reason in (Reason.LIMITS, Reason.APPLY), r.summary()
    assert "long/" in str(r.error)
    assert after == before and staging_leftovers(world) == []
    assert out.primary.bytes_served == 0


# --- content ------------------------------------------------------------------------------------

BILLION_LAUGHS = (
    b'<?xml version="1.0"?>\n<!DOCTYPE lolz [\n <!ENTITY lol "lol">\n'
    + b"".join(
        f' <!ENTITY lol{i} "{("&lol" + (str(i - 1) if i > 1 else "") + ";") * 10}">\n'.encode()
        for i in range(1, 10)
    )
    + b"]>\n<keyConf>&lol9;</keyConf>\n"
)

BAD_CONTENT: dict[str, tuple[str, bytes]] = {
    "entity-bomb": ("signer/keyconf.xml", BILLION_LAUGHS),
    "external-entity": (
        "configuration-anchor.xml",
        b'<?xml version="1.0"?><!DOCTYPE a [<!ENTITY e SYSTEM "file:///etc/shadow">]><a>&e;</a>',
    ),
    "broken-ini": ("conf.d/local.ini", b"[proxy\nhealth-check-port=5588\n"),
    "ini-unclosed-section": ("conf.d/addons/message-log.ini", b"[message-log\narchive=1\n"),
    "ini-not-utf8": ("conf.d/proxy.ini", b"[proxy]\nname=\xff\xfe\n"),
    "bash-syntax": ("services/local.conf", b'XROAD_PROXY_PARAMS="-Xmx1g\nif then\n'),
    "deep-yaml": ("conf.d/acme.yml", b"[" * 200_000 + b"]" * 200_000),
    "unsafe-keyid": ("signer/keyconf.xml", b""),
    "properties-bad-escape": ("db.properties", b"serverconf.hibernate.connection.url=\\u00zz\n"),
}


@pytest.mark.parametrize("case", sorted(BAD_CONTENT))
def test_invalid_content_is_refused(world: World, case: str) -> None:
    rel, data = BAD_CONTENT[case]

    def lie(p: hp.Primary) -> None:
        content = data
        if case == "unsafe-keyid":  # a keyId the agent would turn into a path outside softtoken/
            text = p.at(rel).data
            start = text.index(b"<keyId>") + len(b"<keyId>")
            end = text.index(b"</keyId>", start)
            content = text[:start] + b"../../../etc/shadow" + text[end:]
        p.put(rel, hp.file(content, mtime=int(time.time()) - 60))

    names = rel
    assert_refused(world, lie, Reason.VALIDATION, names=names)


# --- behaviour over time ------------------------------------------------------------------------


def test_listing_that_changes_on_every_call(world: World) -> None:
    def lie(p: hp.Primary) -> None:
        churn = p.put("conf.d/churn.ini", hp.file("[a]\nb=1\n"))
        calls = iter(range(10**9))

        def bump(path: bytes) -> None:
            if path == hp.REMOTE_ROOT.encode():
                n = next(calls)
                churn.mtime = hp.OLD - 1000 + n
                churn.data = f"[a]\nb={n}\n".encode()

        p.on_scandir = bump

    out = assert_refused(world, lie, Reason.REMOTE_IO, names="kept changing")
    assert out.hostile.attempts == 4


def test_listing_with_new_names_on_every_call(world: World) -> None:
    def lie(p: hp.Primary) -> None:
        calls = iter(range(10**9))
        conf = p.at("conf.d")

        def grow(path: bytes) -> None:
            if path.endswith(b"/conf.d"):
                conf.children[f"new{next(calls)}.ini".encode()] = hp.file("[a]\n")

        p.on_scandir = grow

    out = assert_refused(world, lie, Reason.REMOTE_IO, names="kept changing")
    assert out.hostile.attempts == 4


def test_primary_that_stalls_mid_read_times_out(world: World) -> None:
    async def stall(offset: int, size: int) -> bytes:
        await asyncio.sleep(3600)
        return b""

    def lie(p: hp.Primary) -> None:
        p.put("conf.d/slow.ini", hp.file("[a]\n", reader=stall))

    out = assert_refused(world, lie, Reason.TIMEOUT, names="conf.d/slow.ini")
    assert out.seconds < IO_TIMEOUT + 5, out.seconds


def test_primary_that_stalls_mid_listing_times_out(world: World) -> None:
    def lie(p: hp.Primary) -> None:
        p.put("slowdir", hp.directory()).children[b"a.ini"] = hp.file("[a]\n")
        p.stall_listing.add(f"{hp.REMOTE_ROOT}/slowdir".encode())

    out = assert_refused(world, lie, Reason.TIMEOUT, names="slowdir")
    assert out.seconds < IO_TIMEOUT + 5, out.seconds
