"""The shipped Grafana dashboard, read as the tests need it."""

from __future__ import annotations

import json
from typing import Any

from support import REPO

DASHBOARD = REPO / "docker" / "grafana" / "syncagent-dashboard.json"


def dashboard() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return doc


def panel_queries(job: str | None = None) -> dict[str, list[str]]:
    """Every panel's expressions, with the $job variable filled in when ``job`` is given."""
    out: dict[str, list[str]] = {}
    for panel in dashboard()["panels"]:
        exprs = [t["expr"] for t in panel["targets"]]
        out[panel["title"]] = [e.replace("$job", job) for e in exprs] if job else exprs
    return out
