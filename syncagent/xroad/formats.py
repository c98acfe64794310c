"""Pure format rules: would X-Road's reader of these bytes fail, or silently read nothing?

Each rule takes a file's tree path and bytes and returns a Problem or None; nothing here reads a
file or runs a program (local/validate.py does that), and which rule applies to which path is
decided by readers.py from what X-Road reads there, never by suffix alone. The parsers follow
the readers X-Road uses (Apache commons-configuration2's INIConfiguration, java.util.Properties,
SnakeYAML, a JSON decoder, the message log's own mapping reader, an XML parser with entities
refused), because a validator must never reject a tree X-Road itself accepts; for INI and
properties they derive the same entries X-Road does (tests/oracle/test_differential.py holds
them to the real readers). Where a rule is deliberately stricter than the reader, its docstring
says so and why (docs/readers.md lists them): always a case where the reader logs an error and
carries on with nothing, or loads something other than what was written (a setting in the
wrong section, a value computed on the secondary), so the operator's setting silently vanishes.

Messages never quote file content beyond a parser's own positional error: ini files and
db.properties carry passwords, and problems end up in logs and metrics.
"""

from __future__ import annotations

import base64
import json
import re
import unicodedata
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, cast
from xml.etree.ElementTree import Element, ParseError, TreeBuilder

import yaml
from defusedxml import DefusedXmlException, DTDForbidden, EntitiesForbidden
from defusedxml.ElementTree import DefusedXMLParser

from syncagent.errors import Problem
from syncagent.names import shown

# --------------------------------------------------------------------------- INI
#
# X-Road reads its INI files with Apache commons-configuration2's INIConfiguration (2.8.0 on
# Debian bookworm, which the test oracle runs; see tests/oracle/README.md for 2.13.0): it parses
# lines into a tree (global keys, then one node per section, a node per key), then
# SystemPropertiesLoader walks getSections(), getSection(name).getKeys() and getString(key).
# Both the section lookup and getString go through the library's key expression engine (dots,
# "(index)", "[@attribute]") and getString interpolates "${...}" (commons-text's
# StringSubstitutor) twice. The code below ports those steps so parse_ini derives exactly the
# (section, key, value) set X-Road does, and fails exactly where X-Road's loader fails.


@dataclass(frozen=True)
class IniEntry:
    """One key as X-Road derives it: ``section`` "" is the global section (keys before any
    ``[section]``); ``key`` is the name X-Road reads, with a dot doubled as in the system
    property it sets (``a.b`` -> ``a..b``); ``value`` is the interpolated value."""

    section: str
    key: str
    value: str


class IniError(ValueError):
    def __init__(self, lineno: int, what: str) -> None:
        super().__init__(f"line {lineno}: {what}")


def _line_of(data: bytes, offset: int) -> int:
    return data.count(b"\n", 0, offset) + 1


def _decode_utf8(data: bytes) -> str:
    """Decode, reporting the line of the first bad byte (not the bytes themselves)."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise IniError(_line_of(data, exc.start), "not valid UTF-8") from None


_NOT_JAVA_SPACE = frozenset("\u00a0\u2007\u202f")


def _java_space(c: str) -> bool:
    """java.lang.Character.isWhitespace."""
    if c in "\t\n\x0b\x0c\r\x1c\x1d\x1e\x1f":
        return True
    return c not in _NOT_JAVA_SPACE and unicodedata.category(c) in ("Zs", "Zl", "Zp")


def _java_trim(s: str) -> str:
    """java.lang.String.trim: every character up to U+0020 at either end."""
    start, end = 0, len(s)
    while start < end and s[start] <= " ":
        start += 1
    while end > start and s[end - 1] <= " ":
        end -= 1
    return s[start:end]


def _java_lines(text: str) -> list[str]:
    """BufferedReader.readLine: \\n, \\r and \\r\\n end a line (str.splitlines knows more)."""
    lines = re.split(r"\r\n|\r|\n", text)
    if lines and lines[-1] == "":
        lines.pop()
    return lines


@dataclass
class _Node:
    """A node of INIConfiguration's tree: the root and sections have no value."""

    name: str
    value: str | None
    line: int
    children: list[_Node]
    _by_name: dict[str, list[_Node]] | None = None

    def named(self, name: str) -> list[_Node]:
        """The children of that name, in order (indexed once the tree is built: a lookup per
        key would make large files quadratic)."""
        if self._by_name is None:
            self._by_name = {}
            for child in self.children:
                self._by_name.setdefault(child.name, []).append(child)
        return self._by_name.get(name, [])


def _ini_continues(value: str) -> bool:
    """INIConfiguration.lineContinues: a lone ``\\`` or one after whitespace."""
    s = _java_trim(value)
    return s == "\\" or (len(s) > 2 and s.endswith("\\") and _java_space(s[-2]))


def _continues_after_quote(line: str, pos: int) -> bool:
    if pos >= len(line):
        return _ini_continues(line)
    end = pos
    while end < len(line) and line[end] not in "#;":
        end += 1
    return _ini_continues(line[pos:end])


def _value_part(value: str) -> tuple[str, bool]:
    """One physical line of a value (INIConfiguration.parseValue's loop body): quotes with
    backslash escapes, or an inline comment that needs whitespace before it."""
    quote = value[0] if value[:1] in ('"', "'") else ""
    i = 1 if quote else 0
    result: list[str] = []
    escape = False
    last = "\0"
    while i < len(value):
        c = value[i]
        i += 1
        if quote:
            if c == "\\" and not escape:
                escape = True
            elif not escape and c == quote:
                break
            else:
                if escape and c != quote:
                    result.append("\\")
                escape = False
                result.append(c)
        elif c in "#;" and _java_space(last):
            break
        else:
            result.append(c)
        last = c
    text = "".join(result)
    if quote:
        return text, _continues_after_quote(value, i)
    text = _java_trim(text)
    if _ini_continues(text):
        return _java_trim(text[:-1]), True
    return text, False


