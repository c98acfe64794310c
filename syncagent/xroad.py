"""What the agent knows about X-Road's /etc/xroad, in one place.

Paths with a meaning, the node types node.ini may name, the softToken rule (every key keyconf.xml
lists must have its .p12), what each profile treats as node-local, and which program reads which
path. Validation, planning, the sample-tree builder and the docs all take these facts from here,
so a change in X-Road is a change in one module.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path, PurePosixPath
from xml.etree.ElementTree import Element

from .errors import Problem
from .formats import IniError, child_text, local_name, parse_ini, parse_xml
from .names import name_problem, shown

KEYCONF_PATH = "signer/keyconf.xml"
SOFTTOKEN_DIR = "signer/softtoken"
NODE_INI_PATH = "conf.d/node.ini"
XROAD_PROPERTIES = "xroad.properties"
# A primary before its first initialisation has neither: syncing it would wipe a secondary.
REQUIRED_XROAD_PATHS: tuple[str, ...] = ("conf.d", KEYCONF_PATH)
# IG-XLB's upgrade habit: `touch` this on a secondary and the sync stops.
DISABLE_FLAG = Path("/var/tmp/xroad/sync-disabled")

SECONDARY_TYPES = frozenset({"slave", "secondary"})
PRIMARY_TYPES = frozenset({"master", "primary"})

# Node-local paths per profile: never read, changed or deleted (rsync-style patterns).
PROFILES: dict[str, tuple[str, ...]] = {
    "sidecar": (
        f"/{XROAD_PROPERTIES}",
        "/gpghome",
        f"/{NODE_INI_PATH}",
        "*.tmp",
        "/globalconf/",  # the local confclient downloads it
    ),
    "xlb": (
        f"/{XROAD_PROPERTIES}",
        "db.properties",
        f"/{NODE_INI_PATH}",
        "*.tmp",
        "/postgresql",
        "/globalconf",
        "/gpghome",
        "/nginx",
        "/jetty",
        "/backup.d",
    ),
    "none": (),
}
XROAD_PROFILES = frozenset({"sidecar", "xlb"})

# Which program re-reads which path (only the signer watches a file, keyconf.xml, by itself);
# the README's suggested reload rules follow this table.
READERS: dict[str, tuple[str, ...]] = {
    "/conf.d/": ("xroad-proxy", "xroad-signer", "xroad-proxy-ui-api", "xroad-confclient"),
    "/services/": ("xroad-proxy", "xroad-signer", "xroad-proxy-ui-api"),
    "/ssl/": ("xroad-proxy", "xroad-proxy-ui-api"),
    "/db.properties": ("xroad-proxy", "xroad-proxy-ui-api"),
    "/devices.ini": ("xroad-signer",),
    f"/{KEYCONF_PATH}": (),  # the signer watches it and applies it live
}


def is_launcher_sourced(rel: str) -> bool:
    """services/*.conf are sourced by bash in every X-Road launcher: a syntax error stops all."""
    parts = PurePosixPath(rel).parts
    return len(parts) == 2 and parts[0] == "services" and parts[1].endswith(".conf")


def missing_required(paths: Iterable[str], dirs: Iterable[str]) -> list[str]:
    """Which parts of an initialised security server are absent from a listing."""
    present = {"conf.d": frozenset(dirs), KEYCONF_PATH: frozenset(paths)}
    return [req for req in REQUIRED_XROAD_PATHS if req not in present[req]]


def check_node_is_secondary(where: str, node_ini: bytes | None) -> Problem | None:
    """Refuse to sync onto anything not positively known to be a secondary.

    Overwriting a primary's /etc/xroad with another's would destroy the only authoritative
    copy; node.ini is never synced, so it is the local node's own word on its role.
    """
    why = _node_problem(node_ini)
    return Problem(where, why) if why else None


def _node_problem(node_ini: bytes | None) -> str | None:
    if node_ini is None:
        return f"{NODE_INI_PATH} missing: cannot confirm this node is a secondary"
    try:
        entries = parse_ini(node_ini)
    except IniError as exc:
        return f"{NODE_INI_PATH} unreadable ({exc}): cannot confirm this node is a secondary"
    types = [e.value for e in entries if e.section == "node" and e.key == "type"]
    if not types:
        return f"{NODE_INI_PATH} has no [node] type: cannot confirm this node is a secondary"
    node_type = types[-1]
    if node_type.lower() in SECONDARY_TYPES:
        return None
    if node_type.lower() in PRIMARY_TYPES:
        return f"this node is {node_type!r}: refusing to overwrite a primary"
    return f"this node is {shown(node_type, 40)}: not a secondary, refusing to sync"


def softtoken_keys(keyconf: Element) -> Iterator[Element]:
    """The <key> elements of softToken devices (keyconf uses prefixed namespaces)."""
    for device in keyconf.iter():
        if local_name(device.tag) != "device" or child_text(device, "deviceType") != "softToken":
            continue
        for key in device:
            if local_name(key.tag) == "key":
                yield key


def softtoken_key_ids(keyconf: bytes) -> list[str]:
    """KeyIds whose private key lives in signer/softtoken/<keyId>.p12, in file order.

    Raises xml.etree.ElementTree.ParseError when keyconf is not acceptable XML.
    """
    ids: list[str] = []
    for key in softtoken_keys(parse_xml(keyconf)):
        key_id = child_text(key, "keyId")
        if key_id and key_id not in ids:
            ids.append(key_id)
    return ids


def softtoken_problems(key_ids: Iterable[str], paths: frozenset[str]) -> list[Problem]:
    """A keyconf naming a softToken key without its .p12 leaves the signer unable to sign."""
    problems: list[Problem] = []
    for key_id in key_ids:
        p12 = f"{key_id}.p12"
        if name_problem(p12) is not None:
            problems.append(Problem(KEYCONF_PATH, f"softToken key {shown(key_id)} is unsafe"))
        elif f"{SOFTTOKEN_DIR}/{p12}" not in paths:
            problems.append(
                Problem(KEYCONF_PATH, f"softToken key {key_id} has no {SOFTTOKEN_DIR}/{p12}")
            )
    return problems
