"""Inputs for the differential tests: INI, properties and YAML texts generated from a grammar of
lines, and byte-level mutations of realistic files.

Generation is driven by ``random.Random(seed)``, not hypothesis: the point is to send thousands
of inputs through ONE JVM start per reader (tests/support/readers.py batches them), and a
hypothesis example is one input (or a list bounded by its entropy buffer), so its shrinking and
replay would cost a JVM per example. A fixed seed keeps CI reproducible; SYNCAGENT_DIFF_SEED
picks another for an exploratory run, and a failure prints the inputs that disagree.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

from support.samples import KEYCONF_NS

# --------------------------------------------------------------------------------- shared


def _pick(rng: random.Random, items: Sequence[str]) -> str:
    return items[rng.randrange(len(items))]


def _end(rng: random.Random) -> str:
    roll = rng.random()
    return "\n" if roll < 0.85 else "\r\n" if roll < 0.95 else "\r"


INTERESTING_BYTES = b"[]=:#;\"'\\${}.()@ \t\n\r,!&*-|>?%~" + bytes(
    [0x00, 0x0B, 0x0C, 0x1C, 0x7F, 0x80, 0xA0, 0xC3, 0xE9, 0xEF, 0xBB, 0xBF, 0xFF]
)


def mutate(rng: random.Random, data: bytes) -> bytes:
    """One to three byte-level edits: delete, insert, replace a byte, duplicate or drop a
    line, swap two lines, truncate."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 3)):
        op = rng.randrange(7)
        at = rng.randrange(len(out) + 1)
        if op == 0 and out:
            del out[min(at, len(out) - 1)]
        elif op == 1:
            out[at:at] = bytes([INTERESTING_BYTES[rng.randrange(len(INTERESTING_BYTES))]])
        elif op == 2 and out:
            out[min(at, len(out) - 1)] = INTERESTING_BYTES[rng.randrange(len(INTERESTING_BYTES))]
        elif op in (3, 4, 5):
            lines = bytes(out).split(b"\n")
            i, j = rng.randrange(len(lines)), rng.randrange(len(lines))
            if op == 3:
                lines.insert(j, lines[i])
            elif op == 4 and len(lines) > 1:
                del lines[i]
            else:
                lines[i], lines[j] = lines[j], lines[i]
            out = bytearray(b"\n".join(lines))
        else:
            del out[at:]
    return bytes(out)


def batch(
    seed: int, count: int, generate: Callable[[random.Random], bytes], seeds: Sequence[bytes]
) -> list[bytes]:
    """``count`` inputs: about a quarter mutations of ``seeds``, the rest generated."""
    rng = random.Random(seed)
    out: list[bytes] = []
    for _ in range(count):
        if seeds and rng.random() < 0.25:
            out.append(mutate(rng, _pick_bytes(rng, seeds)))
        else:
            out.append(generate(rng))
    return out


def _pick_bytes(rng: random.Random, items: Sequence[bytes]) -> bytes:
    return items[rng.randrange(len(items))]


# --------------------------------------------------------------------------------- INI