def _parse_value(first: str, lines: list[str], index: int) -> tuple[str, int]:
    """The value after the separator, with its continuation lines; returns the next index."""
    parts: list[str] = []
    value: str | None = _java_trim(first)
    while value is not None:
        text, more = _value_part(value)
        parts.append(text)
        if not more:
            break
        parts.append("\n")  # System.lineSeparator() on the secondary
        value = lines[index] if index < len(lines) else None
        index += 1
    return "".join(parts), index


def _find_separator(line: str) -> int:
    """The first ``=`` or ``:``, unless a quote comes first and only whitespace separates it
    from an ``=``/``:`` before it (INIConfiguration.findSeparator)."""
    quotes = [i for i in (line.find('"'), line.find("'")) if i >= 0]
    if quotes:
        i = min(quotes) - 1
        while i >= 0 and _java_space(line[i]):
            i -= 1
        if i >= 0 and line[i] in "=:":
            return i
    seps = [i for i in (line.find("="), line.find(":")) if i >= 0]
    return min(seps) if seps else -1


def _split_list(value: str, delimiter: str | None) -> list[str]:
    """The list delimiter handler: SystemPropertiesLoader disables splitting; the signer's
    ModuleConf splits devices.ini values on ``,`` (``\\,`` escapes it)."""
    if delimiter is None:
        return [value]
    items: list[str] = []
    token: list[str] = []
    escape = False
    for c in value:
        if escape:
            if c not in (delimiter, "\\"):
                token.append("\\")
            token.append(c)
            escape = False
        elif c == delimiter:
            items.append("".join(token))
            token = []
        elif c == "\\":
            escape = True
        else:
            token.append(c)
    if escape:
        token.append("\\")
    items.append("".join(token))
    return items


def _build_tree(text: str, delimiter: str | None) -> _Node:
    """INIConfiguration.read: global keys first, then one node per distinct section name (a
    repeated section adds to the first), one value node per key line (duplicates kept).

    Deliberately stricter than the reader (each X-Road survives, reading the file otherwise
    than it was written): a line that opens ``[`` but is not ``[name]`` by the reader's rule
    (``[proxy``, ``[b] ; note``, ``[proxy] trailing``) is refused, because X-Road reads it as
    a key of the previous section and every setting below it lands there; so is a UTF-8 byte
    order mark, which turns the first ``[section]`` into a global key the same way; and
    ``[]``, which stops the service once it holds a key (2.8.0 reads no value for it) and
    otherwise only re-reads the other sections under odd names.
    """
    if text.startswith("\ufeff"):
        raise IniError(1, "UTF-8 byte order mark: X-Road would read the first [section] as a key")
    lines = _java_lines(text)
    root = _Node("", None, 0, [])
    sections: dict[str, _Node] = {}
    current = root
    index = 0
    while index < len(lines):
        lineno = index + 1
        line = _java_trim(lines[index])
        index += 1
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            if not line.endswith("]"):
                raise IniError(lineno, "malformed [section] header")
            name = line[1:-1]
            if name == "":
                raise IniError(lineno, "empty [section] name (X-Road fails on any key in it)")
            current = sections.setdefault(name, _Node(name, None, lineno, []))
            continue
        cut = _find_separator(line)
        value = ""
        if cut >= 0:
            key = line[:cut]
            value, index = _parse_value(line[cut + 1 :], lines, index)
        else:
            key = line
        key = _java_trim(key) or " "  # INIConfiguration names a key-less line " "
        for item in _split_list(value, delimiter):
            current.children.append(_Node(key, item, lineno, []))
    root.children.extend(sections.values())
    return root


# The key expression engine (DefaultExpressionEngine, DefaultConfigurationKey): "." separates
# levels ("..": a literal dot), "name(n)" selects the n-th node of that name, "[@name]" an
# attribute (INI nodes have none). Keys are the escaped node names.


def _trim_key(key: str) -> str:
    while key.startswith(".") and not key.startswith(".."):
        key = key[1:]
    while key.endswith(".") and not key.endswith(".."):
        key = key[:-1]
    return key


def _is_attribute(name: str) -> bool:
    return name.startswith("[@") and name.endswith("]")


def _java_int(s: str) -> int | None:
    """Integer.parseInt, or None where it throws."""
    digits = s[1:] if s[:1] in "+-" else s
    if not digits or not all(c.isdecimal() for c in digits):
        return None
    n = int("".join(str(unicodedata.decimal(c)) for c in digits)) * (-1 if s[0] == "-" else 1)
    return n if -(2**31) <= n < 2**31 else None


_KeyPart = tuple[str, int | None, bool]  # name, index, is an attribute


def _key_parts(key: str) -> list[_KeyPart]:
    """DefaultConfigurationKey.KeyIterator over a whole key."""
    buf = _trim_key(key)
    parts: list[_KeyPart] = []
    end = 0
    while end < len(buf):
        start = end
        while start < len(buf) and buf.startswith(".", start) and not buf.startswith("..", start):
            start += 1
        if start >= len(buf):
            end = len(buf)
            part = buf[end - 1 : end]
        else:
            attr = buf.find("[@", start)
            if attr < 0 or attr == start:
                attr = len(buf)
            delim = start
            while True:
                delim = buf.find(".", delim)
                if delim < 0 or delim >= attr:
                    delim = -1
                    break
                if not buf.startswith("..", delim):
                    break
                delim += 2
            end = min(attr, delim) if delim >= 0 else attr
            part = buf[start:end].replace("..", ".")
        name, index = part, None
        paren = part.rfind("(")
        if paren > 0:
            close = part.find(")", paren)
            if close > paren + 1:
                index = _java_int(part[paren + 1 : close])
                if index is not None:
                    name = part[:paren]
        attribute = _is_attribute(name)
        parts.append((name[2:-1] if attribute else name, index, attribute))
    return parts


