"""Prometheus metrics. The names are an interface: alerts and dashboards depend on them.

Counters count events as they happen; every gauge is read from ``DaemonState`` at scrape time,
so a gauge can never disagree with /status or /readyz. Each ``Metrics`` owns a private
``CollectorRegistry`` so tests (and the demo) can run several daemons in one process.

``syncagent_generation_info`` has exactly one series per replica, so
``count(count by (generation) (syncagent_generation_info))`` is 1 when all replicas run the
same configuration. ``syncagent_ready`` is the agent's own readiness; /readyz also ANDs in the
optional upstream health URL, which a scrape does not call.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Iterator

import prometheus_client
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from syncagent import __version__
from syncagent.daemon.status import DaemonState
from syncagent.daemon.supervise import TASKS
from syncagent.errors import Reason
from syncagent.local.verify import SIDES
from syncagent.report import Outcome, SyncResult
from syncagent.settings import ReloadRule
from syncagent.xroad.paths import PROGRAMS

# `_created` series double the exposition and nothing here alerts on them.
prometheus_client.disable_created_metrics()  # type: ignore[no-untyped-call]

CONTENT_TYPE = prometheus_client.CONTENT_TYPE_LATEST
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
CHANGE_OPS = ("added", "modified", "removed")
RELOAD_RESULTS = ("ok", "failed", "timeout")
NO_GENERATION = "none"


class Metrics:
    def __init__(
        self,
        state: DaemonState,
        reload_rules: Iterable[ReloadRule] = (),
        max_staleness: float | None = None,
    ) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.sync_total = Counter("syncagent_sync", "Syncs by result.", ["result"], registry=r)
        self.sync_duration = Histogram(
            "syncagent_sync_duration_seconds",
            "Duration of one sync.",
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.failures_total = Counter(
            "syncagent_failures", "Failed syncs by reason code.", ["reason"], registry=r
        )
        self.files_changed_total = Counter(
            "syncagent_files_changed", "Paths changed by applied syncs.", ["op"], registry=r
        )
        self.bytes_fetched_total = Counter(
            "syncagent_bytes_fetched", "Bytes fetched from the primary.", registry=r
        )
        self.drift_total = Counter(
            "syncagent_drift",
            "Changes to the live tree the agent did not make.",
            registry=r,
        )
        self.reload_total = Counter(
            "syncagent_reload", "Reload rule runs by result.", ["rule", "result"], registry=r
        )
        self.verify_mismatches_total = Counter(
            "syncagent_verify_mismatches",
            "Files whose content differed from the record when verified, by side.",
            ["side"],
            registry=r,
        )
        self.task_restarts_total = Counter(
            "syncagent_task_restarts",
            "Unexpected failures of the daemon's own tasks, each followed by a restart.",
            ["task"],
            registry=r,
        )
        for task in TASKS:
            self.task_restarts_total.labels(task)
        for outcome in Outcome:
            self.sync_total.labels(str(outcome))
        for reason in Reason:
            self.failures_total.labels(str(reason))
        for op in CHANGE_OPS:
            self.files_changed_total.labels(op)
        for side in SIDES:
            self.verify_mismatches_total.labels(side)
        for rule in reload_rules:
            for res in RELOAD_RESULTS:
                self.reload_total.labels(rule.name, res)
        r.register(_StateCollector(state, lambda: max_staleness))

    def observe_sync(self, result: SyncResult) -> None:
        self.sync_total.labels(str(result.outcome)).inc()
        self.sync_duration.observe(result.duration)
        self.bytes_fetched_total.inc(result.bytes_fetched)
        if result.reason is not None:
            self.failures_total.labels(str(result.reason)).inc()
        for _, side in result.mismatches:
            self.verify_mismatches_total.labels(side).inc()
        if result.outcome is Outcome.APPLIED:
            for op, paths in zip(
                CHANGE_OPS, (result.added, result.modified, result.removed), strict=True
            ):
                self.files_changed_total.labels(op).inc(len(paths))

    def observe_task_failure(self, task: str, reason: str) -> None:
        """``reason`` is in the log line; the counter's one label keeps the series few."""
        self.task_restarts_total.labels(task).inc()

    def observe_drift(self, events: int = 1) -> None:
        self.drift_total.inc(events)

    def observe_reload(self, rule: str, result: str) -> None:
        self.reload_total.labels(rule, result).inc()

    def render(self) -> bytes:
        return prometheus_client.generate_latest(self.registry)


class _StateCollector(Collector):
    """Gauges derived from DaemonState on every scrape."""

    def __init__(self, state: DaemonState, max_staleness: Callable[[], float | None]) -> None:
        self.state = state
        self.max_staleness = max_staleness

    def collect(self) -> Iterator[Metric]:
        s = self.state
        live = s.live()  # read from disk once per scrape: the info and ready gauges agree
        yield _gauge(
            "syncagent_last_success_timestamp_seconds",
            "Unix time of the last successful sync (0: never).",
            s.last_success or 0.0,
        )
        yield _gauge(
            "syncagent_last_attempt_timestamp_seconds",
            "Unix time of the last sync attempt (0: never).",
            s.last_attempt or 0.0,
        )
        yield _gauge(
            "syncagent_last_verified_timestamp_seconds",
            "Unix time the last full content-verification pass completed (0: never).",
            s.last_verified or 0.0,
        )
        yield _gauge(
            "syncagent_consecutive_failures",
            "Failed syncs since the last success.",
            s.consecutive_failures,
        )
        info = GaugeMetricFamily(
            "syncagent_generation_info",
            "The live configuration generation (one series; 'none' before the first).",
            labels=["generation"],
        )
        info.add_metric([live.generation or NO_GENERATION], 1)
        yield info
        yield _gauge(
            "syncagent_ready",
            "1 when a validated generation is live and not stale.",
            s.ready(time.time(), self.max_staleness(), live),
        )
        yield _gauge("syncagent_paused", "1 while a pause flag file exists.", s.paused)
        yield _gauge(
            "syncagent_version_skew",
            "1 while the primary runs another X-Road release than this node.",
            s.version_skew,
        )
        yield _gauge("syncagent_connected", "1 while the SSH connection is open.", s.connected)
        yield _gauge(
            "syncagent_following_head",
            "1 while syncs follow the primary's published HEAD, 0 while they walk the tree.",
            s.following_head,
        )
        fallbacks = CounterMetricFamily(
            "syncagent_walk_fallbacks",
            "Syncs that walked the tree where the previous one followed a HEAD.",
            value=s.walk_fallbacks,
        )
        yield fallbacks
        pending = GaugeMetricFamily(
            "syncagent_restart_pending",
            "1 while an applied change waits for this program to restart.",
            labels=["program"],
        )
        pending_since = GaugeMetricFamily(
            "syncagent_restart_pending_since_timestamp_seconds",
            "Unix time of the oldest change this program has not picked up (0: none).",
            labels=["program"],
        )
        for program in PROGRAMS:
            since = s.restarts.since.get(program.name)
            pending.add_metric([program.name], 0 if since is None else 1)
            pending_since.add_metric([program.name], since or 0.0)
        yield pending
        yield pending_since
        build = GaugeMetricFamily(
            "syncagent_build_info", "The agent's version.", labels=["version"]
        )
        build.add_metric([__version__], 1)
        yield build


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=float(value))
