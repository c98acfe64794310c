"""Decide whether a candidate /etc/xroad tree may be applied.

A secondary must never apply a tree that X-Road would choke on (a broken ini stops a service
from starting), that could hurt the agent itself (XML entity bombs), or that leaves the
signer with keys it cannot open. Everything here is a pure decision over local bytes: no
network, and only ``bash -n`` as a subprocess, so the engine can run it on a staged tree.

Messages never quote file content beyond a parser's own positional error: ini files and
db.properties carry passwords, and problems end up in logs and metrics.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
import subprocess
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any
from xml.etree.ElementTree import Element, ParseError, TreeBuilder

from defusedxml import DefusedXmlException, DTDForbidden, EntitiesForbidden
from defusedxml.ElementTree import DefusedXMLParser

from syncagent.errors import Problem

__all__ = [
    "REQUIRED_XROAD_PATHS",
    "check_name",
    "check_node_is_secondary",
    "check_symlink",
    "missing_required",
    "softtoken_key_ids",
    "validate_bash",
    "validate_ini",
    "validate_json",
    "validate_properties",
    "validate_tree",
    "validate_xml",
]

REQUIRED_XROAD_PATHS: tuple[str, ...] = ("conf.d", "signer/keyconf.xml")

KEYCONF_PATH = "signer/keyconf.xml"
SOFTTOKEN_DIR = "signer/softtoken"
NODE_INI_PATH = "conf.d/node.ini"

_MAX_NAME_BYTES = 255
_MAX_MESSAGE = 500
_SECONDARY_TYPES = frozenset({"slave", "secondary"})
_PRIMARY_TYPES = frozenset({"master", "primary"})


# --------------------------------------------------------------------------- names and links


def _has_control(text: str) -> bool:
    return any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in text)


def _shown(text: str, limit: int = 80) -> str:
    """Quote a name for a message: repr escapes control characters so logs stay one line."""
    return repr(text if len(text) <= limit else text[:limit] + "...")


def check_name(name: str | bytes) -> str | None:
    """Refuse a directory entry name that could escape staging or confuse later path joins.

    Names come from the primary's listing, so they are untrusted input to path arithmetic.
    """
    if isinstance(name, bytes):
        try:
            name = name.decode("utf-8")
        except UnicodeDecodeError:
            return "name is not valid UTF-8"
    if name in ("", ".", ".."):
        return f"unsafe name {_shown(name)}"
    if "/" in name:
        return f"name {_shown(name)} contains '/'"
    if _has_control(name):
        return f"name {_shown(name)} contains a NUL or control character"
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:
        return "name is not valid UTF-8"
    if size > _MAX_NAME_BYTES:
        return f"name is {size} bytes long (limit {_MAX_NAME_BYTES})"
    return None


def _climbs_after_descending(target: str) -> bool:
    """True if '..' follows a normal component ('a/../x').

    Lexical normalisation of 'a/..' is only right if 'a' is a real directory; if 'a' is
    itself a symlink, '..' climbs from wherever it points. Allowing '..' only as leading
    components keeps the lexical answer equal to what the kernel will resolve, as long as
    every link in the tree passes this same check.
    """
    descended = False
    for part in target.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if descended:
                return True
        else:
            descended = True
    return False


def check_symlink(path: str, target: str, tree_paths: frozenset[str] | None = None) -> str | None:
    """Refuse a symlink whose target could reach outside the applied tree.

    A link to /etc/shadow or ../../ would let the primary make secondary services read
    (or the agent overwrite) files outside /etc/xroad.
    """
    if not target:
        return "symlink target is empty"
    if _has_control(target):
        return "symlink target contains a NUL or control character"
    if target.startswith("/"):
        return f"symlink target {_shown(target)} is absolute"
    if _climbs_after_descending(target):
        return f"symlink target {_shown(target)} climbs out of a subdirectory ('x/..')"
    resolved = posixpath.normpath(posixpath.join(posixpath.dirname(path), target))
    if resolved == ".." or resolved.startswith("../"):
        return f"symlink target {_shown(target)} escapes the tree"
    if resolved in (".", posixpath.normpath(path)):
        return f"symlink target {_shown(target)} points at the tree root or at itself"
    if tree_paths is not None and resolved not in tree_paths:
        return f"symlink target {_shown(target)} resolves to {_shown(resolved)}, not in the tree"
    return None


# --------------------------------------------------------------------------- INI


@dataclass(frozen=True)
class _IniEntry:
    section: str
    key: str
    value: str


class _IniError(ValueError):
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
        raise _IniError(_line_of(data, exc.start), "not valid UTF-8") from None


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
        raise _IniError(lineno, "not a [section], key = value, comment or blank line")
    key = line[:cut].strip()
    if not key:
        raise _IniError(lineno, "empty key")
    return key, line[cut + 1 :].strip()


def _strip_value(raw: str) -> str:
    """Drop an inline comment and surrounding quotes, as X-Road sees 'type = slave # x'."""
    value = _INLINE_COMMENT_RE.sub("", raw).strip()
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        value = value[1:-1]
    return value


def _parse_ini(data: bytes) -> list[_IniEntry]:
    """Parse with ini4j-like rules; raise _IniError naming only the line number."""
    entries: list[_IniEntry] = []
    section: str | None = None
    for lineno, line in _logical_lines(_decode_utf8(data)):
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            match = _SECTION_RE.fullmatch(line)
            if match is None:
                raise _IniError(lineno, "malformed [section] header")
            section = match.group(1).strip()
            continue
        key, raw = _split_key(line, lineno)
        if section is None:
            raise _IniError(lineno, "key before any [section] header")
        entries.append(_IniEntry(section, key, _strip_value(raw)))
    return entries


def validate_ini(data: bytes) -> str | None:
    """Catch ini files that would stop an X-Road service from starting after a restart."""
    try:
        _parse_ini(data)
    except _IniError as exc:
        return str(exc)
    return None


def check_node_is_secondary(node_ini: bytes | None) -> str | None:
    """Refuse to sync onto anything not positively known to be a secondary.

    Overwriting a primary's /etc/xroad with another's would destroy the only authoritative
    copy; node.ini is never synced, so it is the local node's own word on its role.
    """
    if node_ini is None:
        return f"{NODE_INI_PATH} missing: cannot confirm this node is a secondary"
    try:
        entries = _parse_ini(node_ini)
    except _IniError as exc:
        return f"{NODE_INI_PATH} unreadable ({exc}): cannot confirm this node is a secondary"
    types = [e.value for e in entries if e.section == "node" and e.key == "type"]
    if not types:
        return f"{NODE_INI_PATH} has no [node] type: cannot confirm this node is a secondary"
    node_type = types[-1]
    if node_type.lower() in _SECONDARY_TYPES:
        return None
    if node_type.lower() in _PRIMARY_TYPES:
        return f"this node is {node_type!r}: refusing to overwrite a primary"
    return f"this node is {_shown(node_type, 40)}: not a secondary, refusing to sync"


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


def _parse_xml(data: bytes) -> Element:
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


def validate_xml(data: bytes) -> str | None:
    """Reject malformed XML and anything with entities: X-Road and the agent parse these."""
    try:
        _parse_xml(data)
    except ParseError as exc:
        return str(exc)
    except (ValueError, RecursionError) as exc:
        return f"XML not parseable: {type(exc).__name__}"
    return None


def _local(tag: object) -> str:
    """Local name of a tag: keyconf uses prefixed namespaces (ns3:keyConf)."""
    return tag.rsplit("}", 1)[-1] if isinstance(tag, str) else ""


def _child_text(element: Element, name: str) -> str | None:
    for child in element:
        if _local(child.tag) == name:
            return (child.text or "").strip()
    return None


def softtoken_key_ids(keyconf: bytes) -> list[str]:
    """KeyIds whose private key lives in signer/softtoken/<keyId>.p12.

    Raises xml.etree.ElementTree.ParseError when keyconf is not acceptable XML.
    """
    ids: list[str] = []
    for device in _parse_xml(keyconf).iter():
        if _local(device.tag) != "device" or _child_text(device, "deviceType") != "softToken":
            continue
        for key in device:
            key_id = _child_text(key, "keyId") if _local(key.tag) == "key" else None
            if key_id and key_id not in ids:
                ids.append(key_id)
    return ids


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


def validate_properties(data: bytes) -> str | None:
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


def validate_json(data: bytes) -> str | None:
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


# --------------------------------------------------------------------------- bash

_BASH_SOURCE_ECHO_RE = re.compile(r": line \d+: `.*'$")


def _clean_bash_stderr(stderr: str, path: Path, name: str | None) -> str:
    """Keep bash's positional errors, drop its echo of the offending source line.

    services/*.conf may set secrets; bash prints the failing line verbatim after the error.
    """
    kept = [ln for ln in stderr.splitlines() if not _BASH_SOURCE_ECHO_RE.search(ln)]
    text = "\n".join(kept).strip()
    if name is not None:
        text = text.replace(str(path), name)
    if len(text) > _MAX_MESSAGE:
        text = text[:_MAX_MESSAGE] + "..."
    return text or "bash -n failed"


def validate_bash(path: Path, timeout: float = 10.0, *, name: str | None = None) -> str | None:
    """Syntax-check a file the X-Road launchers source: a syntax error stops every service.

    ``name`` replaces the staging path in bash's messages so they name the tree path.
    """
    env = {"PATH": os.environ.get("PATH", os.defpath), "LC_ALL": "C"}
    try:
        result = subprocess.run(
            ["bash", "-n", str(path)],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            env=env,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return f"bash -n timed out after {timeout:g}s"
    except OSError as exc:
        return f"cannot run bash -n: {exc.strerror}"
    if result.returncode == 0:
        return None
    return _clean_bash_stderr(result.stderr.decode("utf-8", "replace"), path, name)


# --------------------------------------------------------------------------- the whole tree

_Checker = Callable[[bytes], str | None]
_BY_SUFFIX: dict[str, _Checker] = {
    ".ini": validate_ini,
    ".xml": validate_xml,
    ".properties": validate_properties,
    ".json": validate_json,
}


def _read_capped(path: Path) -> bytes:
    """Read no more than the size seen at open: a file growing underneath cannot balloon."""
    with path.open("rb") as handle:
        return handle.read(os.fstat(handle.fileno()).st_size)


def _is_service_conf(rel: str) -> bool:
    parts = PurePosixPath(rel).parts
    return len(parts) == 2 and parts[0] == "services" and parts[1].endswith(".conf")


def _content_checker(rel: str) -> _Checker | None:
    name = PurePosixPath(rel).name
    for suffix, checker in _BY_SUFFIX.items():
        if name.endswith(suffix):
            return checker
    return None


def _check_file(root: Path, rel: str, run_bash: bool) -> Problem | None:
    full = root / rel
    if _is_service_conf(rel):
        message = validate_bash(full, name=rel) if run_bash else None
        return Problem(rel, message) if message else None
    checker = _content_checker(rel)
    if checker is None:
        return None
    try:
        message = checker(_read_capped(full))
    except OSError as exc:
        message = f"cannot read: {exc.strerror}"
    return Problem(rel, message) if message else None


def _softtoken_problems(root: Path, paths: frozenset[str]) -> list[Problem]:
    """A keyconf naming a softToken key without its .p12 leaves the signer unable to sign."""
    if KEYCONF_PATH not in paths:
        return []
    try:
        key_ids = softtoken_key_ids(_read_capped(root / KEYCONF_PATH))
    except (OSError, ParseError, ValueError, RecursionError):
        return []  # already reported as an unreadable or invalid XML file
    problems: list[Problem] = []
    for key_id in key_ids:
        p12 = f"{key_id}.p12"
        if check_name(p12) is not None:
            problems.append(Problem(KEYCONF_PATH, f"softToken key {_shown(key_id)} is unsafe"))
        elif f"{SOFTTOKEN_DIR}/{p12}" not in paths:
            problems.append(
                Problem(KEYCONF_PATH, f"softToken key {key_id} has no {SOFTTOKEN_DIR}/{p12}")
            )
    return problems


def validate_tree(
    root: Path,
    paths: Iterable[str],
    *,
    xroad: bool,
    run_bash: bool = True,
    changed: Iterable[str] | None = None,
) -> list[Problem]:
    """Check a staged candidate before any of it is applied.

    ``changed`` limits the per-file format checks to files whose content is new: the others
    already passed as part of the live generation, and re-parsing a 10,000-file tree for one
    changed file would dominate the sync. Cross-file rules always see the whole tree. All
    problems are collected, not just the first, so one rejection tells the operator
    everything that is wrong on the primary.
    """
    path_set = frozenset(paths)
    to_check = path_set if changed is None else path_set & frozenset(changed)
    problems = [
        problem
        for rel in sorted(to_check)
        if (problem := _check_file(root, rel, run_bash)) is not None
    ]
    if xroad:
        problems.extend(_softtoken_problems(root, path_set))
    return problems


def missing_required(paths: Iterable[str], dirs: Iterable[str]) -> list[str]:
    """Which parts of an initialised security server are absent on the primary.

    A primary before its first initialisation has no keyconf; syncing that would wipe a
    working secondary, so the engine reports "primary not initialized" instead.
    """
    present = {"conf.d": frozenset(dirs), KEYCONF_PATH: frozenset(paths)}
    return [req for req in REQUIRED_XROAD_PATHS if req not in present[req]]
