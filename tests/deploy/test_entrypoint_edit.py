"""docker/strip_first_sync.py, the image build's edit of the base entrypoint, on files.

Fixtures (tests/deploy/fixtures/entrypoints/, written for these tests; README.md there says
what each one is): the three released shapes of the secondary sidecar's /root/entrypoint.sh,
and adversarial ones. For each, either the exact lines removed (and so the exact output: the
input minus those lines, every other byte kept) and the exact report, or a refusal naming the
line. Then the proof steps are shown to catch what they are for, and the parser's statement
boundaries are checked against bash's own. No podman needed; runs in a second.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import cast

import pytest
from support import REPO

TOOL = REPO / "docker" / "strip_first_sync.py"
FIXTURES = Path(__file__).resolve().parent / "fixtures" / "entrypoints"
STANDIN_ENTRYPOINT = REPO / "docker" / "standin" / "rootfs" / "root" / "entrypoint.sh"

RSYNC = "RSYNC_CMD assignment"
LOOP = "first-sync retry loop"
CRON = "cron job"
MODE = "owner and mode of the cron job file"
SHAPE_7 = [(RSYNC, 0, 0), (LOOP, 3, 6), (CRON, 9, 9), (MODE, 10, 10)]  # offsets from RSYNC_CMD

# fixture -> the statements removed: (role, first line, last line)
STRIPPED: dict[str, list[tuple[str, int, int]]] = {
    "6.26.0.sh": [(LOOP, 29, 34), (CRON, 37, 37), (MODE, 38, 38)],
    "7.0.0-7.4.0.sh": [(r, a + 30, b + 30) for r, a, b in SHAPE_7],
    "7.4.1-7.8.0.sh": [(r, a + 36, b + 36) for r, a, b in SHAPE_7],
    "adversarial-loop-words-in-strings-and-comments.sh": [
        (r, a + 37, b + 37) for r, a, b in SHAPE_7
    ],
    "adversarial-heredoc.sh": [(r, a + 44, b + 44) for r, a, b in SHAPE_7],
    "adversarial-unrelated-loops.sh": [(r, a + 43, b + 43) for r, a, b in SHAPE_7],
    "adversarial-command-substitution.sh": [(r, a + 43, b + 43) for r, a, b in SHAPE_7],
    "adversarial-continued-lines.sh": [
        (RSYNC, 36, 37),
        (LOOP, 40, 40),
        (CRON, 43, 43),
        (MODE, 44, 44),
    ],
    "issue-example.sh": [(LOOP, 8, 8)],
}
# fixture -> (line named, words of the reason)
REFUSED: dict[str, tuple[int | None, str]] = {
    "adversarial-sync-in-function.sh": (
        41,
        "still names the rsync sync after the sync statements are removed (the function "
        "first_sync(): `su -c \"$RSYNC_CMD\" xroad |& sed 's/^/    /' && break`)",
    ),
    "adversarial-other-step-in-loop.sh": (
        42,
        "the command `chown` inside the first-sync retry loop (lines 39-43) is not part of "
        "the sync; refusing to drop it with the loop",
    ),
    "adversarial-log-in-loop.sh": (
        41,
        "the command `warn` inside the first-sync retry loop (lines 39-43) is not part of the sync",
    ),
    "adversarial-cron-in-if.sh": (
        45,
        "still names the rsync sync after the sync statements are removed (an if "
        "statement: `if [ ! -e /etc/cron.d/xroad-state-sync ]; then`)",
    ),
    "adversarial-heredoc-names-rsync.sh": (
        35,
        '(a here-document: `exec su -c "rsync -a xroad-slave@primary:/etc/xroad/ '
        '/etc/xroad/" xroad`)',
    ),
    "adversarial-shares-a-line.sh": (
        46,
        "the owner and mode of the cron job file (line 46) shares a line with another statement",
    ),
    "adversarial-no-sync.sh": (
        None,
        "no first-sync retry loop (a top-level while/until loop around rsync) found: is "
        "BASE a sidecar *secondary* image?",
    ),
}


def strip(path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """The tool as the Dockerfile runs it: a file in, the stripped script out."""
    return subprocess.run(
        [sys.executable, str(TOOL), *args, str(path)], capture_output=True, text=True, timeout=60
    )


def expected_report(lines: list[str], removed: list[tuple[str, int, int]]) -> str:
    total = sum(b - a + 1 for _, a, b in removed)
    out = [
        f"strip-first-sync: removed {len(removed)} statements, {total} lines; every other "
        "line is kept byte for byte:"
    ]
    for role, a, b in removed:
        out.append(f"  {'line ' + str(a) if a == b else f'lines {a}-{b}'}: {role}")
        out += [f"  -{n:4d} {lines[n - 1]}" for n in range(a, b + 1)]
    return "\n".join(out) + "\n"


def test_every_fixture_has_an_expectation() -> None:
    assert {p.name for p in FIXTURES.glob("*.sh")} == set(STRIPPED) | set(REFUSED)


@pytest.mark.parametrize("name", sorted(STRIPPED))
def test_strips_exactly_the_sync(name: str) -> None:
    text = (FIXTURES / name).read_text()
    lines = text.splitlines()
    removed = STRIPPED[name]
    drop = {n for _, a, b in removed for n in range(a, b + 1)}
    res = strip(FIXTURES / name)
    assert res.returncode == 0, res.stderr
    # every line not listed is kept, byte for byte and in order; nothing is added
    assert res.stdout == "".join(
        line for n, line in enumerate(text.splitlines(True), 1) if n not in drop
    )
    assert res.stderr == expected_report(lines, removed)
    # what goes is sync machinery only (the listed roles say which); nothing kept runs rsync
    kept_code = [ln for ln in res.stdout.splitlines() if not ln.lstrip().startswith("#")]
    assert not [ln for ln in kept_code if "rsync" in ln.lower() or "xroad-state-sync" in ln]
    assert kept_code[-1] == "exec /usr/bin/supervisord -n -c /etc/supervisor/supervisord.conf"


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_refuses_naming_the_line(name: str) -> None:
    line, reason = REFUSED[name]
    res = strip(FIXTURES / name)
    assert res.returncode == 1
    assert res.stdout == ""  # the Dockerfile's redirect gets nothing to ship
    first = res.stderr.splitlines()[0]
    prefix = "strip-first-sync: refusing: " + (f"line {line}: " if line else "")
    assert first.startswith(prefix), first
    assert reason in first, first
    assert "Set SYNCAGENT_EXEC to a start command of your own" in res.stderr


def test_the_standin_entrypoint_loses_the_same_statements_as_its_shape() -> None:
    """docker/standin's /root/entrypoint.sh is the 7.4.1-7.8.0 shape (the image tests use it)."""

    def removed_text(path: Path) -> list[str]:
        res = strip(path)
        assert res.returncode == 0, res.stderr
        return re.findall(r"^  - *\d+ (.*)$", res.stderr, re.M)

    assert removed_text(STANDIN_ENTRYPOINT) == removed_text(FIXTURES / "7.4.1-7.8.0.sh")


