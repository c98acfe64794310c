"""Tests for syncagent.report: the one sync log event is short and says only what is set."""

from __future__ import annotations

import json

from syncagent.errors import Reason, SyncError
from syncagent.report import Outcome, SyncResult, VersionCheck


def test_the_sync_log_event_holds_only_what_is_set() -> None:
    result = SyncResult(
        Outcome.UNCHANGED,
        generation="g2",
        previous="g2",
        candidate="g2",
        duration=0.12,
        versions=VersionCheck(None, "7.6.2", None, note="the primary has no VERSION file"),
        source_note="no HEAD in /var/lib/syncagent/publish (publish_dir = auto): walking " * 3,
    )
    fields = result.log_fields()
    assert fields == {
        "result": "unchanged",
        "generation": "g2",
        "previous_generation": "g2",
        "changed": 0,
        "duration_seconds": 0.12,
        "source": "walk",
        "local_version": "7.6.2",
    }
    assert len(json.dumps(fields)) < 200


def test_a_dry_run_that_found_changes_would_change_and_a_failure_says_why() -> None:
    diff = SyncResult(Outcome.UNCHANGED, "g1", "g1", "g2", modified=["a", "b"], dry_run=True)
    assert diff.log_fields()["result"] == diff.to_json()["result"] == "would_change"
    assert diff.log_fields()["changed"] == 2 and diff.log_fields()["candidate_generation"] == "g2"
    assert "(live g1, primary g2)" in diff.summary()

    first = SyncResult(Outcome.APPLIED, "g1", None, "g1", added=["a"])
    assert "(was (none))" in first.summary() and "None" not in first.summary()

    failed = SyncResult(Outcome.FAILED, error=SyncError(Reason.CONNECT, "refused"))
    assert failed.log_fields() == {
        "result": "failed",
        "changed": 0,
        "duration_seconds": 0.0,
        "source": "walk",
        "reason": "connect",
        "error": "refused",
    }
