"""Two network namespaces joined by a veth pair, with nftables rules to break the link.

    client ns  sac<id> 10.200.N.1/30  <--veth-->  10.200.N.2/30 sas<id>  server ns (sshd)

The agent runs in the client namespace (``ip netns exec``), the primary's sshd in the server
namespace. The 10.200.N.0/30 addresses exist only inside these two namespaces, which the
test creates and deletes; nothing is routed anywhere else. This kernel has no netem, so faults
are nftables rules in the server namespace: drop everything (a cut or a partition), drop a
random share of packets (``numgen random``), or police the rate so a transfer lasts long
enough to be cut in the middle.
"""

from __future__ import annotations

import secrets
import subprocess
import time
from dataclasses import dataclass, field

from support.sshd import Sshd

TABLE = "syncagent_fault"


def _run(*argv: str, check: bool = True, stdin: str | None = None) -> str:
    p = subprocess.run(argv, input=stdin, capture_output=True, text=True, check=False)
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({p.returncode}): {p.stderr.strip()}")
    return p.stdout


@dataclass
class NetPair:
    """Create with ``up()``, always ``close()`` (idempotent, safe after a partial ``up``)."""

    ip: str = "ip"
    nft: str = "nft"
    tag: str = field(default_factory=lambda: secrets.token_hex(3))
    subnet: int = field(default_factory=lambda: 1 + secrets.randbelow(250))

    @property
    def client_ns(self) -> str:
        return f"sac{self.tag}"

    @property
    def server_ns(self) -> str:
        return f"sas{self.tag}"

    @property
    def client_ip(self) -> str:
        return f"10.200.{self.subnet}.1"

    @property
    def server_ip(self) -> str:
        return f"10.200.{self.subnet}.2"

    @property
    def server_if(self) -> str:
        return f"vs{self.tag}"

    def up(self) -> NetPair:
        ip, c, s = self.ip, self.client_ns, self.server_ns
        cif = f"vc{self.tag}"
        _run(ip, "netns", "add", c)
        _run(ip, "netns", "add", s)
        _run(ip, "link", "add", cif, "netns", c, "type", "veth", "peer", "name", self.server_if,
             "netns", s)  # fmt: skip
        for ns, ifname, addr in ((c, cif, self.client_ip), (s, self.server_if, self.server_ip)):
            _run(ip, "-n", ns, "addr", "add", f"{addr}/30", "dev", ifname)
            _run(ip, "-n", ns, "link", "set", ifname, "up")
            _run(ip, "-n", ns, "link", "set", "lo", "up")
        self.heal()
        return self

    def close(self) -> None:
        for ns in (self.client_ns, self.server_ns):  # deleting a namespace deletes its veth end
            _run(self.ip, "netns", "del", ns, check=False)

    def exists(self) -> bool:
        names = _run(self.ip, "netns", "list", check=False)
        return any(
            line.split()[0] in (self.client_ns, self.server_ns)
            for line in names.splitlines()
            if line.strip()
        )

    # ---- faults (nftables in the server namespace, both directions) ---------------------

    def _rules(self, *rules: str) -> None:
        body = "\n".join(f"    {r}" for r in rules)
        script = (
            f"table inet {TABLE}\ndelete table inet {TABLE}\n"
            f"table inet {TABLE} {{\n"
            "  chain input { type filter hook input priority 0; policy accept;\n"
            f"{body.replace('DIR', 'iifname')}\n  }}\n"
            "  chain output { type filter hook output priority 0; policy accept;\n"
            f"{body.replace('DIR', 'oifname')}\n  }}\n"
            "}\n"
        )
        _run("ip", "netns", "exec", self.server_ns, self.nft, "-f", "-", stdin=script)

    def heal(self) -> None:
        self._rules()

    def cut(self) -> None:
        """Drop every packet both ways: no RST, no ICMP, the peer just goes silent."""
        self._rules(f'DIR "{self.server_if}" drop')

    def loss(self, percent: int) -> None:
        self._rules(f'DIR "{self.server_if}" numgen random mod 100 < {percent} drop')

    def throttle(self, kbytes_per_second: int) -> None:
        self._rules(
            f'DIR "{self.server_if}" limit rate over {kbytes_per_second} kbytes/second '
            "burst 64 kbytes drop"
        )

    def ruleset(self) -> str:
        return _run("ip", "netns", "exec", self.server_ns, self.nft, "list", "ruleset")

    def client_argv(self, *argv: str) -> list[str]:
        return [self.ip, "netns", "exec", self.client_ns, *argv]


@dataclass
class NetnsSshd(Sshd):
    """The test sshd, run inside a namespace through a one-line wrapper around the real binary.

    Readiness is the "Server listening" log line only: the root namespace has no route to the
    server's address, so the parent's TCP probe cannot reach it.
    """

    netns: str = ""
    real_sshd: str = "/usr/sbin/sshd"

    def __post_init__(self) -> None:
        super().__post_init__()
        wrapper = self.base / "sshd-in-netns"
        wrapper.write_text(f'#!/bin/sh\nexec ip netns exec {self.netns} {self.real_sshd} "$@"\n')
        wrapper.chmod(0o755)
        self.sshd_bin = str(wrapper)

    def _wait_ready(self, log_offset: int) -> None:
        assert self._proc is not None
        marker = f"Server listening on {self.host} port {self.port}".encode()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                break
            if marker in self._log_bytes(log_offset):
                return
            time.sleep(0.02)
        rc = self._proc.poll()
        self.kill()
        tail = "\n".join(self.log_text().splitlines()[-30:])
        raise RuntimeError(f"sshd in {self.netns} did not start (exit {rc}):\n{tail}")
