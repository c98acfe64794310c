"""Good input is never refused: files written the way X-Road's own tools and operators write them
parse back to what was written, for any names and values (property-based, hypothesis).

The differential tests (tests/oracle/test_differential.py) compare the rules with the real
readers on thousands of inputs; these run without a JVM and cover the other direction: every
well-formed file, whatever its content, is accepted and read as written.
"""

from __future__ import annotations

import string

from hypothesis import assume, given, settings
from hypothesis import strategies as st

from syncagent.xroad.formats import IniEntry, parse_ini, parse_properties

SETTINGS = settings(max_examples=300, derandomize=True, deadline=None)


def _store_escape(text: str, *, key: bool) -> str:
    """java.util.Properties.store's saveConvert (escUnicode: the OutputStream form)."""
    out = []
    for i, c in enumerate(text):
        if c == " ":
            out.append("\\ " if key or i == 0 else " ")
        elif c in "\t\n\r\f":
            out.append("\\" + {"\t": "t", "\n": "n", "\r": "r", "\f": "f"}[c])
        elif c in "=:#!\\":
            out.append("\\" + c)
        elif ord(c) < 0x20 or ord(c) > 0x7E:
            out.extend(f"\\u{unit:04X}" for unit in _utf16(c))
        else:
            out.append(c)
    return "".join(out)


def _utf16(c: str) -> list[int]:
    data = c.encode("utf-16-be", "surrogatepass")
    return [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]


@SETTINGS
@given(st.dictionaries(st.text(max_size=12), st.text(max_size=20), max_size=6))
def test_properties_written_by_store_read_back(pairs: dict[str, str]) -> None:
    text = "#comment\n" + "".join(
        f"{_store_escape(k, key=True)}={_store_escape(v, key=False)}\n" for k, v in pairs.items()
    )
    assert parse_properties(text.encode("latin-1")) == list(pairs.items())


NAME = st.text(string.ascii_letters + string.digits + "-_", min_size=1, max_size=12)
# what an operator writes as a value: no surrounding blanks, no comment marker after a blank,
# no leading quote, no trailing backslash, no ${ (interpolation has its own tests)
VALUE = st.text(
    st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp"), blacklist_characters="$"),
    max_size=20,
).filter(
    lambda v: (
        v == v.strip()
        and not any(f"{ws}{c}" in v for ws in " \t\u00a0\u2000\u3000" for c in "#;")
        and not v.startswith(("'", '"', "#", ";"))
        and not v.endswith("\\")
        and all(not ch.isspace() or ch == " " for ch in v)
    )
)


@SETTINGS
@given(
    st.dictionaries(NAME, VALUE, max_size=3),
    st.dictionaries(NAME, st.dictionaries(NAME, VALUE, max_size=4), max_size=4),
)
def test_ini_as_operators_write_it_reads_back(
    global_keys: dict[str, str], sections: dict[str, dict[str, str]]
) -> None:
    # a global key named like a section replaces that section in X-Road (tests/oracle)
    assume(not set(global_keys) & set(sections))
    text = "; local.ini\n" + "".join(f"{k} = {v}\n" for k, v in global_keys.items())
    for name, keys in sections.items():
        text += f"\n[{name}]\n" + "".join(f"{k} = {v}\n" for k, v in keys.items())
    expected = [IniEntry("", k, v) for k, v in global_keys.items()] + [
        IniEntry(name, k, v) for name, keys in sections.items() for k, v in keys.items()
    ]
    assert parse_ini(text.encode()) == expected
