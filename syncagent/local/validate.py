"""Decide whether a staged candidate tree may be applied: the I/O shell around the rules.

A secondary must never apply a tree that X-Road would choke on (a broken ini stops a service
from starting), that could hurt the agent itself (XML entity bombs), or that leaves the signer
with keys it cannot open. The decisions are pure and live in xroad/ (readers, formats, paths);
this module reads the staged files, runs ``bash -n`` on the files X-Road's launchers source,
runs the operator's ``validate_command``, and reads the local node.ini. Every check returns
Problems.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterable
from pathlib import Path
from xml.etree.ElementTree import ParseError

from syncagent.command import run_command
from syncagent.errors import Problem, Reason, SyncError
from syncagent.settings import SyncSettings
from syncagent.xroad.paths import (
    KEYCONF_PATH,
    NODE_INI_PATH,
    check_node_is_secondary,
    is_launcher_sourced,
    softtoken_key_ids,
    softtoken_keys_without_p12,
    softtoken_problems,
)
from syncagent.xroad.readers import rule_for

MAX_MESSAGE = 500
_BASH_SOURCE_ECHO_RE = re.compile(r": line \d+: `.*'$")


def _clean_bash_stderr(stderr: str, path: Path, name: str | None) -> str:
    """Keep bash's positional errors, drop its echo of the offending source line.

    services/*.conf may set secrets; bash prints the failing line verbatim after the error.
    """
    kept = [ln for ln in stderr.splitlines() if not _BASH_SOURCE_ECHO_RE.search(ln)]
    text = "\n".join(kept).strip()
    if name is not None:
        text = text.replace(str(path), name)
    if len(text) > MAX_MESSAGE:
        text = text[:MAX_MESSAGE] + "..."
    return text or "bash -n failed"


def validate_bash(path: Path, timeout: float = 10.0, *, name: str | None = None) -> Problem | None:
    """Syntax-check a file the X-Road launchers source: a syntax error stops every service.

    ``name`` (the tree path) replaces the staging path in bash's messages and in the Problem.
    """
    env = {"PATH": os.environ.get("PATH", os.defpath), "LC_ALL": "C"}
    where = name if name is not None else str(path)
    try:
        result = subprocess.run(
            ["bash", "-n", str(path)],
            stdin=subprocess.DEVNULL,
            capture_output=True,
            timeout=timeout,
            env=env,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return Problem(where, f"bash -n timed out after {timeout:g}s")
    except OSError as exc:
        return Problem(where, f"cannot run bash -n: {exc.strerror}")
    if result.returncode == 0:
        return None
    return Problem(where, _clean_bash_stderr(result.stderr.decode("utf-8", "replace"), path, name))


def _read_capped(path: Path) -> bytes:
    """Read no more than the size seen at open: a file growing underneath cannot balloon."""
    with path.open("rb") as handle:
        return handle.read(os.fstat(handle.fileno()).st_size)


def _check_file(root: Path, rel: str, run_bash: bool) -> Problem | None:
    full = root / rel
    if is_launcher_sourced(rel):
        return validate_bash(full, name=rel) if run_bash else None
    rule = rule_for(rel)
    if rule is None:
        return None
    try:
        data = _read_capped(full)
    except OSError as exc:
        return Problem(rel, f"cannot read: {exc.strerror}")
    return rule(rel, data)


def _softtoken_key_ids(root: Path, paths: frozenset[str]) -> list[str]:
    if KEYCONF_PATH not in paths:
        return []
    try:
        return softtoken_key_ids(_read_capped(root / KEYCONF_PATH))
    except (OSError, ParseError, ValueError, RecursionError):
        return []  # already reported as an unreadable or invalid XML file


def validate_tree(
    root: Path,
    paths: Iterable[str],
    *,
    xroad: bool,
    run_bash: bool = True,
    changed: Iterable[str] | None = None,
) -> list[Problem]:
    """Check a staged candidate before any of it is applied.

    ``changed`` limits the per-file format checks to files whose content is new: the others
    already passed as part of the live generation, and re-parsing a 10,000-file tree for one
    changed file would dominate the sync. Cross-file rules always see the whole tree. All
    problems are collected, not just the first, so one rejection tells the operator
    everything that is wrong on the primary.
    """
    path_set = frozenset(paths)
    to_check = path_set if changed is None else path_set & frozenset(changed)
    problems = [
        problem
        for rel in sorted(to_check)
        if (problem := _check_file(root, rel, run_bash)) is not None
    ]
    if xroad:
        problems.extend(softtoken_problems(_softtoken_key_ids(root, path_set), path_set))
    return problems


def tree_warnings(root: Path, paths: Iterable[str]) -> list[Problem]:
    """What X-Road itself runs with but an operator should hear of (logged, never refused)."""
    path_set = frozenset(paths)
    return softtoken_keys_without_p12(_softtoken_key_ids(root, path_set), path_set)


async def run_validate_command(sync: SyncSettings, farm: Path) -> Problem | None:
    """The operator's own check on the staged tree; its failure rejects the sync."""
    if not sync.validate_command:
        return None
    env = {**os.environ, "SYNCAGENT_STAGING": str(farm), "SYNCAGENT_TARGET": str(sync.target)}
    done = await run_command(sync.validate_command, env=env, timeout=sync.validate_timeout)
    if done.ok:
        return None
    if done.returncode is None:
        return Problem("validate_command", done.stderr)
    return Problem("validate_command", f"exited {done.returncode}: {done.stderr}")


def check_local_node(sync: SyncSettings) -> None:
    """Refuse to sync into a node that does not say it is a secondary."""
    if not sync.xroad_checks:
        return
    node_ini = sync.target / NODE_INI_PATH
    try:
        data: bytes | None = node_ini.read_bytes()
    except FileNotFoundError:
        data = None
    problem = check_node_is_secondary(str(node_ini), data, sync.node_type)
    if problem:
        raise SyncError(Reason.VALIDATION, "this node is not a secondary", (problem,))


def read_local_version(source: str) -> tuple[str | None, str]:
    """This node's own X-Road version from a file or ``dpkg:<package>``, or why it is unknown.

    Never raises: a node whose version cannot be read simply has no version check.
    """
    if source.startswith("dpkg:"):
        package = source.removeprefix("dpkg:")
        try:
            done = subprocess.run(
                ["dpkg-query", "-W", "-f=${Version}", package],
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=10,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return None, f"cannot run dpkg-query: {exc}"
        version = done.stdout.decode("utf-8", "replace").strip()
        if done.returncode != 0 or not version:
            return None, f"package {package} is not installed (dpkg-query)"
        return version, ""
    try:
        text = Path(source).read_bytes()[:256].decode("utf-8", "replace").strip()
    except OSError as exc:
        return None, f"cannot read {source}: {exc.strerror}"
    return (text, "") if text else (None, f"{source} is empty")