INI_SECTIONS = (
    "proxy", "signer", "common", "message-log", "proxy-ui-api", "node", "s", "a.b", "s(0)",
    "softToken", "hsm",
    "proxy(1)", " sp ", "x]y", "[a", "pröxy", "k", "a", "[@x]", "\u00a0",
)  # fmt: skip
INI_KEYS = (
    "k", "a", "b", "type", "client-timeout", "a.b", ".a", "b.", "a..b", "k(0)", "k(1)",
    "k(x)", "k(-1)", "a[@x]", "p q", "ключ", "k", "proxy", "s", "x\x00", "+k", "k)", "(k",
    "a.b.c", "proxy.k", "ĸ\u00a0", "😀", "k\t", "\u2003k",
    "enabled", "read_only", "sign_verify_pin", "library",
)  # fmt: skip
INI_VALUE_ATOMS = (
    "v", "1", "true", "/var/lib/xroad", "a, b,c", '"x # y"', "'single'", '"a" "b"',
    '"unterminated', '"in\\"side"', "'it\\'s'", "x#y", "x ;y", "x # c", "x ; c", "${k}",
    "${a}", "${b}", "${proxy.k}", "${s.a}", "${a.b}", "${a..b}", "$${k}", "$$${k}",
    "${k:-d}", "${nope}", "${nope:-${k}}", "${env:SYNCAGENT_SURELY_UNSET}",
    "${sys:syncagent.surely.unset}", "${file:UTF-8:/nonexistent}", "${date:yyyy}",
    "${java:version}", "${base64Decoder:!}", "${a${b}}", "${}", "${:-d}", "${a:-}",
    "${k:-${k}}", "${ENV:X}", "${k(0)}", "${k(1)}", "café", "\u00a0x",
    "\t", "\\", "\\,", "a\\,b", "C:\\\\path", "=", ":", "[x]", "#", ";", "{", "}", "$",
    "😀", "\u2028", "\x0b", "\\\\", '"', "'", '""', "x\\",
    "yes", "no", "maybe", "TRUE", "0", "y", "\x85", "\x1c",
)  # fmt: skip
INI_COMMENTS = ("# comment", "; comment", "#", ";", "   # indented", "#[s]", ";k=v")


def _ini_value(rng: random.Random) -> str:
    return "".join(
        _pick(rng, INI_VALUE_ATOMS) + _pick(rng, ("", " ", " ", "\t", "  "))
        for _ in range(rng.randint(0, 3))
    )


def _ini_line(rng: random.Random) -> str:
    roll = rng.random()
    indent = _pick(rng, ("", "", "", " ", "\t", "  "))
    if roll < 0.55:
        sep = _pick(rng, ("=", "=", " = ", ":", " : ", "", " ", "==", "=:", "\t=\t"))
        line = indent + _pick(rng, INI_KEYS) + sep + _ini_value(rng)
        tail = rng.random()
        if tail < 0.08:
            line += " \\"  # continues
        elif tail < 0.12:
            line += "\\"  # does not
        elif tail < 0.2:
            line += _pick(rng, (" # c", " ; c", "\t# c", "#c"))
        return line
    if roll < 0.75:
        header = "[" + _pick(rng, INI_SECTIONS) + "]"
        if rng.random() < 0.05:
            header = _pick(rng, ("[]", "[proxy", "[b] ; c", "[proxy] x", "proxy]", "[[s]]"))
        return indent + header + _pick(rng, ("", "", "", " ", "\t"))
    if roll < 0.87:
        return indent + _pick(rng, INI_COMMENTS)
    return _pick(rng, ("", "", " ", "\t"))


def ini_text(rng: random.Random) -> bytes:
    lines = [_ini_line(rng) for _ in range(rng.randint(0, 10))]
    text = "".join(line + _end(rng) for line in lines)
    if lines and rng.random() < 0.15:
        text = text.rstrip("\r\n")
    if rng.random() < 0.01:
        text = "\ufeff" + text
    data = text.encode()
    if rng.random() < 0.02:
        data += b"k = caf\xe9\n"
    return data


# --------------------------------------------------------------------------------- properties

PROPERTY_KEYS = (
    "k", "a", "db.url", "serverconf.hibernate.connection.password", "ä", "\\u00e4k",
    "a\\ b", "a\\=b", "a\\:b", "a\\\\", "\\t", "\\n", "#k", "!k", "", "k\\u0041",
    "\\u00", "\\uZZZZ", "\\u004", "\\", "k\\\\\\", "é",
)  # fmt: skip
PROPERTY_SEPARATORS = ("=", "=", ":", " ", "\t", "\f", " = ", " : ", "  ", "=:", " = = ", "")
PROPERTY_VALUES = (
    "v", "jdbc:postgresql://127.0.0.1:5432/serverconf", "x # y", "\\u00e9", "C:\\\\x", "\\",
    " \\", "v   ", "é", "café", "\\t\\r\\n\\f", "=v", ":v", " v", "\\ v", "\\u12", "\\u1234",
    "a\\\\", "a\\\\\\", "\\\\u0041", "!", "#", "\\ud83d\\ude00", "\\ud800", "😀",
)  # fmt: skip


