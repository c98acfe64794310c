"""Effective settings: defaults, then the TOML file, then ``SYNCAGENT_*`` env, then CLI flags.

Every key is declared once, as a field of its section's frozen dataclass (its type, default,
parser and help together); the env names, CLI flags, ``check-config`` output and the reference
table in docs/configuration.md (``syncagent check-config --markdown``) all derive from those
declarations, so they cannot drift apart. Consumers take the typed section they need
(``connect(settings.primary, ...)``); nothing outside this module looks a value up by name. Each
value remembers where it came from, so an error can say
"sync.interval (env SYNCAGENT_SYNC_INTERVAL): ...".
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import functools
import grp
import math
import os
import pwd
import re
import shlex
import tomllib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from syncagent import testhooks
from syncagent.errors import Problem, Reason
from syncagent.excludes import PathFilter, compile_pattern
from syncagent.xroad.paths import (
    DISABLE_FLAG,
    NODE_TYPE_ENV,
    NODE_TYPES,
    PROFILES,
    RELEASE_LINES,
    SEEDS,
    VERSION_MAX_BYTES,
    VERSION_PATH,
    XROAD_PROFILES,
    default_version_source,
    major_version,
    node_local,
)

HOST_KEY_POLICIES = ("strict", "accept-new", "insecure")
LOG_FORMATS = ("auto", "json", "console")
LOG_LEVELS = ("debug", "info", "warning", "error")
VERSION_SKEW_POLICIES = ("hold", "warn", "ignore")
PUBLISH_DIR_MODES = ("auto", "off")
DEFAULT_PUBLISH_DIR = Path("/var/lib/syncagent/publish")
CONFIG_ENV = "SYNCAGENT_CONFIG"
# Where the image and the systemd unit keep it: read when it exists and nothing names another,
# so an operator's `syncagent pause` on the node needs no --config.
DEFAULT_CONFIG = Path("/etc/syncagent/syncagent.toml")
PRIMARY_DNS_ENV = "XROAD_PRIMARY_DNS"  # what the sidecar image already sets
STATE_DIR_NAME = ".syncagent"


# SYNCAGENT_* names that are no key and no typo: the image's entrypoint reads these
# (docker/syncagent-entrypoint.sh, in the environment the daemon inherits), and the prefixes
# below belong to Kubernetes (service links of a Service named syncagent) and the test suite.
ENTRYPOINT_ENV = (
    "SYNCAGENT_BIN",
    "SYNCAGENT_EXEC",
    "SYNCAGENT_RUN_AS",
    "SYNCAGENT_FIRST_SYNC_BUDGET",
    "SYNCAGENT_FIRST_SYNC_RETRY",
)
FOREIGN_ENV_PREFIXES = (
    "SYNCAGENT_SERVICE_",
    "SYNCAGENT_PORT",
    "SYNCAGENT_TEST_",
    "SYNCAGENT_FAULT_",
    "SYNCAGENT_NSPAWN_",
    "SYNCAGENT_STANDIN_",
)


class SettingError(ValueError):
    pass


# ---- parsers: raw TOML / env / flag values to typed ones -------------------------------------


def _str(v: Any) -> str:
    if not isinstance(v, str):
        raise SettingError(f"expected a string, got {type(v).__name__}")
    return v


def _opt_str(v: Any) -> str | None:
    return None if v in (None, "") else _str(v)


def _path(v: Any) -> Path:
    return Path(_str(v))


def _opt_path(v: Any) -> Path | None:
    return None if v in (None, "") else _path(v)


def _number(v: Any) -> float:
    if isinstance(v, bool):
        raise SettingError("expected a number, got a boolean")
    n: float | None = None
    if isinstance(v, int | float):
        n = float(v)
    elif isinstance(v, str):
        with contextlib.suppress(ValueError):
            n = float(v.strip().removesuffix("s"))
    if n is None or not math.isfinite(n):  # 'nan' and 'inf' parse as floats
        raise SettingError(f"expected a number of seconds, got {v!r}")
    return n


def _positive(v: Any) -> float:
    n = _number(v)
    if n <= 0:
        raise SettingError(f"must be > 0, got {n:g}")
    return n


def _non_negative(v: Any) -> float:
    n = _number(v)
    if n < 0:
        raise SettingError(f"must be >= 0, got {n:g}")
    return n


def _opt_positive(v: Any) -> float | None:
    return None if v in (None, "", 0, "0") else _positive(v)


def _count(v: Any) -> int:
    if isinstance(v, bool):
        raise SettingError("expected a whole number, got a boolean")
    if isinstance(v, int):
        n = v
    elif isinstance(v, str) and v.strip().isdigit():
        n = int(v.strip())
    else:
        raise SettingError(f"expected a whole number, got {v!r}")
    if n < 0:
        raise SettingError(f"must be >= 0, got {n}")
    return n


def _port(v: Any) -> int:
    n = _count(v)
    if not 1 <= n <= 65535:
        raise SettingError(f"port must be 1..65535, got {n}")
    return n


_SIZE = re.compile(r"^\s*(\d+)\s*([KMG]i?B?|B)?\s*$", re.IGNORECASE)
_UNITS = {"": 1, "B": 1, "K": 1024, "M": 1024**2, "G": 1024**3}


def _size(v: Any) -> int:
    if isinstance(v, int) and not isinstance(v, bool):
        if v <= 0:
            raise SettingError(f"must be > 0, got {v}")
        return v
    m = _SIZE.match(v) if isinstance(v, str) else None
    if not m:
        raise SettingError(f"expected a size in bytes like 67108864 or '64MiB', got {v!r}")
    n = int(m.group(1)) * _UNITS[(m.group(2) or "")[:1].upper()]
    if n <= 0:
        raise SettingError(f"must be > 0, got {v!r}")
    return n


def _list(v: Any) -> tuple[str, ...]:
    """TOML lists as they are; env and CLI give one comma-separated string."""
    if isinstance(v, str):
        return tuple(s.strip() for s in v.split(",") if s.strip())
    if isinstance(v, list | tuple) and all(isinstance(s, str) for s in v):
        return tuple(v)
    raise SettingError(f"expected a list of strings, got {v!r}")


def _patterns(v: Any) -> tuple[str, ...]:
    items = _list(v)
    for p in items:
        try:
            compile_pattern(p)
        except ValueError as e:
            raise SettingError(str(e)) from e
    return items


def _argv(v: Any) -> tuple[str, ...] | None:
    """A command is an argv list in TOML; env and CLI give a shell-quoted string."""
    if v in (None, "", []):
        return None
    if isinstance(v, str):
        try:
            return tuple(shlex.split(v))
        except ValueError as e:  # unbalanced quotes: shlex's own words
            raise SettingError(f"not a valid shell-quoted command ({e}): {v!r}") from None
    if isinstance(v, list) and v and all(isinstance(s, str) for s in v):
        return tuple(v)
    raise SettingError(f"expected a command as a list of strings, got {v!r}")


def _opt_node_type(v: Any) -> str | None:
    if v in (None, ""):
        return None
    s = _str(v).strip()
    if s.lower() not in NODE_TYPES:
        raise SettingError(f"must be one of {', '.join(NODE_TYPES)}; got {s!r}")
    return s


def _seeds(v: Any) -> tuple[str, ...]:
    items = _list(v)
    for p in items:
        if not p.startswith("/") or any(c in p for c in "*?["):
            raise SettingError(f"a seed is an anchored path like /globalconf/, got {p!r}")
    return items


def _version_source(v: Any) -> str | None:
    s = _str(v).strip()
    if s in ("", "none"):
        return None
    if s.startswith("dpkg:"):
        if not s.removeprefix("dpkg:"):
            raise SettingError("dpkg: needs a package name, e.g. dpkg:xroad-proxy")
        return s
    if not s.startswith("/"):
        raise SettingError(f"expected an absolute path, dpkg:<package> or none; got {s!r}")
    return s


def _publish_dir(v: Any) -> str:
    s = _str(v).strip()
    if s in PUBLISH_DIR_MODES:
        return s
    if not s.startswith("/"):
        raise SettingError(f"expected auto, off or an absolute path; got {s!r}")
    return s


def _generations(v: Any) -> int:
    n = _count(v)
    if n < 1:
        raise SettingError("must be >= 1 (the live generation is always kept)")
    return n


def _choice(options: tuple[str, ...]) -> Callable[[Any], str]:
    def parse(v: Any) -> str:
        s = _str(v)
        if s not in options:
            raise SettingError(f"must be one of {', '.join(options)}; got {s!r}")
        return s

    return parse


def _account_id(v: Any, lookup: Callable[[str], int], what: str) -> int | None:
    if v in (None, ""):
        return None
    s = str(v)
    if s.isdigit():
        return int(s)
    try:
        return lookup(s)
    except KeyError:
        raise SettingError(f"no such {what} {s!r}") from None


def _user(v: Any) -> int | None:
    return _account_id(v, lambda name: pwd.getpwnam(name).pw_uid, "user")


def _group(v: Any) -> int | None:
    return _account_id(v, lambda name: grp.getgrnam(name).gr_gid, "group")


def _listen(v: Any) -> str:
    s = _str(v)
    host, sep, port = s.rpartition(":")
    if not sep or not host:
        raise SettingError(f"expected HOST:PORT, got {s!r}")
    _port(port)
    return s


# ---- declarations ----------------------------------------------------------------------------


def setting(default: Any, parse: Callable[[Any], Any], help: str, *, shown: str = "") -> Any:
    """Declare one key: its default, the parser of raw values and its one-line meaning.

    ``shown`` replaces the default in the reference when the default is derived.
    """
    return field(metadata={"default": default, "parse": parse, "help": help, "shown": shown})


@dataclass(frozen=True)
class PrimarySettings:
    """Where the primary is and how to reach it."""

    host: str = setting(None, _opt_str, f"Primary's DNS name or address (else {PRIMARY_DNS_ENV}).")
    port: int = setting(22, _port, "SSH port of the primary.")
    user: str = setting("xroad-slave", _str, "SSH user: a read-only SFTP account is enough.")
    identity_file: Path = setting(
        Path("/etc/.ssh/id_rsa"), _path, "Private key; re-read on every connect."
    )
    known_hosts: Path | None = setting(
        None, _opt_path, "known_hosts file (plain or @cert-authority lines)."
    )
    host_key_policy: str = setting(
        "strict",
        _choice(HOST_KEY_POLICIES),
        "strict: known_hosts must match; accept-new: pin the first key; insecure: no check.",
    )
    remote_root: str = setting("/etc/xroad", _str, "Directory to mirror on the primary.")
    connect_timeout: float = setting(5.0, _positive, "Seconds for TCP + SSH handshake + auth.")
    io_timeout: float = setting(30.0, _positive, "Seconds any one SFTP request may take.")
    publish_dir: str = setting(
        "auto",
        _publish_dir,
        f"Where `syncagent publish` writes on the primary: auto ({DEFAULT_PUBLISH_DIR} when a "
        "HEAD is there, else the walk), a path, or off (always the walk).",
    )

    @property
    def published_root(self) -> str | None:
        """The remote publish directory to look for a HEAD in; None: walk only."""
        if self.publish_dir == "off":
            return None
        return str(DEFAULT_PUBLISH_DIR) if self.publish_dir == "auto" else self.publish_dir


@dataclass(frozen=True)
class SyncSettings:
    """What is synced where, how often, and what a tree must satisfy."""

    target: Path = setting(Path("/etc/xroad"), _path, "Local directory that receives the tree.")
    state_dir: Path = setting(
        None,
        _opt_path,
        "Journal, staging, generations; must be on the target's filesystem.",
        shown=f"<target>/{STATE_DIR_NAME}",
    )
    profile: str = setting(
        "sidecar",
        _choice(tuple(PROFILES)),
        "Node-local excludes and X-Road checks: sidecar, xlb or none.",
    )
    release: str = setting(
        "auto",
        _choice(RELEASE_LINES),
        "X-Road release line, for what is node-local: auto reads this node's own release "
        "(sync.version_source, else <target>/VERSION), which the version-skew hold keeps "
        "equal to the primary's; 8 keeps X-Road 8's per-node files.",
    )
    exclude: tuple[str, ...] = setting((), _patterns, "Extra rsync-style exclude patterns.")
    include: tuple[str, ...] = setting((), _patterns, "Patterns taken back from the excludes.")
    seed: tuple[str, ...] = setting(
        None,
        _seeds,
        "Node-local paths copied from the primary only where the local path is absent, "
        "never overwritten or deleted afterwards.",
        shown="sidecar: [/globalconf/]; xlb, none: []",
    )
    interval: float = setting(60.0, _positive, "Seconds between syncs (daemon).")
    poll: float = setting(
        2.0,
        _positive,
        "Seconds between stats of the primary's HEAD while following it (daemon; a sync only "
        "when it names something new).",
    )
    jitter: float = setting(0.1, _non_negative, "Random extra delay, as a fraction of interval.")
    settle: float = setting(2.0, _non_negative, "Files younger than this wait a round.")
    keep_generations: int = setting(3, _count, "Replaced generations kept for rollback.")
    max_files: int = setting(20000, _count, "Refuse a tree with more entries.")
    max_total_bytes: int = setting(256 * 1024**2, _size, "Refuse a tree larger than this.")
    max_file_bytes: int = setting(64 * 1024**2, _size, "Refuse any one file larger than this.")
    max_depth: int = setting(32, _count, "Refuse a tree nested deeper than this.")
    owner: int | None = setting(None, _user, "Owner of written files (default: owner of target).")
    group: int | None = setting(None, _group, "Group of written files (default: group of target).")
    commit_last: tuple[str, ...] = setting(
        ("signer/keyconf.xml",), _list, "Files renamed into place after every other file."
    )
    validate_command: tuple[str, ...] | None = setting(
        None, _argv, "Extra check run on the staged tree; non-zero rejects the sync."
    )
    validate_timeout: float = setting(60.0, _positive, "Seconds validate_command may run.")
    max_staleness: float | None = setting(
        None,
        _opt_positive,
        "Not ready when the last success is older than this (unset: stay ready).",
    )
    timeout: float = setting(300.0, _positive, "Seconds one whole sync may take.")
    verify_interval: float = setting(
        3600.0,
        _non_negative,
        "Compare every synced file's content with the primary's, and re-hash its live copy, "
        "at least this often (a rotating share per sync; 0: every file, every sync).",
    )
    version_source: str | None = setting(
        None,
        _version_source,
        "Where this node's own X-Road version is read: a file, dpkg:<package>, or none.",
        shown="sidecar: /usr/share/xroad/config/VERSION; xlb: dpkg:xroad-proxy; none: none",
    )
    version_skew: str = setting(
        "hold",
        _choice(VERSION_SKEW_POLICIES),
        "When the primary's VERSION names another release: hold (apply nothing), warn, ignore.",
    )
    node_type: str | None = setting(
        None,
        _opt_node_type,
        f"This node's type, as X-Road 8's {NODE_TYPE_ENV} gives it (else {NODE_TYPE_ENV}); "
        "must agree with conf.d/node.ini when both exist.",
    )
    disable_flag: Path = setting(
        DISABLE_FLAG,
        _path,
        "A file whose presence pauses syncing, as `syncagent pause` does (IG-XLB's habit).",
    )

    @property
    def xroad_checks(self) -> bool:
        return self.profile in XROAD_PROFILES

    def path_filter(self, seeding: tuple[str, ...] = ()) -> PathFilter:
        """The profile's node-local paths, the extra excludes and includes (plus the seeds
        this sync copies), and the state dir (when it lives inside the target) protected
        from every include."""
        protected = (f"/{rel}/",) if (rel := self.state_relpath()) else ()
        return PathFilter.build(
            node_local(self.profile, self.release_major()),
            self.exclude,
            (*self.include, *seeding),
            protected,
        )

    def release_major(self) -> int | None:
        """The X-Road major release this node runs, as ``sync.release`` says or this node's own
        files tell. Local on purpose: a rollback or the drift watch must know what is
        node-local without reaching the primary."""
        if self.release != "auto":
            return int(self.release)
        return _local_major(self.version_source, self.target)

    def state_relpath(self) -> str | None:
        """The state dir relative to target when it lives inside it (it must then be excluded)."""
        try:
            rel = self.state_dir.resolve().relative_to(self.target.resolve())
        except ValueError:
            return None
        return rel.as_posix()


PUBLISH_LISTEN_OFF = "off"


def _publish_listen(v: Any) -> str:
    """HOST:PORT as ``http.listen`` takes it, or off: the shipped systemd unit gives the
    publisher no network at all, where binding a port could only fail."""
    s = _str(v).strip()
    return s if s == PUBLISH_LISTEN_OFF else _listen(s)


@dataclass(frozen=True)
class PublishSettings:
    """`syncagent publish` on the primary: what it publishes where, and how much it keeps."""

    source: Path = setting(Path("/etc/xroad"), _path, "Tree the publisher publishes (primary).")
    dir: Path = setting(
        DEFAULT_PUBLISH_DIR,
        _path,
        "Publish directory: HEAD, manifests, objects; readable by the SFTP account, "
        "outside source.",
    )
    keep: int = setting(5, _generations, "Generations whose objects the publisher keeps.")
    settle: float = setting(
        2.0, _non_negative, "Seconds of quiet in source before a generation is built."
    )
    listen: str = setting(
        "127.0.0.1:9102",
        _publish_listen,
        "HOST:PORT for the publisher's /healthz /metrics, or off.",
    )


@dataclass(frozen=True)
class HttpSettings:
    """The daemon's one read-only HTTP port."""

    listen: str = setting(
        "127.0.0.1:9101", _listen, "HOST:PORT for /healthz /readyz /metrics /status."
    )
    upstream_health_url: str | None = setting(
        None,
        _opt_str,
        "Also require this URL to answer 2xx for /readyz (e.g. http://127.0.0.1:5588/).",
    )
    upstream_timeout: float = setting(2.0, _positive, "Seconds for the upstream health check.")

    @property
    def port(self) -> int:
        return int(self.listen.rpartition(":")[2])


