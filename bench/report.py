"""Numbers to summaries, summaries to a Markdown table and a PNG plot; targets checked here.

Every ratio is taken against baseline (a), measured in the same run: absolute times on a shared
machine drift, ratios of interleaved runs much less.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from pathlib import Path
from typing import Any

TOOLS = (
    "rsync-ssh",
    "rsync-cm",
    "agent",
    "agent-fresh",
    "agent-pub",
    "agent-pub-fresh",
    "agent-pub-head",
)
HEAD = {
    "rsync-ssh": "(a) rsync, new SSH connection",
    "rsync-cm": "(b) rsync, kept ControlMaster",
    "agent": "agent, kept connection",
    "agent-fresh": "agent, new connection",
    "agent-pub": "agent, published, kept connection",
    "agent-pub-fresh": "agent, published, new connection",
    "agent-pub-head": "published: one HEAD check (the daemon's poll between syncs)",
}
METRICS = ("wall", "cpu", "primary_cpu", "bytes")
# the published contenders' one-change runs also carry the publisher's side of that change
PUBLISH_METRICS = ("publish_latency", "end_to_end", "publish_build_wall", "publish_cpu")
RESCAN_INTERVAL = 60.0  # syncagent.publishdir.RESCAN_INTERVAL: one rescan a minute
POLL_DEFAULT, SETTLE_DEFAULT = 2.0, 2.0  # sync.poll, publish.settle (when the run kept them)
MIB = 1024 * 1024
MB = 1_000_000  # memory is reported and judged in MB (10^6 bytes): the stricter reading


def stats(values: list[float]) -> dict[str, float] | None:
    vals = sorted(v for v in values if v is not None)
    if not vals:
        return None
    if len(vals) == 1:
        p10 = p90 = vals[0]
    else:
        q = statistics.quantiles(vals, n=10, method="inclusive")
        p10, p90 = q[0], q[-1]
    return {
        "n": len(vals),
        "median": statistics.median(vals),
        "p10": p10,
        "p90": p90,
        "min": vals[0],
        "max": vals[-1],
    }


def _ratio(base: dict[str, float] | None, other: dict[str, float] | None) -> float | None:
    if not base or not other or other["median"] <= 0:
        return None
    return base["median"] / other["median"]


def _tools(runs: dict[str, list[dict[str, Any]]] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for tool, rs in (runs or {}).items():
        out[tool] = {
            "ok": f"{sum(1 for r in rs if r['ok'])}/{len(rs)}",
            **{k: stats([r[k] for r in rs if r.get(k) is not None]) for k in METRICS},
        }
        if any("verified" in r for r in rs):  # runs with a verification share due
            out[tool]["verifying"] = f"{sum(1 for r in rs if r.get('verified'))}/{len(rs)}"
        pubs = [r["publish"] for r in rs if r.get("publish")]
        if pubs:
            out[tool].update(
                publish_latency=stats([p["latency"] for p in pubs]),
                end_to_end=stats([r["end_to_end"] for r in rs if r.get("end_to_end")]),
                publish_build_wall=stats([p["build_wall"] for p in pubs]),
                publish_cpu=stats([p["cpu"] for p in pubs]),
            )
    base = out.get("rsync-ssh", {})
    for s in out.values():
        s["ratio_vs_a"] = {k: _ratio(base.get(k), s.get(k)) for k in METRICS}
    return out


def p99(values: list[float]) -> float | None:
    vals = sorted(values)
    if not vals:
        return None
    if len(vals) < 2:
        return vals[0]
    return float(statistics.quantiles(vals, n=100, method="inclusive")[98])


def _prop_row(p: dict[str, Any], name: str) -> dict[str, Any]:
    lat = p[name]["latencies"]
    return {**(stats(lat) or {}), "p99": p99(lat), "unseen": p[name]["unseen"]}


def summarize(doc: dict[str, Any]) -> dict[str, Any]:
    s: dict[str, Any] = {}
    for key in (
        "xroad_first_sync",
        "xroad_noop",
        "secsrv_first_sync",
        "secsrv_noop",
        "secsrv_change",
        "bulk_first_sync",
        "bulk_noop",
        "bulk_change",
    ):
        s[key] = _tools(doc.get(key))
    for key, into in (
        ("xroad_noop_bytes", "xroad_noop"),
        ("secsrv_noop_bytes", "secsrv_noop"),
        ("secsrv_change_bytes", "secsrv_change"),
        ("bulk_noop_bytes", "bulk_noop"),
        ("bulk_change_bytes", "bulk_change"),
    ):
        b = _tools(doc.get(key))
        for tool, t in b.items():
            if tool in s[into]:
                s[into][tool]["bytes"] = t["bytes"]
                s[into][tool]["ratio_vs_a"]["bytes"] = t["ratio_vs_a"]["bytes"]
    s["propagation"] = []
    for p in doc.get("propagation", []):
        if "error" in p:
            s["propagation"].append(p)
            continue
        row = {
            "interval": p["interval"],
            "writes": p["writes"],
            "agent": _prop_row(p, "agent"),
            "rsync": _prop_row(p, "rsync"),
            "rsync_failures": p["rsync_failures"],
            "rsync_runs": p["rsync_runs"],
        }
        if "published" in p:
            pub = p["published"]
            row["published"] = {
                **_prop_row(p, "published"),
                **{k: pub.get(k) for k in ("poll", "publisher_settle", "following_head")},
                "walk_fallbacks": pub.get("walk_fallbacks"),
            }
        s["propagation"].append(row)
    published = [
        lat
        for p in doc.get("propagation", [])
        if "published" in p
        for lat in p["published"]["latencies"]
    ]
    s["propagation_published"] = (
        {
            **(stats(published) or {}),
            "p99": p99(published),
            "unseen": sum(
                p["published"]["unseen"] for p in doc.get("propagation", []) if "published" in p
            ),
        }
        if published
        else None
    )
    s["fanout"] = []
    for row in doc.get("fanout", []):
        n = row["n"]
        rr, ar = row["rsync_rounds"], row["agent_rounds"]
        idle = row.get("agent_idle_primary_cpu_per_s")
        agent_round = stats([r["primary_cpu"] for r in ar])
        rsync_round = stats([r["primary_cpu"] for r in rr])
        per_min = None
        if agent_round and idle is not None:
            per_min = agent_round["median"] + idle * max(
                0.0, 60 - statistics.median(r["wall"] for r in ar)
            )
        s["fanout"].append(
            {
                "n": n,
                "rsync_ok": [r["ok"] for r in rr],
                "rsync_failed_total": sum(n - r["ok"] for r in rr),
                "rsync_runs_total": n * len(rr),
                "rsync_errors": _merge([r["errors"] for r in rr]),
                "rsync_round_wall": stats([r["wall"] for r in rr]),
                "rsync_primary_cpu_per_min": rsync_round["median"] if rsync_round else None,
                "agent_connect": row["agent_connect"],
                "agent_ok": [r["ok"] for r in ar],
                "agent_failed_total": sum(n - r["ok"] for r in ar)
                + (n - row["agent_first_sync_ok"]),
                "agent_syncs_total": n * (len(ar) + 1),
                "agent_round_wall": stats([r["wall"] for r in ar]),
                "agent_primary_cpu_per_round": agent_round["median"] if agent_round else None,
                "agent_primary_cpu_per_min": per_min,
                "agent_idle_primary_cpu_per_s": idle,
                "sshd_pss_mb_with_agents": row["sshd_pss_bytes_with_agents"] / MB,
            }
        )
    cron_100 = next((f for f in s["fanout"] if f["n"] == 100), (s["fanout"] or [None])[-1])
    s["fanout_published"] = [
        _fanout_published(row, cron_100) for row in doc.get("fanout_published", [])
    ]
    s["idle"] = {k: v for k, v in doc.get("idle", {}).items() if k != "publisher"}
    s["publisher"] = _publisher(doc)
    s["targets"] = targets(s)
    return s


def _fanout_published(row: dict[str, Any], cron: dict[str, Any] | None) -> dict[str, Any]:
    n = row["n"]
    rounds = [row["first_sync"], *row["agent_rounds"], row["noop_round"]]
    noop, poll = row["noop_round"], row["poll"]
    per_min = None
    if noop["primary_cpu"] is not None and poll["primary_cpu_per_s"] is not None:
        # the scheduled sync (sync.interval 60 s: a no-op) + HEAD polls the rest of the minute
        per_min = noop["primary_cpu"] + poll["primary_cpu_per_s"] * max(0.0, 60 - noop["wall"])
    cron_min = cron["rsync_primary_cpu_per_min"] if cron else None
    change = stats([r["primary_cpu"] for r in row["agent_rounds"] if r["primary_cpu"] is not None])
    return {
        "n": n,
        "agent_connect": row["agent_connect"],
        "syncs_total": n * len(rounds),
        "failed_total": sum(n - r["ok"] for r in rounds),
        "errors": sorted({e for r in rounds for e in r["errors"]})[:5],
        "published_sequences": row["published_sequences"],
        "distinct_sequence_lists": len(row["agent_sequences"]),
        "sequences_consistent": row["sequences_consistent"],
        "final_sequences": sorted(
            {seq for seq in row["noop_round"]["sequences"] if seq is not None}
        ),
        "change_round_wall": stats([r["wall"] for r in row["agent_rounds"]]),
        "change_round_primary_cpu": change["median"] if change else None,
        "noop_round_primary_cpu": noop["primary_cpu"],
        "poll_every": poll["every"],
        "polls": poll["polls"],
        "poll_errors": poll["errors"],
        "poll_stale_reads": poll["stale_reads"],
        "poll_primary_cpu_per_s": poll["primary_cpu_per_s"],
        "poll_primary_cpu_per_poll": (poll["primary_cpu"] / poll["polls"])
        if poll["polls"] and poll["primary_cpu"] is not None
        else None,
        "primary_cpu_per_min": per_min,
        "cron_n": cron["n"] if cron else None,
        "cron_primary_cpu_per_min": cron_min,
        "ratio_cron_per_min": (cron_min / per_min) if cron_min and per_min else None,
        "sshd_pss_mb_with_agents": row["sshd_pss_bytes_with_agents"] / MB,
    }


def _per_minute(idle: dict[str, Any] | None, rescans: list[dict[str, Any]]) -> float | None:
    """CPU seconds a minute of an idle publisher: its baseline between builds, plus the one
    rescan a minute it runs (phase-independent, whatever the window caught)."""
    if not idle or not idle.get("window"):
        return None
    cpu, window = float(idle["cpu_seconds"]), float(idle["window"])
    baseline = max(0.0, cpu - float(idle.get("rescan_cpu", 0.0))) / window
    rescan = statistics.median(float(r["cpu"]) for r in rescans) if rescans else 0.0
    return baseline * 60 + rescan * 60 / RESCAN_INTERVAL


def _publisher(doc: dict[str, Any]) -> dict[str, Any] | None:
    """The publisher's footprint on the primary, per tree: its first generation (start-up),
    each published edit, its rescans, and idle."""
    if "publisher_xroad" not in doc and "publisher_bulk" not in doc:
        return None
    out: dict[str, Any] = {}
    bg_idle = (doc.get("idle") or {}).get("publisher")
    for tree in ("xroad", "bulk"):
        d = doc.get(f"publisher_{tree}") or {}
        rescans = list(d.get("rescans") or [])
        if tree == "xroad":
            gens = d.get("generations") or []
            idle = {k: v for k, v in bg_idle.items() if k != "summary"} if bg_idle else None
            rescans += ((bg_idle or {}).get("summary") or {}).get("rescans") or []
        else:
            gens = [
                r["publish"]
                for key in ("bulk_change", "bulk_change_bytes")
                for r in (doc.get(key) or {}).get("agent-pub", [])
                if r.get("publish")
            ]
            idle = d.get("idle")
        first = d.get("first_build")
        out[tree] = {
            "cpu_accounting": d.get("cpu_accounting"),
            "first_build": {"wall": first["wall"], "cpu": first["cpu"]} if first else None,
            "generations": len(gens),
            "rebuilt": sum(1 for g in gens if g.get("builds", 1) > 1),
            "latency": stats([g["latency"] for g in gens]),
            "build_wall": stats([g["build_wall"] for g in gens]),
            "build_cpu": stats([g["build_cpu"] for g in gens]),
            "cpu": stats([g["cpu"] for g in gens]),
            "rescans": len(rescans),
            "rescan_wall": stats([r["wall"] for r in rescans]),
            "rescan_cpu": stats([r["cpu"] for r in rescans]),
            "idle": idle,
            "idle_cpu_per_min": _per_minute(idle, rescans),
            "exit": d.get("exit"),
        }
    return out


def _merge(dicts: list[dict[str, int]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for d in dicts:
        for k, v in d.items():
            out[k] = out.get(k, 0) + v
    return out


def _get(d: Any, *keys: str) -> Any:
    for k in keys:
        if not isinstance(d, dict) or d.get(k) is None:
            return None
        d = d[k]
    return d


def _at_least(r: float | None, floor: float) -> bool | None:
    return None if r is None else r >= floor


def targets(s: dict[str, Any]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []

    def add(name: str, value: Any, met: bool | None, shown: str) -> None:
        rows.append({"target": name, "value": value, "met": met, "shown": shown})

    r = _get(s, "xroad_noop", "agent", "ratio_vs_a", "wall")
    add("No-op sync wall time >= 10x less than (a), X-Road tree", r, _at_least(r, 10), _x(r))
    r = _get(s, "xroad_noop", "agent", "ratio_vs_a", "primary_cpu")
    add("No-op sync primary CPU >= 20x less than (a), X-Road tree", r, _at_least(r, 20), _x(r))
    # issue 13: the walk on the 10k tree
    r = _get(s, "bulk_noop", "agent", "ratio_vs_a", "wall")
    add("Walk: 10k no-op wall time no worse than (a)", r, _at_least(r, 1), _x(r))
    r = _get(s, "bulk_noop", "agent", "ratio_vs_a", "cpu")
    add("Walk: 10k no-op syncing-side CPU no worse than (a)", r, _at_least(r, 1), _x(r))
    r = _get(s, "bulk_noop", "agent", "ratio_vs_a", "primary_cpu")
    add("Walk: 10k no-op primary CPU >= 3x less than (a)", r, _at_least(r, 3), _x(r))
    fan = [f for f in s.get("fanout", []) if f["n"] == 100] or s.get("fanout", [])[-1:]
    if fan:
        f = fan[0]
        add(
            f"Fan-out {f['n']}: every agent sync succeeds",
            f["agent_failed_total"],
            f["agent_failed_total"] == 0,
            f"{f['agent_syncs_total'] - f['agent_failed_total']}/{f['agent_syncs_total']} agent "
            f"syncs ok; cron+rsync: {f['rsync_failed_total']}/{f['rsync_runs_total']} runs failed",
        )
    idle = s.get("idle") or {}
    if "vm_hwm" in idle:
        peak = max(idle["vm_hwm"], idle["rss_max"]) / MB
        steady = idle["rss_median"] / MB
        add(
            "Agent steady RSS <= 64 MB",
            steady,
            steady <= 64,
            f"steady {steady:.1f} MB (peak {peak:.1f} MB), {idle['mode']}",
        )
        pct = idle["cpu_percent_of_core"]
        add(
            f"Idle CPU <= 0.2% of a core at interval {idle['interval']:g} s",
            pct,
            pct <= 0.2 if idle["interval"] >= 60 else None,
            f"{pct:.3f}% over {idle['duration']:.0f} s",
        )
    ch = _get(s, "bulk_change", "agent", "wall")
    if ch:
        add(
            "Walk: one changed file in the 10k tree applied in <= 0.5 s",
            ch["max"],
            ch["max"] <= 0.5,
            f"median {ch['median']:.2f} s, max {ch['max']:.2f} s",
        )
    a, b = (
        _get(s, "bulk_first_sync", "agent-fresh", "wall"),
        _get(s, "bulk_first_sync", "rsync-ssh", "wall"),
    )
    if a and b:
        r = a["median"] / b["median"]
        add(
            "Walk: first full 10k sync <= 2x (a)'s time",
            r,
            r <= 2.0,
            f"{r:.2f}x ({a['median']:.1f} s vs {b['median']:.1f} s)",
        )
    _published_targets(s, add)
    return rows


def _published_targets(s: dict[str, Any], add: Any) -> None:
    """Issue 12's targets for the publish mode (agent following a published HEAD)."""

    def head(tree: str, metric: str, unit: Callable[[Any], str]) -> str:
        got = _get(s, tree, "agent-pub-head", metric)
        return f"; HEAD check alone {unit(got)}" if got else ""

    for metric, what, unit in (("primary_cpu", "primary CPU", _ms), ("bytes", "bytes", _bytes)):
        x = _get(s, "xroad_noop", "agent-pub", metric)
        b = _get(s, "bulk_noop", "agent-pub", metric)
        if x and b and x["median"] > 0:
            r = b["median"] / x["median"]
            hx, hb = (
                _get(s, "xroad_noop", "agent-pub-head", metric),
                _get(s, "bulk_noop", "agent-pub-head", metric),
            )
            poll = f"; one HEAD check: {unit(hb)} vs {unit(hx)}" if hx and hb else ""
            vb = _get(s, "bulk_noop", "agent-pub", "verifying")
            vx = _get(s, "xroad_noop", "agent-pub", "verifying")
            if vb is not None and vx is not None:
                poll += f"; syncs with a verification share due: {vb} vs {vx}"
            add(
                f"Published no-op sync, 10k tree {what} within 1.5x of the X-Road tree's",
                r,
                r <= 1.5,
                f"{r:.2f}x ({unit(b)} vs {unit(x)}){poll}",
            )
    r = _get(s, "bulk_noop", "agent-pub", "ratio_vs_a", "primary_cpu")
    if r is not None:
        a = _get(s, "bulk_noop", "rsync-ssh", "primary_cpu")
        p = _get(s, "bulk_noop", "agent-pub", "primary_cpu")
        add(
            "Published no-op sync primary CPU >= 50x less than (a), 10k tree",
            r,
            r >= 50,
            f"{_x(r)} ({_ms(p)} vs {_ms(a)}){head('bulk_noop', 'primary_cpu', _ms)}",
        )
    ch = _get(s, "bulk_change", "agent-pub")
    if ch and ch.get("wall"):
        w, lat, e2e = ch["wall"], ch.get("publish_latency"), ch.get("end_to_end")
        add(
            "One changed file in the 10k tree applied in <= 0.3 s once published",
            w["max"],
            w["max"] <= 0.3,
            f"median {w['median']:.2f} s, max {w['max']:.2f} s; publisher: write -> HEAD "
            f"{_s(_get(lat, 'median'))}; end-to-end {_s(_get(e2e, 'median'))}",
        )
    a = _get(s, "bulk_first_sync", "agent-pub-fresh", "wall")
    b = _get(s, "bulk_first_sync", "rsync-ssh", "wall")
    if a and b:
        r = a["median"] / b["median"]
        add(
            "First full 10k sync, published (new connection), no slower than (a)",
            r,
            r <= 1.0,
            f"{r:.2f}x ({a['median']:.1f} s vs {b['median']:.1f} s)",
        )
    prop = s.get("propagation_published")
    if prop and prop.get("p99") is not None:
        pp = next(p["published"] for p in s["propagation"] if "published" in p)
        every = pp.get("poll") or POLL_DEFAULT
        settle = pp.get("publisher_settle") or SETTLE_DEFAULT
        add(
            f"Propagation p99 <= 5 s, published (daemon poll {every:g} s, publisher settle "
            f"{settle:g} s)",
            prop["p99"],
            prop["p99"] <= 5.0 and prop["unseen"] == 0,
            f"p99 {prop['p99']:.2f} s, median {prop['median']:.2f} s, max {prop['max']:.2f} s "
            f"over {prop['n']} writes" + (f", {prop['unseen']} unseen" if prop["unseen"] else ""),
        )
    fan = [f for f in s.get("fanout_published", []) if f["n"] == 100] or s.get(
        "fanout_published", []
    )[-1:]
    if fan:
        f = fan[0]
        r = f["ratio_cron_per_min"]
        add(
            f"Primary CPU per minute, {f['n']} secondaries polling HEAD every "
            f"{f['poll_every']:g} s, >= 10x below cron's",
            r,
            None if r is None else r >= 10,
            f"{_x(r)} ({_s(f['primary_cpu_per_min'])} vs {_s(f['cron_primary_cpu_per_min'])}"
            f" for cron at N={f['cron_n']})",
        )
        add(
            f"Fan-out {f['n']}, publish mode: every sync succeeds",
            f["failed_total"],
            f["failed_total"] == 0,
            f"{f['syncs_total'] - f['failed_total']}/{f['syncs_total']} syncs ok",
        )
        seqs = f["published_sequences"]
        add(
            f"Fan-out {f['n']}, publish mode: all on one sequence, none skipped a generation",
            f["distinct_sequence_lists"],
            f["sequences_consistent"] and len(f["final_sequences"]) == 1,
            f"{len(seqs)} generations (#{seqs[0]} .. #{seqs[-1]}): "
            f"{f['distinct_sequence_lists']} distinct per-agent list(s) of applied sequences; "
            f"final sequences {f['final_sequences'] or '-'}",
        )


