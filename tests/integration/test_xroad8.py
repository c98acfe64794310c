"""An X-Road 8 cluster: what stays in /etc/xroad is mostly node-local bootstrap. The agent
syncs what the nodes share (conf.d/local.yaml, db.properties in the sidecar's shared database)
and never touches the files X-Road 8's packages write per node (their TLS names, their heaps)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from support.config import settings_for
from support.sshd import Sshd, fresh_subdir
from support.trees import age, as_primary
from support.xroad_etc import EtcTree, build_xroad8_etc

from syncagent.engine import sync
from syncagent.local.rollback import rollback
from syncagent.report import Outcome
from syncagent.settings import Settings

PER_NODE = {
    "conf.d/local-tls.yaml": "proxy:\n  tls:\n    common-name: secondary-1\n",
    "services/local.properties": "XROAD_PROXY_PARAMS=-Xms50m -Xmx512m\n",
}


@pytest.fixture
def primary8(tree_area: Path) -> EtcTree:
    root = fresh_subdir(tree_area, "xroad8")
    tree = build_xroad8_etc(root)
    as_primary(root)
    return tree


@pytest.fixture
def node8(tmp_path: Path) -> Path:
    """A secondary on X-Road 8: its own VERSION, its own per-node files, no node.ini (the
    type comes from XROAD_NODE_TYPE)."""
    t = tmp_path / "etc-xroad"
    t.mkdir(mode=0o751)
    (t / "VERSION").write_text("8.0.0-1\n")
    for rel, text in PER_NODE.items():
        (t / rel).parent.mkdir(exist_ok=True)
        (t / rel).write_text(text)
    return t


def settings(sshd: Sshd, tree: EtcTree, target: Path, **extra: str) -> Settings:
    base = {"sync__settle": "0", "sync__node_type": "secondary", "sync__version_source": "none"}
    return settings_for(sshd, tree.root, target, **{**base, **extra})


@pytest.mark.parametrize("release", ["auto", "8"])
def test_an_x_road_8_node_takes_what_is_shared_and_keeps_what_is_its_own(
    sshd: Sshd, primary8: EtcTree, node8: Path, release: str
) -> None:
    s = settings(sshd, primary8, node8, sync__release=release)
    assert s.sync.release_major() == 8
    first = asyncio.run(sync(s))
    assert first.outcome is Outcome.APPLIED, first.summary()
    assert (node8 / "conf.d/local.yaml").read_bytes() == (
        primary8.root / "conf.d/local.yaml"
    ).read_bytes()
    assert (node8 / "db.properties").exists()
    for rel, text in PER_NODE.items():
        assert (node8 / rel).read_text() == text, rel
    local = primary8.root / "conf.d/local.yaml"
    local.write_text(local.read_text() + "xroad:\n  proxy:\n    client-timeout: 45000\n")
    age(primary8.root)
    second = asyncio.run(sync(s))
    assert second.modified == ["conf.d/local.yaml"], second.summary()
    back = asyncio.run(rollback(s, first.generation))
    assert back.error is None, back.error
    for rel, text in PER_NODE.items():
        assert (node8 / rel).read_text() == text, f"rollback touched {rel}"


def test_as_x_road_7_the_per_node_files_would_be_overwritten(
    sshd: Sshd, primary8: EtcTree, node8: Path
) -> None:
    """Why the release matters: told it is 7, the agent takes the primary's TLS names."""
    s = settings(sshd, primary8, node8, sync__release="7")
    assert asyncio.run(sync(s)).outcome is Outcome.APPLIED
    assert (node8 / "conf.d/local-tls.yaml").read_bytes() == (
        primary8.root / "conf.d/local-tls.yaml"
    ).read_bytes()
