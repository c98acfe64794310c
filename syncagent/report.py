"""What one sync or rollback did, in the forms its consumers need: a line, JSON, an exit code."""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from syncagent.errors import ExitCode, Problem, Reason, SyncError, exit_code_for


class Outcome(enum.StrEnum):
    APPLIED = "applied"
    UNCHANGED = "unchanged"
    FAILED = "failed"
    REJECTED = "rejected"
    NOT_INITIALIZED = "not_initialized"
    CANCELLED = "cancelled"  # cut short by the agent's own stop: not a failure


def outcome_for(reason: Reason) -> Outcome:
    code = exit_code_for(reason)
    if code is ExitCode.REJECTED:
        return Outcome.REJECTED
    if code is ExitCode.NOT_INITIALIZED:
        return Outcome.NOT_INITIALIZED
    return Outcome.FAILED


@dataclass(frozen=True)
class VersionCheck:
    """The primary's X-Road release against this node's, as one sync saw them."""

    primary: str | None
    local: str | None
    skew: bool | None  # None: one of them could not be read, so there was no check
    note: str = ""  # why there was no check

    def to_json(self) -> dict[str, Any]:
        return {"primary": self.primary, "local": self.local, "skew": self.skew, "note": self.note}


@dataclass
class SyncResult:
    outcome: Outcome
    generation: str | None = None  # live generation after this sync
    previous: str | None = None
    candidate: str | None = None  # generation the primary offered (applied or not)
    added: list[str] = field(default_factory=list)
    modified: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    mode_changed: list[str] = field(default_factory=list)
    files_fetched: int = 0
    bytes_fetched: int = 0
    duration: float = 0.0
    attempts: int = 1
    error: SyncError | None = None
    dry_run: bool = False
    verified: int = 0  # files whose content was compared with the primary's and the record
    mismatches: list[tuple[str, str]] = field(default_factory=list)  # (path, side)
    verified_pass_at: float | None = None  # this sync completed a full verification pass
    versions: VersionCheck | None = None  # None: no version check configured
    source: str = "walk"  # where the snapshot came from: "published" (HEAD) or "walk"
    source_note: str = ""  # why the walk, when a publish dir was looked for
    followed: tuple[str, int] | None = None  # (generation, sequence) of the HEAD followed
    warnings: list[Problem] = field(default_factory=list)  # what X-Road runs with, told anyway

    @property
    def exit_code(self) -> ExitCode:
        if self.error is None:
            return ExitCode.OK
        return exit_code_for(self.error.reason)

    @property
    def reason(self) -> Reason | None:
        return self.error.reason if self.error else None

    @property
    def changed(self) -> bool:
        return bool(self.added or self.modified or self.removed or self.mode_changed)

    def cancelled(self) -> SyncResult:
        """This result as a sync the agent's own stop cut short: whatever broke (the
        connection closing under it) is a consequence of stopping, not a failure."""
        return SyncResult(
            Outcome.CANCELLED,
            self.previous,
            self.previous,
            duration=self.duration,
            attempts=self.attempts,
            dry_run=self.dry_run,
        )

    def summary(self) -> str:
        if self.outcome is Outcome.CANCELLED:
            return f"cancelled: stopping; generation {self.generation} stays live"
        if self.error is not None:
            return f"{self.outcome}: [{self.error.reason}] {self.error}"
        counts = (
            f"+{len(self.added)} ~{len(self.modified)} -{len(self.removed)} "
            f"mode {len(self.mode_changed)}"
        )
        if self.dry_run:
            verb = "would change" if self.changed else "nothing to change"
            return f"{verb}: {counts} (live {shown(self.previous)}, primary {self.candidate})"
        if self.outcome is Outcome.APPLIED:
            return (
                f"applied generation {self.generation} (was {shown(self.previous)}): {counts}, "
                f"fetched {self.files_fetched} files / {self.bytes_fetched} bytes "
                f"in {self.duration:.2f}s"
            )
        return f"unchanged: generation {self.generation} is current ({self.duration:.2f}s)"

    @property
    def result_word(self) -> str:
        """The outcome as output and logs say it: a dry run that found changes "would_change"
        (its outcome is unchanged: it applied nothing)."""
        if self.dry_run and self.error is None and self.changed:
            return "would_change"
        return str(self.outcome)

    def log_fields(self) -> dict[str, Any]:
        """The one ``sync`` log event's fields: counts rather than lists, and only what is
        set, so a line stays short (``to_json``, the command's output, keeps every field; the
        daemon logs why it walks once, as ``walking``, not on every sync)."""
        fields: dict[str, Any] = {
            "result": self.result_word,
            "generation": self.generation,
            "previous_generation": self.previous,
            "candidate_generation": self.candidate if self.candidate != self.generation else None,
            "changed": len(self.added) + len(self.modified) + len(self.removed),
            "added": len(self.added),
            "modified": len(self.modified),
            "removed": len(self.removed),
            "mode_changed": len(self.mode_changed),
            "files_fetched": self.files_fetched,
            "bytes_fetched": self.bytes_fetched,
            "duration_seconds": round(self.duration, 4),
            "attempts": self.attempts if self.attempts > 1 else None,
            "dry_run": self.dry_run,
            "verified": self.verified,
            "verify_mismatches": len(self.mismatches),
            "source": self.source,
            "published_sequence": self.followed[1] if self.followed else None,
        }
        if self.versions is not None:
            fields.update(
                primary_version=self.versions.primary,
                local_version=self.versions.local,
                version_skew=self.versions.skew,
            )
        if self.error is not None:
            fields.update(reason=str(self.error.reason), error=self.error.message)
            fields["problems"] = [str(p) for p in self.error.problems[:5]]
        keep = ("result", "changed", "duration_seconds")
        return {k: v for k, v in fields.items() if k in keep or v not in (None, "", 0, False, [])}

    def to_json(self) -> dict[str, Any]:
        doc: dict[str, Any] = {
            "result": self.result_word,
            "exit_code": int(self.exit_code),
            "generation": self.generation,
            "previous_generation": self.previous,
            "candidate_generation": self.candidate,
            "added": self.added,
            "modified": self.modified,
            "removed": self.removed,
            "mode_changed": self.mode_changed,
            "files_fetched": self.files_fetched,
            "bytes_fetched": self.bytes_fetched,
            "duration_seconds": round(self.duration, 4),
            "attempts": self.attempts,
            "dry_run": self.dry_run,
            "verified": self.verified,
            "verify_mismatches": [{"path": p, "side": side} for p, side in self.mismatches],
            "versions": self.versions.to_json() if self.versions else None,
            "source": self.source,
        }
        if self.source_note:
            doc["source_note"] = self.source_note
        if self.followed is not None:
            doc["published_sequence"] = self.followed[1]
        if self.warnings:
            doc["warnings"] = problems_json(self.warnings)
        if self.error is not None:
            doc["reason"] = str(self.error.reason)
            doc["error"] = self.error.message
            doc["problems"] = problems_json(self.error.problems)
        return doc


