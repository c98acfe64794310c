"""Pure format rules: would X-Road (or the agent) fail to read these bytes?

Each rule takes a file's tree path and bytes and returns a Problem or None; nothing here reads a
file or runs a program (validate.py does that). The parsers follow what X-Road's own readers
accept (ini4j, java.util.Properties, a JSON decoder, an XML parser with entities refused), because
a validator must never reject a tree X-Road itself accepts.

Messages never quote file content beyond a parser's own positional error: ini files and
db.properties carry passwords, and problems end up in logs and metrics.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any
from xml.etree.ElementTree import Element, ParseError, TreeBuilder

from defusedxml import DefusedXmlException, DTDForbidden, EntitiesForbidden
from defusedxml.ElementTree import DefusedXMLParser

from syncagent.errors import Problem

# --------------------------------------------------------------------------- INI


@dataclass(frozen=True)
class IniEntry:
    section: str
    key: str
    value: str


class IniError(ValueError):
    def __init__(self, lineno: int, what: str) -> None:
        super().__init__(f"line {lineno}: {what}")


_SECTION_RE = re.compile(r"\[([^\[\]]+)\]\s*(?:[#;].*)?")
_INLINE_COMMENT_RE = re.compile(r"\s[#;].*$")


def _line_of(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


def _decode_utf8(data: bytes) -> str:
    """Decode, reporting the line of the first bad byte (not the bytes themselves)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise IniError(_line_of(data, exc.start), "not valid UTF-8") from None


def _logical_lines(text: str) -> Iterator[tuple[int, str]]:
    """Join backslash-continued lines as ini4j does, keeping the first line's number."""
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        lineno, line = index + 1, lines[index].strip()
        index += 1
        is_comment = line.startswith(("#", ";"))
        while not is_comment and line.endswith("\\") and index < len(lines):
            line = line[:-1] + lines[index].strip()
            index += 1
        yield lineno, line


def _split_key(line: str, lineno: int) -> tuple[str, str]:
    cut = min((i for i in (line.find("="), line.find(":")) if i >= 0), default=-1)
    if cut < 0:
        raise IniError(lineno, "not a [section], key = value, comment or blank line")
    key = line[:cut].strip()
    if not key:
        raise IniError(lineno, "empty key")
    return key, line[cut + 1 :].strip()


def _strip_value(raw: str) -> str:
    """Drop an inline comment and surrounding quotes, as X-Road sees 'type = slave # x'."""
    value = _INLINE_COMMENT_RE.sub("", raw).strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        value = value[1:-1]
    return value


def parse_ini(data: bytes) -> list[IniEntry]:
    """Parse with ini4j-like rules; raise IniError naming only the line number."""
    entries: list[IniEntry] = []
    section: str | None = None
    for lineno, line in _logical_lines(_decode_utf8(data)):
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            match = _SECTION_RE.fullmatch(line)
            if match is None:
                raise IniError(lineno, "malformed [section] header")
            section = match.group(1).strip()
            continue
        key, raw = _split_key(line, lineno)
        if section is None:
            raise IniError(lineno, "key before any [section] header")
        entries.append(IniEntry(section, key, _strip_value(raw)))
    return entries


def _ini_problem(data: bytes) -> str | None:
    """Catch ini files that would stop an X-Road service from starting after a restart."""
    try:
        parse_ini(data)
    except IniError as exc:
        return str(exc)
    return None


# --------------------------------------------------------------------------- XML


def _refuse_internal_subset(
    name: str, sysid: str | None, pubid: str | None, has_internal_subset: int
) -> None:
    """Allow <!DOCTYPE x PUBLIC/SYSTEM ...> (jetty configs have one) but no internal subset.

    The internal subset is where entity bombs and parameter entities live; an external id
    alone is never fetched (external references are forbidden as well).
    """
    if has_internal_subset:
        raise DTDForbidden(name, sysid, pubid)


