"""Tests for syncagent.cli: parsing. Options work before and after the command (git-style), as
the systemd unit writes them (`syncagent --config FILE run`)."""

from __future__ import annotations

import pytest

from syncagent.cli import COMMANDS, build_parser


def parse(*argv: str) -> dict[str, object]:
    return vars(build_parser().parse_args(argv))


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_config_and_json_before_the_command(command: str) -> None:
    args = parse("--config", "/etc/syncagent/syncagent.toml", "--json", command)
    assert args["command"] == command
    assert args["config"] == "/etc/syncagent/syncagent.toml" and args["json"] is True


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_config_and_json_after_the_command(command: str) -> None:
    args = parse(command, "-c", "/x.toml", "--json")
    assert args["command"] == command
    assert args["config"] == "/x.toml" and args["json"] is True


def test_nothing_given_means_no_config_and_human_output() -> None:
    args = parse("run")
    assert args["config"] is None and args["json"] is False
    assert args["set:sync.interval"] is None


def test_a_setting_flag_before_the_command_is_not_reset_after_it() -> None:
    assert parse("--sync-interval", "9", "run")["set:sync.interval"] == "9"
    assert parse("run", "--sync-interval", "9")["set:sync.interval"] == "9"
    # the one nearer the command's own arguments wins, as a later flag does
    assert parse("--sync-interval", "4", "run", "--sync-interval", "5")["set:sync.interval"] == "5"


def test_command_specific_options_stay_with_their_command() -> None:
    assert parse("rollback", "abc")["generation"] == "abc"
    assert parse("-c", "/x.toml", "check-config", "--markdown")["markdown"] is True
    with pytest.raises(SystemExit):
        parse("--markdown", "check-config")


def test_a_commands_help_shows_its_own_options_first(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["once", "--help"])
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "usage: syncagent once [--verify] [--force] [OPTIONS]"
    top = "\n".join(lines[:12])
    assert "--verify" in top and "--force" in top and "--sync-interval" not in top
    settings = next(i for i, line in enumerate(lines) if line.startswith("settings ("))
    assert settings > next(i for i, line in enumerate(lines) if "--force" in line)