@dataclass(frozen=True)
class _View:
    """A (sub)configuration: the node it is rooted at; ``global_section``: the root seen
    through INIConfiguration's GlobalSectionNodeModel (section nodes hidden)."""

    node: _Node
    root: _Node
    global_section: bool = False

    def children(self, node: _Node) -> list[_Node]:
        if self.global_section and node is self.root:
            return [c for c in node.children if c.value is not None]
        return node.children

    def query(self, key: str) -> list[_Node]:
        parts = _key_parts(key)

        def find(k: int, node: _Node) -> list[_Node]:
            if k == len(parts):
                return [node]
            name, index, attribute = parts[k]
            if attribute:
                return []
            named = node.named(name)
            if self.global_section and node is self.root:
                named = [c for c in named if c.value is not None]
            if index is not None:
                named = named[index : index + 1] if index >= 0 else []
            return [found for c in named for found in find(k + 1, c)]

        return find(0, self.node)

    def get_property(self, key: str) -> str | list[str] | None:
        values = [n.value for n in self.query(key) if n.value is not None]
        if not values:
            return None
        return values[0] if len(values) == 1 else values

    def key_nodes(self) -> list[tuple[str, _Node]]:
        """getKeys(): every node with a value, depth first, first occurrence of each key."""
        found: dict[str, _Node] = {}

        def visit(node: _Node, parent: str | None) -> None:
            key = "" if parent is None else _append_key(parent, node.name)
            if node.value is not None:
                found.setdefault(key, node)
            for child in self.children(node):
                visit(child, key)

        visit(self.node, None)
        return list(found.items())


def _append_key(parent: str, name: str) -> str:
    """DefaultConfigurationKey.append(name, escape=true)."""
    part = _trim_key(name.replace(".", ".."))
    if parent and part and not _is_attribute(name):
        return f"{parent}.{part}"
    return parent + part


def _section(root: _Node, name: str | None) -> _View:
    """INIConfiguration.getSection: the key expression first (configurationAt), then the first
    child of that exact name."""
    if name is None:
        return _View(root, root, global_section=True)
    everything = _View(root, root)
    nodes = everything.query(name)
    if len(nodes) == 1:
        return _View(nodes[0], root)
    return _View(next(c for c in root.children if c.name == name), root)


def _sections(root: _Node) -> list[str | None]:
    names: list[str | None] = [None] if any(c.value is not None for c in root.children) else []
    return names + [c.name for c in root.children if c.value is None]


# The default interpolation lookups (ConfigurationInterpolator's prefix lookups in 2.8.0).
_LOOKUPS = frozenset(
    {"base64Decoder", "base64Encoder", "const", "date", "env", "file", "java", "localhost"}
    | {"properties", "resourceBundle", "sys", "urlDecoder", "urlEncoder", "xml"}
)
_MACHINE_LOOKUPS = frozenset({"env", "sys"})


class _Interpolation(Exception):
    """Interpolation failed: what X-Road does is given by the subclass."""


class _Loop(_Interpolation):
    pass


class _RefusedLookup(_Interpolation):
    pass


_Value = str | list[str] | None


class _Interpolator:
    """ConfigurationInterpolator with StringSubstitutor (commons-text 1.10): ``${name}``, the
    ``:-`` default, ``$${`` escapes, values substituted recursively, a loop throws.

    Lookups: the section itself, then the whole configuration (``${section.key}``, a global
    ``${key}``). Of the prefixed lookups, ``env:`` and ``sys:`` are read as unset (their values
    belong to the secondary's environment, unknown here; an unset one stays as written in
    X-Road too). Every other prefixed lookup is refused, deliberately: ``file:``,
    ``properties:``, ``xml:`` and ``resourceBundle:`` read files on the secondary outside the
    synced tree (the agent must not read them, and a missing one throws and stops the
    service), ``const:`` loads classes, and ``date:``, ``java:``, ``localhost:``,
    ``base64Decoder:``, ``base64Encoder:``, ``urlDecoder:``, ``urlEncoder:`` compute values
    at start-up or throw on arguments the agent would have to re-implement; X-Road's own
    configuration uses none of them.
    """

    def __init__(self, view: _View) -> None:
        self.view = view
        self.top = _View(view.root, view.root)

    def resolve(self, var: str) -> _Value:
        colon = var.find(":")
        if colon >= 0 and var[:colon] in _LOOKUPS and var[:colon] not in _MACHINE_LOOKUPS:
            raise _RefusedLookup(var[:colon])
        for view in (self.view, self.top):
            value = view.get_property(var)
            if value is not None:
                return value
        return None

    def resolve_text(self, var: str) -> str | None:
        value = self.resolve(var)
        return value[0] if isinstance(value, list) else value

    def interpolate(self, value: str | list[str]) -> str | list[str]:
        if isinstance(value, str):
            if value.startswith("${") and value.find("}", 2) == len(value) - 1:
                single = self.resolve(value[2:-1])
                if isinstance(single, list):
                    return single
            buf = list(value)
            self._substitute(buf, 0, len(buf), None)
            return "".join(buf)
        return value

    def _substitute(self, buf: list[str], offset: int, length: int, prior: list[str] | None) -> int:
        change_total = 0
        end = offset + length
        pos = offset
        escape_at = -1
        while pos < end:
            if not (pos + 1 < end and buf[pos] == "$" and buf[pos + 1] == "{"):
                pos += 1
                continue
            if pos > offset and buf[pos - 1] == "$":
                escape_at = pos - 1
            start = pos
            pos += 2
            while pos < end:
                if buf[pos] != "}":
                    pos += 1
                    continue
                if escape_at >= 0:
                    del buf[escape_at]
                    escape_at = -1
                    change_total -= 1
                    end -= 1
                    pos = start + 1
                    break
                expr = "".join(buf[start + 2 : pos])
                pos += 1
                stop = pos
                name, default = expr, None
                for i in range(len(expr)):
                    if expr.startswith("${", i):
                        break
                    if expr.startswith(":-", i):
                        name, default = expr[:i], expr[i + 2 :]
                        break
                if prior is None:
                    prior = ["".join(buf[offset : offset + length])]
                if name in prior:
                    raise _Loop(name)
                prior.append(name)
                text = self.resolve_text(name)
                if text is None:
                    text = default
                if text is not None:
                    buf[start:stop] = list(text)
                    change = self._substitute(buf, start, len(text), prior)
                    change += len(text) - (stop - start)
                    pos += change
                    end += change
                    change_total += change
                prior.pop()
                break
        return change_total

    def get_items(self, key: str) -> list[str | list[str]]:
        """getStringArray: every value of the key, each interpolated twice."""
        raw = self.view.get_property(key)
        items = raw if isinstance(raw, list) else [] if raw is None else [raw]
        return [self.interpolate(self.interpolate(item)) for item in items]

    def get_string(self, key: str) -> str | None:
        """getString: interpolated twice (once more for the first of a list)."""
        raw = self.view.get_property(key)
        if raw is None:
            return None
        value = self.interpolate(raw)  # DefaultConversionHandler.to
        if isinstance(value, list):  # convert: the first of a list, interpolated
            value = self.interpolate(value[0])
        value = self.interpolate(value) if isinstance(value, str) else value
        return value if isinstance(value, str) else "[" + ", ".join(value) + "]"


