"""What the agent knows about X-Road's /etc/xroad, in one place.

Paths with a meaning, the node types node.ini may name, the softToken rule (every key keyconf.xml
lists must have its .p12), what each profile treats as node-local, and which program reads which
path (and how its process is known). Validation, planning, the sample-tree builder, the
daemon's pending restarts and the docs all take these facts from here,
so a change in X-Road is a change in one module.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from xml.etree.ElementTree import Element

from syncagent.errors import Problem
from syncagent.excludes import covers
from syncagent.names import name_problem, shown
from syncagent.xroad.formats import IniError, bound_text, parse_ini, parse_xml

KEYCONF_PATH = "signer/keyconf.xml"
SOFTTOKEN_DIR = "signer/softtoken"
NODE_INI_PATH = "conf.d/node.ini"
XROAD_PROPERTIES = "xroad.properties"
VERSION_PATH = "VERSION"  # the release the node runs (sidecar images copy it from the next)
VERSION_MAX_BYTES = 256  # read no more of a VERSION file than a version can need
IMAGE_VERSION_FILE = Path("/usr/share/xroad/config/VERSION")
XLB_VERSION_PACKAGE = "xroad-proxy"  # IG-XLB hosts: the package's version is the node's
# A primary before its first initialisation has neither: syncing it would wipe a secondary.
REQUIRED_XROAD_PATHS: tuple[str, ...] = ("conf.d", KEYCONF_PATH)
# IG-XLB's upgrade habit: `touch` this on a secondary and the sync stops.
DISABLE_FLAG = Path("/var/tmp/xroad/sync-disabled")

SECONDARY_TYPES = frozenset({"slave", "secondary"})
PRIMARY_TYPES = frozenset({"master", "primary"})
NODE_TYPES = tuple(sorted(SECONDARY_TYPES | PRIMARY_TYPES))
# X-Road 8 can take the node type from the environment instead of conf.d/node.ini.
NODE_TYPE_ENV = "XROAD_NODE_TYPE"
# From X-Road 8 the signer keeps its keys in the database: no keyconf.xml on the primary.
KEYCONF_IN_DATABASE_FROM = 8

# Node-local paths per profile: never read, changed or deleted (rsync-style patterns).
PROFILES: dict[str, tuple[str, ...]] = {
    "sidecar": (
        f"/{XROAD_PROPERTIES}",
        f"/{VERSION_PATH}",  # the node's own software, not configuration
        "/gpghome",
        f"/{NODE_INI_PATH}",
        "*.tmp",
        "/globalconf/",  # the local confclient downloads it
    ),
    "xlb": (
        f"/{XROAD_PROPERTIES}",
        f"/{VERSION_PATH}",
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

# X-Road 8 moved keys and most settings into the serverconf database and its secret store; of
# what stays in /etc/xroad, these files are written per node by the node's own packages.
NODE_LOCAL_FROM_8: tuple[tuple[str, str], ...] = (
    (
        "/conf.d/local-tls.yaml",
        "write_tls_config.sh puts this node's own host name and addresses in its TLS SANs",
    ),
    (
        "/services/local.properties",
        "_setup_memory.sh sizes the JVM heaps to this host's memory",
    ),
)
RELEASE_LINES = ("auto", "7", "8")


def node_local(profile: str, major: int | None) -> tuple[str, ...]:
    """A profile's node-local paths on a node of X-Road release ``major`` (None: unknown, 7's)."""
    extra = NODE_LOCAL_FROM_8 if major is not None and major >= 8 else ()
    if profile not in XROAD_PROFILES:
        return PROFILES[profile]
    return PROFILES[profile] + tuple(pattern for pattern, _ in extra)


# Node-local paths a fresh node still takes from the primary once, where it has none yet:
# the sidecar's rsync used to copy globalconf, so a new pod served at once; its own
# xroad-confclient owns the directory afterwards.
SEEDS: dict[str, tuple[str, ...]] = {"sidecar": ("/globalconf/",), "xlb": (), "none": ()}


@dataclass(frozen=True)
class Program:
    """An X-Road program of a secondary: what it reads when it starts, and how its process is
    known in the process table (the launcher execs java with the main class, or -jar)."""

    name: str  # the supervisord program and the systemd unit (without .service)
    reads: tuple[str, ...]  # rsync-style patterns, matched as reload rules match
    argv_marks: tuple[str, ...]  # an argv element equal to, or ending with, one of these


# Only the signer applies signer/keyconf.xml live; everything else is read at start. Main
# classes as the upstream launchers (/usr/share/xroad/bin/xroad-*) name them: ee.ria.xroad.*
# up to 7.6, org.niis.xroad.* later.
PROGRAMS: tuple[Program, ...] = (
    Program(
        "xroad-proxy",
        ("/conf.d/", "/services/", "/ssl/", "/db.properties", "/jetty/"),
        (".ProxyMain",),
    ),
    Program("xroad-signer", ("/conf.d/", "/services/", "/devices.ini"), (".SignerMain",)),
    Program(
        "xroad-confclient",
        ("/conf.d/", "/services/", "/configuration-anchor.xml"),
        (".ConfClientDaemonMain", ".ConfigurationClientMain"),
    ),
    Program(
        "xroad-proxy-ui-api",
        ("/conf.d/", "/services/", "/ssl/proxy-ui-api.*", "/db.properties"),
        ("/proxy-ui-api.jar",),
    ),
    Program("xroad-monitor", ("/conf.d/", "/services/"), (".MonitorMain",)),
    Program(
        "xroad-opmonitor",
        ("/conf.d/", "/services/", "/db.properties", "/ssl/opmonitor.*"),
        (".OpMonitorDaemonMain",),
    ),
)


def is_program(program: Program, argv: Iterable[str]) -> bool:
    """Whether a process's argv is this program's (the java its launcher exec'd)."""
    return any(a == m or a.endswith(m) for a in argv for m in program.argv_marks)


def programs_reading(paths: Iterable[str]) -> list[Program]:
    """The programs that must restart to pick up a change to ``paths``."""
    changed = list(paths)
    return [p for p in PROGRAMS if any(covers(p.reads, path) for path in changed)]


def is_launcher_sourced(rel: str) -> bool:
    """services/*.conf are sourced by bash in every X-Road launcher: a syntax error stops all."""
    parts = PurePosixPath(rel).parts
    return len(parts) == 2 and parts[0] == "services" and parts[1].endswith(".conf")


def major_version(version_file: bytes | None) -> int | None:
    """The major release in /etc/xroad/VERSION ("7.6.2", "8.0.0-1.ubuntu24.04"), if readable."""
    if version_file is None:
        return None
    head = version_file.decode("utf-8", "replace").strip().split(".", 1)[0]
    return int(head) if head.isdigit() else None


def default_version_source(profile: str) -> str | None:
    """Where this node's own X-Road version is read, by profile."""
    if profile == "sidecar":
        return str(IMAGE_VERSION_FILE)
    if profile == "xlb":
        return f"dpkg:{XLB_VERSION_PACKAGE}"
    return None


def release(version: str) -> tuple[int, ...] | None:
    """A version as X-Road numbers its releases: "7.8.0-1.ubuntu24.04" (a package) and
    "7.8.0" (VERSION) are the same release; a dpkg epoch ("1:7.8.0") is not part of it."""
    text = version.strip().split(":", 1)[-1].split("-", 1)[0].split("~", 1)[0]
    parts = text.split(".")
    if not text or not all(p.isdigit() for p in parts):
        return None
    numbers = [int(p) for p in parts]
    while len(numbers) > 1 and numbers[-1] == 0:
        numbers.pop()
    return tuple(numbers)


def same_release(a: str, b: str) -> bool | None:
    """Whether two versions name one release; None when either is not a release number."""
    ra, rb = release(a), release(b)
    return None if ra is None or rb is None else ra == rb


def required_paths(major: int | None) -> tuple[str, ...]:
    """What an initialised primary of that release holds (unknown release: the 7.x set)."""
    if major is not None and major >= KEYCONF_IN_DATABASE_FROM:
        return tuple(p for p in REQUIRED_XROAD_PATHS if p != KEYCONF_PATH)
    return REQUIRED_XROAD_PATHS


def missing_required(
    paths: Iterable[str], dirs: Iterable[str], major: int | None = None
) -> list[str]:
    """Which parts of an initialised security server are absent from a listing."""
    present = {"conf.d": frozenset(dirs), KEYCONF_PATH: frozenset(paths)}
    return [req for req in required_paths(major) if req not in present[req]]


def check_node_is_secondary(
    where: str, node_ini: bytes | None, declared: str | None = None
) -> Problem | None:
    """Refuse to sync onto anything not positively known to be a secondary.

    Overwriting a primary's /etc/xroad with another's would destroy the only authoritative
    copy; node.ini is never synced, so it is the local node's own word on its role. X-Road 8
    may declare the type in XROAD_NODE_TYPE (``declared``) instead: either source alone
    decides; when both exist they must agree, and a node that says two things is refused.
    """
    why = _node_problem(node_ini) if declared is None else _declared_problem(node_ini, declared)
    return Problem(where, why) if why else None


def _role(node_type: str) -> str | None:
    t = node_type.lower()
    return "secondary" if t in SECONDARY_TYPES else "primary" if t in PRIMARY_TYPES else None


def _ini_node_type(node_ini: bytes) -> str | None:
    types = [e.value for e in parse_ini(node_ini) if e.section == "node" and e.key == "type"]
    return types[-1] if types else None


def _declared_problem(node_ini: bytes | None, declared: str) -> str | None:
    role = _role(declared)
    if role is None:
        return f"{NODE_TYPE_ENV}={shown(declared, 40)} is not a node type: refusing to sync"
    if node_ini is not None:
        try:
            ini_type = _ini_node_type(node_ini)
        except IniError as exc:
            return f"{NODE_INI_PATH} unreadable ({exc}): cannot confirm this node is a secondary"
        if ini_type is not None and _role(ini_type) != role:
            return (
                f"{NODE_TYPE_ENV}={declared!r} but {NODE_INI_PATH} says {shown(ini_type, 40)}: "
                "the node's role is ambiguous, refusing to sync"
            )
    if role == "primary":
        return f"this node is {declared!r} ({NODE_TYPE_ENV}): refusing to overwrite a primary"
    return None


# What an operator does about a node that does not say what it is (X-Road 8 nodes have no
# node.ini: the sync.node_type setting, or the env X-Road 8 itself sets, says it).
NODE_TYPE_FIX = (
    f'set sync.node_type = "secondary" (or env {NODE_TYPE_ENV}=secondary), '
    f"or give this node its {NODE_INI_PATH} ([node] type = slave)"
)


def _node_problem(node_ini: bytes | None) -> str | None:
    if node_ini is None:
        return f"{NODE_INI_PATH} missing: cannot confirm this node is a secondary; {NODE_TYPE_FIX}"
    try:
        node_type = _ini_node_type(node_ini)
    except IniError as exc:
        return f"{NODE_INI_PATH} unreadable ({exc}): cannot confirm this node is a secondary"
    if node_type is None:
        return (
            f"{NODE_INI_PATH} has no [node] type: cannot confirm this node is a secondary; "
            f"{NODE_TYPE_FIX}"
        )
    if node_type.lower() in SECONDARY_TYPES:
        return None
    if node_type.lower() in PRIMARY_TYPES:
        return f"this node is {node_type!r}: refusing to overwrite a primary"
    return f"this node is {shown(node_type, 40)}: not a secondary, refusing to sync"


def softtoken_keys(keyconf: Element) -> Iterator[Element]:
    """The <key> elements of softToken devices, as the signer's JAXB binding finds them: the
    root's unqualified <device> children whose <deviceType> is exactly softToken."""
    for device in keyconf:
        if device.tag == "device" and bound_text(device, "deviceType") == "softToken":
            yield from (key for key in device if key.tag == "key")


def softtoken_key_ids(keyconf: bytes) -> list[str]:
    """KeyIds whose private key lives in signer/softtoken/<keyId>.p12, in file order.

    Raises xml.etree.ElementTree.ParseError when keyconf is not acceptable XML.
    """
    ids: list[str] = []
    for key in softtoken_keys(parse_xml(keyconf)):
        key_id = bound_text(key, "keyId")
        if key_id and key_id not in ids:
            ids.append(key_id)
    return ids


def softtoken_problems(key_ids: Iterable[str], paths: frozenset[str]) -> list[Problem]:
    """A keyId that would name a file outside signer/softtoken is refused: the agent builds
    paths from it."""
    return [
        Problem(KEYCONF_PATH, f"softToken key {shown(key_id)} is unsafe")
        for key_id in key_ids
        if name_problem(f"{key_id}.p12") is not None
    ]


def softtoken_keys_without_p12(key_ids: Iterable[str], paths: frozenset[str]) -> list[Problem]:
    """Keys keyconf.xml names whose .p12 is gone: a warning, never a refusal.

    Deleting a key in the admin UI removes its .p12 at once and rewrites keyconf.xml only at
    the signer's next module refresh (60 s by default); in that window the primary's own
    signer runs this very tree and marks the key unavailable, so a secondary must too.
    """
    return [
        Problem(KEYCONF_PATH, f"softToken key {key_id} has no {SOFTTOKEN_DIR}/{key_id}.p12")
        for key_id in key_ids
        if name_problem(f"{key_id}.p12") is None and f"{SOFTTOKEN_DIR}/{key_id}.p12" not in paths
    ]
