"""Python warnings become structured log events, never raw lines in the JSON stream."""

from __future__ import annotations

import io
import json
import warnings
from collections import Counter

import pytest

from syncagent import logs


def test_warnings_before_configure_are_held_then_logged_once_each(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(logs, "_held", Counter())
    monkeypatch.setattr(logs, "_logged", set())
    monkeypatch.setattr(logs, "_configured", False)
    out = io.StringIO()
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        logs.capture_warnings()
        for _ in range(3):  # one warning from three places, as an import warns per annotation
            warnings.warn_explicit("DSA is deprecated", UserWarning, "dsa.py", 1)
            warnings.warn_explicit("DSA is deprecated", UserWarning, "dsa.py", 2)
            warnings.warn_explicit("DSA is deprecated", UserWarning, "dsa.py", 3)
        assert out.getvalue() == ""
        logs.configure("json", "info", out)
        warnings.warn_explicit("later", DeprecationWarning, "x.py", 9)
        warnings.warn_explicit("later", DeprecationWarning, "x.py", 9)
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [(e["event"], e["category"], e["message"]) for e in events] == [
        ("python_warning", "UserWarning", "DSA is deprecated"),
        ("python_warning", "DeprecationWarning", "later"),
    ]
    assert events[0]["count"] == 3 and events[0]["level"] == "warning"