def parse_ini(data: bytes, *, list_delimiter: str | None = None) -> list[IniEntry]:
    """The (section, key, value) entries X-Road's loader derives from an INI file, in its
    order, or IniError naming the line where it fails (never the content: passwords).

    As commons-configuration2 reads it: keys before any ``[section]`` are global (section "");
    ``=`` or ``:`` separates, a line without either is a key with an empty value; an inline
    comment needs whitespace before its ``#``/``;``; quotes are stripped and protect comment
    characters; a trailing ``\\`` continues the value only after whitespace; a duplicate key
    or repeated section keeps the first value; ``${...}`` is interpolated. ``list_delimiter``
    "," reads as the signer reads devices.ini.

    Refused where X-Road fails: bytes that are not UTF-8 (the loader skips the whole file),
    an interpolation loop (IllegalStateException: the service does not start; devices.ini:
    the signer keeps only its soft token), a key the loader finds no value for (``a(1)``,
    ``a[@x]``, X-Road's key syntax: System.setProperty's NullPointerException stops the
    service; the signer reads such a key as absent, so with ``list_delimiter`` it is left
    out). Deliberately stricter where X-Road silently reads something else (see _build_tree
    and _Interpolator): a line opening ``[`` that is not a section, a byte order mark, ``[]``,
    prefixed lookups other than ``env:`` and ``sys:``.
    """
    fails = "X-Road fails to start" if list_delimiter is None else "the signer drops its modules"
    root = _build_tree(_decode_utf8(data), list_delimiter)
    entries: list[IniEntry] = []
    for name in _sections(root):
        view = _section(root, name)
        interpolator = _Interpolator(view)
        for key, node in view.key_nodes():
            try:
                value = interpolator.get_string(key)
                if list_delimiter is not None:  # the signer also reads every item
                    interpolator.get_items(key)
            except _Loop:
                raise IniError(node.line, f"interpolation loops: {fails}") from None
            except _RefusedLookup as exc:
                raise IniError(
                    node.line, f"${{{exc}:...}} lookup refused (resolved on the secondary)"
                ) from None
            if value is None and list_delimiter is None:
                raise IniError(node.line, "key X-Road reads no value for: it fails to start")
            if value is not None:  # the signer reads such a key as absent
                entries.append(IniEntry(name or "", key, value))
    return entries


def _ini_problem(data: bytes, list_delimiter: str | None = None) -> str | None:
    """Catch ini files that would stop an X-Road service from starting after a restart."""
    try:
        entries = parse_ini(data, list_delimiter=list_delimiter)
        if list_delimiter is not None:
            return _modules_problem(data, entries)
    except IniError as exc:
        return str(exc)
    except RecursionError:
        return "interpolation nested too deeply"
    return None


# The boolean parameters the signer's ModuleConf reads for a PKCS#11 module (softToken: only
# "enabled"); one that does not convert makes it log the module and skip it.
_MODULE_BOOLEANS = (
    "enabled",
    "library_cant_create_os_threads",
    "os_locking_ok",
    "sign_verify_pin",
    "batch_signing_enabled",
    "read_only",
    "pub_key_attribute_encrypt",
    "pub_key_attribute_verify",
    "pub_key_attribute_verify_recover",
    "pub_key_attribute_wrap",
    "pub_key_attribute_trusted",
    "priv_key_attribute_sensitive",
    "priv_key_attribute_decrypt",
    "priv_key_attribute_sign",
    "priv_key_attribute_sign_recover",
    "priv_key_attribute_unwrap",
    "priv_key_attribute_extractable",
    "priv_key_attribute_always_sensitive",
    "priv_key_attribute_never_extractable",
    "priv_key_attribute_wrap_with_trusted",
)
# commons-lang3 BooleanUtils.toBooleanObject, compared case-insensitively
_JAVA_BOOLEANS = frozenset(
    {"true", "false", "yes", "no", "on", "off", "y", "n", "t", "f", "1", "0"}
)


def _modules_problem(data: bytes, entries: list[IniEntry]) -> str | None:
    """Deliberately stricter than the signer, which logs and carries on without them: keys
    outside any section or in a blank-named one ("No UID specified for module, skipping"),
    and a module whose boolean parameter does not convert ("Invalid value of 'enabled' for
    module (hsm), skipping"): the HSM silently disappears from the secondary."""
    root = _build_tree(_decode_utf8(data), ",")
    values = {(e.section, e.key): e.value for e in entries}
    for name in _sections(root):
        line = next((c.line for c in root.children if c.name == name and c.value is None), 1)
        if name is None or all(_java_space(c) for c in name):
            first = root.children[0].line if name is None and root.children else line
            return f"line {first}: a key outside any module section (the signer ignores it)"
        params = ("enabled",) if name.lower() == "softtoken" else _MODULE_BOOLEANS
        for param in params:
            value = values.get((name, param))
            if value is not None and value.lower() not in _JAVA_BOOLEANS:
                return f"line {line}: {param} is not a boolean (the signer skips this module)"
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


def _xml_root(data: bytes) -> Element | str:
    """The parsed root element, or why the XML is refused (malformed, or with entities)."""
    try:
        return parse_xml(data)
    except ParseError as exc:
        return str(exc)
    except (ValueError, RecursionError) as exc:
        return f"XML not parseable: {type(exc).__name__}"


