"""structlog setup: JSON lines for machines, readable lines for people.

Log events carry reason codes and paths, never file contents or key material; the one place
that could leak a secret (a parser echoing a line of db.properties) is kept out by validate.py.

Python warnings (a dependency's deprecation notice, printed at import time) would otherwise be
raw lines in the middle of the JSON stream: they are held until the log is configured and then
logged as one ``python_warning`` event per distinct warning.
"""

from __future__ import annotations

import logging
import sys
import warnings
from collections import Counter
from typing import TextIO

import structlog

_held: Counter[tuple[str, str, str]] = Counter()
_logged: set[tuple[str, str]] = set()
_configured = False


def capture_warnings() -> None:
    """Route every Python warning to the structured log (installed before any import warns)."""
    warnings.showwarning = _show_warning


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: TextIO | None = None,
    line: str | None = None,
) -> None:
    key = (category.__name__, str(message), f"{filename}:{lineno}")
    if _configured:
        _log_warnings(Counter([key]))
    else:
        _held[key] += 1


def _log_warnings(found: Counter[tuple[str, str, str]]) -> None:
    grouped: dict[tuple[str, str], list[str]] = {}
    for (category, message, where), _ in found.items():
        grouped.setdefault((category, message), []).append(where)
    log = structlog.get_logger("syncagent.warnings")
    for (category, message), places in grouped.items():
        if (category, message) in _logged:
            continue
        _logged.add((category, message))
        log.warning(
            "python_warning", category=category, message=message, where=places[0], count=len(places)
        )


def configure(fmt: str = "auto", level: str = "info", stream: object = None) -> None:
    global _configured
    out = stream or sys.stderr
    as_json = fmt == "json" or (fmt == "auto" and not getattr(out, "isatty", lambda: False)())
    renderer: structlog.typing.Processor = (
        structlog.processors.JSONRenderer()
        if as_json
        else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(getattr(logging, level.upper())),
        logger_factory=structlog.PrintLoggerFactory(out),  # type: ignore[arg-type]
        cache_logger_on_first_use=False,
    )
    _configured = True
    held = Counter(_held)
    _held.clear()
    _log_warnings(held)
