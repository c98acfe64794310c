"""Shared by the publisher's fault tests: what a secondary may rely on in a publish dir whatever
moment the publisher stopped at, a forked publisher to kill, a small filesystem to fill, and
the pieces of a publish dir a hostile primary rewrites.

The publish dir is checked from its bytes alone (hashes recomputed here), never through the
publisher's own bookkeeping.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from support import hostile_primary as hp
from support.faults import fork_child
from support.tools import require_root, require_tool
from syncagent.excludes import PathFilter
from syncagent.publish.builder import Publisher
from syncagent.publishdir import (
    HEAD_NAME,
    MANIFESTS,
    OBJECTS,
    Head,
    PublishedTree,
    encode_head,
    parse_head,
    parse_manifest,
)
from syncagent.settings import Settings
from syncagent.tree import Limits

EVERYTHING = Limits(max_files=10**6, max_total_bytes=2**40, max_file_bytes=2**40, max_depth=64)


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def check_publish_dir(pub: Path) -> Head | None:
    """Assert the publish dir's invariant and return its HEAD (None: no HEAD yet).

    Any HEAD present parses, names a manifest that exists, hashes to its name and agrees with
    HEAD on generation and sequence; every object that manifest names exists and its bytes hash
    to its name. Temp files, unnamed objects and manifests no HEAD names may lie around.
    """
    try:
        data = (pub / HEAD_NAME).read_bytes()
    except FileNotFoundError:
        return None
    head = parse_head(data)  # a torn HEAD would raise here
    tree = published_tree(pub, head)
    for path, digest in sorted(tree.hashes.items()):
        obj = pub / OBJECTS / digest
        assert obj.is_file(), f"HEAD #{head.sequence} names {path} as {digest}: no such object"
        assert sha256(obj.read_bytes()) == digest, f"object {digest} ({path}) holds other bytes"
    return head


def published_tree(pub: Path, head: Head) -> PublishedTree:
    """The manifest HEAD names, checked against its name and against HEAD."""
    path = pub / MANIFESTS / head.manifest
    assert path.is_file(), f"HEAD #{head.sequence} names manifest {head.manifest}: it is missing"
    data = path.read_bytes()
    assert sha256(data) == head.manifest, f"manifest {head.manifest} holds other bytes"
    tree = parse_manifest(data, EVERYTHING, PathFilter.build())
    assert (tree.generation, tree.sequence) == (head.generation, head.sequence), (tree, head)
    return tree


def manifest_sequences(pub: Path) -> list[int]:
    """The sequence of every readable manifest in the publish dir."""
    found = []
    for m in (pub / MANIFESTS).iterdir():
        with contextlib.suppress(OSError, ValueError, KeyError):
            found.append(int(json.loads(m.read_bytes())["sequence"]))
    return found


def temp_files(pub: Path) -> list[str]:
    return sorted(
        f"{d}/{p.name}"
        for d in (OBJECTS, MANIFESTS)
        for p in (pub / d).iterdir()
        if p.name[0] == "."
    )


# ---- a publisher to kill ---------------------------------------------------------------------


def fork_publisher(settings: Settings, log: Path) -> int:
    """A child building generations in a loop until it is killed; returns its pid."""

    def work() -> int:
        publisher = Publisher(settings)
        while True:
            publisher.build()

    return fork_child(log, work)


# ---- a small filesystem ----------------------------------------------------------------------


@contextlib.contextmanager
def tmpfs(mnt: Path, size: int, inodes: int) -> Iterator[Path]:
    """A private tmpfs at ``mnt``, unmounted at the end whatever happens."""
    require_root("mount -t tmpfs")
    require_tool("mount")
    opts = f"size={size},nr_inodes={inodes},mode=0755"
    subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", mnt], check=True)
    try:
        yield mnt
    finally:
        if subprocess.run(["umount", mnt], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", mnt], check=False)


def free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def fill(fs: Path, leave: int) -> Path:
    """Take every free byte of ``fs`` but about ``leave`` with one filler file."""
    filler = fs / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    block = b"\0" * 65536
    try:
        while True:
            try:
                if os.write(fd, block) < len(block):
                    break
            except OSError as e:
                assert e.errno == errno.ENOSPC
                break
    finally:
        os.close(fd)
    os.truncate(filler, max(0, filler.stat().st_size - leave))
    return filler


# ---- a hostile copy of a publish dir -----------------------------------------------------------


def served(pub: Path) -> hp.Node:
    """A virtual copy of a real publish dir, for a hostile primary to mount and then rewrite."""
    return hp.load_tree(pub)


def manifest_doc(node: hp.Node) -> tuple[Head, dict[str, Any]]:
    """The HEAD a virtual publish dir serves and the manifest it names, decoded."""
    head = parse_head(node.children[HEAD_NAME.encode()].data)
    data = node.children[MANIFESTS.encode()].children[head.manifest.encode()].data
    doc: dict[str, Any] = json.loads(data)
    return head, doc


def publish_lie(node: hp.Node, doc: dict[str, Any], head: Head) -> Head:
    """Serve ``doc`` as a new manifest, named by its hash, under a HEAD one sequence on."""
    data = json.dumps({**doc, "sequence": head.sequence + 1}).encode()
    name = sha256(data)
    node.children[MANIFESTS.encode()].children[name.encode()] = hp.file(data)
    now = time.time()
    lie = Head(doc["generation"], head.sequence + 1, name, now, now)
    node.children[HEAD_NAME.encode()] = hp.file(encode_head(lie))
    return lie