# ---- Markdown ------------------------------------------------------------------------------


def _x(r: float | None) -> str:
    return "-" if r is None else (f"{r:.0f}x" if r >= 10 else f"{r:.1f}x")


def _ms(st: dict[str, float] | None, scale: float = 1000, unit: str = "ms") -> str:
    if not st:
        return "-"

    def f(v: float) -> str:
        v *= scale
        return f"{v:.0f}" if v >= 100 else (f"{v:.1f}" if v >= 1 else f"{v:.2f}")

    spread = f" ({f(st['p10'])}-{f(st['p90'])})" if st["n"] > 1 else ""
    return f"{f(st['median'])}{spread} {unit}"


def _secs(st: dict[str, float] | None) -> str:
    return _ms(st, 1, "s")


def _bytes(st: dict[str, float] | None) -> str:
    if not st:
        return "-"
    v = st["median"]
    return (
        f"{v / MIB:.1f} MiB" if v >= MIB else (f"{v / 1024:.1f} KiB" if v >= 1024 else f"{v:.0f} B")
    )


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return [
        "| " + " | ".join(header) + " |",
        "|" + "---|" * len(header),
        *("| " + " | ".join(r) + " |" for r in rows),
    ]


def _s(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f} s"


def _intro(doc: dict[str, Any]) -> str:
    m = doc["machine"]
    v = {k: " ".join(str(x).split()) for k, x in m["versions"].items()}
    agent = (
        "`syncagent run` (the daemon)"
        if doc["agent_mode"] == "daemon"
        else "the bench's sync loop (bench/agent_loop.py), not the daemon"
    )
    return (
        f"Machine: {m['cores']} cores ({m['cpu_model'] or 'unknown CPU'}), {m['memory_gib']} GiB, "
        f"Linux {m['kernel']}; {v.get('rsync', '')}; {v.get('ssh', '')}; "
        f"asyncssh {v.get('asyncssh', '')}, Python {v.get('python', '')}. "
        f"Load average {doc['loadavg_start'][0]:.2f} at start, "
        f"max {max(x[0] for x in doc['loadavg_samples']):.2f}, "
        f"{doc['loadavg_end'][0]:.2f} at end (a shared machine: other work ran too). "
        f"Long-running agent (footprint, propagation): {agent}. "
        f"Primary CPU: sshd in its own {doc.get('cpu_accounting', '?')} group. "
        f"Whole run {doc['duration_s'] / 60:.1f} min"
        + (f", checkout {doc['commit']}." if doc.get("commit") else ".")
    )


