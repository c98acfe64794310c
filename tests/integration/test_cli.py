"""The command line as an entrypoint script sees it: exit codes, one-line output, --json."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import asyncssh
from support.sshd import Sshd
from support.tools import run_syncagent
from support.trees import age

from syncagent.demo.sample_tree import build_secondary_local


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return run_syncagent(*args, env={**os.environ, **env}, timeout=120)


def agent_env(sshd: Sshd, remote: Path, target: Path) -> dict[str, str]:
    return {
        "SYNCAGENT_PRIMARY_HOST": "127.0.0.1",
        "SYNCAGENT_PRIMARY_PORT": str(sshd.port),
        "SYNCAGENT_PRIMARY_IDENTITY_FILE": str(sshd.client_key),
        "SYNCAGENT_PRIMARY_KNOWN_HOSTS": str(sshd.known_hosts),
        "SYNCAGENT_PRIMARY_REMOTE_ROOT": str(remote),
        "SYNCAGENT_SYNC_TARGET": str(target),
        "SYNCAGENT_SYNC_SETTLE": "0",
        "SYNCAGENT_LOG_FORMAT": "json",
    }


def test_once_then_diff_then_exit_codes(
    sshd: Sshd, primary_tree: Path, tmp_path: Path, tree_area: Path
) -> None:
    target = tmp_path / "t"
    target.mkdir()
    build_secondary_local(target)
    env = agent_env(sshd, primary_tree, target)

    fresh = cli("diff", env=env)
    assert fresh.returncode == 0 and "(live (none), primary " in fresh.stdout
    first = cli("once", env=env)
    assert first.returncode == 0, first.stderr
    assert first.stdout.startswith("applied generation ") and "(was (none))" in first.stdout
    assert "None" not in first.stdout
    assert len(first.stdout.strip().splitlines()) == 1
    (line,) = [raw for raw in first.stderr.splitlines() if json.loads(raw)["event"] == "sync"]
    assert len(line) < 400, line  # only what is set: no versions of None, no walk note
    event = json.loads(line)
    assert None not in event.values() and "versions" not in event and "source_note" not in event
    generation = event["generation"]

    # a status from the state dir: no daemon ever ran, but the once did
    status = cli("status", env=env)
    assert status.returncode == 1, status.stdout
    assert status.stdout.startswith(f"NOT READY: daemon not running: generation {generation}, ")
    assert "(applied, by syncagent once)" in status.stdout
    assert "has the daemon run" not in status.stdout

    again = cli("once", "--json", env=env)
    doc = json.loads(again.stdout)
    assert again.returncode == 0 and doc["result"] == "unchanged" and doc["bytes_fetched"] == 0

    (primary_tree / "conf.d" / "local.ini").write_text("[proxy]\nx=1\n")
    age(primary_tree)
    d = cli("diff", env=env)
    assert d.returncode == 0 and "would change" in d.stdout and "~ conf.d/local.ini" in d.stdout
    dj = cli("diff", "--json", env=env)
    assert json.loads(dj.stdout)["result"] == "would_change"
    (logged,) = [e for e in map(json.loads, dj.stderr.splitlines()) if e["event"] == "sync"]
    assert logged["result"] == "would_change" and logged["changed"] == 1
    assert (target / "conf.d" / "local.ini").read_text() != "[proxy]\nx=1\n"  # diff applies nothing

    (primary_tree / "conf.d" / "local.ini").write_text("[proxy\n")
    age(primary_tree)
    rejected = cli("once", "--json", env=env)
    assert rejected.returncode == 3
    doc = json.loads(rejected.stdout)
    assert doc["result"] == "rejected" and doc["reason"] == "validation"
    assert doc["problems"][0]["path"] == "conf.d/local.ini"

    empty = tree_area / "cli-empty"
    empty.mkdir(mode=0o755, exist_ok=True)
    assert cli("once", env=agent_env(sshd, empty, target)).returncode == 4

    down = {**env, "SYNCAGENT_PRIMARY_PORT": "1", "SYNCAGENT_PRIMARY_CONNECT_TIMEOUT": "2"}
    failed = cli("once", "--json", env=down)
    assert failed.returncode == 1 and json.loads(failed.stdout)["reason"] == "connect"


def test_bad_configuration_exits_2_naming_each_key(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[primary]\nhost = "p"\nhost_key_policy = "trust"\n[sync]\ninterval = 0\n')
    r = cli("once", "--config", str(cfg), env={})
    assert r.returncode == 2
    assert "primary.host_key_policy" in r.stderr and "sync.interval" in r.stderr
    assert str(cfg) in r.stderr


def _key_and_known_hosts(tmp_path: Path) -> tuple[Path, Path]:
    key = asyncssh.generate_private_key("ssh-ed25519")
    path = tmp_path / "id_ed25519"
    path.write_bytes(key.export_private_key())
    path.with_name("id_ed25519.pub").write_bytes(key.export_public_key())
    kh = tmp_path / "known_hosts"
    kh.write_text("primary-svc " + key.export_public_key().decode())
    return path, kh


def test_check_config_shows_values_and_sources(tmp_path: Path) -> None:
    key, kh = _key_and_known_hosts(tmp_path)
    build_secondary_local(tmp_path)
    env = {
        "XROAD_PRIMARY_DNS": "primary-svc",
        "SYNCAGENT_PRIMARY_IDENTITY_FILE": str(key),
        "SYNCAGENT_PRIMARY_KNOWN_HOSTS": str(kh),
        "SYNCAGENT_SYNC_TARGET": str(tmp_path),
    }
    r = cli("check-config", env=env)
    assert r.returncode == 0, r.stderr
    assert "primary.host" in r.stdout and "primary-svc" in r.stdout
    assert "[env XROAD_PRIMARY_DNS]" in r.stdout
    doc = json.loads(cli("check-config", "--json", env=env).stdout)
    assert doc["settings"]["sync.interval"] == {"value": "60.0", "source": "default"}
    missing = cli("check-config", env={**env, "SYNCAGENT_PRIMARY_IDENTITY_FILE": "/nope"})
    assert missing.returncode == 2 and "primary.identity_file" in missing.stderr


def test_options_before_the_command_as_the_systemd_unit_writes_them(
    sshd: Sshd, primary_tree: Path, target: Path, tmp_path: Path
) -> None:
    """ExecStart=... syncagent --config FILE run: the option comes first."""
    cfg = tmp_path / "syncagent.toml"
    cfg.write_text(
        f'[primary]\nhost = "127.0.0.1"\nport = {sshd.port}\n'
        f'identity_file = "{sshd.client_key}"\nknown_hosts = "{sshd.known_hosts}"\n'
        f'remote_root = "{primary_tree}"\n[sync]\ntarget = "{target}"\nsettle = 0\n'
    )
    r = cli("--config", str(cfg), "--json", "once", env={})
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["result"] == "applied"
    again = cli("-c", str(cfg), "once", "--json", env={})
    assert again.returncode == 0 and json.loads(again.stdout)["result"] == "unchanged"


def test_stderr_holds_only_structured_log_lines(
    sshd: Sshd, primary_tree: Path, tmp_path: Path
) -> None:
    """Whatever a dependency warns at import time, every stderr line is one JSON log event."""
    target = tmp_path / "t"
    target.mkdir()
    build_secondary_local(target)
    env = {**os.environ, **agent_env(sshd, primary_tree, target), "PYTHONWARNINGS": "always"}
    for args in (("--help",), ("check-config",), ("once",), ("diff",), ("status",)):
        r = run_syncagent(*args, env=env)
        for line in r.stderr.splitlines():
            assert isinstance(json.loads(line).get("event"), str), (args, line)
    warned = subprocess.run(
        [
            sys.executable,
            "-c",
            "import warnings, syncagent, sys; warnings.warn('import-time', UserWarning); "
            "from syncagent.cli import main; sys.exit(main(['once']))",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    events = [json.loads(line) for line in warned.stderr.splitlines()]
    warned_of = [e["message"] for e in events if e["event"] == "python_warning"]
    assert warned_of.count("import-time") == 1


def test_once_applies_nothing_while_paused_unless_forced(
    sshd: Sshd, primary_tree: Path, tmp_path: Path
) -> None:
    """`pause` says the live tree stays as it is until `resume`: `once` keeps that promise,
    for either flag, with its own exit code; `--force` is the operator's override."""
    target = tmp_path / "t"
    target.mkdir()
    build_secondary_local(target)
    xlb_flag = tmp_path / "xlb" / "sync-disabled"
    env = {**agent_env(sshd, primary_tree, target), "SYNCAGENT_SYNC_DISABLE_FLAG": str(xlb_flag)}
    assert cli("once", env=env).returncode == 0
    (primary_tree / "conf.d" / "local.ini").write_text("[proxy]\nx=1\n")
    age(primary_tree)

    assert cli("pause", env=env).returncode == 0
    held = cli("once", env=env)
    assert held.returncode == 5, held.stdout + held.stderr
    assert held.stdout.startswith(f"paused by {target / '.syncagent' / 'paused'}: nothing applied")
    assert "once --force" in held.stdout
    assert (target / "conf.d" / "local.ini").read_text() != "[proxy]\nx=1\n"

    assert cli("resume", env=env).returncode == 0
    xlb_flag.parent.mkdir()
    xlb_flag.touch()
    doc = json.loads(cli("once", "--json", env=env).stdout)
    assert doc == {
        "result": "paused",
        "reason": "paused",
        "exit_code": 5,
        "paused_by": [str(xlb_flag)],
    }
    assert cli("diff", env=env).returncode == 0  # applies nothing: allowed

    forced = cli("once", "--force", env=env)
    assert forced.returncode == 0 and forced.stdout.startswith("applied generation ")
    assert (target / "conf.d" / "local.ini").read_text() == "[proxy]\nx=1\n"