@dataclass(frozen=True)
class LogSettings:
    format: str = setting(
        "auto", _choice(LOG_FORMATS), "json, console, or auto (JSON unless stderr is a TTY)."
    )
    level: str = setting("info", _choice(LOG_LEVELS), "Log level.")


@dataclass(frozen=True)
class ReloadRule:
    name: str
    paths: tuple[str, ...]
    command: tuple[str, ...]
    timeout: float = 60.0


@dataclass(frozen=True)
class ReloadSettings:
    """Commands run after an apply; ``rules`` come from ``[[reload]]`` tables only."""

    spread: float = setting(0.0, _non_negative, "Max per-host delay before reload commands run.")
    rules: tuple[ReloadRule, ...] = ()


SECTIONS: dict[str, type[Any]] = {
    "primary": PrimarySettings,
    "sync": SyncSettings,
    "publish": PublishSettings,
    "http": HttpSettings,
    "log": LogSettings,
    "reload": ReloadSettings,
}


@dataclass(frozen=True)
class Field:
    """One declared key, as the loader, the CLI and the reference see it."""

    section: str
    key: str
    parse: Callable[[Any], Any]
    default: Any
    help: str
    shown: str = ""

    @property
    def name(self) -> str:
        return f"{self.section}.{self.key}"

    @property
    def env(self) -> str:
        return f"SYNCAGENT_{self.section}_{self.key}".upper()

    @property
    def flag(self) -> str:
        return f"--{self.section}-{self.key}".replace("_", "-")


