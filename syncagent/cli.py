"""Command line: ``syncagent [OPTIONS] COMMAND [OPTIONS]``, and every command in one table.

Options (``--config``, ``--json``, every settings flag) work before and after the command, as
in git-style CLIs and as the systemd unit writes them.

Every command prints one human line (or ``--json``) on stdout, logs on stderr, and exits with
the codes in errors.ExitCode so an entrypoint can branch on them.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import structlog

from syncagent import __version__, logs
from syncagent.daemon.control import ControlFiles
from syncagent.daemon.service import serve
from syncagent.daemon.status import once_status, read_status, state_status, summary_line
from syncagent.demo import run_demo
from syncagent.engine import SyncSkipped, sync
from syncagent.errors import ExitCode, Problem, Reason, SyncError, exit_code_for
from syncagent.local import ownership
from syncagent.local.rollback import rollback
from syncagent.local.state import Seen, StateDir, atomic_write, locked, open_state
from syncagent.local.validate import check_local_node
from syncagent.publish.builder import publish_once, run_publisher
from syncagent.remote.connection import key_problem, known_hosts_problems
from syncagent.report import Outcome, SyncResult, problems_json, shown
from syncagent.settings import (
    CONFIG_ENV,
    DEFAULT_CONFIG,
    FIELDS,
    Settings,
    file_problems,
    load,
    reference_markdown,
)

Handler = Callable[[Settings, argparse.Namespace], int]


def emit(args: argparse.Namespace, line: str, doc: dict[str, Any]) -> None:
    print(json.dumps(doc, sort_keys=True) if args.json else line, flush=True)


def report_problems(args: argparse.Namespace, problems: Sequence[Problem]) -> int:
    lines = [f"configuration error: {p}" for p in problems]
    doc = {
        "result": "config_error",
        "exit_code": int(ExitCode.CONFIG),
        "problems": problems_json(problems),
    }
    if args.json:
        emit(args, "", doc)
    else:
        print("\n".join(lines), file=sys.stderr)
    return ExitCode.CONFIG


# ---- once, diff, check-config ----------------------------------------------------------------


def print_result(args: argparse.Namespace, result: SyncResult) -> int:
    doc = result.to_json()
    structlog.get_logger("syncagent").info("sync", **result.log_fields())
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
    """``once`` applies nothing while paused (checked under the state lock, as the daemon
    does) unless ``--force``: pausing promises the live tree stays as it is."""
    dry_run = args.command == "diff"
    files = ControlFiles.of(settings.sync)
    force = dry_run or getattr(args, "force", False)
    try:
        result = asyncio.run(
            sync(
                settings,
                dry_run=dry_run,
                verify_all=args.verify,
                should_run=lambda: force or not files.paused_by(),
            )
        )
    except SyncSkipped:
        by = list(files.paused_by())
        line = (
            f"paused by {', '.join(by)}: nothing applied, the live tree stays as it is; "
            "`syncagent resume` follows the primary again, `syncagent once --force` applies "
            "one sync anyway"
        )
        doc = {
            "result": "paused",
            "reason": str(Reason.PAUSED),
            "exit_code": int(ExitCode.PAUSED),
            "paused_by": by,
        }
        emit(args, line, doc)
        return ExitCode.PAUSED
    if not dry_run and result.outcome is not Outcome.CANCELLED:
        _record_once(files.state, result)
    return print_result(args, result)


def _record_once(state: StateDir, result: SyncResult) -> None:
    """Leave what this ``once`` did for ``syncagent status`` (no daemon may ever run)."""
    path = state.last_once_file
    doc = once_status(read_status(path), result, time.time())
    with contextlib.suppress(OSError):  # the sync's own result is what this command reports
        atomic_write(path, json.dumps(doc, sort_keys=True).encode(), 0o644)


def sync_problems(settings: Settings) -> list[Problem]:
    """What would fail every sync, found without connecting: a key asyncssh cannot use (an
    empty file, a .pub, a passphrase), known_hosts lines a connect would skip, a node that does
    not say it is a secondary. Messages name files, never their content."""
    primary, sources = settings.primary, settings.sources
    problems: list[Problem] = []
    if why := key_problem(primary.identity_file):
        where = f"primary.identity_file ({sources['primary.identity_file']})"
        problems.append(Problem(where, f"{primary.identity_file}: {why}", Reason.CONFIG))
    if primary.host_key_policy == "strict" and primary.known_hosts is not None:
        where = f"primary.known_hosts ({sources['primary.known_hosts']})"
        problems += [
            Problem(where, f"{primary.known_hosts} {why}", Reason.CONFIG)
            for why in known_hosts_problems(primary.known_hosts)
        ]
    try:
        check_local_node(settings.sync)
    except SyncError as e:
        where = f"sync.node_type ({sources['sync.node_type']})"
        problems += [Problem(where, p.message, Reason.CONFIG) for p in e.problems]
    return problems


def cmd_check_config(settings: Settings, args: argparse.Namespace) -> int:
    problems = sync_problems(settings)
    if problems:
        return report_problems(args, problems)
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


# ---- the daemon and its control --------------------------------------------------------------


def cmd_run(settings: Settings, args: argparse.Namespace) -> int:
    return asyncio.run(serve(settings))


def cmd_pause(settings: Settings, args: argparse.Namespace) -> int:
    files = ControlFiles.of(settings.sync)
    created = files.pause("syncagent pause")
    flag = files.state.pause_flag
    line = (
        f"paused: {'created' if created else 'already present:'} {flag}; the live tree stays as "
        "it is until `syncagent resume` (only `once --force` and `rollback` change it meanwhile)"
    )
    emit(args, line, {"result": "paused", "flag": str(flag), "paused_by": files.paused_by()})
    return ExitCode.OK


def cmd_resume(settings: Settings, args: argparse.Namespace) -> int:
    files = ControlFiles.of(settings.sync)
    removed = files.unpause()
    still = files.paused_by()
    line = f"resumed: {'removed' if removed else 'no'} {files.state.pause_flag}"
    if still:
        line += f"; still PAUSED by {', '.join(still)}: remove it to resume"
    elif (pid := files.running_pid()) is not None:
        line += f"; the daemon (pid {pid}) syncs now"
    else:
        line += "; no daemon is running: syncing resumes when it starts"
    emit(args, line, {"result": "paused" if still else "resumed", "paused_by": list(still)})
    return ExitCode.FAILED if still else ExitCode.OK


def cmd_sync_now(settings: Settings, args: argparse.Namespace) -> int:
    how = ControlFiles.of(settings.sync).request_sync()
    emit(args, f"sync requested: {how}", {"result": "requested", "how": how})
    return ExitCode.OK


def cmd_status(settings: Settings, args: argparse.Namespace) -> int:
    """The running daemon's status; without one, what the state dir says (the live record and
    the last result of the daemon or of ``syncagent once``): never ready, but true."""
    files = ControlFiles.of(settings.sync)
    doc = read_status(files.state.status_file)
    now = time.time()
    pid = files.running_pid()
    alive = doc is not None and pid is not None and pid == doc.get("pid")
    if doc is None or not alive:
        doc = state_status(files.state, doc, files.paused_by())
        emit(
            args,
            summary_line(doc, now, False),
            {**doc, "ready": False, "daemon_running": False},
        )
        return ExitCode.FAILED
    ready = bool(alive and doc.get("ready") and not _stale(doc, settings.sync.max_staleness, now))
    emit(
        args,
        summary_line({**doc, "ready": ready}, now, alive),
        {**doc, "ready": ready, "daemon_running": alive},
    )
    return ExitCode.OK if ready else ExitCode.FAILED


def _stale(doc: dict[str, object], limit: float | None, now: float) -> bool:
    last = doc.get("last_success")
    if limit is None:
        return False
    return not isinstance(last, int | float) or now - last > limit


def cmd_rollback(settings: Settings, args: argparse.Namespace) -> int:
    files = ControlFiles.of(settings.sync)
    created = files.pause("syncagent rollback")
    result = asyncio.run(rollback(settings, args.generation))
    if result.error is not None:
        if created:
            files.unpause()
        emit(args, f"rollback refused: [{result.error.reason}] {result.error}", result.to_json())
        return int(result.exit_code)
    flag = files.state.pause_flag
    line = (
        f"rolled back to generation {result.generation} (was {shown(result.previous)}): "
        f"+{len(result.added)} ~{len(result.modified)} -{len(result.removed)}; syncing is PAUSED "
        f"({flag}) so it sticks: `syncagent resume` follows the primary again"
    )
    emit(args, line, {**result.to_json(), "paused": True, "flag": str(flag)})
    return ExitCode.OK


def cmd_accept_rollback(settings: Settings, args: argparse.Namespace) -> int:
    sync = settings.sync
    state = open_state(sync.state_dir, sync.target)
    seen = asyncio.run(_forget_seen_head(state, sync.timeout))
    how = ControlFiles.of(sync).request_sync()
    if seen is None:
        line = "accept-rollback: no HEAD was recorded here; the next one is followed as it is"
    else:
        line = (
            f"accept-rollback: forgot #{seen.sequence} ({seen.generation}); the next HEAD is "
            f"followed even if its sequence is lower (sync requested: {how})"
        )
        structlog.get_logger("syncagent").warning(
            "head_floor_forgotten", sequence=seen.sequence, generation=seen.generation
        )
    doc = {"result": "accepted", "forgotten": None if seen is None else seen.sequence}
    emit(args, line, doc)
    return ExitCode.OK


async def _forget_seen_head(state: StateDir, timeout: float) -> Seen | None:
    async with locked(state, timeout):
        return state.forget_seen_head()


def cmd_publish(settings: Settings, args: argparse.Namespace) -> int:
    if not args.once:
        return asyncio.run(run_publisher(settings))
    outcome = asyncio.run(publish_once(settings))
    emit(args, outcome.summary(), outcome.to_json())
    return int(outcome.exit_code)


# ---- the table -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Command:
    help: str
    handler: Handler | None  # None: the command builds its own settings (demo)
    checks_files: bool = False  # key, known_hosts and target must exist before it runs
    needs_primary: bool = True  # False: runs on the primary (no host, no known_hosts)
    writes_state: bool = False  # run as the agent's user (see local/ownership.py)
    reads_state: bool = False  # refused, naming whom to run as, when the state dir is closed


COMMANDS: dict[str, Command] = {
    "once": Command(
        "run one sync and exit (0 applied/current, 1 failed, 2 config, 3 rejected, "
        "4 primary not initialized, 5 paused: nothing applied without --force)",
        cmd_once,
        checks_files=True,
        writes_state=True,
    ),
    "diff": Command(
        "show what the next sync would change; fetches and validates, applies nothing",
        cmd_once,
        checks_files=True,
        writes_state=True,
    ),
    "check-config": Command(
        "print the effective settings and where each came from, or every problem",
        cmd_check_config,
        checks_files=True,
    ),
    "run": Command(
        "run the daemon: scheduled syncs, HTTP health and metrics", cmd_run, checks_files=True
    ),
    # The control commands need only the target and state dir: no primary settings.
    "status": Command(
        "print the daemon's last status", cmd_status, needs_primary=False, reads_state=True
    ),
    "pause": Command(
        "pause syncing (flag file in state_dir)", cmd_pause, needs_primary=False, writes_state=True
    ),
    "resume": Command("resume syncing", cmd_resume, needs_primary=False, writes_state=True),
    "sync-now": Command(
        "ask the running daemon to sync now", cmd_sync_now, needs_primary=False, writes_state=True
    ),
    "rollback": Command(
        "re-apply a kept generation and pause syncing",
        cmd_rollback,
        needs_primary=False,
        writes_state=True,
    ),
    "accept-rollback": Command(
        "follow the primary's next HEAD even if its sequence went back (a restored or "
        "replaced primary); refused as publish_rollback otherwise",
        cmd_accept_rollback,
        needs_primary=False,
        writes_state=True,
    ),
    "publish": Command(
        "on the primary: publish the source as generations secondaries pull by hash "
        "(--once: one build; 0 published/current, 3 rejected, 4 not initialized)",
        cmd_publish,
        needs_primary=False,
    ),
    "demo": Command("run the daemon against an embedded primary on loopback", None),
}


def _add_global_options(parser: argparse.ArgumentParser, *, in_command: bool) -> None:
    """--config, --json and every settings flag, accepted before and after the command, in
    groups of their own after what is particular to the command (its help shows that first).

    A command's parser defaults them to SUPPRESS, so an option given before the command is
    not reset by the command's parser when it is absent after it.
    """
    default = argparse.SUPPRESS if in_command else None
    common = parser.add_argument_group("common options")
    common.add_argument(
        "--config",
        "-c",
        metavar="PATH",
        default=default,
        help=f"TOML config file (else env {CONFIG_ENV}, else {DEFAULT_CONFIG} if it exists)",
    )
    common.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS if in_command else False,
        help="machine-readable output",
    )
    group = parser.add_argument_group(
        "settings (each also env SYNCAGENT_<SECTION>_<KEY>; see check-config --markdown)"
    )
    for f in FIELDS:
        group.add_argument(f.flag, dest=f"set:{f.name}", metavar="V", default=default, help=f.help)


def _add_command_options(name: str, p: argparse.ArgumentParser) -> str:
    """The options only ``name`` takes; returns them as its usage line shows them."""
    if name in ("once", "diff"):
        p.add_argument(
            "--verify",
            action="store_true",
            help="compare every file's content with the primary's now (else a rotating "
            "share per sync.verify_interval)",
        )
    if name == "once":
        p.add_argument(
            "--force",
            action="store_true",
            help="apply even while paused (a pause flag is set): an operator's override",
        )
        return "[--verify] [--force]"
    if name == "diff":
        return "[--verify]"
    if name == "rollback":
        p.add_argument("generation", nargs="?", help="generation id (default: the previous)")
        return "[GENERATION]"
    if name == "publish":
        p.add_argument("--once", action="store_true", help="build one generation now and exit")
        return "[--once]"
    if name == "check-config":
        p.add_argument(
            "--markdown",
            action="store_true",
            help="print the configuration reference (every key, default, env, flag) and exit",
        )
        return "[--markdown]"
    if name == "demo":
        p.add_argument("--churn", action="store_true", help="change the primary every few seconds")
        p.add_argument("--duration", type=float, default=None, help="stop after N seconds")
        p.add_argument("--dir", default=None, help="where to put the demo trees")
        return "[--churn] [--duration N] [--dir DIR]"
    return ""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="syncagent",
        description="Sync /etc/xroad from the X-Road primary, safely.",
        usage="syncagent [OPTIONS] COMMAND [OPTIONS]",
    )
    parser.add_argument("--version", action="version", version=f"syncagent {__version__}")
    _add_global_options(parser, in_command=False)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, command in COMMANDS.items():
        p = sub.add_parser(name, help=command.help, description=command.help)
        own = _add_command_options(name, p)
        p.usage = f"syncagent {name} {own + ' ' if own else ''}[OPTIONS]"
        _add_global_options(p, in_command=True)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    overrides = {
        k.removeprefix("set:"): v
        for k, v in vars(args).items()
        if k.startswith("set:") and v is not None
    }
    command = COMMANDS[args.command]
    if command.handler is None:
        return int(run_demo(args.dir, args.churn, args.duration, overrides))
    if getattr(args, "markdown", False):
        print(reference_markdown(), end="", flush=True)
        return ExitCode.OK
    settings, problems = load(args.config, overrides=overrides, needs_primary=command.needs_primary)
    if settings is not None and (command.writes_state or command.reads_state):
        try:
            if command.writes_state:
                _become_agent_user(settings)
            else:
                ownership.check_readable(ControlFiles.of(settings.sync).state)
        except SyncError as e:
            doc = {"result": "refused", "reason": str(e.reason), "error": e.message}
            emit(args, f"refused: [{e.reason}] {e.message}", doc)
            return int(exit_code_for(e.reason))
    if settings is not None and command.checks_files:
        problems = file_problems(settings)
    if settings is None or problems:
        return report_problems(args, problems)
    logs.configure(settings.log.format, settings.log.level)
    return command.handler(settings, args)


def _become_agent_user(settings: Settings) -> None:
    """A command that writes the state dir runs as the agent's user (root gives up its
    privileges for it), so nothing it leaves there is unusable by the daemon."""
    files = ControlFiles.of(settings.sync)
    owner = ownership.agent_owner(files.state, settings.sync.target, files.running_pid())
    if owner is not None:
        ownership.become(owner, files.state)


if __name__ == "__main__":
    sys.exit(main())
