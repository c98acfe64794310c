"""Pure format rules: would X-Road's reader of these bytes fail, or silently read nothing?

Each rule takes a file's tree path and bytes and returns a Problem or None; nothing here reads a
file or runs a program (local/validate.py does that), and which rule applies to which path is
decided by readers.py from what X-Road reads there, never by suffix alone. The parsers follow
the readers X-Road uses (Apache commons-configuration2's INIConfiguration, java.util.Properties,
SnakeYAML, a JSON decoder, the message log's own mapping reader, an XML parser with entities
refused), because a validator must never reject a tree X-Road itself accepts. Where a rule is
deliberately stricter than the reader, its docstring says so and why: always a case where the
reader logs an error and carries on with nothing, so the operator's setting silently vanishes.

Messages never quote file content beyond a parser's own positional error: ini files and
db.properties carry passwords, and problems end up in logs and metrics.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from xml.etree.ElementTree import Element, ParseError, TreeBuilder

import yaml
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


def _split_key(line: str) -> tuple[str, str]:
    """INIConfiguration's split: the first ``=`` or ``:``; a line without one is a key with an
    empty value, and an empty key is read as a single space (both load without complaint)."""
    cut = min((i for i in (line.find("="), line.find(":")) if i >= 0), default=-1)
    if cut < 0:
        return line.strip() or " ", ""
    return line[:cut].strip() or " ", line[cut + 1 :].strip()


def _strip_value(raw: str) -> str:
    """Drop an inline comment and surrounding quotes, as X-Road sees 'type = slave # x'."""
    value = _INLINE_COMMENT_RE.sub("", raw).strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        value = value[1:-1]
    return value


def parse_ini(data: bytes) -> list[IniEntry]:
    """Parse as commons-configuration2's INIConfiguration does; raise IniError naming only the
    line number. Keys before any ``[section]`` belong to the global section ("").

    Deliberately stricter than the reader in two cases, each one X-Road survives by dropping
    settings: bytes that are not UTF-8 (X-Road's UTF-8 reader throws, logs a warning and loads
    nothing of the file) and a line that opens a ``[section`` it never closes (read as a key
    named ``[proxy``: every setting below it lands in the previous section).
    """
    entries: list[IniEntry] = []
    section = ""
    for lineno, line in _logical_lines(_decode_utf8(data)):
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            match = _SECTION_RE.fullmatch(line)
            if match is None:
                raise IniError(lineno, "malformed [section] header")
            section = match.group(1).strip()
            continue
        key, raw = _split_key(line)
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


_HEX4 = re.compile(r"[0-9a-fA-F]{4}")


def _escapes_ok(line: str) -> bool:
    """Properties.load throws on a ``\\u`` not followed by four hex digits (IllegalArgument
    Exception: 'Malformed \\uxxxx encoding'); an escaped backslash does not start one."""
    i = 0
    while i < len(line):
        if line[i] == "\\":
            if line.startswith("u", i + 1) and not _HEX4.fullmatch(line[i + 2 : i + 6]):
                return False
            i += 2
        else:
            i += 1
    return True


def _properties_problem(data: bytes) -> str | None:
    """Java reads .properties as ISO-8859-1, so any byte decodes, and every line loads (an
    empty key, a NUL byte, a line without separator included); the one thing that makes
    ``Properties.load`` throw, and the file load nothing, is a malformed ``\\u`` escape.

    Errors name the line number only: db.properties holds the database password.
    """
    for lineno, line in _property_lines(data.decode("latin-1")):
        if not _escapes_ok(line):
            return f"line {lineno}: malformed \\uxxxx escape"
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


def _yaml_problem(data: bytes) -> str | None:
    """Reject YAML that SnakeYAML would fail to load (a service then fails to start).

    PyYAML and SnakeYAML both implement YAML 1.1 with the same safe constructors; every
    document of a multi-document file is loaded, as Spring Boot does. The message is the
    parser's problem and position, never the text around it (mail.yml holds a password).
    """
    try:
        for _ in yaml.safe_load_all(data.decode("utf-8")):
            pass
    except UnicodeDecodeError as exc:
        return f"line {_line_of(data, exc.start)}: not valid UTF-8"
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f": line {mark.line + 1} column {mark.column + 1}" if mark else ""
        return f"{exc.problem or 'not valid YAML'}{where}"
    except (yaml.YAMLError, RecursionError) as exc:
        return f"not valid YAML ({type(exc).__name__})"
    return None


def _mapping_problem(data: bytes) -> str | None:
    """The message log archiver's key mapping (``identifier = keyId`` lines): it reads the file
    with ``Files.readAllLines`` (UTF-8, throws on a bad byte and the archiver fails); a line it
    cannot split is logged and skipped, as X-Road itself does, so only the encoding is a
    problem here."""
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        return f"line {_line_of(data, exc.start)}: not valid UTF-8"
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


def validate_yaml(path: str, data: bytes) -> Problem | None:
    """Reject YAML that SnakeYAML would fail to load."""
    return _problem(path, _yaml_problem(data))


def validate_key_mapping(path: str, data: bytes) -> Problem | None:
    """The archive encryption mapping must decode as UTF-8; its lines are X-Road's to skip."""
    return _problem(path, _mapping_problem(data))


Rule = Callable[[str, bytes], Problem | None]