FIELDS: tuple[Field, ...] = tuple(
    Field(
        section,
        f.name,
        f.metadata["parse"],
        f.metadata["default"],
        f.metadata["help"],
        f.metadata["shown"],
    )
    for section, cls in SECTIONS.items()
    for f in dataclasses.fields(cls)
    if "parse" in f.metadata
)
FIELDS_BY_NAME = {f.name: f for f in FIELDS}


@dataclass(frozen=True)
class Settings:
    """Typed view of the effective values, one object per section; ``sources`` says where
    each came from."""

    primary: PrimarySettings
    sync: SyncSettings
    publish: PublishSettings
    http: HttpSettings
    log: LogSettings
    reload: ReloadSettings
    sources: Mapping[str, str]
    config_file: Path | None = None

    def describe(self) -> list[tuple[str, str, str]]:
        """(key, value, source) rows for check-config; no value here is secret."""
        rows = [
            (f.name, _show(getattr(getattr(self, f.section), f.key)), self.sources[f.name])
            for f in FIELDS
        ]
        for rule in self.reload.rules:
            rows.append(
                (f"reload.{rule.name}", f"{list(rule.paths)} -> {list(rule.command)}", "file")
            )
        return rows


def _show(v: Any) -> str:
    if isinstance(v, tuple):
        return ", ".join(v) if v else "(none)"
    return "(unset)" if v is None else str(v)