def _parts(idle: dict[str, Any]) -> str:
    parts = idle.get("rss_parts") or {}
    if "RssAnon" not in parts:
        return ""
    return (
        f" ({parts['RssAnon'] / MB:.1f} MB heap, {parts.get('RssFile', 0) / MB:.1f} MB mapped code)"
    )


def markdown(doc: dict[str, Any], png: str) -> str:
    s = doc["summary"]
    xt, bt = doc.get("xroad_tree", {}), doc.get("bulk_tree", {})
    lines = [
        f"## Benchmark {doc['started'][:10]}: agent vs cron + rsync",
        "",
        _intro(doc),
        "",
    ]
    tools = [t for t in TOOLS if any(t in (s.get(k) or {}) for k in ("xroad_noop", "bulk_noop"))]
    lines += [
        "Median (p10-p90) over interleaved repeats. Last column: baseline (a) / agent over its "
        "kept connection (how the daemon runs); > 1 means the agent is cheaper or faster."
        if "agent-pub" not in tools
        else "Median (p10-p90) over interleaved repeats. Last columns: baseline (a) / agent over "
        "its kept connection (how the daemon runs), walking the primary's tree and following "
        "the HEAD a `syncagent publish` on the primary publishes; > 1 means the agent is "
        "cheaper or faster. The publisher runs only while a published contender syncs (or a "
        "change is being published).",
        "",
    ]
    ratios = [("agent", "(a) / agent")]
    if "agent-pub" in tools:
        ratios.append(("agent-pub", "(a) / published"))
    rows: list[list[str]] = []
    for key, label in (
        ("xroad_noop", f"No-op, X-Road tree ({xt.get('files', '?')} files)"),
        ("bulk_noop", f"No-op, {bt.get('files', '?')} files, {bt.get('bytes', 0) / 1e6:.0f} MB"),
        ("bulk_change", "One changed file, same tree"),
        ("bulk_first_sync", "First full sync, same tree"),
    ):
        sec = s[key]
        fmt = _secs if key == "bulk_first_sync" else _ms
        metrics = [("wall time", "wall", fmt), ("syncing-side CPU", "cpu", fmt)]
        metrics.append(("primary (sshd) CPU", "primary_cpu", fmt))
        if key != "bulk_first_sync":
            metrics.append(("bytes on the wire", "bytes", _bytes))
        if key == "bulk_change" and _get(sec, "agent-pub", "publish_latency"):
            metrics += [
                ("publisher's time to publish it (write -> HEAD)", "publish_latency", _secs),
                ("end-to-end, write -> applied (publish + sync)", "end_to_end", _secs),
            ]
        for name, metric, f in metrics:
            cells = [f(_get(sec, t, metric)) for t in tools]
            rows.append(
                [
                    f"{label}: {name}",
                    *cells,
                    *(_x(_get(sec, t, "ratio_vs_a", metric)) for t, _ in ratios),
                ]
            )
    lines += _table(["Measurement", *(HEAD[t] for t in tools), *(h for _, h in ratios)], rows)
    lines += _secsrv_md(doc, tools, ratios)

    rows = []
    with_pub = any("published" in p for p in s["propagation"])
    for p in s["propagation"]:
        if "error" in p:
            rows.append(["?", p["error"], *[""] * (10 if with_pub else 6)])
            continue
        a, r = p["agent"], p["rsync"]
        row = (
            [f"{p['interval']:g} s", str(p["writes"])]
            + [_s(a.get(k)) for k in ("median", "p90", "max")]
            + [_s(r.get(k)) for k in ("median", "p90", "max")]
        )
        if with_pub:
            pub = p.get("published") or {}
            row += [_s(pub.get(k)) for k in ("median", "p90", "p99", "max")]
        rows.append(row)
    header = ["Interval", "Writes", "Agent median", "p90", "max", "cron+rsync (a) median"]
    header += ["p90", "max"]
    if with_pub:
        header += ["following HEAD median", "p90", "p99", "max"]
    lines += ["", "Change propagation, write on the primary -> visible on the secondary:", ""]
    if with_pub:
        pp = next(p["published"] for p in s["propagation"] if "published" in p)
        lines += [
            "(\"Interval\": the walking agent's and cron's. The daemon following HEAD runs the "
            f"same in both runs: poll {pp.get('poll') or POLL_DEFAULT:g} s, interval 60 s; the "
            f"publisher with settle {pp.get('publisher_settle') or SETTLE_DEFAULT:g} s.)",
            "",
        ]
    lines += _table(header, rows)

    rows = []
    for f in s["fanout"]:
        c, n = f["agent_connect"], f["n"]
        rows.append(
            [
                str(n),
                f"{f['rsync_failed_total']}/{f['rsync_runs_total']}",
                _s(f["rsync_primary_cpu_per_min"]),
                f"{c['first_try']}/{n} ({c['connected']}/{n} by {c['all_connected_after']:.1f} s)",
                f"{f['agent_failed_total']}/{f['agent_syncs_total']}",
                _s(f["agent_primary_cpu_per_min"]),
                f"{f['sshd_pss_mb_with_agents']:.0f} MB",
            ]
        )
    lines += [
        "",
        "Fan-out: N secondaries, one sshd with default MaxStartups (10:30:100), all at once:",
        "",
    ]
    lines += _table(
        [
            "N",
            "cron+rsync (a): runs failed",
            "primary CPU / min",
            "agents: connected 1st try (all by)",
            "agent syncs failed",
            "primary CPU / min",
            "sshd memory, N kept connections",
        ],
        rows,
    )
    lines += _published_fanout_md(s)
    idle = s.get("idle") or {}
    if "vm_hwm" in idle:
        lines += [
            "",
            f"Agent footprint ({idle['mode']}, interval {idle['interval']:g} s, "
            f"{idle['duration']:.0f} s idle): RSS {idle['rss_median'] / MB:.1f} MB steady, "
            f"{max(idle['vm_hwm'], idle['rss_max']) / MB:.1f} MB peak{_parts(idle)}; CPU "
            f"{idle['cpu_percent_of_core']:.3f}% of one core; primary CPU for it "
            f"{(idle.get('primary_cpu_seconds') or 0) * 1000:.0f} ms in all.",
        ]
    elif idle:
        lines += ["", f"Agent footprint: {idle}"]
    lines += _publisher_md(s, xt, bt)
    rows = [
        [t["target"], t["shown"], {True: "yes", False: "**no**", None: "n/a"}[t["met"]]]
        for t in s["targets"]
    ]
    lines += ["", *_table(["Target", "Result", "Met"], rows)]
    lines += ["", f"![propagation latency and fan-out]({png})", ""]
    return "\n".join(lines)


