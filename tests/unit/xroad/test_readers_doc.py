"""docs/readers.md carries the table of readers.py verbatim: a path class added or changed there
and not in the document fails here (print the table with
``.venv/bin/python tests/unit/xroad/test_readers_doc.py``, or copy it from the failure)."""

from __future__ import annotations

from pathlib import Path

from syncagent.xroad.readers import READERS

DOC = Path(__file__).resolve().parents[3] / "docs" / "readers.md"
BEGIN = "<!-- BEGIN generated from syncagent/xroad/readers.py READERS -->"
END = "<!-- END generated -->"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def render_table() -> str:
    """The table of path classes as docs/readers.md shows it, in READERS order (first match
    wins)."""
    rows = [
        "| path (rsync pattern, first match wins) | read by | with | rule |",
        "| --- | --- | --- | --- |",
    ]
    for r in READERS:
        rule = f"`{r.rule.__name__}`" if r.rule else "none"
        rows.append(f"| `{r.pattern}` | {_cell(r.program)} | {_cell(r.library)} | {rule} |")
    return "\n".join([BEGIN, *rows, END])


def test_doc_lists_every_reader_as_readers_py_has_it() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert render_table() in text, f"docs/readers.md is stale; expected:\n{render_table()}"


def test_every_pattern_is_in_the_doc() -> None:
    text = DOC.read_text(encoding="utf-8")
    assert all(f"`{r.pattern}`" in text for r in READERS)


if __name__ == "__main__":
    print(render_table())