def test_check_config_finds_what_would_fail_every_sync(tmp_path: Path) -> None:
    """Each of these passed check-config and then failed every sync."""
    key, kh = _key_and_known_hosts(tmp_path)
    target = tmp_path / "x8"
    target.mkdir()  # an X-Road 8 node: no conf.d/node.ini
    base = {
        "XROAD_PRIMARY_DNS": "primary-svc",
        "SYNCAGENT_PRIMARY_IDENTITY_FILE": str(key),
        "SYNCAGENT_PRIMARY_KNOWN_HOSTS": str(kh),
        "SYNCAGENT_SYNC_TARGET": str(target),
    }
    node = cli("check-config", env=base)
    assert node.returncode == 2
    assert "sync.node_type (default): conf.d/node.ini missing" in node.stderr
    assert 'set sync.node_type = "secondary"' in node.stderr
    base["SYNCAGENT_SYNC_NODE_TYPE"] = "secondary"
    assert cli("check-config", env=base).returncode == 0

    empty = tmp_path / "empty"
    empty.touch()
    secret = key.read_text().splitlines()[1]
    for bad, why in (
        (empty, "the file is empty"),
        (Path(f"{key}.pub"), "this is a public key: give the private key"),
    ):
        r = cli("check-config", env={**base, "SYNCAGENT_PRIMARY_IDENTITY_FILE": str(bad)})
        assert r.returncode == 2 and "primary.identity_file (env " in r.stderr
        assert f"{bad}: {why}" in r.stderr
        assert secret not in r.stdout + r.stderr

    broken = tmp_path / "known_hosts.broken"
    broken.write_text("# comment\nprimary-svc ssh-ed25519 AAAAnot-base64\n")
    r = cli("check-config", env={**base, "SYNCAGENT_PRIMARY_KNOWN_HOSTS": str(broken)})
    assert r.returncode == 2 and f"{broken} line 2: not a known_hosts entry" in r.stderr

    typo = cli("check-config", env={**base, "SYNCAGENT_SYNC_INTERVALL": "5"})
    assert typo.returncode == 2
    assert (
        "env SYNCAGENT_SYNC_INTERVALL: not a setting (did you mean SYNCAGENT_SYNC_INTERVAL?)"
        in typo.stderr
    )
    # the image's entrypoint's own names, and Kubernetes' service links, are no typo
    fine = {**base, "SYNCAGENT_RUN_AS": "xroad", "SYNCAGENT_SERVICE_HOST": "10.0.0.1"}
    assert cli("check-config", env=fine).returncode == 0

    cfg = tmp_path / "syncagent.toml"
    cfg.write_text("[sync]\nintervall = 5\n")
    r = cli("check-config", "--config", str(cfg), env=base)
    assert r.returncode == 2
    assert f"sync.intervall ({cfg}): unknown key (did you mean sync.interval?)" in r.stderr


def test_a_missing_config_file_is_reported_alone(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    r = cli("once", "--config", str(missing), env={})
    assert r.returncode == 2
    assert r.stderr.splitlines() == [
        f"configuration error: config file {missing}: No such file or directory"
    ]
