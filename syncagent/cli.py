"""Command line: ``syncagent [options] COMMAND``.

Every command prints one human line (or ``--json``) on stdout, logs on stderr, and exits with
the codes in errors.ExitCode so an entrypoint can branch on them.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Callable, Sequence
from typing import Any

import structlog

from . import __version__, logs
from .errors import ExitCode, Problem
from .report import SyncResult
from .settings import FIELDS, Settings, file_problems, load

Command = Callable[[Settings, argparse.Namespace], int]


def _settings_flags() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config", "-c", metavar="PATH", help="TOML config file (else env SYNCAGENT_CONFIG)"
    )
    common.add_argument("--json", action="store_true", help="machine-readable output")
    group = common.add_argument_group("settings (each also env SYNCAGENT_<SECTION>_<KEY>)")
    for f in FIELDS:
        group.add_argument(f.flag, dest=f"set:{f.name}", metavar="V", help=f.help)
    return common


def build_parser() -> argparse.ArgumentParser:
    common = _settings_flags()
    parser = argparse.ArgumentParser(
        prog="syncagent", description="Sync /etc/xroad from the X-Road primary, safely."
    )
    parser.add_argument("--version", action="version", version=f"syncagent {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, help_text in COMMAND_HELP.items():
        p = sub.add_parser(name, parents=[common], help=help_text, description=help_text)
        if name == "rollback":
            p.add_argument("generation", nargs="?", help="generation id (default: the previous)")
        if name == "demo":
            p.add_argument(
                "--churn", action="store_true", help="change the primary every few seconds"
            )
            p.add_argument("--duration", type=float, default=None, help="stop after N seconds")
            p.add_argument("--dir", default=None, help="where to put the demo trees")
    return parser


COMMAND_HELP = {
    "once": "run one sync and exit (0 applied/current, 1 failed, 2 config, 3 rejected, "
    "4 primary not initialized)",
    "diff": "show what the next sync would change; fetches and validates, applies nothing",
    "check-config": "print the effective settings and where each came from, or every problem",
    "run": "run the daemon: scheduled syncs, HTTP health and metrics",
    "status": "print the daemon's last status",
    "pause": "pause syncing (flag file in state_dir)",
    "resume": "resume syncing",
    "sync-now": "ask the running daemon to sync now",
    "rollback": "re-apply a kept generation and pause syncing",
    "demo": "run the daemon against an embedded primary on loopback",
}


def emit(args: argparse.Namespace, line: str, doc: dict[str, Any]) -> None:
    print(json.dumps(doc, sort_keys=True) if args.json else line, flush=True)


def report_problems(args: argparse.Namespace, problems: Sequence[Problem]) -> int:
    lines = [f"configuration error: {p}" for p in problems]
    doc = {
        "result": "config_error",
        "exit_code": int(ExitCode.CONFIG),
        "problems": [{"key": p.path, "message": p.message} for p in problems],
    }
    if args.json:
        emit(args, "", doc)
    else:
        print("\n".join(lines), file=sys.stderr)
    return ExitCode.CONFIG


def print_result(args: argparse.Namespace, result: SyncResult) -> int:
    doc = result.to_json()
    structlog.get_logger("syncagent").info(
        "sync",
        **{
            k: v
            for k, v in doc.items()
            if k not in ("added", "modified", "removed", "mode_changed", "problems")
        },
        changed=len(result.added) + len(result.modified) + len(result.removed),
    )
    if args.json:
        emit(args, "", doc)
    else:
        print(result.summary(), flush=True)
        if args.command == "diff":
            for label, paths in (
                ("+", result.added),
                ("~", result.modified),
                ("-", result.removed),
                ("m", result.mode_changed),
            ):
                for path in paths:
                    print(f"  {label} {path}")
        if result.error is not None:
            for problem in result.error.problems:
                print(f"  {problem}", file=sys.stderr)
    return int(result.exit_code)


def cmd_once(settings: Settings, args: argparse.Namespace) -> int:
    from .engine import sync

    return print_result(args, asyncio.run(sync(settings, dry_run=args.command == "diff")))


def cmd_check_config(settings: Settings, args: argparse.Namespace) -> int:
    rows = settings.describe()
    if args.json:
        emit(
            args,
            "",
            {"result": "ok", "settings": {k: {"value": v, "source": s} for k, v, s in rows}},
        )
    else:
        width = max(len(k) for k, _, _ in rows)
        for key, value, source in rows:
            print(f"{key:<{width}}  {value}  [{source}]")
        print("configuration ok", flush=True)
    return ExitCode.OK


def _commands() -> dict[str, Command]:
    from . import control

    return {
        "once": cmd_once,
        "diff": cmd_once,
        "check-config": cmd_check_config,
        **control.COMMANDS,
    }


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    overrides = {
        k.removeprefix("set:"): v
        for k, v in vars(args).items()
        if k.startswith("set:") and v is not None
    }
    if args.command == "demo":
        from .demo import run_demo

        return int(run_demo(args, overrides))
    settings, problems = load(args.config, overrides=overrides)
    if settings is not None and args.command in ("once", "diff", "check-config", "run"):
        problems = file_problems(settings)
    if settings is None or problems:
        return report_problems(args, problems)
    logs.configure(settings["log.format"], settings["log.level"])
    return _commands()[args.command](settings, args)


if __name__ == "__main__":
    sys.exit(main())