def parse_xml(data: bytes) -> Element:
    parser: Any = DefusedXMLParser(
        target=TreeBuilder(), forbid_dtd=False, forbid_entities=True, forbid_external=True
    )
    parser.parser.StartDoctypeDeclHandler = _refuse_internal_subset
    try:
        parser.feed(data)
        root: Element = parser.close()
    except DefusedXmlException as exc:
        line, col = parser.parser.CurrentLineNumber, parser.parser.CurrentColumnNumber
        raise ParseError(f"{_defused_reason(exc)}: line {line}, column {col}") from None
    return root


def _defused_reason(exc: DefusedXmlException) -> str:
    if isinstance(exc, DTDForbidden):
        return "DTD internal subset refused"
    if isinstance(exc, EntitiesForbidden):
        return "entity declaration refused"
    return "external reference refused"


def _xml_problem(data: bytes) -> str | None:
    """Reject malformed XML and anything with entities: X-Road and the agent parse these."""
    try:
        parse_xml(data)
    except ParseError as exc:
        return str(exc)
    except (ValueError, RecursionError) as exc:
        return f"XML not parseable: {type(exc).__name__}"
    return None


def local_name(tag: object) -> str:
    """Local name of a tag: keyconf uses prefixed namespaces (ns3:keyConf)."""
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def child_text(element: Element, name: str) -> str | None:
    for child in element:
        if local_name(child.tag) == name:
            return (child.text or "").strip()
    return None


# --------------------------------------------------------------------------- properties, JSON


def _property_lines(text: str) -> Iterator[tuple[int, str]]:
    """Logical lines as java.util.Properties.load builds them (comments never continue)."""
    lines = text.splitlines()
    index = 0
    while index < len(lines):
        lineno, line = index + 1, lines[index].lstrip(" \t\f")
        index += 1
        if not line or line.startswith(("#", "!")):
            continue
        while _continues(line) and index < len(lines):
            line = line[:-1] + lines[index].lstrip(" \t\f")
            index += 1
        yield lineno, line


def _continues(line: str) -> bool:
    trailing = len(line) - len(line.rstrip("\\"))
    return trailing % 2 == 1


def _properties_problem(data: bytes) -> str | None:
    """Java reads .properties as ISO-8859-1, so any byte decodes; only NUL and empty keys fail.

    Errors name the line number only: db.properties holds the database password.
    """
    nul = data.find(b"\x00")
    if nul >= 0:
        return f"line {_line_of(data, nul)}: NUL byte"
    for lineno, line in _property_lines(data.decode("latin-1")):
        if line.startswith(("=", ":")):
            return f"line {lineno}: empty key"
    return None


def _json_problem(data: bytes) -> str | None:
    """Reject JSON that would fail to load; the message is the decoder's position."""
    try:
        json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        return f"line {_line_of(data, exc.start)}: not valid UTF-8"
    except json.JSONDecodeError as exc:
        return f"{exc.msg}: line {exc.lineno} column {exc.colno}"
    except RecursionError:
        return "JSON nested too deeply"
    return None


# --------------------------------------------------------------------------- the rules


def _problem(path: str, why: str | None) -> Problem | None:
    return Problem(path, why) if why else None


def validate_ini(path: str, data: bytes) -> Problem | None:
    """Catch ini files that would stop an X-Road service from starting after a restart."""
    return _problem(path, _ini_problem(data))


def validate_xml(path: str, data: bytes) -> Problem | None:
    """Reject malformed XML and anything with entities: X-Road and the agent parse these."""
    return _problem(path, _xml_problem(data))


def validate_properties(path: str, data: bytes) -> Problem | None:
    """Java reads .properties as ISO-8859-1: only NUL bytes and empty keys fail."""
    return _problem(path, _properties_problem(data))


def validate_json(path: str, data: bytes) -> Problem | None:
    """Reject JSON that would fail to load; the message is the decoder's position."""
    return _problem(path, _json_problem(data))


Rule = Callable[[str, bytes], Problem | None]
_BY_SUFFIX: dict[str, Rule] = {
    ".ini": validate_ini,
    ".xml": validate_xml,
    ".properties": validate_properties,
    ".json": validate_json,
}


def rule_for(rel: str) -> Rule | None:
    """The format rule for a tree path, by its suffix; None for formats nobody parses."""
    name = PurePosixPath(rel).name
    for suffix, rule in _BY_SUFFIX.items():
        if name.endswith(suffix):
            return rule
    return None