def _secsrv_md(doc: dict[str, Any], tools: list[str], ratios: list[tuple[str, str]]) -> list[str]:
    """The security server tree (tests/support/xroad_etc.py), beside the sample X-Road tree:
    first sync, no-op, one change; the sample tree's first sync and no-op for comparison."""
    s = doc["summary"]
    if not s.get("secsrv_noop"):
        return []
    st, xt = doc.get("secsrv_tree", {}), doc.get("xroad_tree", {})
    rows: list[list[str]] = []
    for key, label in (
        ("secsrv_first_sync", "First sync"),
        ("xroad_first_sync", "(sample tree) First sync"),
        ("secsrv_noop", "No-op"),
        ("xroad_noop", "(sample tree) No-op"),
        ("secsrv_change", "One changed file (conf.d/local.ini)"),
    ):
        sec = s.get(key) or {}
        if not sec:
            continue
        metrics = [("wall time", "wall"), ("syncing-side CPU", "cpu")]
        metrics.append(("primary (sshd) CPU", "primary_cpu"))
        if key != "secsrv_first_sync" and key != "xroad_first_sync":
            metrics.append(("bytes on the wire", "bytes"))
        if key == "secsrv_change" and _get(sec, "agent-pub", "publish_latency"):
            metrics += [
                ("publisher's time to publish it (write -> HEAD)", "publish_latency"),
                ("end-to-end, write -> applied (publish + sync)", "end_to_end"),
            ]
        for name, metric in metrics:
            f = _bytes if metric == "bytes" else _secs if metric in PUBLISH_METRICS else _ms
            rows.append(
                [
                    f"{label}: {name}",
                    *(f(_get(sec, t, metric)) for t in tools),
                    *(_x(_get(sec, t, "ratio_vs_a", metric)) for t, _ in ratios),
                ]
            )
    return [
        "",
        f"Security server tree ({st.get('files', '?')} files, {st.get('bytes', 0) / 1e3:.0f} KB: "
        "tests/support/xroad_etc.py `build_xroad7_etc`, what X-Road 7's packages install plus "
        "what the guides have an operator create, real keyconf.xml and .p12 keys), beside the "
        f"sample X-Road tree ({xt.get('files', '?')} files, {xt.get('bytes', 0) / 1e3:.0f} KB; "
        "its first sync: one run per contender). Median (p10-p90); "
        "the one change appends a comment line to conf.d/local.ini (valid INI), backdated 10 s:",
        "",
        *_table(["Measurement", *(HEAD[t] for t in tools), *(h for _, h in ratios)], rows),
    ]