def _xml_problem(data: bytes) -> str | None:
    """Reject malformed XML and anything with entities: X-Road and the agent parse these."""
    root = _xml_root(data)
    return root if isinstance(root, str) else None


# The one root element the signer's JAXB context knows (keyconf.xsd's target namespace); its
# children are unqualified (the schema's elementFormDefault), so <device> has no namespace.
KEYCONF_ROOT = "{http://x-road.eu/xsd/xroad.xsd}keyConf"


def bound_text(element: Element, name: str) -> str | None:
    """The value JAXB binds to a single-valued string child ``name`` of ``element``, as the
    signer's unmarshaller reads keyconf.xml (JAXB RI, no schema, no event handler; pinned by
    tests/oracle): only an unqualified direct child counts, a repeated one gives its last
    value, the text is kept as written (no trimming), comments drop out, and an unknown child
    element inside is skipped along with the text before it. None: no such child."""
    found: Element | None = None
    for child in element:
        if child.tag == name:
            found = child
    if found is None:
        return None
    inner = [c for c in found if isinstance(c.tag, str)]
    return (inner[-1].tail if inner else found.text) or ""


def _keyconf_problem(data: bytes) -> str | None:
    root = _xml_root(data)
    if isinstance(root, str):
        return root
    if root.tag != KEYCONF_ROOT:
        return (
            f"root element is {shown(str(root.tag), 80)}: the signer loads only keyConf in the "
            "namespace http://x-road.eu/xsd/xroad.xsd and would refuse the file"
        )
    return None


# --------------------------------------------------------------------------- properties, JSON


class PropertiesError(ValueError):
    def __init__(self, lineno: int, what: str) -> None:
        super().__init__(f"line {lineno}: {what}")


_PROPERTY_BLANKS = " \t\f"


def _property_lines(text: str) -> Iterator[tuple[int, str]]:
    """Logical lines as java.util.Properties' LineReader builds them (JDK 17), with the number
    of the physical line each starts on: leading blanks skipped, ``#``/``!`` comment lines
    (never continued), a line ending in an odd number of backslashes joined to the next one
    with that backslash and the next line's leading blanks dropped; ``\\r``, ``\\n`` and
    ``\\r\\n`` end lines; a dangling backslash at the end of the file is dropped."""
    pos, size, lineno = 0, len(text), 1
    while True:
        line: list[str] = []
        start_line = lineno
        skip_blanks, continued, backslash = True, False, False
        while True:
            if pos >= size:
                if line:
                    yield start_line, "".join(line[:-1] if backslash else line)
                return
            c = text[pos]
            pos += 1
            if skip_blanks:
                if c in _PROPERTY_BLANKS:
                    continue
                if not continued and c in "\r\n":
                    lineno += c == "\n" or not text.startswith("\n", pos)
                    continue
                skip_blanks, continued = False, False
            if not line and c in "#!":
                end = min(
                    (i for i in (text.find("\r", pos), text.find("\n", pos)) if i >= 0),
                    default=size,
                )
                if end >= size:
                    return
                pos = end  # the terminator itself is skipped as a blank line end
                skip_blanks = True
                if not line:
                    start_line = lineno
                continue
            if c not in "\r\n":
                line.append(c)
                backslash = not backslash if c == "\\" else False
                continue
            lineno += c == "\n" or not text.startswith("\n", pos)
            if not line:
                skip_blanks = True
                start_line = lineno
                continue
            if pos >= size:
                yield start_line, "".join(line[:-1] if backslash else line)
                return
            if backslash:
                line.pop()
                skip_blanks, continued, backslash = True, True, False
                if c == "\r" and text.startswith("\n", pos):
                    pos += 1
                continue
            yield start_line, "".join(line)
            break


_HEX = "0123456789abcdefABCDEF"
_ESCAPED = {"t": "\t", "r": "\r", "n": "\n", "f": "\f"}


def _unescape(text: str, lineno: int) -> str:
    """Properties.loadConvert: ``\\uXXXX`` (exactly four hex digits, else the load throws),
    ``\\t \\r \\n \\f``, and a backslash before anything else stands for that character."""
    out: list[str] = []
    i = 0
    while i < len(text):
        c = text[i]
        i += 1
        if c != "\\":
            out.append(c)
            continue
        c = text[i] if i < len(text) else ""
        i += 1
        if c == "u":
            digits = text[i : i + 4]
            if len(digits) < 4 or any(d not in _HEX for d in digits):
                raise PropertiesError(lineno, "malformed \\uxxxx escape")
            out.append(chr(int(digits, 16)))
            i += 4
        else:
            out.append(_ESCAPED.get(c, c))
    text = "".join(out)
    if not text.isascii():  # Java strings are UTF-16: "\\ud800\\udc00" is one character
        text = text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "surrogatepass")
    return text


def _split_property(line: str) -> tuple[str, str]:
    """Properties.load0: the key ends at the first unescaped ``=``, ``:`` or blank; blanks
    and at most one ``=``/``:`` separate it from the value."""
    key_end, value_start, has_sep, backslash = 0, len(line), False, False
    while key_end < len(line):
        c = line[key_end]
        if c in "=:" and not backslash:
            value_start, has_sep = key_end + 1, True
            break
        if c in _PROPERTY_BLANKS and not backslash:
            value_start = key_end + 1
            break
        backslash = not backslash if c == "\\" else False
        key_end += 1
    while value_start < len(line):
        c = line[value_start]
        if c not in _PROPERTY_BLANKS:
            if has_sep or c not in "=:":
                break
            has_sep = True
        value_start += 1
    return line[:key_end], line[value_start:]


def parse_properties(data: bytes) -> list[tuple[str, str]]:
    """The (key, value) pairs java.util.Properties.load reads from an InputStream (ISO-8859-1:
    every byte is a character), in order of first appearance, the last value of a repeated
    key winning; PropertiesError (line number only: db.properties holds the database
    password) where load throws, which is only a malformed ``\\u`` escape."""
    found: dict[str, str] = {}
    for lineno, line in _property_lines(data.decode("latin-1")):
        key, value = _split_property(line)
        key = _unescape(key, lineno)
        found[key] = _unescape(value, lineno)
    return list(found.items())


