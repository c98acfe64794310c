"""``python -m bench``: every experiment, one run, one JSON + Markdown table + PNG plot.

The long, light experiments (agent idle footprint; propagation at the long interval) start first,
in their own processes with their own sshd, and run beside the foreground ones, which measure one
thing at a time. Sizes, repeats and durations are parameters; ``--quick`` shrinks them all so the
whole harness runs in well under a minute (the test suite does that, so it cannot rot).
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import itertools
import json
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from syncagent.settings import FIELDS_BY_NAME

from . import background, experiments, report
from .experiments import Bed
from .infra import (
    COUNTER_FILE,
    Primary,
    build_bulk,
    build_security_server,
    build_xroad,
    bulk_files,
    change_counter,
    change_file,
    loadavg,
    machine,
)
from .procs import agent_mode
from .publisher import PublisherProc

POLL_DEFAULT = float(FIELDS_BY_NAME["sync.poll"].default)


@dataclass
class Params:
    bulk_files: int = 10_000
    bulk_bytes: int = 200 * 10**6
    noop_repeats: int = 15
    noop_bulk_repeats: int = 5
    bytes_repeats: int = 3
    change_repeats: int = 7
    first_sync_repeats: int = 3
    fanout_ns: tuple[int, ...] = (10, 50, 100)
    fanout_rounds: int = 3
    fanout_workers: int = 10
    fanout_idle_window: float = 15.0
    prop_fg_interval: float = 5.0  # measured in the foreground, after the rest
    prop_fg_duration: float = 150.0
    prop_bg_interval: float = 60.0  # measured in the background, from the start
    prop_bg_duration: float = 420.0
    prop_spacing: tuple[float, float] = (3.0, 7.0)
    settle: float | None = None  # None: the agent's default (2 s)
    idle_interval: float = 60.0
    idle_duration: float = 600.0
    profile: bool = True
    # publish mode (`syncagent publish` on the primary, agents following its HEAD)
    pub_settle: float | None = None  # None: the publisher's default (publish.settle, 2 s)
    pub_poll: float | None = None  # None: the daemon's default (sync.poll, 2 s)
    pub_generations: int = 5  # X-Road tree: edits published one at a time (per-generation cost)
    pub_idle_window: float = 60.0  # 10k tree: the publisher idle (X-Road tree: idle_duration)
    fanout_pub_ns: tuple[int, ...] = (100,)
    fanout_poll_window: float = 10.0  # N agents reading HEAD every pub_poll s
    # security server tree (tests/support/xroad_etc.py): first sync, no-op, one change
    secsrv_first_sync_repeats: int = 3
    secsrv_noop_repeats: int = 15
    secsrv_change_repeats: int = 7


QUICK = Params(
    bulk_files=200,
    bulk_bytes=2 * 10**6,
    noop_repeats=2,
    noop_bulk_repeats=1,
    bytes_repeats=1,
    change_repeats=1,
    first_sync_repeats=1,
    fanout_ns=(4,),
    fanout_rounds=1,
    fanout_workers=2,
    fanout_idle_window=1.0,
    prop_fg_interval=1.0,
    prop_fg_duration=4.0,
    prop_bg_interval=2.0,
    prop_bg_duration=4.0,
    prop_spacing=(0.6, 1.2),
    settle=0.2,
    idle_interval=2.0,
    idle_duration=5.0,
    profile=False,
    pub_settle=0.2,
    pub_poll=0.5,
    pub_generations=1,
    pub_idle_window=1.0,
    fanout_pub_ns=(4,),
    fanout_poll_window=1.0,
    secsrv_first_sync_repeats=1,
    secsrv_noop_repeats=1,
    secsrv_change_repeats=1,
)


def _log(msg: str, t0: float) -> None:
    print(f"[bench {time.monotonic() - t0:7.1f}s] {msg}", flush=True)


def run(params: Params, out_dir: Path, mode: str, keep: bool = False) -> dict[str, Any]:
    t0 = time.monotonic()
    started = datetime.now(UTC)
    work = Path(tempfile.mkdtemp(prefix="syncagent-bench-"))
    logs = work / "logs"
    logs.mkdir()
    mode = agent_mode(mode)
    doc: dict[str, Any] = {
        "started": started.isoformat(timespec="seconds"),
        "machine": machine(),
        "loadavg_start": loadavg(),
        "agent_mode": mode,
        "commit": _commit(),
        "params": dataclasses.asdict(params),
    }
    _log(f"work dir {work}; long-running agent = {mode}", t0)

    bg_common = {"workdir": str(work), "mode": mode}
    prop_common = {
        **bg_common,
        "spacing": params.prop_spacing,
        "settle": params.settle,
        "published": True,
        "pub_settle": params.pub_settle,
        "pub_poll": params.pub_poll,
    }
    bg = {
        "idle": background.launch(
            "idle",
            {
                **bg_common,
                "interval": params.idle_interval,
                "duration": params.idle_duration,
                "publisher": True,
            },
            logs / "idle.log",
        ),
        "prop_bg": background.launch(
            "propagation",
            {
                **prop_common,
                "interval": params.prop_bg_interval,
                "duration": params.prop_bg_duration,
            },
            logs / "prop-bg.log",
        ),
    }
    loads = [loadavg()]
    publishers: list[PublisherProc] = []

    def publisher(name: str, primary: Primary, source: Path) -> PublisherProc:
        """``syncagent publish`` of ``source`` (probed), started."""
        pub = PublisherProc(
            name,
            source,
            primary.new_publish_dir(),
            logs / f"publisher-{name}.log",
            settle=params.pub_settle,
        )
        publishers.append(pub)
        return pub

    def published(pub: PublisherProc) -> None:
        """Its first generation is out (waited for after the Bed's workers have started)."""
        pub.wait_head()
        pub.quiet()

    try:
        primary = Primary("fg")
        try:
            doc["cpu_accounting"] = primary.cpu.kind
            # -- realistic tree ---------------------------------------------------------------
            remote = primary.new_tree("xroad")
            build_xroad(remote)
            doc["xroad_tree"] = _tree_size(remote)
            _log("realistic tree: starting the publisher and the agents", t0)
            pub = publisher("xroad", primary, remote)
            bed = Bed(primary, remote, work / "xroad", log_dir=logs, publisher=pub)
            try:
                published(pub)
                _log("realistic tree: first sync, no-op", t0)
                doc["xroad_first_sync"] = experiments.first_sync(bed, 1)
                doc["xroad_noop"] = experiments.noop(bed, params.noop_repeats)
                relayed = bed.relayed()
                try:
                    doc["xroad_noop_bytes"] = experiments.noop(relayed, params.bytes_repeats)
                finally:
                    relayed.close()
                _log(f"realistic tree: {params.pub_generations} published edits", t0)
                doc["publisher_xroad"] = {
                    "generations": experiments.publish_generations(
                        pub, remote, params.pub_generations
                    )
                }
            finally:
                bed.close()
                doc.setdefault("publisher_xroad", {}).update(pub.summary(), exit=pub.close())
            loads.append(loadavg())
            # -- security server tree (tests/support/xroad_etc.py) ---------------------------
            secsrv = primary.new_tree("xroad")
            build_security_server(secsrv)
            doc["secsrv_tree"] = _tree_size(secsrv)
            _log("security server tree: starting the publisher and the agents", t0)
            pub = publisher("secsrv", primary, secsrv)
            bed = Bed(primary, secsrv, work / "secsrv", log_dir=logs, publisher=pub)
            base = (secsrv / COUNTER_FILE).read_bytes()
            counter = itertools.count(20_000)

            def change(_r: int) -> None:  # valid INI: a comment line, not random bytes
                change_counter(secsrv, base, next(counter))

            try:
                published(pub)
                _log("security server tree: first sync, no-op, one change", t0)
                doc["secsrv_first_sync"] = experiments.first_sync(
                    bed, params.secsrv_first_sync_repeats
                )
                doc["secsrv_noop"] = experiments.noop(bed, params.secsrv_noop_repeats)
                doc["secsrv_change"] = experiments.one_change(
                    bed, params.secsrv_change_repeats, change=change
                )
                relayed = bed.relayed()
                try:
                    _log("security server tree: bytes on the wire", t0)
                    doc["secsrv_noop_bytes"] = experiments.noop(relayed, params.bytes_repeats)
                    doc["secsrv_change_bytes"] = experiments.one_change(
                        relayed, params.bytes_repeats, change=change
                    )
                finally:
                    relayed.close()
            finally:
                bed.close()
                doc["publisher_secsrv"] = {**pub.summary(), "exit": pub.close()}
            loads.append(loadavg())
            # -- bulk tree --------------------------------------------------------------------
            _log(f"building the {params.bulk_files}-file tree", t0)
            bulk = primary.new_tree("xroad")
            build_bulk(bulk, params.bulk_files, params.bulk_bytes)
            doc["bulk_tree"] = _tree_size(bulk)
            _log("bulk tree: starting the publisher (first generation) and the agents", t0)
            pub = publisher("bulk", primary, bulk)
            bed = Bed(primary, bulk, work / "bulk", log_dir=logs, publisher=pub)
            try:
                published(pub)
                _log("bulk tree: first full sync", t0)
                doc["bulk_first_sync"] = experiments.first_sync(bed, params.first_sync_repeats)
                _log("bulk tree: no-op", t0)
                doc["bulk_noop"] = experiments.noop(bed, params.noop_bulk_repeats)
                _log("bulk tree: one changed file", t0)
                doc["bulk_change"] = experiments.one_change(bed, params.change_repeats)
                loads.append(loadavg())
                relayed = bed.relayed()
                try:
                    _log("bulk tree: bytes on the wire", t0)
                    doc["bulk_noop_bytes"] = experiments.noop(relayed, params.bytes_repeats)
                    doc["bulk_change_bytes"] = experiments.one_change(
                        relayed, params.bytes_repeats, seed=11
                    )
                finally:
                    relayed.close()
                _log(f"bulk tree: the publisher idle for {params.pub_idle_window:g} s", t0)
                doc["publisher_bulk"] = {"idle": pub.idle(params.pub_idle_window)}
                if params.profile and importlib.util.find_spec("pyinstrument") is None:
                    _log("pyinstrument is not installed: no profiles", t0)
                elif params.profile:
                    _log("profiles of the agent (pyinstrument)", t0)
                    doc["profiles"] = _profiles(bed, out_dir, started)
            finally:
                bed.close()
                doc.setdefault("publisher_bulk", {}).update(pub.summary(), exit=pub.close())
            shutil.rmtree(work / "bulk", ignore_errors=True)
            shutil.rmtree(bulk, ignore_errors=True)
            shutil.rmtree(pub.dir, ignore_errors=True)
        finally:
            primary.close()
        loads.append(loadavg())
        # -- fan-out: its own sshd, so its CPU account holds nothing else ----------------------
        _log(f"fan-out {params.fanout_ns}", t0)
        primary = Primary("fanout")
        try:
            remote = primary.new_tree("xroad")
            build_xroad(remote)
            doc["fanout"] = experiments.fanout(
                primary,
                remote,
                work / "fanout",
                params.fanout_ns,
                params.fanout_rounds,
                params.fanout_workers,
                params.fanout_idle_window,
                logs,
            )
            _log(f"fan-out in publish mode {params.fanout_pub_ns}", t0)
            pub = publisher("fanout", primary, remote)
            try:
                published(pub)
                doc["fanout_published"] = experiments.fanout_published(
                    primary,
                    remote,
                    pub,
                    work / "fanout-pub",
                    params.fanout_pub_ns,
                    params.fanout_rounds,
                    params.fanout_workers,
                    params.pub_poll or POLL_DEFAULT,
                    params.fanout_poll_window,
                    logs,
                )
            finally:
                pub.close()
        finally:
            primary.close()
        loads.append(loadavg())
        # -- propagation at the short interval, foreground ----------------------------------
        _log(f"propagation at {params.prop_fg_interval:g} s", t0)
        fg = background.launch(
            "propagation",
            {
                **prop_common,
                "interval": params.prop_fg_interval,
                "duration": params.prop_fg_duration,
            },
            logs / "prop-fg.log",
        )
        doc["propagation"] = [background.collect(fg, params.prop_fg_duration * 3 + 120)]
        loads.append(loadavg())
        # -- wait for the background ones ------------------------------------------------------
        _log("waiting for the background experiments", t0)
        doc["propagation"].append(
            background.collect(
                bg["prop_bg"], params.prop_bg_duration + 3 * params.prop_bg_interval + 180
            )
        )
        doc["idle"] = background.collect(bg["idle"], params.idle_duration + 180)
    finally:
        for pub in publishers:
            pub.close()
        for proc in bg.values():
            if proc.poll() is None:
                proc.kill()
        if keep:
            _log(f"kept {work}", t0)
        else:
            shutil.rmtree(work, ignore_errors=True)
    loads.append(loadavg())
    doc["loadavg_samples"] = loads
    doc["loadavg_end"] = loadavg()
    doc["duration_s"] = time.monotonic() - t0
    doc["summary"] = report.summarize(doc)
    _log(f"done in {doc['duration_s']:.0f} s", t0)
    return doc


def _commit() -> str:
    """The checkout measured: HEAD, and whether syncagent/ had uncommitted changes."""
    repo = Path(__file__).resolve().parent.parent
    head = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True, text=True
    ).stdout.strip()
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--", "syncagent"],
        cwd=repo,
        capture_output=True,
        text=True,
    ).stdout.strip()
    return f"{head or 'unknown'}{' + uncommitted syncagent/ changes' if dirty else ''}"