def _published_fanout_md(s: dict[str, Any]) -> list[str]:
    rows = []
    for f in s.get("fanout_published", []):
        c, n = f["agent_connect"], f["n"]
        rows.append(
            [
                str(n),
                f"{c['first_try']}/{n} ({c['connected']}/{n} by {c['all_connected_after']:.1f} s)",
                f"{f['failed_total']}/{f['syncs_total']}",
                f"{'yes' if f['sequences_consistent'] else '**no**'} "
                f"({len(f['published_sequences'])} generations, "
                f"{f['distinct_sequence_lists']} distinct list(s))",
                _s(f["change_round_primary_cpu"]),
                _s(f["noop_round_primary_cpu"]),
                f"{(f['poll_primary_cpu_per_poll'] or 0) * 1000:.2f} ms ({f['polls']} polls)",
                _s(f["primary_cpu_per_min"]),
                _s(f["cron_primary_cpu_per_min"]),
                f"{f['sshd_pss_mb_with_agents']:.0f} MB",
            ]
        )
    if not rows:
        return []
    every = s["fanout_published"][0]["poll_every"]
    return [
        "",
        "Fan-out in publish mode: N agents following one publisher's HEAD, all at once "
        f"(connect, first sync, a round per published edit, a no-op round); then every agent "
        f"reads HEAD every {every:g} s. Primary CPU / min = one no-op sync round (the scheduled "
        "sync) + HEAD polls for the rest of the minute:",
        "",
        *_table(
            [
                "N",
                "connected 1st try (all by)",
                "syncs failed",
                "same sequences applied by all",
                "primary CPU / change round",
                "/ no-op round",
                "/ HEAD poll",
                "primary CPU / min",
                "cron+rsync (a) / min",
                "sshd memory",
            ],
            rows,
        ),
    ]


