"""The one way tests build settings: the keys a test sets, over what every test needs.

Keys are passed as ``section__key=value`` keyword arguments (``sync__settle=0``); every value
goes through ``settings.load`` exactly as a flag would, so a test can never hold settings the
agent itself would have refused.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from support.sshd import free_port
from syncagent.settings import FIELDS_BY_NAME, Settings, load


class Endpoint(Protocol):
    """An SFTP primary a test runs: real sshd or the in-process hostile one."""

    @property
    def port(self) -> int: ...
    @property
    def client_key(self) -> Path: ...
    @property
    def known_hosts(self) -> Path: ...


def overrides_for(
    primary: Endpoint, remote: Path | str, target: Path, **extra: Any
) -> dict[str, str]:
    """What a one-shot sync (``syncagent once``, ``engine.sync``) needs to reach ``primary``."""
    return {
        "primary.host": "127.0.0.1",
        "primary.port": str(primary.port),
        "primary.identity_file": str(primary.client_key),
        "primary.known_hosts": str(primary.known_hosts),
        "primary.remote_root": str(remote),
        "sync.target": str(target),
        "sync.settle": "0",
        # never the real /var/tmp/xroad/sync-disabled of the machine running the tests
        "sync.disable_flag": str(target.parent / "var-tmp-xroad" / "sync-disabled"),
        **{k.replace("__", "."): str(v) for k, v in extra.items()},
    }


def daemon_overrides(
    primary: Endpoint, remote: Path | str, target: Path, **extra: Any
) -> dict[str, str]:
    """As overrides_for, plus what makes a daemon quick to test: 1 s interval, own port."""
    daemon = {
        "primary__connect_timeout": "2",
        "sync__interval": "1",
        "sync__jitter": "0.1",
        "sync__timeout": "30",
        "http__listen": f"127.0.0.1:{free_port()}",
    }
    return overrides_for(primary, remote, target, **{**daemon, **extra})


def build(overrides: dict[str, str], config: Path | None = None) -> Settings:
    """Settings from flag-like overrides (and a TOML file), with no environment at all."""
    settings, problems = load(config, env={}, overrides=overrides)
    assert settings is not None, problems
    return settings


def settings_for(primary: Endpoint, remote: Path | str, target: Path, **extra: Any) -> Settings:
    return build(overrides_for(primary, remote, target, **extra))


def publishing(source: Path, pub: Path) -> dict[str, Any]:
    """Overrides for the publisher of ``source`` into ``pub`` (settle 0) and for a secondary
    following its HEAD: one settings object serves both sides."""
    return {
        "primary__publish_dir": str(pub),
        "publish__source": str(source),
        "publish__dir": str(pub),
        "publish__settle": "0",
    }


def publish_settings(
    primary: Endpoint, source: Path, target: Path, pub: Path, **extra: Any
) -> Settings:
    """``settings_for`` with ``publishing`` and no version check."""
    base = {**publishing(source, pub), "sync__version_source": "none"}
    return settings_for(primary, source, target, **{**base, **extra})


def daemon_settings(
    primary: Endpoint, remote: Path, target: Path, config: Path | None = None, **extra: Any
) -> Settings:
    return build(daemon_overrides(primary, remote, target, **extra), config)


def env_for(overrides: dict[str, str]) -> dict[str, str]:
    """The same overrides as the SYNCAGENT_* environment a subprocess agent reads."""
    return {FIELDS_BY_NAME[k].env: v for k, v in overrides.items()}


def _opt(v: object) -> str:
    return "" if v is None else str(v)


# What cli_env can carry over, read from the typed sections.
_VALUES: dict[str, Callable[[Settings], object]] = {
    "primary.host": lambda s: s.primary.host,
    "primary.port": lambda s: s.primary.port,
    "primary.identity_file": lambda s: s.primary.identity_file,
    "primary.known_hosts": lambda s: _opt(s.primary.known_hosts),
    "primary.remote_root": lambda s: s.primary.remote_root,
    "primary.connect_timeout": lambda s: s.primary.connect_timeout,
    "primary.io_timeout": lambda s: s.primary.io_timeout,
    "sync.target": lambda s: s.sync.target,
    "sync.settle": lambda s: s.sync.settle,
    "sync.timeout": lambda s: s.sync.timeout,
    "sync.disable_flag": lambda s: s.sync.disable_flag,
}
_CLI_KEYS = (
    "primary.host",
    "primary.port",
    "primary.identity_file",
    "primary.known_hosts",
    "primary.remote_root",
    "sync.target",
    "sync.settle",
    "sync.disable_flag",
)


def cli_env(settings: Settings, *more: str) -> dict[str, str]:
    """The settings a test made, as the SYNCAGENT_* env a subprocess agent reads."""
    env = {FIELDS_BY_NAME[k].env: str(_VALUES[k](settings)) for k in (*_CLI_KEYS, *more)}
    env["SYNCAGENT_LOG_FORMAT"] = "json"
    return env
