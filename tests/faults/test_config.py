"""Bad local configuration: every malformed key, from the environment or a TOML file, makes
``check-config`` and ``once`` exit 2 with a message naming that key (and where it came from),
never a traceback and never a run with a half-understood setting.

Each key is tried alone in-process (fast, one case per key and value), and then all at once
through the real command line, where every key must be named in the one report.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import asyncssh
import pytest
import structlog
from support.tools import run_syncagent

from syncagent import cli
from syncagent.demo.sample_tree import build_secondary_local
from syncagent.errors import ExitCode
from syncagent.settings import FIELDS, Field

# Values a human could plausibly type into an env var, each wrong for its key.
BAD_ENV: dict[str, list[str]] = {
    "primary.host": [""],
    "primary.port": ["0", "65536", "ssh", "22.5", "-22", "0x16"],
    "primary.identity_file": ["/nonexistent/id_rsa"],
    "primary.known_hosts": ["/nonexistent/known_hosts"],
    "primary.host_key_policy": ["trust-me", "STRICT", ""],
    "primary.remote_root": ["etc/xroad", "~/xroad"],
    "primary.connect_timeout": ["0", "-1", "soon", "nan", "inf", "5m"],
    "primary.io_timeout": ["0", "-30", "never", "nan"],
    "primary.publish_dir": ["sometimes", "var/lib/syncagent/publish", "AUTO"],
    "sync.target": ["etc/xroad", "/nonexistent/xroad"],
    "sync.state_dir": ["state", "./state"],
    "sync.profile": ["k8s", "Sidecar"],
    "sync.release": ["9", "8.0", "latest"],
    "sync.exclude": ["/", "a,//"],
    "sync.include": ["//"],
    "sync.seed": ["globalconf", "/global*/", "/a,b"],
    "sync.interval": ["0", "-60", "hourly", "inf"],
    "sync.poll": ["0", "-2", "often", "nan"],
    "sync.jitter": ["-0.1", "lots", "nan"],
    "sync.settle": ["-2", "a bit"],
    "sync.keep_generations": ["-1", "two", "1.5"],
    "sync.max_files": ["-5", "1e6", "many"],
    "sync.max_total_bytes": ["0", "12 parsecs", "-1MiB", "1.5GiB"],
    "sync.max_file_bytes": ["0", "64 MB each"],
    "sync.max_depth": ["deep", "-1"],
    "sync.owner": ["no-such-user-syncagent"],
    "sync.group": ["no-such-group-syncagent"],
    "sync.validate_command": ['check "unterminated'],
    "sync.validate_timeout": ["0", "forever"],
    "sync.max_staleness": ["-5", "stale"],
    "sync.timeout": ["0", "nan", "5 minutes"],
    "sync.disable_flag": ["sync-disabled", "./var/tmp/xroad/sync-disabled"],
    "sync.node_type": ["standalone", "2", "secondary-ish"],
    "sync.version_source": ["VERSION", "dpkg:", "./usr/share/xroad/config/VERSION"],
    "sync.version_skew": ["stop", "HOLD"],
    "sync.verify_interval": ["-1", "hourly", "nan"],
    "publish.source": ["etc/xroad", "./xroad"],
    "publish.dir": ["publish", "/etc/xroad/publish"],
    "publish.keep": ["0", "-1", "five", "1.5"],
    "publish.settle": ["-1", "a while"],
    "publish.listen": ["9102", "localhost", "127.0.0.1:0", ":9102", "OFF"],
    "http.listen": ["9101", "localhost", "127.0.0.1:0", "127.0.0.1:http", ":9101"],
    "http.upstream_timeout": ["0", "quick"],
    "log.format": ["xml"],
    "log.level": ["verbose", "DEBUG"],
    "reload.spread": ["-1", "wide"],
}
# Keys for which every string is valid (free text): they can only be malformed in TOML.
FREE_TEXT = {"primary.user", "sync.commit_last", "http.upstream_health_url"}


@pytest.fixture(autouse=True)
def keep_log_config() -> Iterator[None]:
    """cli.main configures structlog to print to the stderr of the moment (pytest's capture,
    closed after the test): put back what the rest of the session logs through."""
    saved = structlog.get_config()
    yield
    structlog.configure(**saved)


def env_name(key: str) -> str:
    return "SYNCAGENT_" + key.replace(".", "_").upper()


@pytest.fixture
def base_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A valid configuration through the environment, and nothing else of ours in it."""
    for name in list(os.environ):
        if name.startswith("SYNCAGENT_") or name == "XROAD_PRIMARY_DNS":
            monkeypatch.delenv(name)
    private = asyncssh.generate_private_key("ssh-ed25519")
    key = tmp_path / "id_ed25519"
    key.write_bytes(private.export_private_key())
    known = tmp_path / "known_hosts"
    known.write_text("primary.example " + private.export_public_key().decode())
    target = tmp_path / "etc-xroad"
    target.mkdir()
    build_secondary_local(target)
    env = {
        env_name("primary.host"): "primary.example",
        env_name("primary.identity_file"): str(key),
        env_name("primary.known_hosts"): str(known),
        env_name("sync.target"): str(target),
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


def test_every_key_has_bad_values_to_try() -> None:
    """A key added to FIELDS must be added here too, or it would go untested."""
    names = {f.name for f in FIELDS}
    assert names == set(BAD_ENV) | FREE_TEXT, names ^ (set(BAD_ENV) | FREE_TEXT)


def test_the_base_configuration_is_valid(
    base_env: dict[str, str], capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["check-config"]) == ExitCode.OK, capsys.readouterr().err


@pytest.mark.parametrize(
    ("key", "value"), [(k, v) for k, values in sorted(BAD_ENV.items()) for v in values]
)
@pytest.mark.parametrize("command", ["check-config", "once"])
def test_malformed_env_value_exits_2_naming_the_key(
    base_env: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    command: str,
    key: str,
    value: str,
) -> None:
    monkeypatch.setenv(env_name(key), value)
    code = cli.main([command])
    err = capsys.readouterr().err
    assert code == ExitCode.CONFIG, f"{key}={value!r} accepted: {err}"
    assert f"configuration error: {key}" in err, err


def toml_value(key: str) -> str:
    """An inline table: no key of any type accepts one (the key is for a reader's benefit)."""
    return "{ surprise = 1 }"


@pytest.mark.parametrize("field", FIELDS, ids=lambda f: f.name)
def test_malformed_toml_value_exits_2_naming_the_key_and_file(
    base_env: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    field: Field,
) -> None:
    name = field.name
    monkeypatch.delenv(field.env, raising=False)  # the environment would win over the file
    section, key = name.split(".")
    cfg = tmp_path / "syncagent.toml"
    cfg.write_text(f"[{section}]\n{key} = {toml_value(name)}\n")
    code = cli.main(["check-config", "--config", str(cfg)])
    err = capsys.readouterr().err
    assert code == ExitCode.CONFIG, f"{name} = {{...}} accepted"
    assert f"configuration error: {name} ({cfg})" in err, err


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("[primary]\nhost = \n", ["config file"]),  # not TOML at all
        ("[primary]\nbogus = 1\n", ["primary.bogus"]),
        ("primary = 5\n", ["primary"]),
        ("[sync]\nmax_files = true\n", ["sync.max_files"]),
        ("[sync]\ninterval = nan\n", ["sync.interval"]),
        ("[sync]\nexclude = [1, 2]\n", ["sync.exclude"]),
        ("[sync]\nvalidate_command = []\n[sync.x]\n", ["sync.x"]),
        ("[[reload]]\nname = 'r'\npaths = []\ncommand = ['true']\n", ["reload[0]"]),
        ("[[reload]]\npaths = ['conf.d/*']\ncommand = 'true'\nwhen = 1\n", ["reload[0]"]),
    ],
)
def test_malformed_toml_file_exits_2(
    base_env: dict[str, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    text: str,
    names: list[str],
) -> None:
    cfg = tmp_path / "syncagent.toml"
    cfg.write_text(text)
    code = cli.main(["check-config", "--config", str(cfg)])
    err = capsys.readouterr().err
    assert code == ExitCode.CONFIG, err
    for name in names:
        assert f"configuration error: {name}" in err, err


def cli_run(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return run_syncagent(*args, env=env, timeout=60)


@pytest.mark.parametrize("command", ["check-config", "once"])
def test_every_bad_env_value_at_once_through_the_command_line(
    base_env: dict[str, str], command: str
) -> None:
    env = dict(os.environ)
    # one bad value per key; the file checks need the other values parsed, so they go alone
    skip = {"primary.identity_file", "primary.known_hosts", "primary.host"}
    for key, values in BAD_ENV.items():
        if key not in skip and not (key == "sync.target" and values[0].startswith("/")):
            env[env_name(key)] = values[0]
    r = cli_run(command, env=env)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    for key in BAD_ENV:
        if key not in skip:
            assert f"configuration error: {key} (env {env_name(key)})" in r.stderr, key


def test_every_bad_toml_value_at_once_through_the_command_line(
    base_env: dict[str, str], tmp_path: Path
) -> None:
    sections: dict[str, list[str]] = {}
    for f in FIELDS:
        sections.setdefault(f.section, []).append(f"{f.key} = {toml_value(f.name)}")
    cfg = tmp_path / "all-bad.toml"
    cfg.write_text("".join(f"[{s}]\n" + "\n".join(lines) + "\n" for s, lines in sections.items()))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SYNCAGENT_")}
    r = cli_run("once", "--config", str(cfg), env=env)
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    for f in FIELDS:
        assert f"configuration error: {f.name} ({cfg})" in r.stderr, f.name