def _properties_problem(data: bytes) -> str | None:
    """Java reads .properties as ISO-8859-1 (X-Road 8's SmallRye reader: UTF-8, bad bytes
    replaced), so any byte decodes, and every line loads (an empty key, a NUL byte, a line
    without separator included); the one thing that makes ``Properties.load`` throw, and the
    file load nothing, is a malformed ``\\u`` escape."""
    try:
        parse_properties(data)
    except PropertiesError as exc:
        return str(exc)
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


class _YamlRefused(yaml.YAMLError):
    """A stream SnakeYAML refuses although PyYAML composes it; the message names a line."""


_SNAKEYAML_MAX_ALIASES = 50  # LoaderOptions.maxAliasesForCollections, counted per stream
_SNAKEYAML_MAX_DEPTH = 51  # LoaderOptions.nestingDepthLimit 50: the 52nd nested node fails
_YAML_ORG = "tag:yaml.org,2002:"
_CONSTRUCTIBLE = frozenset(
    _YAML_ORG + t
    for t in {"str", "int", "float", "bool", "null", "binary", "timestamp", "seq", "map"}
    | {"set", "omap", "pairs"}
)
# ConstructYamlTimestamp's patterns (one-digit months and days pass, unlike the resolver's)
_SNAKEYAML_YMD = re.compile(r"^([0-9][0-9][0-9][0-9])-([0-9][0-9]?)-([0-9][0-9]?)$")
_SNAKEYAML_TIMESTAMP = re.compile(
    r"^([0-9][0-9][0-9][0-9])-([0-9][0-9]?)-([0-9][0-9]?)"
    r"(?:(?:[Tt]|[ \t]+)([0-9][0-9]?):([0-9][0-9]):([0-9][0-9])(?:\.([0-9]*))?"
    r"(?:[ \t]*(Z|([-+][0-9][0-9]?)(?::([0-9][0-9])?)?))?)?$"
)
_NUMBERS = frozenset(_YAML_ORG + t for t in ("int", "float", "timestamp"))
_BREAKS = "\r\n\x85\u2028\u2029"


class _SnakeYamlLoader(yaml.SafeLoader):
    """PyYAML's scanner, parser and composer (never its constructors, which differ from
    SnakeYAML's: PyYAML refuses a timestamp like 2024-13-45 and a mapping used as a key,
    SnakeYAML loads both), with SnakeYAML's own refusals added."""

    def __init__(self, stream: str, numbers_as_strings: bool = False) -> None:
        super().__init__(stream)
        self.numbers_as_strings = numbers_as_strings
        self.collection_aliases = 0
        self.parents: list[Any] = []

    def scan_plain_spaces(self, indent: int, start_mark: Any) -> Any:
        """PyYAML's method with one change: tabs between the words of a plain scalar are
        spaces, as in SnakeYAML (PyYAML refuses ``a: b<TAB>c``, which X-Road loads)."""
        chunks: list[str] = []
        length = 0
        while self.peek(length) in " \t":
            length += 1
        whitespaces = self.prefix(length)
        self.forward(length)
        if self.peek() in _BREAKS:
            line_break = cast(Any, self).scan_line_break()
            self.allow_simple_key = True
            prefix = self.prefix(3)
            if prefix in ("---", "...") and self.peek(3) in "\0 \t" + _BREAKS:
                return None
            breaks = []
            while self.peek() in " " + _BREAKS:
                if self.peek() == " ":
                    self.forward()
                else:
                    breaks.append(cast(Any, self).scan_line_break())
                    prefix = self.prefix(3)
                    if prefix in ("---", "...") and self.peek(3) in "\0 \t" + _BREAKS:
                        return None
            if line_break != "\n":
                chunks.append(line_break)
            elif not breaks:
                chunks.append(" ")
            chunks.extend(breaks)
        elif whitespaces:
            chunks.append(whitespaces)
        return chunks

    def scan_anchor(self, token_class: Any) -> Any:
        """PyYAML's method with SnakeYAML's anchor names: any character but blanks, breaks
        and ``:,[]{}/.*&`` (PyYAML takes only letters, digits, ``-`` and ``_``)."""
        scanner = cast(Any, self)
        start_mark = scanner.get_mark()
        name = "alias" if scanner.peek() == "*" else "anchor"
        scanner.forward()
        length = 0
        while scanner.peek(length) not in "\0 \t" + _BREAKS + ":,[]{}/.*&":
            length += 1
        if not length or scanner.peek(length) not in "\0 \t" + _BREAKS + "?:,]}%@`":
            raise yaml.scanner.ScannerError(
                f"while scanning an {name}",
                start_mark,
                "expected an anchor name",
                scanner.get_mark(),
            )
        value = scanner.prefix(length)
        scanner.forward(length)
        return token_class(value, start_mark, scanner.get_mark())

    def compose_node(self, parent: Any, index: Any) -> Any:
        event = cast(Any, self).peek_event()
        line = event.start_mark.line + 1
        if isinstance(event, yaml.AliasEvent):
            target = self.anchors.get(event.anchor)
            if target is not None and not isinstance(target, yaml.ScalarNode):
                self.collection_aliases += 1
                if self.collection_aliases > _SNAKEYAML_MAX_ALIASES:
                    raise _YamlRefused(f"line {line}: more than 50 aliases to collections")
                if any(target is p for p in [*self.parents, parent]):
                    raise _YamlRefused(f"line {line}: alias inside the collection it names")
            return super().compose_node(parent, index)
        anchor = getattr(event, "anchor", None)
        if anchor is not None:
            self.anchors.pop(anchor, None)  # SnakeYAML lets an anchor be defined again
        self.parents.append(parent)
        try:
            if len(self.parents) > _SNAKEYAML_MAX_DEPTH:
                raise _YamlRefused(f"line {line}: nested more than 50 deep")
            node = super().compose_node(parent, index)
        finally:
            self.parents.pop()
        return node


