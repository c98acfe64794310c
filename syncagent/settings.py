"""Effective settings: defaults, then the TOML file, then ``SYNCAGENT_*`` env, then CLI flags.

Every key is declared once in ``FIELDS``; the env names, CLI flags, ``check-config`` output and
README table all derive from that list, so they cannot drift apart. Each value remembers where it
came from, so an error can say "sync.interval (env SYNCAGENT_SYNC_INTERVAL): ...".
"""

from __future__ import annotations

import contextlib
import grp
import math
import os
import pwd
import re
import shlex
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import Problem, Reason
from .excludes import PROFILES, XROAD_PROFILES, compile_pattern

HOST_KEY_POLICIES = ("strict", "accept-new", "insecure")
LOG_FORMATS = ("auto", "json", "console")


class SettingError(ValueError):
    pass


def _str(v: Any) -> str:
    if not isinstance(v, str):
        raise SettingError(f"expected a string, got {type(v).__name__}")
    return v


def _opt_str(v: Any) -> str | None:
    return None if v in (None, "") else _str(v)


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


@dataclass(frozen=True)
class Field:
    section: str
    key: str
    parse: Callable[[Any], Any]
    default: Any
    help: str

    @property
    def name(self) -> str:
        return f"{self.section}.{self.key}"

    @property
    def env(self) -> str:
        return f"SYNCAGENT_{self.section}_{self.key}".upper()

    @property
    def flag(self) -> str:
        return f"--{self.section}-{self.key}".replace("_", "-")


FIELDS: tuple[Field, ...] = (
    Field(
        "primary", "host", _opt_str, None, "Primary's DNS name or address (else XROAD_PRIMARY_DNS)."
    ),
    Field("primary", "port", _port, 22, "SSH port of the primary."),
    Field("primary", "user", _str, "xroad-slave", "SSH user: a read-only SFTP account is enough."),
    Field(
        "primary",
        "identity_file",
        _str,
        "/etc/.ssh/id_rsa",
        "Private key; re-read on every connect.",
    ),
    Field(
        "primary",
        "known_hosts",
        _opt_str,
        None,
        "known_hosts file (plain or @cert-authority lines).",
    ),
    Field(
        "primary",
        "host_key_policy",
        _choice(HOST_KEY_POLICIES),
        "strict",
        "strict: known_hosts must match; accept-new: pin the first key; insecure: no check.",
    ),
    Field("primary", "remote_root", _str, "/etc/xroad", "Directory to mirror on the primary."),
    Field("primary", "connect_timeout", _positive, 5.0, "Seconds for TCP + SSH handshake + auth."),
    Field("primary", "io_timeout", _positive, 30.0, "Seconds any one SFTP request may take."),
    Field("sync", "target", _str, "/etc/xroad", "Local directory that receives the tree."),
    Field(
        "sync",
        "state_dir",
        _opt_str,
        None,
        "Journal, staging, generations (default <target>/.syncagent).",
    ),
    Field(
        "sync",
        "profile",
        _choice(tuple(PROFILES)),
        "sidecar",
        "Node-local excludes and X-Road checks: sidecar, xlb or none.",
    ),
    Field("sync", "exclude", _patterns, (), "Extra rsync-style exclude patterns."),
    Field("sync", "include", _patterns, (), "Patterns taken back from the excludes."),
    Field("sync", "interval", _positive, 60.0, "Seconds between syncs (daemon)."),
    Field("sync", "jitter", _non_negative, 0.1, "Random extra delay, as a fraction of interval."),
    Field("sync", "settle", _non_negative, 2.0, "Files younger than this wait a round."),
    Field("sync", "keep_generations", _count, 3, "Replaced generations kept for rollback."),
    Field("sync", "max_files", _count, 20000, "Refuse a tree with more entries."),
    Field("sync", "max_total_bytes", _size, 256 * 1024**2, "Refuse a tree larger than this."),
    Field("sync", "max_file_bytes", _size, 64 * 1024**2, "Refuse any one file larger than this."),
    Field("sync", "max_depth", _count, 32, "Refuse a tree nested deeper than this."),
    Field("sync", "owner", _user, None, "Owner of written files (default: owner of target)."),
    Field("sync", "group", _group, None, "Group of written files (default: group of target)."),
    Field(
        "sync",
        "commit_last",
        _list,
        ("signer/keyconf.xml",),
        "Files renamed into place after every other file.",
    ),
    Field(
        "sync",
        "validate_command",
        _argv,
        None,
        "Extra check run on the staged tree; non-zero rejects the sync.",
    ),
    Field("sync", "validate_timeout", _positive, 60.0, "Seconds validate_command may run."),
    Field(
        "sync",
        "max_staleness",
        _opt_positive,
        None,
        "Not ready when the last success is older than this (unset: stay ready).",
    ),
    Field("sync", "timeout", _positive, 300.0, "Seconds one whole sync may take."),
    Field(
        "http",
        "listen",
        _listen,
        "127.0.0.1:9101",
        "HOST:PORT for /healthz /readyz /metrics /status.",
    ),
    Field(
        "http",
        "upstream_health_url",
        _opt_str,
        None,
        "Also require this URL to answer 2xx for /readyz (e.g. http://127.0.0.1:5588/).",
    ),
    Field("http", "upstream_timeout", _positive, 2.0, "Seconds for the upstream health check."),
    Field(
        "log", "format", _choice(LOG_FORMATS), "auto", "json, console, or auto (json unless a TTY)."
    ),
    Field("log", "level", _choice(("debug", "info", "warning", "error")), "info", "Log level."),
    Field("reload", "spread", _non_negative, 0.0, "Max per-host delay before reload commands run."),
)
FIELDS_BY_NAME = {f.name: f for f in FIELDS}