# ---- loading ---------------------------------------------------------------------------------


@dataclass
class _Loader:
    problems: list[Problem] = field(default_factory=list)

    def problem(self, where: str, message: str) -> None:
        self.problems.append(Problem(where, message, Reason.CONFIG))


def load(
    config_file: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    *,
    needs_primary: bool = True,
    default_config: Path = DEFAULT_CONFIG,
) -> tuple[Settings | None, list[Problem]]:
    """Build the effective settings, or return every problem found (never just the first).

    ``overrides`` are CLI flag values keyed by the declared name ("sync.interval").
    ``needs_primary`` False: the command connects to nothing (the publisher on the primary,
    the control commands that only need the target and state dir).
    ``default_config``: read when it exists and neither ``config_file`` nor env names a file.
    """
    env = os.environ if env is None else env
    overrides = overrides or {}
    loader = _Loader()
    raw: dict[str, tuple[Any, str]] = {}
    reload_rules: tuple[ReloadRule, ...] = ()

    if config_file:
        path: Path | None = Path(config_file)
    elif env.get(CONFIG_ENV):
        path = Path(env[CONFIG_ENV])
    else:
        path = default_config if default_config.is_file() else None
    if path is not None:
        doc = _read_toml(path, loader)
        if doc is None:  # alone: what it would have set would only be reported missing
            return None, loader.problems
        raw.update(_flatten(doc, str(path), loader))
        reload_rules = _reload_rules(doc.get("reload"), str(path), loader)

    if env.get(PRIMARY_DNS_ENV) and "primary.host" not in raw:
        raw["primary.host"] = (env[PRIMARY_DNS_ENV], f"env {PRIMARY_DNS_ENV}")
    if env.get(NODE_TYPE_ENV) and "sync.node_type" not in raw:
        raw["sync.node_type"] = (env[NODE_TYPE_ENV], f"env {NODE_TYPE_ENV}")
    for f in FIELDS:
        if f.env in env:
            raw[f.name] = (env[f.env], f"env {f.env}")
    _unknown_env(env, loader)
    for name, value in overrides.items():
        if value is not None:
            raw[name] = (value, f"flag {FIELDS_BY_NAME[name].flag}")

    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    for f in FIELDS:
        value, source = raw.get(f.name, (f.default, "default"))
        try:
            values[f.name] = f.parse(value) if source != "default" else value
        except SettingError as e:
            loader.problem(f"{f.name} ({source})", str(e))
            values[f.name] = f.default
        sources[f.name] = source

    _cross_checks(values, sources, loader, needs_primary)
    if loader.problems:
        return None, loader.problems
    return _build(values, sources, reload_rules, path), []