def _property_line(rng: random.Random) -> str:
    roll = rng.random()
    indent = _pick(rng, ("", "", "", " ", "\t", "\f", "  "))
    if roll < 0.7:
        return (
            indent
            + _pick(rng, PROPERTY_KEYS)
            + _pick(rng, PROPERTY_SEPARATORS)
            + "".join(_pick(rng, PROPERTY_VALUES) for _ in range(rng.randint(0, 2)))
        )
    if roll < 0.85:
        return indent + _pick(rng, ("# comment \\", "! bang", "#", "!", "#k=v", "# \\u00"))
    return _pick(rng, ("", " ", "\t", "\\", " \\"))


def properties_text(rng: random.Random) -> bytes:
    text = "".join(_property_line(rng) + _end(rng) for _ in range(rng.randint(0, 8)))
    if rng.random() < 0.2:
        text = text.rstrip("\r\n")
    # X-Road 7 reads bytes as ISO-8859-1; a file written as UTF-8 is read as mojibake
    return text.encode("utf-8" if rng.random() < 0.5 else "latin-1", errors="replace")


# --------------------------------------------------------------------------------- YAML

YAML_SCALARS = (
    "v", "1", "010", "0x1F", "1_000", "1:20", "1.5", ".inf", "yes", "no", "on", "true", "~",
    "null", "", "2024-01-02", "2024-13-45", "'quoted'", '"dq \\t"', "'it''s'", '"\\x41"',
    "a b", "a\tb", "a #c", "a#b", "-", "- x", "[a, b]", "{a: 1}", "[]", "{}", "*a", "&a x",
    "&a [1, 2]", "&'a x", "*'a", "&a.b x", "&é x", "*a:", "!!str 1", "!!int 1", "!!int x",
    "!!float 1", "!!bool yes", "!!null ''",
    "!!binary aGk=", "!!binary '!!'", "!!set {a}", "!foo x", "!!java.io.File /tmp",
    '"\\/"', "!!str [x]", "!!set [a]", "!!omap [a]", "!!timestamp 2001-1-4", "!!seq {}", "=",
    "|\n  block", ">\n  folded", "'multi\n  line'", "@x", "`x", "%x", "é", "😀",
)  # fmt: skip
YAML_KEYS = (
    "a", "b", "host", "port", "use-ssl-tls", "eab-credentials", "a.b", '"a.b"', "1", "01",
    "true", "yes", "~", "? [a]", "<<", "- a", "a b", "'k'",
)  # fmt: skip


def _yaml_line(rng: random.Random) -> str:
    roll = rng.random()
    indent = " " * rng.choice((0, 0, 0, 2, 2, 4, 1, 3))
    if roll < 0.6:
        key = _pick(rng, YAML_KEYS)
        value = _pick(rng, YAML_SCALARS) if rng.random() < 0.8 else ""
        return f"{indent}{key}:{_pick(rng, (' ', ' ', '  ', chr(9)))}{value}".rstrip(" ")
    if roll < 0.75:
        return f"{indent}- {_pick(rng, YAML_SCALARS)}"
    if roll < 0.85:
        return _pick(rng, ("---", "...", "# c", "%YAML 1.1", "--- # c", "\t", ""))
    if roll < 0.9:
        return f"{indent}\ta: 1"
    return indent + "<<: " + _pick(rng, ("*a", "{x: 1}", "[*a]", "1"))


def yaml_text(rng: random.Random) -> bytes:
    lines = [_yaml_line(rng) for _ in range(rng.randint(0, 8))]
    if rng.random() < 0.1:
        lines = ["base: &a [1]", "l: [" + ", ".join(["*a"] * rng.randint(45, 55)) + "]", *lines]
    text = "".join(line + "\n" for line in lines)
    return text.encode()


