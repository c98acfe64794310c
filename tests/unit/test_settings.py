"""Tests for syncagent.settings: precedence, parsing, problems, the reference."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from support import REPO

from syncagent import cli
from syncagent.errors import ExitCode, Reason
from syncagent.settings import CONFIG_ENV, ENTRYPOINT_ENV, FIELDS, load, reference_markdown

# --- settings ---------------------------------------------------------------------------------

BASE = {"primary.host": "p", "primary.known_hosts": "/k"}


def test_precedence_file_env_flag(tmp_path) -> None:  # type: ignore[no-untyped-def]
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        '[primary]\nhost = "from-file"\nport = 2200\nknown_hosts = "/k"\n'
        '[sync]\ninterval = 30\nexclude = ["/nginx"]\n'
    )
    s, problems = load(
        cfg,
        env={"SYNCAGENT_SYNC_INTERVAL": "45", "SYNCAGENT_PRIMARY_PORT": "2201"},
        overrides={"primary.port": "2202"},
    )
    assert s is not None, problems
    assert s.primary.host == "from-file" and s.sources["primary.host"] == str(cfg)
    assert s.sync.interval == 45.0 and s.sources["sync.interval"] == "env SYNCAGENT_SYNC_INTERVAL"
    assert s.primary.port == 2202 and s.sources["primary.port"] == "flag --primary-port"
    assert s.sync.exclude == ("/nginx",)
    assert s.sync.state_dir == Path("/etc/xroad/.syncagent")


def test_xroad_primary_dns_is_the_fallback_host() -> None:
    s, _ = load(
        None, env={"XROAD_PRIMARY_DNS": "primary-svc", "SYNCAGENT_PRIMARY_KNOWN_HOSTS": "/k"}
    )
    assert s is not None and s.primary.host == "primary-svc"
    s, _ = load(
        None,
        env={
            "XROAD_PRIMARY_DNS": "primary-svc",
            "SYNCAGENT_PRIMARY_HOST": "x",
            "SYNCAGENT_PRIMARY_KNOWN_HOSTS": "/k",
        },
    )
    assert s is not None and s.primary.host == "x"


@pytest.mark.parametrize(
    ("key", "value", "fragment"),
    [
        ("SYNCAGENT_SYNC_INTERVAL", "-5", "must be > 0"),
        ("SYNCAGENT_PRIMARY_PORT", "70000", "port must be"),
        ("SYNCAGENT_PRIMARY_HOST_KEY_POLICY", "trust-me", "must be one of"),
        ("SYNCAGENT_SYNC_PROFILE", "k8s", "must be one of"),
        ("SYNCAGENT_SYNC_MAX_TOTAL_BYTES", "lots", "expected a size"),
        ("SYNCAGENT_SYNC_OWNER", "no-such-user-here", "no such user"),
        ("SYNCAGENT_SYNC_TARGET", "relative/path", "absolute path"),
        ("SYNCAGENT_HTTP_LISTEN", "9101", "HOST:PORT"),
    ],
)
def test_each_bad_value_is_named_with_its_source(key: str, value: str, fragment: str) -> None:
    env = {"SYNCAGENT_PRIMARY_HOST": "p", "SYNCAGENT_PRIMARY_KNOWN_HOSTS": "/k", key: value}
    s, problems = load(None, env=env)
    assert s is None
    assert len(problems) == 1, problems
    assert f"env {key}" in problems[0].path and fragment in problems[0].message
    assert problems[0].reason is Reason.CONFIG


def test_all_problems_are_reported_at_once(tmp_path) -> None:  # type: ignore[no-untyped-def]
    cfg = tmp_path / "c.toml"
    cfg.write_text('[primary]\nport = "x"\nbogus = 1\n[sync]\nsettle = -1\n')
    s, problems = load(cfg, env={})
    assert s is None
    where = " | ".join(p.path for p in problems)
    for expected in (
        "primary.port",
        "primary.bogus",
        "sync.settle",
        "primary.host",
        "primary.known_hosts",
    ):
        assert expected in where


def test_broken_toml_names_the_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    cfg = tmp_path / "c.toml"
    cfg.write_text("[primary\n")
    _, problems = load(cfg, env={})
    assert problems and str(cfg) in problems[0].path and "TOML" in problems[0].message


def test_every_field_has_env_and_flag_names() -> None:
    names = {f.env for f in FIELDS}
    assert "SYNCAGENT_PRIMARY_HOST" in names and "SYNCAGENT_SYNC_COMMIT_LAST" in names
    assert len(names) == len(FIELDS)


def test_docs_document_every_key_and_exit_code() -> None:
    configuration = (REPO / "docs" / "configuration.md").read_text()
    missing = [
        f.name for f in FIELDS if f"`{f.name}`" not in configuration or f.env not in configuration
    ]
    assert missing == []
    operating = (REPO / "docs" / "operating.md").read_text()
    for code in ExitCode:
        assert f"\n| {int(code)} |" in operating


BEGIN = "<!-- BEGIN reference: the output of `syncagent check-config --markdown` -->\n"
END = "<!-- END reference -->\n"


def test_docs_reference_is_the_programs_own_output(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["check-config", "--markdown"]) == 0
    printed = capsys.readouterr().out
    doc = (REPO / "docs" / "configuration.md").read_text()
    assert doc.count(BEGIN) == 1 and doc.count(END) == 1
    shown = doc.split(BEGIN, 1)[1].split(END, 1)[0]
    assert shown == printed, "regenerate: syncagent check-config --markdown"


def test_reference_lists_every_key_with_its_default_env_and_flag() -> None:
    text = reference_markdown()
    for f in FIELDS:
        (row,) = [line for line in text.splitlines() if line.startswith(f"| `{f.name}` |")]
        assert f"`{f.env}`" in row and f"`{f.flag}`" in row and f.help in row
    assert "| `sync.state_dir` | `<target>/.syncagent` |" in text
    assert "| `sync.max_total_bytes` | `256 MiB` |" in text
    assert "`SYNCAGENT_TEST_KILL_AFTER_OP`" in text and "`SYNCAGENT_CONFIG`" in text


def test_xroad_node_type_is_the_fallback_node_type() -> None:
    s, _ = load(
        None,
        env={"XROAD_NODE_TYPE": "secondary", "XROAD_PRIMARY_DNS": "p"},
        overrides={"primary.host_key_policy": "accept-new"},
    )
    assert s is not None and s.sync.node_type == "secondary"
    assert s.sources["sync.node_type"] == "env XROAD_NODE_TYPE"
    s, _ = load(
        None,
        env={"XROAD_NODE_TYPE": "secondary", "SYNCAGENT_SYNC_NODE_TYPE": "slave"},
        overrides={"primary.host": "p", "primary.host_key_policy": "accept-new"},
    )
    assert s is not None and s.sync.node_type == "slave"
    _, problems = load(None, env={"XROAD_NODE_TYPE": "standalone"}, overrides={"primary.host": "p"})
    assert any(p.path == "sync.node_type (env XROAD_NODE_TYPE)" for p in problems)


def test_the_default_config_file_is_read_when_nothing_names_another(tmp_path: Path) -> None:
    """/etc/syncagent/syncagent.toml, where the image and the unit keep it: an operator's
    `syncagent pause` on the node finds the same state dir as the daemon."""
    default = tmp_path / "syncagent.toml"
    default.write_text('[sync]\ntarget = "/srv/xroad"\n')
    settings, problems = load(None, env={}, needs_primary=False, default_config=default)
    assert problems == [] and settings is not None
    assert settings.sync.target == Path("/srv/xroad") and settings.config_file == default
    assert settings.sources["sync.target"] == str(default)

    other = tmp_path / "other.toml"
    other.write_text('[sync]\ntarget = "/srv/other"\n')
    named, _ = load(
        None, env={"SYNCAGENT_CONFIG": str(other)}, default_config=default, needs_primary=False
    )
    assert named is not None and named.sync.target == Path("/srv/other")

    absent, problems = load(None, env={}, needs_primary=False, default_config=tmp_path / "no")
    assert problems == [] and absent is not None and absent.config_file is None


def test_every_syncagent_name_the_image_sets_or_reads_is_known() -> None:
    """Unknown SYNCAGENT_* names are a configuration error (a typo would keep the default
    silently): the names the image's entrypoint, Dockerfile and units use must not be one."""
    known = {f.env for f in FIELDS} | {CONFIG_ENV, *ENTRYPOINT_ENV}
    used: set[str] = set()
    for path in (*(REPO / "docker").rglob("*"), *(REPO / "systemd").rglob("*")):
        if path.is_file() and path.suffix in ("", ".sh", ".conf", ".service", ".toml", ".yaml"):
            used |= set(re.findall(r"\bSYNCAGENT_[A-Z0-9_]*[A-Z0-9]\b", path.read_text()))
    assert used and used - known == set()
