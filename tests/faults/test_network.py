"""Broken networks: the primary's sshd in its own network namespace, the agent (the real
``python -m syncagent once``) in another, a veth pair between them (tests/support/netns.py), and
nftables rules that partition the link, cut it in the middle of a transfer, or drop 5-20% of
packets. Every run must end within its timeouts, apply nothing partial, and the agent must
recover by itself once the link heals.
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from support.config import cli_env, settings_for
from support.faults import check_live_generation, read_node_local
from support.netns import NetnsSshd, NetPair
from support.tools import require_root, require_tool
from support.trees import age, live_state, managed

from syncagent.demo.sample_tree import add_softtoken_key, build_secondary_local
from syncagent.settings import Settings

CONNECT_TIMEOUT = 3.0
IO_TIMEOUT = 3.0
SYNC_TIMEOUT = 60.0
LOSS_RUNS = int(os.environ.get("SYNCAGENT_FAULT_LOSS_RUNS", "3"))


@dataclass
class Net:
    pair: NetPair
    sshd: NetnsSshd
    primary: Path
    target: Path
    settings: Settings


@pytest.fixture
def net(primary_tree: Path, tmp_path: Path) -> Iterator[Net]:
    require_root("network namespaces")
    ip = require_tool("ip")
    nft = require_tool("nft")
    real_sshd = require_tool("sshd")
    pair = NetPair(ip=ip, nft=nft)
    server: NetnsSshd | None = None
    try:
        pair.up()
        server = NetnsSshd(host=pair.server_ip, netns=pair.server_ns, real_sshd=real_sshd)
        server.start()
        primary = primary_tree
        target = tmp_path / "etc-xroad"
        target.mkdir(mode=0o751)
        build_secondary_local(target)
        settings = settings_for(
            server,
            primary,
            target,
            primary__host=pair.server_ip,
            primary__connect_timeout=CONNECT_TIMEOUT,
            primary__io_timeout=IO_TIMEOUT,
            sync__timeout=SYNC_TIMEOUT,
        )
        yield Net(pair, server, primary, target, settings)
    finally:
        if server is not None:
            server.close()
        pair.close()
        assert not pair.exists(), "network namespaces left behind"


def agent(net: Net, *, wait: bool = True) -> Any:
    """``syncagent once --json`` inside the client namespace; returns (doc, seconds) or Popen."""
    env = {
        **os.environ,
        **cli_env(net.settings, "primary.connect_timeout", "primary.io_timeout", "sync.timeout"),
    }
    argv = net.pair.client_argv(sys.executable, "-m", "syncagent", "once", "--json")
    proc = subprocess.Popen(
        argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    if not wait:
        return proc
    return finish(proc)


def finish(
    proc: subprocess.Popen[str], limit: float = SYNC_TIMEOUT + 30
) -> tuple[dict[str, Any], float]:
    started = time.monotonic()
    out, err = proc.communicate(timeout=limit)
    seconds = time.monotonic() - started
    try:
        doc = json.loads(out.strip().splitlines()[-1])
    except (IndexError, ValueError):
        raise AssertionError(f"no JSON result (exit {proc.returncode}): {err[-2000:]}") from None
    assert doc["exit_code"] == proc.returncode
    return doc, seconds


_versions = itertools.count(1)


def change(primary: Path, big: int = 0) -> None:
    """A new key, an edited ini and (``big``) a rewritten blob, each with an mtime of its own:
    ``age`` alone would give a same-size rewrite the same old mtime, which no listing can see."""
    add_softtoken_key(primary)
    (primary / "conf.d" / "local.ini").write_text(f"[proxy]\nchanged-at={time.time()}\n")
    if big:
        (primary / "ssl" / "bundle.p12").write_bytes(os.urandom(big))
    age(primary)
    stamp = int(time.time()) - 1800 + next(_versions)
    for rel in ("conf.d/local.ini", "ssl/bundle.p12"):
        if (primary / rel).exists():
            os.utime(primary / rel, (stamp, stamp))


def healthy_first_sync(net: Net) -> None:
    doc, _ = agent(net)
    assert doc["result"] == "applied", doc


def test_partition_before_connect(net: Net) -> None:
    healthy_first_sync(net)
    change(net.primary)
    before = live_state(net.target)
    net.pair.cut()
    doc, seconds = agent(net)
    assert doc["result"] == "failed" and doc["reason"] in ("timeout", "connect"), doc
    assert seconds < CONNECT_TIMEOUT + 5, f"took {seconds:.1f}s"
    assert live_state(net.target) == before

    net.pair.heal()
    doc, _ = agent(net)
    assert doc["result"] == "applied", doc
    assert managed(net.target, net.settings) == managed(net.primary, net.settings)
    check_live_generation(net.target, net.settings.sync.state_dir, net.settings.sync.path_filter())


def test_link_cut_in_the_middle_of_a_transfer(net: Net) -> None:
    healthy_first_sync(net)
    change(net.primary, big=6 * 1024**2)
    local = read_node_local(net.target)
    before = live_state(net.target)
    net.pair.throttle(1024)  # ~1 MiB/s: the 6 MiB file takes seconds, long enough to cut
    proc = agent(net, wait=False)
    partial = net.target / ".syncagent" / "staging" / "tree" / "ssl" / "bundle.p12"
    deadline = time.monotonic() + 30
    while not (partial.exists() and partial.stat().st_size > 256 * 1024):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the transfer never started"
        time.sleep(0.01)
    net.pair.cut()
    cut_at = time.monotonic()
    assert partial.stat().st_size < 6 * 1024**2, "the transfer finished before the cut"
    doc, _ = finish(proc)
    after_cut = time.monotonic() - cut_at
    assert doc["result"] == "failed" and doc["reason"] in ("timeout", "connect"), doc
    # one unanswered request ends the sync: io_timeout, plus a moment to tear down
    assert after_cut < IO_TIMEOUT + 5, f"{after_cut:.1f}s after the cut"
    assert live_state(net.target) == before, "something of the cut transfer went live"
    assert not partial.exists(), "the partial file stayed in staging"

    net.pair.heal()
    doc, _ = agent(net)
    assert doc["result"] == "applied", doc
    assert managed(net.target, net.settings) == managed(net.primary, net.settings)
    check_live_generation(
        net.target, net.settings.sync.state_dir, net.settings.sync.path_filter(), node_local=local
    )


@pytest.mark.parametrize("percent", [5, 10, 20])
def test_packet_loss(net: Net, percent: int) -> None:
    healthy_first_sync(net)
    pf = net.settings.sync.path_filter()
    outcomes: dict[str, int] = {}
    net.pair.loss(percent)
    for _ in range(LOSS_RUNS):
        change(net.primary, big=512 * 1024)
        gen_before = check_live_generation(net.target, net.settings.sync.state_dir, pf)
        doc, seconds = agent(net)
        label = doc["result"] + (f" ({doc['reason']}, {seconds:.1f}s)" if "reason" in doc else "")
        outcomes[label] = outcomes.get(label, 0) + 1
        assert seconds < SYNC_TIMEOUT + 10, f"took {seconds:.1f}s"
        gen_after = check_live_generation(net.target, net.settings.sync.state_dir, pf)
        if doc["result"] == "applied":
            assert managed(net.target, net.settings) == managed(net.primary, net.settings)
        else:
            assert doc["result"] == "failed", doc
            assert doc["reason"] in ("timeout", "connect", "remote_io"), doc
            assert gen_after == gen_before, "a failed sync changed the live tree"
    print(f"{percent}% loss: {outcomes}")
    net.pair.heal()
    doc, _ = agent(net)
    assert doc["result"] in ("applied", "unchanged"), doc
    assert managed(net.target, net.settings) == managed(net.primary, net.settings)