# --------------------------------------------------------------------------------- keyconf.xml

KEYCONF_ROOTS = (
    f'<ns3:keyConf xmlns:ns3="{KEYCONF_NS}" xmlns:ns2="http://x-road.eu/xsd/identifiers">',
    f'<x:keyConf xmlns:x="{KEYCONF_NS}">',
    f'<keyConf xmlns="{KEYCONF_NS}">',  # the default namespace: <device> is qualified then
    "<keyConf>",
    f'<ns3:keyconf xmlns:ns3="{KEYCONF_NS}">',
    '<ns3:keyConf xmlns:ns3="http://x-road.eu/xsd/identifiers">',
    f'<ns3:device xmlns:ns3="{KEYCONF_NS}">',
)
DEVICE_TYPES = ("softToken", "softToken", "softToken", " softToken", "softToken\n", "SoftToken",
                "pkcs11-module", "")  # fmt: skip
KEY_IDS = ("A1B2C3D4E5F60718293A4B5C6D7E8F9012345678", "0123abcd", " 0123abcd", "0123abcd\n",
           "a<!-- c -->b", "<![CDATA[cd]]>", "a&amp;b", "a<x/>b", "a<x>q</x>b", "", "..", "a/b",
           "&#x41;", "a b", "ключ")  # fmt: skip


def _keyconf_key(rng: random.Random) -> str:
    parts = [f"<friendlyName>{_pick(rng, ('key', 'a&amp;b', ''))}</friendlyName>"]
    for _ in range(rng.choice((0, 1, 1, 1, 1, 2))):
        tag = "keyId" if rng.random() < 0.9 else _pick(rng, ("ns3:keyId", "keyid", "KeyId"))
        parts.append(f"<{tag}>{_pick(rng, KEY_IDS)}</{tag}>")
    if rng.random() < 0.3:
        parts.append("<publicKey>AAAA</publicKey>")
    if rng.random() < 0.3:
        parts.append('<cert active="true"><contents>AAAA</contents></cert>')
    rng.shuffle(parts)
    usage = _pick(rng, (' usage="SIGNING"', ' usage="AUTHENTICATION"', "", ' usage="X"'))
    tag = "key" if rng.random() < 0.9 else _pick(rng, ("ns3:key", "Key"))
    return f"<{tag}{usage}>{''.join(parts)}</{tag}>"


def _keyconf_device(rng: random.Random) -> str:
    parts = [f"<id>{rng.randrange(3)}</id>"]
    for _ in range(rng.choice((0, 1, 1, 1, 2))):
        parts.append(f"<deviceType>{_pick(rng, DEVICE_TYPES)}</deviceType>")
    parts.extend(_keyconf_key(rng) for _ in range(rng.randrange(4)))
    if rng.random() < 0.2:
        parts.append(_pick(rng, ("<!-- note -->", "<extra/>", "<pinIndex>x</pinIndex>", "\n  ")))
    if rng.random() < 0.5:
        rng.shuffle(parts)
    tag = "device" if rng.random() < 0.9 else _pick(rng, ("ns3:device", "Device"))
    device = f"<{tag}>{''.join(parts)}</{tag}>"
    return f"<wrapper>{device}</wrapper>" if rng.random() < 0.05 else device


def keyconf_text(rng: random.Random) -> bytes:
    """A keyconf.xml: mostly the signer's shape, with roots, namespaces, repeated and unknown
    elements, whitespace, comments and mixed content that JAXB binds in its own way."""
    root = KEYCONF_ROOTS[0] if rng.random() < 0.6 else _pick(rng, KEYCONF_ROOTS)
    name = root[1:].split(" ", 1)[0].rstrip(">")
    head = '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>\n' if rng.random() < 0.7 else ""
    body = "\n".join(_keyconf_device(rng) for _ in range(rng.randrange(4)))
    return f"{head}{root}\n{body}\n</{name}>\n".encode()