@dataclass(frozen=True)
class ReloadRule:
    name: str
    paths: tuple[str, ...]
    command: tuple[str, ...]
    timeout: float = 60.0


@dataclass(frozen=True)
class Settings:
    """Typed view of the effective values; ``sources`` says where each came from."""

    values: Mapping[str, Any]
    sources: Mapping[str, str]
    reload_rules: tuple[ReloadRule, ...] = ()
    config_file: Path | None = None

    def __getitem__(self, name: str) -> Any:
        return self.values[name]

    @property
    def target(self) -> Path:
        return Path(self.values["sync.target"])

    @property
    def state_dir(self) -> Path:
        return Path(self.values["sync.state_dir"])

    @property
    def xroad_checks(self) -> bool:
        return self.values["sync.profile"] in XROAD_PROFILES

    def state_relpath(self) -> str | None:
        """The state dir relative to target when it lives inside it (it must then be excluded)."""
        try:
            rel = self.state_dir.resolve().relative_to(self.target.resolve())
        except ValueError:
            return None
        return rel.as_posix()

    def describe(self) -> list[tuple[str, str, str]]:
        """(key, value, source) rows for check-config; no value here is secret."""
        rows = [(f.name, _show(self.values[f.name]), self.sources[f.name]) for f in FIELDS]
        for rule in self.reload_rules:
            rows.append(
                (f"reload.{rule.name}", f"{list(rule.paths)} -> {list(rule.command)}", "file")
            )
        return rows


def _show(v: Any) -> str:
    if isinstance(v, tuple):
        return ", ".join(v) if v else "(none)"
    return "(unset)" if v is None else str(v)


@dataclass
class _Loader:
    problems: list[Problem] = field(default_factory=list)

    def problem(self, where: str, message: str) -> None:
        self.problems.append(Problem(where, message, Reason.CONFIG))


def load(
    config_file: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> tuple[Settings | None, list[Problem]]:
    """Build the effective settings, or return every problem found (never just the first)."""
    env = os.environ if env is None else env
    overrides = overrides or {}
    loader = _Loader()
    raw: dict[str, tuple[Any, str]] = {}
    reload_rules: tuple[ReloadRule, ...] = ()

    path = (
        Path(config_file)
        if config_file
        else (Path(env["SYNCAGENT_CONFIG"]) if env.get("SYNCAGENT_CONFIG") else None)
    )
    if path is not None:
        doc = _read_toml(path, loader)
        if doc is not None:
            raw.update(_flatten(doc, str(path), loader))
            reload_rules = _reload_rules(doc.get("reload"), str(path), loader)

    if env.get("XROAD_PRIMARY_DNS") and "primary.host" not in raw:
        raw["primary.host"] = (env["XROAD_PRIMARY_DNS"], "env XROAD_PRIMARY_DNS")
    for f in FIELDS:
        if f.env in env:
            raw[f.name] = (env[f.env], f"env {f.env}")
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

    _cross_checks(values, sources, loader)
    if loader.problems:
        return None, loader.problems
    return Settings(values, sources, reload_rules, path), []


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
                loader.problem(f"{name} ({source})", "unknown key")
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


def _cross_checks(values: dict[str, Any], sources: dict[str, str], loader: _Loader) -> None:
    if not values["primary.host"]:
        loader.problem(
            "primary.host",
            "required: set it in the config file, "
            "SYNCAGENT_PRIMARY_HOST, XROAD_PRIMARY_DNS or --primary-host",
        )
    if values["primary.host_key_policy"] == "strict" and not values["primary.known_hosts"]:
        loader.problem(
            f"primary.known_hosts ({sources['primary.known_hosts']})",
            "required when host_key_policy is strict (or choose accept-new)",
        )
    for name in ("sync.target", "primary.remote_root"):
        if not str(values[name]).startswith("/"):
            loader.problem(f"{name} ({sources[name]})", "must be an absolute path")
    if values["sync.state_dir"] is None:
        values["sync.state_dir"] = str(Path(values["sync.target"]) / ".syncagent")
        sources["sync.state_dir"] = "default (<target>/.syncagent)"
    elif not str(values["sync.state_dir"]).startswith("/"):
        loader.problem(f"sync.state_dir ({sources['sync.state_dir']})", "must be an absolute path")


def file_problems(settings: Settings) -> list[Problem]:
    """Checks that touch the filesystem; separate so `load` stays pure for tests."""
    problems: list[Problem] = []

    def need(name: str, kind: str) -> None:
        value = settings[name]
        if value is None:
            return
        p = Path(value)
        ok = p.is_dir() if kind == "dir" else p.is_file()
        if not ok:
            problems.append(
                Problem(
                    f"{name} ({settings.sources[name]})",
                    f"{value} is not an existing {kind}",
                    Reason.CONFIG,
                )
            )
        elif kind == "file" and not os.access(p, os.R_OK):
            problems.append(
                Problem(
                    f"{name} ({settings.sources[name]})", f"{value} is not readable", Reason.CONFIG
                )
            )

    need("primary.identity_file", "file")
    if settings["primary.host_key_policy"] == "strict":
        need("primary.known_hosts", "file")
    need("sync.target", "dir")
    return problems