def did_you_mean(name: str, known: Iterable[str]) -> str:
    """`` (did you mean X?)`` for the nearest known name, or nothing when none is near."""
    close = difflib.get_close_matches(name, list(known), n=1, cutoff=0.6)
    return f" (did you mean {close[0]}?)" if close else ""


def _unknown_env(env: Mapping[str, str], loader: _Loader) -> None:
    """A misspelt SYNCAGENT_* name would be ignored and its default silently used."""
    known = {f.env for f in FIELDS} | {CONFIG_ENV, *ENTRYPOINT_ENV}
    known |= {name for name, _ in testhooks.DOCUMENTED}
    for name in sorted(env):
        if (
            name.startswith("SYNCAGENT_")
            and name not in known
            and not name.startswith(FOREIGN_ENV_PREFIXES)
        ):
            hint = did_you_mean(name, (f.env for f in FIELDS))
            loader.problem(f"env {name}", f"not a setting{hint}")


def _build(
    values: Mapping[str, Any],
    sources: Mapping[str, str],
    reload_rules: tuple[ReloadRule, ...],
    path: Path | None,
) -> Settings:
    sections = {
        name: cls(
            **{
                f.name: values[f"{name}.{f.name}"]
                for f in dataclasses.fields(cls)
                if "parse" in f.metadata
            }
        )
        for name, cls in SECTIONS.items()
    }
    sections["reload"] = dataclasses.replace(sections["reload"], rules=reload_rules)
    return Settings(**sections, sources=dict(sources), config_file=path)