def test_report_file_is_the_report(tmp_path: Path) -> None:
    out = tmp_path / "entrypoint.sh.stripped"
    res = strip(FIXTURES / "7.4.1-7.8.0.sh", "--report", str(out))
    assert res.returncode == 0 and out.read_text() == res.stderr


def test_reads_stdin_too() -> None:
    text = (FIXTURES / "6.26.0.sh").read_text()
    res = subprocess.run(
        [sys.executable, str(TOOL)], input=text, capture_output=True, text=True, timeout=60
    )
    assert res.returncode == 0 and res.stdout == strip(FIXTURES / "6.26.0.sh").stdout


# ---- the tool's own parts ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tool() -> ModuleType:
    spec = importlib.util.spec_from_file_location("strip_first_sync", TOOL)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["strip_first_sync"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_statement_spans_follow_shell_syntax(tool: ModuleType) -> None:
    text = (
        "cat <<'EOF' >/x\n"  # 1  a here-document: its body belongs to the statement
        "while :; do done\n"  # 2
        "EOF\n"  # 3
        'a="$(case x in x) echo ")";; esac)"\n'  # 4  `)` in a case inside $(...), in quotes
        "b='it''s' c=\"x\\\n"  # 5  continued inside double quotes ...
        'y"\n'  # 6
        'f() { [[ $a == *")"* ]] && echo "done"; }; g=1\n'  # 7  two statements, one line
        "# while\n"  # 8  a comment is no statement
        "for i in 1 2; do\n"  # 9
        "  echo $((i + 1)) `echo done`\n"  # 10
        "done | cat\n"  # 11
    )
    statements, heredocs = tool.parse(text)
    assert [(s.line, s.end) for s in statements] == [
        (1, 3),
        (4, 4),
        (5, 6),
        (7, 7),
        (7, 7),
        (9, 11),
    ]
    assert [d.body for d in heredocs] == ["while :; do done\n"]
    complaint = tool.bash_n(text)
    assert complaint is None, complaint
    # bash agrees on every boundary: what comes before each statement parses on its own
    lines = text.splitlines(keepends=True)
    for s in statements:
        assert tool.bash_n("".join(lines[: s.line - 1])) is None, s.line


@pytest.mark.parametrize(
    "text,where",
    [
        ('echo "never closed\n', "line 1: cannot parse: a double quote that never closes"),
        ("cat <<EOF\nbody\n", "line 1: here-document never ends (no 'EOF')"),
        ("if true; then\n  echo\n", "line 3: cannot parse: unexpected end of the script"),
        ("x=$(echo\n", "line 2: cannot parse: unexpected end of the script"),
    ],
)
def test_unparseable_input_is_refused_with_its_line(
    tool: ModuleType, text: str, where: str
) -> None:
    with pytest.raises(tool.Refused) as err:
        tool.parse(text)
    assert str(err.value).startswith(where), str(err.value)


def test_proof_rejects_an_output_that_is_not_a_pure_deletion(tool: ModuleType) -> None:
    text = (FIXTURES / "7.4.1-7.8.0.sh").read_text()
    statements, removals = tool.plan(text)
    lines = text.splitlines(keepends=True)
    kept = [s for s in statements if not any(s is r.stmt for r in removals)]
    drop = {n for r in removals for n in range(r.first, r.last + 1)}
    good = "".join(ln for n, ln in enumerate(lines, 1) if n not in drop)
    tool.prove(text, good, lines, removals, kept)  # the real output passes
    edited = good.replace('log "Making the internal gRPC keys"', 'log "Making keys"')
    with pytest.raises(tool.Refused, match="not the input minus whole lines"):
        tool.prove(text, edited, lines, removals, kept)
    missing = good.replace("chown -R xroad:xroad /etc/xroad\n", "")
    with pytest.raises(tool.Refused, match="the deleted lines are not the removed statements"):
        tool.prove(text, missing, lines, removals, kept)


def test_proof_rejects_a_removed_block_cut_short(tool: ModuleType) -> None:
    """Had the parser ended the loop one line early, `done` would be left behind: refused."""
    text = (FIXTURES / "7.4.1-7.8.0.sh").read_text()
    statements, removals = tool.plan(text)
    lines = text.splitlines(keepends=True)
    loop = next(r for r in removals if r.role == LOOP)
    kept = [s for s in statements if not any(s is r.stmt for r in removals)]
    short = [tool.Removal(r.role, r.stmt, r.first, r.last - (r is loop)) for r in removals]
    drop = {n for r in short for n in range(r.first, r.last + 1)}
    with pytest.raises(tool.Refused):
        tool.prove(
            text, "".join(ln for n, ln in enumerate(lines, 1) if n not in drop), lines, short, kept
        )
    # bash is the second opinion on where each removed block ends: whole, it parses; cut
    # short by its last line, it does not
    assert tool.bash_n("".join(lines[loop.first - 1 : loop.last])) is None
    assert tool.bash_n("".join(lines[loop.first - 1 : loop.last - 1])) is not None


def test_released_upstream_forms_of_each_sync_statement(tool: ModuleType) -> None:
    """The roles, on the statements alone (as the fixtures hold them)."""

    def role(src: str) -> str | None:
        (stmt,), _ = tool.parse(src)
        return cast("str | None", tool.classify(stmt))

    assert role('RSYNC_CMD="rsync -az p:/etc/xroad/ /etc/xroad/"\n') == RSYNC
    assert role('RSYNC_CMD="$(which rsync) -az"\n') is None  # runs a command: not just data
    assert role("until rsync -a p:/etc/xroad/ /etc/xroad/; do sleep 5; done\n") == LOOP
    assert role('while :; do su -c "$RSYNC_CMD" xroad && break; sleep 5 || exit 1; done\n') == LOOP
    assert role('echo "* * * * * xroad $RSYNC_CMD 2>&1" > /etc/cron.d/xroad-state-sync\n') == CRON
    assert role('echo "* * * * * xroad $RSYNC_CMD" > /etc/cron.d/other\n') is None
    assert role("chmod 644 /etc/cron.d/xroad-state-sync\n") == MODE
    assert role("chmod 644 /etc/cron.d/xroad-state-sync || true\n") is None
    assert role("set -o pipefail\n") is None and role("RC=1\n") is None  # kept: harmless