def _tree_size(root: Path) -> dict[str, int]:
    files = [p for p in root.rglob("*") if p.is_file()]
    return {"files": len(files), "bytes": sum(p.stat().st_size for p in files)}


def _profiles(bed: Bed, out_dir: Path, started: datetime) -> dict[str, str]:
    pdir = out_dir / f"{started:%Y-%m-%d}-profiles"
    pdir.mkdir(parents=True, exist_ok=True)
    paths = {}
    paths["noop"] = pdir / "agent-noop-bulk.txt"
    bed.profile("agent", paths["noop"])
    change_file(bulk_files(bed.remote)[0])
    paths["change"] = pdir / "agent-one-change-bulk.txt"
    bed.profile("agent", paths["change"])
    bed.reset_target("agent-fresh")
    paths["first_sync"] = pdir / "agent-first-sync-bulk.txt"
    bed.profile("agent-fresh", paths["first_sync"])
    return {k: str(v) for k, v in paths.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, seconds (smoke test)")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(__file__).parent / "results",
        help="results directory (default bench/results)",
    )
    parser.add_argument(
        "--agent",
        choices=("auto", "daemon", "loop"),
        default="auto",
        help="long-running agent: syncagent run, or the bench's sync loop "
        "(auto: the daemon if it is committed)",
    )
    parser.add_argument("--keep", action="store_true", help="keep the work dir (trees, logs)")
    parser.add_argument(
        "--render",
        type=Path,
        metavar="JSON",
        help="only re-render the .md and .png of an earlier results JSON",
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a parameter, e.g. --set idle_duration=120",
    )
    args = parser.parse_args(argv)
    if args.render:
        doc = json.loads(args.render.read_text())
        doc["summary"] = report.summarize(doc)
        args.render.write_text(json.dumps(doc, indent=1) + "\n")
        _write_report(doc, args.render.with_suffix(""))
        return 0
    params = dataclasses.replace(QUICK) if args.quick else Params()
    for item in args.set:
        name, _, value = item.partition("=")
        current = getattr(params, name)
        parsed: Any = json.loads(value) if not isinstance(current, str) else value
        setattr(params, name, tuple(parsed) if isinstance(current, tuple) else parsed)
    args.out.mkdir(parents=True, exist_ok=True)
    doc = run(params, args.out, args.agent, args.keep)
    stem = args.out / datetime.fromisoformat(doc["started"]).strftime("%Y-%m-%d")
    Path(f"{stem}.json").write_text(json.dumps(doc, indent=1) + "\n")
    _write_report(doc, stem)
    return 0


def _write_report(doc: dict[str, Any], stem: Path) -> None:
    Path(f"{stem}.md").write_text(report.markdown(doc, Path(f"{stem}.png").name))
    report.plot(doc, Path(f"{stem}.png"))
    print(f"wrote {stem}.json, {stem}.md, {stem}.png")