def _read_toml(path: Path, loader: _Loader) -> dict[str, Any] | None:
    try:
        with path.open("rb") as fh:
            return tomllib.load(fh)
    except OSError as e:
        loader.problem(f"config file {path}", e.strerror or str(e))
    except tomllib.TOMLDecodeError as e:
        loader.problem(f"config file {path}", f"not valid TOML: {e}")
    return None


def _flatten(doc: dict[str, Any], source: str, loader: _Loader) -> dict[str, tuple[Any, str]]:
    out: dict[str, tuple[Any, str]] = {}
    for section, body in doc.items():
        if section == "reload" and isinstance(body, list):
            continue
        if not isinstance(body, dict):
            loader.problem(f"{section} ({source})", "expected a [section] table")
            continue
        for key, value in body.items():
            name = f"{section}.{key}"
            if name not in FIELDS_BY_NAME:
                loader.problem(
                    f"{name} ({source})", f"unknown key{did_you_mean(name, FIELDS_BY_NAME)}"
                )
                continue
            out[name] = (value, source)
    return out


def _reload_rules(body: Any, source: str, loader: _Loader) -> tuple[ReloadRule, ...]:
    if body is None or isinstance(body, dict):
        return ()
    rules: list[ReloadRule] = []
    for i, entry in enumerate(body):
        where = f"reload[{i}] ({source})"
        if not isinstance(entry, dict):
            loader.problem(where, "expected a [[reload]] table")
            continue
        unknown = set(entry) - {"name", "paths", "command", "timeout"}
        if unknown:
            loader.problem(where, f"unknown key(s): {', '.join(sorted(unknown))}")
        try:
            paths = _patterns(entry.get("paths"))
            command = _argv(entry.get("command"))
            timeout = _positive(entry.get("timeout", 60))
        except SettingError as e:
            loader.problem(where, str(e))
            continue
        if not paths or command is None:
            loader.problem(where, "needs non-empty 'paths' and 'command'")
            continue
        rules.append(ReloadRule(str(entry.get("name") or f"rule{i}"), paths, command, timeout))
    return tuple(rules)