def _publisher_md(s: dict[str, Any], xt: dict[str, Any], bt: dict[str, Any]) -> list[str]:
    pub = s.get("publisher")
    if not pub:
        return []

    def first(p: dict[str, Any], k: str) -> str:
        fb = p.get("first_build")
        return _s(fb[k]) if fb else "-"

    def idle(p: dict[str, Any]) -> str:
        i = p.get("idle")
        if not i:
            return "-"
        return f"{i['cpu_percent_of_core']:.3f}% over {i['window']:.0f} s ({i['rescans']} rescans)"

    trees = [(pub.get("xroad"), f"X-Road tree ({xt.get('files', '?')} files)")]
    trees.append((pub.get("bulk"), f"{bt.get('files', '?')} files"))
    trees = [(p, label) for p, label in trees if p]
    Cell = Callable[[dict[str, Any]], str]
    metrics: list[tuple[str, Cell]] = [
        ("first generation at start: wall", lambda p: first(p, "wall")),
        ("first generation at start: CPU", lambda p: first(p, "cpu")),
        ("per edit: write -> HEAD", lambda p: _ms(p["latency"], 1, "s")),
        ("per edit: build wall", lambda p: _ms(p["build_wall"])),
        ("per edit: build CPU", lambda p: _ms(p["build_cpu"])),
        ("per edit: process CPU, write to build end", lambda p: _ms(p["cpu"])),
        ("rescan (every 60 s, nothing new): wall", lambda p: _ms(p["rescan_wall"])),
        ("rescan: CPU", lambda p: _ms(p["rescan_cpu"])),
        ("idle CPU", idle),
        ("idle CPU per minute, one rescan included", lambda p: _s(p["idle_cpu_per_min"])),
    ]
    rows = [[name, *(f(p) for p, _ in trees)] for name, f in metrics]
    kind = next((p.get("cpu_accounting") for p, _ in trees if p.get("cpu_accounting")), "?")
    return [
        "",
        "Publisher footprint on the primary (`syncagent publish`, default settings unless the "
        f"run's parameters say otherwise; CPU from its own {kind} group, build times from its "
        "probe; edits: median (p10-p90)):",
        "",
        *_table(["Publisher", *(label for _, label in trees)], rows),
    ]


