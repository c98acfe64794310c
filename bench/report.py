"""Numbers to summaries, summaries to a Markdown table and a PNG plot; targets checked here.

Every ratio is taken against baseline (a), measured in the same run: absolute times on a shared
machine drift, ratios of interleaved runs much less.
"""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

TOOLS = ("rsync-ssh", "rsync-cm", "agent", "agent-fresh")
HEAD = {
    "rsync-ssh": "(a) rsync, new SSH connection",
    "rsync-cm": "(b) rsync, kept ControlMaster",
    "agent": "agent, kept connection",
    "agent-fresh": "agent, new connection",
}
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
            **{
                k: stats([r[k] for r in rs if r.get(k) is not None])
                for k in ("wall", "cpu", "primary_cpu", "bytes")
            },
        }
    base = out.get("rsync-ssh", {})
    for s in out.values():
        s["ratio_vs_a"] = {
            k: _ratio(base.get(k), s.get(k)) for k in ("wall", "cpu", "primary_cpu", "bytes")
        }
    return out


def summarize(doc: dict[str, Any]) -> dict[str, Any]:
    s: dict[str, Any] = {}
    for key in ("xroad_first_sync", "xroad_noop", "bulk_first_sync", "bulk_noop", "bulk_change"):
        s[key] = _tools(doc.get(key))
    for key, into in (
        ("xroad_noop_bytes", "xroad_noop"),
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
        s["propagation"].append(
            {
                "interval": p["interval"],
                "writes": p["writes"],
                "agent": {**(stats(p["agent"]["latencies"]) or {}), "unseen": p["agent"]["unseen"]},
                "rsync": {**(stats(p["rsync"]["latencies"]) or {}), "unseen": p["rsync"]["unseen"]},
                "rsync_failures": p["rsync_failures"],
                "rsync_runs": p["rsync_runs"],
            }
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
    s["idle"] = doc.get("idle", {})
    s["targets"] = targets(s)
    return s


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


def targets(s: dict[str, Any]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []

    def add(name: str, value: Any, met: bool | None, shown: str) -> None:
        rows.append({"target": name, "value": value, "met": met, "shown": shown})

    for wl, label in (("xroad_noop", "X-Road tree"), ("bulk_noop", "10k tree")):
        r = _get(s, wl, "agent", "ratio_vs_a", "wall")
        add(
            f"No-op sync wall time >= 10x less than (a), {label}",
            r,
            None if r is None else r >= 10,
            _x(r),
        )
        r = _get(s, wl, "agent", "ratio_vs_a", "primary_cpu")
        add(
            f"No-op sync primary CPU >= 20x less than (a), {label}",
            r,
            None if r is None else r >= 20,
            _x(r),
        )
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
        add(
            "Agent RSS <= 50 MB",
            peak,
            peak <= 50,
            f"peak {peak:.1f} MB (steady {idle['rss_median'] / MB:.1f} MB), {idle['mode']}",
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
            "One changed file in the 10k tree applied in <= 1 s",
            ch["max"],
            ch["max"] <= 1.0,
            f"median {ch['median']:.2f} s, max {ch['max']:.2f} s",
        )
    a, b = (
        _get(s, "bulk_first_sync", "agent-fresh", "wall"),
        _get(s, "bulk_first_sync", "rsync-ssh", "wall"),
    )
    if a and b:
        r = a["median"] / b["median"]
        add(
            "First full 10k sync <= 1.2x rsync's time",
            r,
            r <= 1.2,
            f"{r:.2f}x ({a['median']:.1f} s vs {b['median']:.1f} s)",
        )
    return rows


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
        "Median (p10-p90) over interleaved repeats. Last column: baseline (a) / agent over its "
        "kept connection (how the daemon runs); > 1 means the agent is cheaper or faster.",
        "",
    ]
    rows: list[list[str]] = []
    for key, label in (
        ("xroad_noop", f"No-op, X-Road tree ({xt.get('files', '?')} files)"),
        ("bulk_noop", f"No-op, {bt.get('files', '?')} files, {bt.get('bytes', 0) / 1e6:.0f} MB"),
        ("bulk_change", "One changed file, same tree"),
        ("bulk_first_sync", "First full sync, same tree"),
    ):
        sec = s[key]
        fmt = (lambda st: _ms(st, 1, "s")) if key == "bulk_first_sync" else _ms
        metrics = [("wall time", "wall", fmt), ("syncing-side CPU", "cpu", fmt)]
        metrics.append(("primary (sshd) CPU", "primary_cpu", fmt))
        if key != "bulk_first_sync":
            metrics.append(("bytes on the wire", "bytes", _bytes))
        for name, metric, f in metrics:
            cells = [f(_get(sec, t, metric)) for t in TOOLS]
            rows.append([f"{label}: {name}", *cells, _x(_get(sec, "agent", "ratio_vs_a", metric))])
    lines += _table(["Measurement", *(HEAD[t] for t in TOOLS), "(a) / agent"], rows)

    rows = []
    for p in s["propagation"]:
        if "error" in p:
            rows.append(["?", p["error"], *[""] * 6])
            continue
        a, r = p["agent"], p["rsync"]
        rows.append(
            [f"{p['interval']:g} s", str(p["writes"])]
            + [_s(a.get(k)) for k in ("median", "p90", "max")]
            + [_s(r.get(k)) for k in ("median", "p90", "max")]
        )
    lines += ["", "Change propagation, write on the primary -> visible on the secondary:", ""]
    lines += _table(
        ["Interval", "Writes", "Agent median", "p90", "max", "cron+rsync (a) median", "p90", "max"],
        rows,
    )

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
    rows = [
        [t["target"], t["shown"], {True: "yes", False: "**no**", None: "n/a"}[t["met"]]]
        for t in s["targets"]
    ]
    lines += ["", *_table(["Target", "Result", "Met"], rows)]
    lines += ["", f"![propagation latency and fan-out]({png})", ""]
    return "\n".join(lines)


# ---- plot -------------------------------------------------------------------------------------


def plot(doc: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = doc["summary"]
    fig, (ax1, ax2, ax3) = plt.subplots(1, 3, figsize=(15, 4.8))
    props = [p for p in doc.get("propagation", []) if "error" not in p]
    data, labels = [], []
    for p in props:
        for name, label in (("agent", "agent"), ("rsync", "cron+rsync")):
            data.append(p[name]["latencies"] or [0.0])
            labels.append(f"{label}\n{p['interval']:g} s")
    if data:
        ax1.boxplot(data, whis=(0, 100))
        ax1.set_xticks(range(1, len(labels) + 1), labels)
        for i, d in enumerate(data, start=1):
            ax1.scatter(
                [i] * len(d), d, s=8, alpha=0.4, color="tab:blue" if i % 2 else "tab:orange"
            )
        ax1.set_yscale("log")
    ax1.set_ylabel("write on primary -> visible on secondary (s)")
    ax1.set_title("Change propagation (box: min-max, quartiles)")

    fan = s.get("fanout", [])
    ns = [f["n"] for f in fan]
    xs = range(len(ns))
    w = 0.38
    ax2.bar(
        [x - w / 2 for x in xs],
        [f["rsync_primary_cpu_per_min"] or 0 for f in fan],
        w,
        label="cron + rsync (a)",
        color="tab:orange",
    )
    ax2.bar(
        [x + w / 2 for x in xs],
        [f["agent_primary_cpu_per_min"] or 0 for f in fan],
        w,
        label="agents (kept connections)",
        color="tab:blue",
    )
    ax2.set_xticks(list(xs), [f"N={n}" for n in ns])
    ax2.set_ylabel("primary sshd CPU per minute (s)")
    ax2.set_title("Fan-out: primary's cost (one sync per minute)")
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