def _cross_checks(
    values: dict[str, Any], sources: dict[str, str], loader: _Loader, needs_primary: bool = True
) -> None:
    if needs_primary:
        _primary_checks(values, sources, loader)
    for name in ("publish.source", "publish.dir"):
        if not str(values[name]).startswith("/"):
            loader.problem(f"{name} ({sources[name]})", "must be an absolute path")
    source, pdir = Path(values["publish.source"]), Path(values["publish.dir"])
    if pdir == source or source in pdir.parents:
        loader.problem(
            f"publish.dir ({sources['publish.dir']})",
            f"must not lie inside publish.source {source} (it would publish itself)",
        )
    _sync_checks(values, sources, loader)


def _primary_checks(values: dict[str, Any], sources: dict[str, str], loader: _Loader) -> None:
    if not values["primary.host"]:
        loader.problem(
            "primary.host",
            "required: set it in the config file, "
            f"SYNCAGENT_PRIMARY_HOST, {PRIMARY_DNS_ENV} or --primary-host",
        )
    if values["primary.host_key_policy"] == "strict" and not values["primary.known_hosts"]:
        loader.problem(
            f"primary.known_hosts ({sources['primary.known_hosts']})",
            "required when host_key_policy is strict (or choose accept-new)",
        )


def _sync_checks(values: dict[str, Any], sources: dict[str, str], loader: _Loader) -> None:
    for name in ("sync.target", "primary.remote_root", "sync.disable_flag"):
        if not str(values[name]).startswith("/"):
            loader.problem(f"{name} ({sources[name]})", "must be an absolute path")
    if sources["sync.seed"] == "default":
        values["sync.seed"] = SEEDS[values["sync.profile"]]
        sources["sync.seed"] = f"default (profile {values['sync.profile']})"
    if sources["sync.version_source"] == "default":
        values["sync.version_source"] = default_version_source(values["sync.profile"])
        sources["sync.version_source"] = f"default (profile {values['sync.profile']})"
    if values["sync.state_dir"] is None:
        values["sync.state_dir"] = Path(values["sync.target"]) / STATE_DIR_NAME
        sources["sync.state_dir"] = f"default (<target>/{STATE_DIR_NAME})"
    elif not str(values["sync.state_dir"]).startswith("/"):
        loader.problem(f"sync.state_dir ({sources['sync.state_dir']})", "must be an absolute path")