# ---- plot -------------------------------------------------------------------------------------


def plot(doc: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = doc["summary"]
    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(15, 4.8))
    props = [p for p in doc.get("propagation", []) if "error" not in p]
    data, labels, colors = [], [], []
    for p in props:
        for name, label, color in (
            ("agent", "agent", "tab:blue"),
            ("rsync", "cron+rsync", "tab:orange"),
            ("published", "following HEAD", "tab:green"),
        ):
            if name in p:
                data.append(p[name]["latencies"] or [0.0])
                labels.append(
                    f"{label}\n{p['interval']:g} s"
                    if name != "published"
                    else f"{label}\n({p['interval']:g} s run)"
                )
                colors.append(color)
    if data:
        ax1.boxplot(data, whis=(0, 100))
        ax1.set_xticks(range(1, len(labels) + 1), labels, fontsize=8)
        for i, (d, color) in enumerate(zip(data, colors, strict=True), start=1):
            ax1.scatter([i] * len(d), d, s=8, alpha=0.4, color=color)
        ax1.set_yscale("log")
    ax1.set_ylabel("write on primary -> visible on secondary (s)")
    ax1.set_title("Change propagation (box: min-max, quartiles)")

    fan = s.get("fanout", [])
    ns = [f["n"] for f in fan]
    xs = range(len(ns))
    pub_cpu = {f["n"]: f["primary_cpu_per_min"] for f in s.get("fanout_published", [])}
    w = 0.27 if pub_cpu else 0.38
    bars = [
        ("cron + rsync (a)", "tab:orange", [f["rsync_primary_cpu_per_min"] or 0 for f in fan]),
        (
            "agents walking, kept connections",
            "tab:blue",
            [f["agent_primary_cpu_per_min"] or 0 for f in fan],
        ),
    ]
    if pub_cpu:
        every = s["fanout_published"][0]["poll_every"]
        bars.append(
            (
                f"agents following HEAD (read every {every:g} s)",
                "tab:green",
                [pub_cpu.get(n) or 0 for n in ns],
            )
        )
    for i, (label, color, values) in enumerate(bars):
        offset = (i - (len(bars) - 1) / 2) * w
        ax2.bar([x + offset for x in xs], values, w, label=label, color=color)
    if pub_cpu:
        ax2.set_yscale("log")
    ax2.set_xticks(list(xs), [f"N={n}" for n in ns])
    ax2.set_ylabel("primary sshd CPU per minute (s)")
    ax2.set_title("Fan-out: primary's sshd CPU per minute")
    ax2.legend()

    ax3.plot(
        ns,
        [100 * (1 - f["rsync_failed_total"] / f["rsync_runs_total"]) for f in fan],
        "o-",
        color="tab:orange",
        label="cron + rsync (a): runs succeeded",
    )
    ax3.plot(
        ns,
        [100 * (1 - f["agent_failed_total"] / f["agent_syncs_total"]) for f in fan],
        "s-",
        color="tab:blue",
        label="agents: syncs succeeded",
    )
    ax3.plot(
        ns,
        [100 * f["agent_connect"]["first_try"] / f["n"] for f in fan],
        "^:",
        color="tab:blue",
        label="agents: connected at 1st try",
    )
    pubs = s.get("fanout_published", [])
    if pubs:
        ax3.plot(
            [f["n"] for f in pubs],
            [100 * (1 - f["failed_total"] / f["syncs_total"]) for f in pubs],
            "D",
            color="tab:green",
            label="agents following HEAD: syncs succeeded",
        )
    ax3.set_ylim(0, 105)
    ax3.set_xlabel("N secondaries, all at once")
    ax3.set_ylabel("%")
    ax3.set_title("Fan-out vs MaxStartups 10:30:100")
    ax3.legend(loc="lower left")
    m = doc["machine"]
    fig.suptitle(
        f"syncagent vs cron + rsync, {doc['started'][:10]}, {m['cores']} cores, "
        f"{m['memory_gib']} GiB, load {doc['loadavg_start'][0]:.2f}"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
