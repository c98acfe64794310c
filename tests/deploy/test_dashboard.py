"""The Grafana dashboard (docker/grafana/): the documented dashboard schema's shape, and every
query naming only series the agent exports. There is no Grafana here; the runtime test in
test_runtime.py runs every panel's query against a real Prometheus scraping two real agents."""

from __future__ import annotations

import re

from prometheus_client.parser import text_string_to_metric_families
from support.grafana import DASHBOARD, dashboard, panel_queries

from syncagent.daemon.metrics import Metrics
from syncagent.daemon.status import DaemonState


def test_the_dashboard_has_the_documented_shape() -> None:
    doc = dashboard()
    assert isinstance(doc["schemaVersion"], int) and doc["uid"] and doc["title"]
    ids = [p["id"] for p in doc["panels"]]
    assert len(ids) == len(set(ids)), "panel ids are unique"
    for panel in doc["panels"]:
        assert panel["type"] in {"table", "stat", "timeseries"}, panel["type"]
        assert set(panel["gridPos"]) == {"x", "y", "w", "h"}
        assert panel["gridPos"]["x"] >= 0 and panel["gridPos"]["x"] + panel["gridPos"]["w"] <= 24
        assert panel["targets"] and all(t["refId"] and t["expr"] for t in panel["targets"])
    variables = {v["name"] for v in doc["templating"]["list"]}
    assert variables == {"datasource", "job"}


def test_the_dashboard_covers_what_the_issue_names() -> None:
    text = DASHBOARD.read_text()
    for series in (
        "syncagent_generation_info",
        "syncagent_last_success_timestamp_seconds",
        "syncagent_failures_total",
        "syncagent_sync_duration_seconds_bucket",
        "syncagent_verify_mismatches_total",
        "syncagent_last_verified_timestamp_seconds",
        "syncagent_version_skew",
        "syncagent_restart_pending",
    ):
        assert series in text, series


def test_every_query_names_only_series_the_agent_exports() -> None:
    exported_text = Metrics(DaemonState()).render().decode()
    exported = {
        name
        for family in text_string_to_metric_families(exported_text)
        for name in (family.name, *(s.name for s in family.samples))
    }
    used = {
        m
        for exprs in panel_queries().values()
        for e in exprs
        for m in re.findall(r"\bsyncagent_\w+", e)
    }
    assert used and used <= exported, used - exported
