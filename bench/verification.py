"""What content verification costs per hour at the default ``sync.verify_interval`` (3600 s).

    sudo .venv/bin/python -m bench.verification [--quick] [--out DIR]

One agent (a long-lived ``bench.agent_worker``, one kept connection, as ``syncagent run``) syncs
once a minute for an hour of simulated time, on the X-Road tree and on the 10k-file tree: 60
syncs each preceded by moving its verification cursor 60 s into the past (so exactly the share
an hour of real syncs would verify falls due), against 60 syncs with nothing due. The
difference is the cost of verification per hour: the file bytes fetched, the primary's sshd CPU
(cgroup accounting) and the agent's CPU. Wall time is reported too, but the CPU and bytes are
the figures that do not depend on what else runs on the machine.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .experiments import Bed
from .infra import Primary, build_bulk, build_xroad, loadavg, machine

SYNCS_PER_HOUR = 60


def _hour(bed: Bed, syncs: int, share_seconds: float | None) -> dict[str, Any]:
    agent = bed.agents["agent"]
    runs = []
    for _ in range(syncs):
        agent.call({"op": "verify_clock", "seconds": share_seconds})
        runs.append(bed.run("agent"))
    bad = [r for r in runs if not r["ok"]]
    assert not bad, bad[:3]
    primary = [r["primary_cpu"] for r in runs if r["primary_cpu"] is not None]
    return {
        "syncs": syncs,
        "files_fetched": sum(r["files_fetched"] for r in runs),
        "bytes_fetched": sum(r["bytes_fetched"] for r in runs),
        "agent_cpu_s": sum(r["cpu"] for r in runs),
        "primary_cpu_s": sum(primary) if len(primary) == len(runs) else None,
        "wall_s": sum(r["wall"] for r in runs),
        "wall_median_s": statistics.median(r["wall"] for r in runs),
    }


def measure(name: str, primary: Primary, remote: Path, work: Path, syncs: int) -> dict[str, Any]:
    bed = Bed(primary, remote, work / name, log_dir=work)
    try:
        first = bed.run("agent")
        assert first["ok"], first
        idle = _hour(bed, syncs, None)
        verifying = _hour(bed, syncs, 3600.0 / syncs)
    finally:
        bed.close()
    cost = {
        k: (verifying[k] - idle[k]) if verifying[k] is not None and idle[k] is not None else None
        for k in ("files_fetched", "bytes_fetched", "agent_cpu_s", "primary_cpu_s", "wall_s")
    }
    return {"without_verification": idle, "with_verification": verifying, "cost_per_hour": cost}


def _tree(root: Path) -> dict[str, int]:
    files = [p for p in root.rglob("*") if p.is_file() and not p.is_symlink()]
    return {"files": len(files), "bytes": sum(p.stat().st_size for p in files)}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.verification")
    ap.add_argument("--quick", action="store_true", help="6 syncs, a 200-file bulk tree")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = ap.parse_args(argv)
    syncs = 6 if args.quick else SYNCS_PER_HOUR
    bulk_files, bulk_bytes = (200, 2 * 10**6) if args.quick else (10_000, 200 * 10**6)
    started = datetime.now(UTC)
    work = Path(tempfile.mkdtemp(prefix="syncagent-bench-verify-"))
    doc: dict[str, Any] = {
        "started": started.isoformat(timespec="seconds"),
        "machine": machine(),
        "loadavg_start": loadavg(),
        "syncs_per_hour": syncs,
    }
    t0 = time.monotonic()
    primary = Primary("verify")
    try:
        doc["cpu_accounting"] = primary.cpu.kind
        xroad = primary.new_tree("xroad")
        build_xroad(xroad)
        doc["xroad_tree"] = _tree(xroad)
        doc["xroad"] = measure("xroad", primary, xroad, work, syncs)
        bulk = primary.new_tree("xroad")
        build_bulk(bulk, bulk_files, bulk_bytes)
        doc["bulk_tree"] = _tree(bulk)
        doc["bulk"] = measure("bulk", primary, bulk, work, syncs)
    finally:
        primary.close()
    doc["loadavg_end"] = loadavg()
    doc["duration_s"] = time.monotonic() - t0
    args.out.mkdir(parents=True, exist_ok=True)
    stem = args.out / f"{started:%Y-%m-%d}-verification{'-quick' if args.quick else ''}"
    stem.with_suffix(".json").write_text(json.dumps(doc, indent=2) + "\n")
    stem.with_suffix(".md").write_text(table(doc))
    print(table(doc), end="")
    return 0


def _mb(n: float) -> str:
    return f"{n / 2**20:.2f} MiB"


def table(doc: dict[str, Any]) -> str:
    rows = [
        f"Verification cost per hour at sync.verify_interval = 3600 s, one sync a minute "
        f"({doc['started']}, load {doc['loadavg_start']} -> {doc['loadavg_end']}):",
        "",
        "| tree | files | file bytes fetched | primary (sshd) CPU | agent CPU | "
        "no-op sync without / with its share |",
        "|---|---|---|---|---|---|",
    ]
    for key, tree in (("xroad", "X-Road"), ("bulk", "10k")):
        r = doc[key]
        c = r["cost_per_hour"]
        primary = f"{c['primary_cpu_s']:.2f} s" if c["primary_cpu_s"] is not None else "n/a"
        rows.append(
            f"| {tree} ({doc[f'{key}_tree']['files']} files, {_mb(doc[f'{key}_tree']['bytes'])}) "
            f"| {c['files_fetched']} | {_mb(c['bytes_fetched'])} | {primary} "
            f"| {c['agent_cpu_s']:.2f} s | {r['without_verification']['wall_median_s']:.3f} s / "
            f"{r['with_verification']['wall_median_s']:.3f} s |"
        )
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