# SnakeYAML 1.33 has no "\/" escape in double-quoted scalars (PyYAML has)
_SnakeYamlLoader.ESCAPE_REPLACEMENTS = {  # type: ignore[misc]
    k: v for k, v in yaml.scanner.Scanner.ESCAPE_REPLACEMENTS.items() if k != "/"
}


def _check_document(root: Any, numbers_as_strings: bool) -> None:
    """Every node SnakeYAML constructs, once (aliases share nodes). A mapping under a merge
    key ``<<`` (or in a list under it) is flattened into its parent, never constructed by
    its own tag, so its tag is not checked (its keys and values are); the value of a key
    repeated later in the same mapping is dropped unconstructed."""
    seen: set[tuple[int, bool]] = set()
    todo: list[tuple[Any, bool]] = [(root, True)]
    while todo:
        node, constructed = todo.pop()
        if (id(node), constructed) in seen:
            continue
        seen.add((id(node), constructed))
        if constructed:
            _check_constructible(node, int(node.start_mark.line) + 1, numbers_as_strings)
        if isinstance(node, yaml.SequenceNode):
            todo.extend(
                (item, constructed or not isinstance(item, yaml.MappingNode)) for item in node.value
            )
        elif isinstance(node, yaml.MappingNode):
            # processDuplicateKeys: of a repeated key only the last pair is constructed
            last = {_key_identity(k): i for i, (k, _) in enumerate(node.value)}
            for i, (key, value) in enumerate(node.value):
                merged = key.tag == _YAML_ORG + "merge"
                todo.append((key, True))
                overwritten = not merged and last[_key_identity(key)] != i
                todo.append((value, not merged and not overwritten))


def _check_constructible(node: Any, line: int, numbers_as_strings: bool) -> None:
    """What SnakeYAML's safe constructors throw on: a tag they do not know (``!local``,
    ``!!java.io.File``), an explicit scalar tag its value does not fit (``!!int x``), bad
    base64 in ``!!binary``, a merge key ``<<`` that does not name mappings."""
    tag = node.tag
    # "=" alone resolves to PyYAML's value tag; SnakeYAML reads it as a string
    if tag not in _CONSTRUCTIBLE and tag not in (_YAML_ORG + "merge", _YAML_ORG + "value"):
        raise _YamlRefused(f"line {line}: a tag SnakeYAML cannot construct")
    if isinstance(node, yaml.ScalarNode):
        if tag == _YAML_ORG + "binary":
            text = re.sub(r"\s", "", node.value)
            try:
                base64.b64decode(text, validate=True)
            except ValueError:
                raise _YamlRefused(f"line {line}: !!binary is not base64") from None
        elif tag in _NUMBERS and not numbers_as_strings and not _snakeyaml_number(tag, node.value):
            raise _YamlRefused(f"line {line}: a value that does not fit its explicit tag")
    if not _fits_kind(node):
        raise _YamlRefused(f"line {line}: a collection tag on the wrong kind of node")
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            if key.tag == _YAML_ORG + "merge" and not _merges(value):
                raise _YamlRefused(f"line {line}: << must name a mapping or mappings")


def _fits_kind(node: Any) -> bool:
    """SnakeYAML casts the node to the kind its tag constructs: ``!!str [x]``, ``!!seq {}``,
    ``!!set [a]`` throw; ``!!omap`` and ``!!pairs`` need a sequence of one-pair mappings."""
    kind = node.tag[len(_YAML_ORG) :] if node.tag.startswith(_YAML_ORG) else ""
    if kind == "seq":
        return isinstance(node, yaml.SequenceNode)
    if kind in ("map", "set"):
        return isinstance(node, yaml.MappingNode)
    if kind in ("omap", "pairs"):
        return isinstance(node, yaml.SequenceNode) and all(
            isinstance(item, yaml.MappingNode) and len(item.value) == 1 for item in node.value
        )
    return isinstance(node, yaml.ScalarNode) or kind == ""


def _java_radix_int(digits: str, radix: int) -> bool:
    """new BigInteger(digits, radix) does not throw."""
    body = digits[1:] if digits[:1] in "+-" else digits
    return bool(body) and all(c.isascii() and c.isalnum() and int(c, 36) < radix for c in body)


def _snakeyaml_number(tag: str, text: str) -> bool:
    """Whether SnakeYAML's ConstructYamlInt / ConstructYamlFloat / ConstructYamlTimestamp take
    an explicitly tagged scalar (``!!float 1`` loads, ``!!int x`` throws)."""
    value = text.replace("_", "")
    if tag == _YAML_ORG + "timestamp":
        return bool(_SNAKEYAML_YMD.fullmatch(text) or _SNAKEYAML_TIMESTAMP.fullmatch(text))
    if tag == _YAML_ORG + "int":
        value = value[1:] if value[:1] in "+-" else value
        if value == "0":
            return True
        if ":" in value:
            return all(_java_radix_int(part, 10) for part in value.split(":"))
        for prefix, radix in (("0b", 2), ("0x", 16), ("0", 8)):
            if value.startswith(prefix):
                return _java_radix_int(value[len(prefix) :], radix)
        return _java_radix_int(value, 10)
    value = value.lower()
    value = value[1:] if value[:1] in "+-" else value
    if value in (".inf", ".nan"):
        return True
    if ":" in value:
        return all(_java_radix_int(part, 10) for part in value.split(":")[:-1])
    if "inf" in value or "nan" in value or value.strip() != value:
        return False
    try:
        float(value[:-1] if value[-1:] in "df" else value)
    except ValueError:
        return False
    return True


def _merges(node: Any) -> bool:
    if isinstance(node, yaml.MappingNode):
        return True
    return isinstance(node, yaml.SequenceNode) and all(
        isinstance(n, yaml.MappingNode) for n in node.value
    )


_RESOLVER = yaml.SafeLoader("")


