"""The publisher's own read-only HTTP port (``publish.listen``): /healthz and /metrics.

The publisher runs on the primary, where no secondary's daemon runs, so it has a registry and a
port of its own (9102, beside the daemon's 9101). Its metric names are an interface like
metrics.py's: the XRoadPublishFailing alert (docker/prometheus/syncagent-alerts.yml) reads them.
Counters count builds as they end; every gauge is read from ``PublisherState`` at scrape time,
so /healthz and /metrics cannot disagree.

/healthz fails only when restarting the publisher could help: the watch loop has stopped, or a
build has run longer than ``publishdir.STALE_AFTER`` (secondaries have given up on its HEAD
by then). A source that fails validation or a full disk survives a restart, so those are left
to the metrics and the alert.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass

import prometheus_client
from aiohttp import web
from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from syncagent.daemon.http import checks_response, read_only, serve_app
from syncagent.daemon.metrics import CONTENT_TYPE, DURATION_BUCKETS
from syncagent.daemon.status import Check
from syncagent.errors import Reason
from syncagent.publishdir import STALE_AFTER, Head

# PublishOutcome.result of a running publisher's builds ("config" stops it before the first).
RESULTS = ("published", "unchanged", "rejected", "not_initialized", "moved", "failed")
SUCCESS = frozenset({"published", "unchanged"})  # HEAD written or confirmed
RETRIED = frozenset({"moved"})  # says nothing about the source yet: built again after the settle
# Every reason a build can fail with, exported from the first scrape on (increase() needs a 0).
REASONS = (Reason.VALIDATION, Reason.NOT_INITIALIZED, Reason.DISK, Reason.APPLY)


@dataclass(frozen=True)
class Usage:
    """The publish dir after pruning: what it costs the primary's disk."""

    objects: int
    nbytes: int  # objects, manifests and HEAD, by file size


@dataclass
class PublisherState:
    """What the handlers and the collector read; the publisher's loop owns all of it."""

    head: Head | None = None
    last_success: float | None = None  # wall clock: HEAD last written or confirmed
    last_ok: bool | None = None  # the last finished build published or confirmed
    consecutive_failures: int = 0
    usage: Usage | None = None
    building_since: float | None = None  # time.monotonic() when the running build started
    running: bool = False

    @classmethod
    def found(cls, head: Head | None, usage: Usage | None) -> PublisherState:
        """At start the HEAD already there says when it was last confirmed: a publisher that
        was down an hour reports its HEAD an hour old, as the secondaries see it."""
        return cls(head=head, last_success=head.checked_at if head else None, usage=usage)

    def record(self, result: str, head: Head | None, usage: Usage | None) -> None:
        if result in SUCCESS and head is not None:
            self.head, self.last_success = head, head.checked_at
            self.last_ok, self.consecutive_failures = True, 0
        elif result not in RETRIED:
            self.last_ok = False
            self.consecutive_failures += 1
        if usage is not None:
            self.usage = usage

    def liveness(self, now: float) -> list[Check]:
        checks = [Check("loop", self.running, "watching the source" if self.running else "stopped")]
        if self.building_since is None:
            checks.append(Check("build", True, "idle"))
        else:
            age = now - self.building_since
            detail = f"running for {age:.0f}s (limit {STALE_AFTER:g}s)"
            checks.append(Check("build", age <= STALE_AFTER, detail))
        return checks


class PublishMetrics:
    def __init__(self, state: PublisherState) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.generations_total = Counter(
            "syncagent_publish_generations", "Publisher builds by outcome.", ["outcome"], registry=r
        )
        self.failures_total = Counter(
            "syncagent_publish_failures",
            "Failed or rejected publisher builds by reason code.",
            ["reason"],
            registry=r,
        )
        self.duration = Histogram(
            "syncagent_publish_duration_seconds",
            "Duration of one publisher build.",
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        for result in RESULTS:
            self.generations_total.labels(result)
        for reason in REASONS:
            self.failures_total.labels(str(reason))
        r.register(_StateCollector(state))

    def observe(self, result: str, reason: Reason | None, duration: float) -> None:
        self.generations_total.labels(result).inc()
        self.duration.observe(duration)
        if reason is not None:
            self.failures_total.labels(str(reason)).inc()

    def render(self) -> bytes:
        return prometheus_client.generate_latest(self.registry)


class _StateCollector(Collector):
    def __init__(self, state: PublisherState) -> None:
        self.state = state

    def collect(self) -> Iterator[Metric]:
        s = self.state
        yield _gauge(
            "syncagent_publish_last_success_timestamp_seconds",
            "Unix time HEAD was last written or confirmed (0: never).",
            s.last_success or 0.0,
        )
        yield _gauge(
            "syncagent_publish_last_build_ok",
            "0 when the last build failed or was rejected (1 after a success, and before any).",
            s.last_ok is not False,
        )
        yield _gauge(
            "syncagent_publish_consecutive_failures",
            "Failed or rejected builds since the last success.",
            s.consecutive_failures,
        )
        yield _gauge(
            "syncagent_publish_head_sequence",
            "Sequence of the HEAD this publisher last wrote or found (0: none).",
            s.head.sequence if s.head else 0,
        )
        usage = s.usage or Usage(0, 0)
        yield _gauge("syncagent_publish_objects", "Objects in the publish dir.", usage.objects)
        yield _gauge(
            "syncagent_publish_dir_bytes",
            "Bytes of the publish dir's objects, manifests and HEAD.",
            usage.nbytes,
        )


def _gauge(name: str, doc: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, doc, value=float(value))


def build_app(state: PublisherState, metrics: PublishMetrics) -> web.Application:
    app = web.Application(middlewares=[read_only])

    async def healthz(_: web.Request) -> web.Response:
        return checks_response(state.liveness(time.monotonic()))

    async def scrape(_: web.Request) -> web.Response:
        resp = web.Response(body=metrics.render())
        resp.headers["Content-Type"] = CONTENT_TYPE
        return resp

    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", scrape)
    return app


async def serve(
    state: PublisherState, metrics: PublishMetrics, listen: str
) -> tuple[web.AppRunner, int]:
    """Serve until ``runner.cleanup()``; returns the runner and the bound port."""
    return await serve_app(build_app(state, metrics), listen)