@dataclass
class RollbackResult:
    """What one rollback did, or why it was refused; like a sync, never an exception."""

    generation: str | None  # the generation rolled back to (or asked for)
    previous: str | None
    added: list[str] = field(default_factory=list)
    modified: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    error: SyncError | None = None

    @property
    def exit_code(self) -> ExitCode:
        """The documented code of its reason: a kept copy that fails its manifest is
        ``validation``, exit 3, as the README's table says; not a blanket 1."""
        return ExitCode.OK if self.error is None else exit_code_for(self.error.reason)

    def to_json(self) -> dict[str, Any]:
        if self.error is not None:
            return {
                "result": "failed",
                "reason": str(self.error.reason),
                "error": self.error.message,
                "problems": problems_json(self.error.problems),
            }
        return {
            "result": "rolled_back",
            "generation": self.generation,
            "previous_generation": self.previous,
            "added": self.added,
            "modified": self.modified,
            "removed": self.removed,
        }


def shown(generation: str | None) -> str:
    """A generation id in a human line; no generation yet is "(none)", never Python's None."""
    return generation or "(none)"


def problems_json(problems: Iterable[Problem]) -> list[dict[str, str]]:
    """The one JSON shape of a problem, in every command's output."""
    return [{"path": p.path, "message": p.message} for p in problems]