def _scalar_value(node: Any) -> object:
    """A scalar key as SnakeYAML constructs it, for duplicate detection (Java equals): ints
    and floats by value, booleans, null; timestamps stay strings (Spring Boot)."""
    tag = node.tag
    if tag == _YAML_ORG + "null":
        return None
    if tag in (_YAML_ORG + "int", _YAML_ORG + "float", _YAML_ORG + "bool"):
        try:
            return (tag, _RESOLVER.construct_object(node, deep=True))
        except (yaml.YAMLError, ValueError):
            return (tag, node.value)
    return ("str", node.value)


def _key_identity(node: Any) -> object:
    if isinstance(node, yaml.ScalarNode):
        return _scalar_value(node)
    if isinstance(node, yaml.SequenceNode):
        return ("seq", tuple(_key_identity(n) for n in node.value))
    return ("map", tuple((_key_identity(k), _key_identity(v)) for k, v in node.value))


def _duplicate_key(node: Any, seen: set[int]) -> int | None:
    """The line of a key repeated in one mapping (Spring Boot's reader refuses it)."""
    if id(node) in seen:
        return None
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        keys: set[object] = set()
        for key, value in node.value:
            if key.tag != _YAML_ORG + "merge":
                identity = _key_identity(key)
                if identity in keys:
                    return int(key.start_mark.line) + 1
                keys.add(identity)
            found = _duplicate_key(value, seen) or _duplicate_key(key, seen)
            if found:
                return found
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            found = _duplicate_key(item, seen)
            if found:
                return found
    return None


def _decode_yaml(data: bytes) -> str:
    """As SnakeYAML's UnicodeReader: a UTF-16 byte order mark selects UTF-16, else UTF-8;
    a malformed byte fails."""
    if data.startswith((b"\xfe\xff", b"\xff\xfe")):
        return data.decode("utf-16")
    return data.decode("utf-8-sig")


_DIRECTIVES_ONLY = "expected '<document start>', but found '<stream end>'"


def _yaml_problem(
    data: bytes,
    *,
    single_document: bool = False,
    unique_keys: bool = False,
    numbers_as_strings: bool = False,
) -> str | None:
    """Reject YAML that X-Road's SnakeYAML readers fail to load; the message is the problem
    and its line, never the text around it (mail.yml holds a password).

    ``single_document``: X-Road 7's ``loadAs`` (acme.yml, mail.yml) fails on a second
    document, even an empty one. ``unique_keys``: X-Road 8's admin service (Spring Boot)
    refuses a key repeated in a mapping (SnakeYAML's other readers keep the last value).
    ``numbers_as_strings``: SmallRye Config keeps int, float and timestamp scalars as
    strings, so ``!!int x`` loads there.
    Everywhere: 50 aliases to collections per file, 50 levels of nesting, tags SnakeYAML
    constructs (see _SnakeYamlLoader).
    """
    try:
        loader = _SnakeYamlLoader(_decode_yaml(data), numbers_as_strings)
        try:
            documents = 0
            while loader.check_node():
                node = cast(Any, loader.get_node())
                documents += 1
                if single_document and documents > 1:
                    return (
                        f"line {node.start_mark.line + 1}: a second document (X-Road 7 reads one)"
                    )
                _check_document(node, numbers_as_strings)
                line = _duplicate_key(node, set()) if unique_keys else None
                if line:
                    return f"line {line}: duplicate key (X-Road 8's admin service refuses it)"
        finally:
            loader.dispose()
    except UnicodeDecodeError as exc:
        encoding = "UTF-8" if exc.encoding.startswith("utf-8") else "UTF-16"
        return f"line {_line_of(data, exc.start)}: not valid {encoding}"
    except _YamlRefused as exc:
        return str(exc)
    except yaml.MarkedYAMLError as exc:
        if exc.problem == _DIRECTIVES_ONLY:
            return None  # "%YAML 1.1" and no document: SnakeYAML reads an empty stream
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


def validate_devices(path: str, data: bytes) -> Problem | None:
    """devices.ini as the signer's ModuleConf reads it: values split on ``,``; refused also
    where the signer logs a module (or keys) as skipped and runs without it."""
    return _problem(path, _ini_problem(data, ","))


def validate_xml(path: str, data: bytes) -> Problem | None:
    """Reject malformed XML and anything with entities: X-Road and the agent parse these."""
    return _problem(path, _xml_problem(data))


def validate_keyconf(path: str, data: bytes) -> Problem | None:
    """signer/keyconf.xml: XML as for validate_xml, with the root element the signer's JAXB
    unmarshaller requires (it checks nothing else: no schema, unknown elements ignored)."""
    return _problem(path, _keyconf_problem(data))


def validate_properties(path: str, data: bytes) -> Problem | None:
    """java.util.Properties.load fails only on a malformed ``\\u`` escape."""
    return _problem(path, _properties_problem(data))


def validate_json(path: str, data: bytes) -> Problem | None:
    """Reject JSON that would fail to load; the message is the decoder's position."""
    return _problem(path, _json_problem(data))


def validate_yaml(path: str, data: bytes) -> Problem | None:
    """YAML some X-Road service reads with SnakeYAML's defaults, any number of documents:
    whatever SmallRye Config (the most lenient of them) loads."""
    return _problem(path, _yaml_problem(data, numbers_as_strings=True))


def validate_yaml_xroad7(path: str, data: bytes) -> Problem | None:
    """acme.yml, mail.yml: X-Road 7's ``loadAs`` reads one document (on failure it logs a
    warning and goes on without ACME or mail settings: refused here so they do not vanish)."""
    return _problem(path, _yaml_problem(data, single_document=True))


def validate_yaml_xroad8(path: str, data: bytes) -> Problem | None:
    """local.yaml, local-tls.yaml: read by the Quarkus services (SmallRye: the alias limit)
    and the admin service (Spring Boot: no duplicate keys); several documents load."""
    return _problem(path, _yaml_problem(data, unique_keys=True))


def validate_key_mapping(path: str, data: bytes) -> Problem | None:
    """The archive encryption mapping must decode as UTF-8; its lines are X-Road's to skip."""
    return _problem(path, _mapping_problem(data))


Rule = Callable[[str, bytes], Problem | None]