def file_problems(settings: Settings) -> list[Problem]:
    """Checks that touch the filesystem; separate so `load` stays pure for tests."""
    problems: list[Problem] = []
    sources = settings.sources

    def need(name: str, value: Path | None, kind: str) -> None:
        if value is None:
            return
        ok = value.is_dir() if kind == "dir" else value.is_file()
        if not ok:
            problems.append(
                Problem(
                    f"{name} ({sources[name]})", f"{value} is not an existing {kind}", Reason.CONFIG
                )
            )
        elif kind == "file" and not os.access(value, os.R_OK):
            problems.append(
                Problem(f"{name} ({sources[name]})", f"{value} is not readable", Reason.CONFIG)
            )

    need("primary.identity_file", settings.primary.identity_file, "file")
    if settings.primary.host_key_policy == "strict":
        need("primary.known_hosts", settings.primary.known_hosts, "file")
    need("sync.target", settings.sync.target, "dir")
    return problems


@functools.cache
def _local_major(version_source: str | None, target: Path) -> int | None:
    """This node's major release (read once per process: a release changes with a restart)."""
    source = version_source if version_source and not version_source.startswith("dpkg:") else None
    for path in (Path(source) if source else None, target / VERSION_PATH):
        if path is None:
            continue
        try:
            major = major_version(path.read_bytes()[:VERSION_MAX_BYTES])
        except OSError:
            continue
        if major is not None:
            return major
    return None


# ---- the reference (docs/configuration.md) -------------------------------------------------------


def _toml(v: Any) -> str:
    if v is None:
        return "(unset)"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int) and v >= 1024**2 and v % 1024**2 == 0:
        return f"{v // 1024**2} MiB"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    if isinstance(v, str | Path):
        return f'"{v}"'
    if isinstance(v, tuple):
        return "[" + ", ".join(_toml(s) for s in v) + "]"
    return str(v)


def reference_markdown() -> str:
    """The configuration reference, as docs/configuration.md shows it: every key, default, env,
    flag."""
    lines = [
        "| key | default | env / flag | meaning |",
        "|---|---|---|---|",
    ]
    for f in FIELDS:
        default = f.shown or _toml(f.default)
        lines.append(f"| `{f.name}` | `{default}` | `{f.env}`<br>`{f.flag}` | {f.help} |")
    lines += [
        "",
        "`[[reload]]` rules (`name`, `paths`, `command`, `timeout`) come from the TOML file only.",
        "",
        "Environment variables that are not keys:",
        "",
        "| variable | meaning |",
        "|---|---|",
        f"| `{CONFIG_ENV}` | The TOML file when `--config` is not given (else `{DEFAULT_CONFIG}` "
        "when it exists). |",
        f"| `{PRIMARY_DNS_ENV}` | `primary.host` when nothing more specific sets it "
        "(the sidecar image sets it). |",
        f"| `{NODE_TYPE_ENV}` | `sync.node_type` when nothing more specific sets it (X-Road 8). |",
        "| `NOTIFY_SOCKET`, `WATCHDOG_USEC`, `WATCHDOG_PID` | Set by systemd: readiness and "
        "watchdog pings (`Type=notify`, `WatchdogSec=`). |",
        f"| {', '.join(f'`{n}`' for n in ENTRYPOINT_ENV)} | Read by the image's entrypoint "
        "(docker/README.md). |",
        "| any other `SYNCAGENT_*` | A configuration error naming the nearest key (a typo would "
        "silently leave the default), except names starting with "
        f"{', '.join(f'`{p}`' for p in FOREIGN_ENV_PREFIXES)} (Kubernetes service links, "
        "the test suite). |",
    ]
    lines += [f"| `{name}` | Test hook: {meaning} |" for name, meaning in testhooks.DOCUMENTED]
    return "\n".join(lines) + "\n"
