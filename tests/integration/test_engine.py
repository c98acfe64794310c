"""The sync engine against a real OpenSSH sshd, through the read-only SFTP account."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from support.config import cli_env, settings_for
from support.sshd import Sshd
from support.tools import run_syncagent
from support.trees import (
    OLD,
    age,
    copy_tree,
    dir_inodes,
    live_state,
    managed,
    node_local,
    snapshot,
)

from syncagent import testhooks
from syncagent.demo.sample_tree import add_softtoken_key, build_secondary_local
from syncagent.engine import sync
from syncagent.errors import Reason
from syncagent.local import apply as applying
from syncagent.local.state import StateDir, locked
from syncagent.report import Outcome, SyncResult
from syncagent.settings import Settings
from syncagent.xroad.paths import softtoken_key_ids

MakeSettings = Callable[..., Settings]


@pytest.fixture
def make_settings(sshd: Sshd, primary_tree: Path, target: Path) -> MakeSettings:
    def make(remote: Path | None = None, **extra: Any) -> Settings:
        return settings_for(sshd, remote or primary_tree, target, **extra)

    return make


def run(settings: Settings, **kw: Any) -> SyncResult:
    return asyncio.run(sync(settings, **kw))


# ---------------------------------------------------------------------------------------------


def test_first_sync_mirrors_the_primary_minus_node_local(
    make_settings: MakeSettings, primary_tree: Path, target: Path
) -> None:
    settings = make_settings()
    local_before = node_local(target)
    result = run(settings)
    assert result.outcome is Outcome.APPLIED, result.summary()
    assert result.exit_code == 0
    assert managed(target, settings) == managed(primary_tree, settings)
    assert node_local(target) == local_before
    assert not (target / "signer" / "tmpconf123456.tmp").exists()
    assert not (target / "globalconf" / "EE").exists()
    st = os.stat(target / "signer" / "keyconf.xml")
    assert oct(st.st_mode & 0o777) == "0o660"
    assert (st.st_uid, st.st_gid) == (os.stat(target).st_uid, os.stat(target).st_gid)
    assert result.generation and len(result.generation) == 16


def test_noop_sync_fetches_nothing_and_keeps_generation(make_settings: MakeSettings) -> None:
    settings = make_settings()
    first = run(settings)
    second = run(settings)
    assert second.outcome is Outcome.UNCHANGED
    assert (second.files_fetched, second.bytes_fetched) == (0, 0)
    assert second.generation == first.generation


def test_generation_id_is_the_same_on_every_replica(
    sshd: Sshd, primary_tree: Path, tmp_path: Path
) -> None:
    gens = []
    for name in ("a", "b"):
        t = tmp_path / name
        t.mkdir()
        build_secondary_local(t)
        gens.append(run(settings_for(sshd, primary_tree, t)).generation)
    assert gens[0] == gens[1]


def test_changes_propagate(make_settings: MakeSettings, primary_tree: Path, target: Path) -> None:
    settings = make_settings()
    run(settings)
    dirs_before = dir_inodes(target)
    (primary_tree / "conf.d" / "local.ini").write_text("[proxy]\nhealth-check-port=5599\n")
    (primary_tree / "services" / "extra.conf").write_text("X=1\n")
    (primary_tree / "devices.ini").unlink()
    os.chmod(primary_tree / "ssl" / "internal.crt", 0o640)
    (primary_tree / "newdir" / "sub").mkdir(parents=True)
    (primary_tree / "newdir" / "sub" / "a.json").write_text('{"a": 1}')
    (primary_tree / "backup.d" / "10_xroad-confclient").unlink()
    for p in (primary_tree / "backup.d").iterdir():
        p.unlink()
    (primary_tree / "backup.d").rmdir()
    age(primary_tree)

    result = run(settings)
    assert result.outcome is Outcome.APPLIED, result.summary()
    assert "conf.d/local.ini" in result.modified
    assert {"services/extra.conf", "newdir", "newdir/sub", "newdir/sub/a.json"} <= set(result.added)
    assert {"devices.ini", "backup.d"} <= set(result.removed)
    assert result.mode_changed == ["ssl/internal.crt"]
    assert result.files_fetched == 3  # only the new and changed files
    assert managed(target, settings) == managed(primary_tree, settings)
    kept = {d: i for d, i in dirs_before.items() if d != "backup.d"}
    assert {d: dir_inodes(target)[d] for d in kept} == kept, "live directories were replaced"


def test_same_size_rewrite_in_the_same_second_is_caught(
    make_settings: MakeSettings, primary_tree: Path, target: Path
) -> None:
    settings = make_settings()
    f = primary_tree / "conf.d" / "local.ini"
    # An mtime not before the listing below, however slow this machine is (with +1 a run
    # slower than a second under load listed after it, and the rewrite was rightly trusted).
    now = int(time.time()) + 30
    f.write_text("[proxy]\nport=1111\n")
    os.utime(f, (now, now))
    run(settings)
    assert (target / "conf.d" / "local.ini").read_text().endswith("1111\n")
    f.write_text("[proxy]\nport=2222\n")  # same size, same whole-second mtime
    os.utime(f, (now, now))
    result = run(settings)
    assert result.modified == ["conf.d/local.ini"], result.summary()
    assert (target / "conf.d" / "local.ini").read_text().endswith("2222\n")


def test_unsettled_file_waits_for_settle(
    make_settings: MakeSettings, primary_tree: Path, target: Path
) -> None:
    settings = make_settings(sync__settle=1.5)
    run(settings)
    f = primary_tree / "conf.d" / "local.ini"
    f.write_text("[proxy]\nfresh=1\n")
    mtime = int(os.stat(f).st_mtime)  # what SFTP v3 reports: whole seconds
    result = run(settings)
    assert result.modified == ["conf.d/local.ini"]
    # the real write time is unknown within mtime's second: settle counts from its end
    assert time.time() >= mtime + 1 + 1.5, "a just-written file was applied before it settled"


def test_keyconf_lands_after_its_p12(
    make_settings: MakeSettings, primary_tree: Path, target: Path
) -> None:
    settings = make_settings()
    run(settings)
    new_key = add_softtoken_key(primary_tree, mtime=OLD)
    seen_missing: list[str] = []

    def check(_op: int) -> None:
        ids = softtoken_key_ids((target / "signer" / "keyconf.xml").read_bytes())
        seen_missing.extend(
            k for k in ids if not (target / "signer" / "softtoken" / f"{k}.p12").exists()
        )

    result = run(settings, on_op=check)
    assert result.outcome is Outcome.APPLIED
    assert f"signer/softtoken/{new_key}.p12" in result.added
    assert seen_missing == []
    assert new_key in softtoken_key_ids((target / "signer" / "keyconf.xml").read_bytes())


def test_keyconf_rename_keeps_the_signer_directory_inode(
    make_settings: MakeSettings, primary_tree: Path, target: Path
) -> None:
    settings = make_settings()
    run(settings)
    signer_ino = os.stat(target / "signer").st_ino
    keyconf_ino = os.stat(target / "signer" / "keyconf.xml").st_ino
    add_softtoken_key(primary_tree, mtime=OLD)
    run(settings)
    assert os.stat(target / "signer").st_ino == signer_ino
    assert os.stat(target / "signer" / "keyconf.xml").st_ino != keyconf_ino  # renamed, not edited


def test_drifted_live_file_is_restored(
    make_settings: MakeSettings, target: Path, primary_tree: Path
) -> None:
    settings = make_settings()
    run(settings)
    (target / "conf.d" / "local.ini").write_text("tampered")
    (target / "stray.ini").write_text("[x]\n")
    result = run(settings)
    assert result.outcome is Outcome.APPLIED
    assert "stray.ini" in result.removed
    assert managed(target, settings) == managed(primary_tree, settings)


# --- rejections leave the live tree exactly as it was -----------------------------------------

BAD_PRIMARIES: dict[str, Callable[[Path], object]] = {
    "conf.d/local.ini": lambda r: (r / "conf.d/local.ini").write_text("[proxy\nbroken"),
    "configuration-anchor.xml": lambda r: (r / "configuration-anchor.xml").write_text("<a><b></a>"),
    "signer/keyconf.xml": lambda r: (r / "signer/keyconf.xml").write_text(
        '<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaa"><!ENTITY b "&a;&a;&a;">]><x>&b;</x>'
    ),
    "services/local.conf": lambda r: (r / "services/local.conf").write_text("if then fi (\n"),
    "conf.d/acme.yml": lambda r: (r / "conf.d/acme.yml").write_text("eab:\n\tkid: x\n"),
    "escape": lambda r: os.symlink("/etc/shadow", r / "conf.d" / "escape"),
    "fifo": lambda r: os.mkfifo(r / "conf.d" / "fifo"),
    "db.properties": lambda r: (r / "db.properties").write_text("a=\\u12\n"),
}


@pytest.mark.parametrize("name", sorted(BAD_PRIMARIES))
def test_rejected_sync_leaves_live_tree_untouched(
    name: str, sshd: Sshd, primary_tree: Path, target: Path, tree_area: Path
) -> None:
    settings = settings_for(sshd, primary_tree, target)
    good = run(settings)
    assert good.outcome is Outcome.APPLIED
    (primary_tree / "conf.d" / "local.ini").write_text("[proxy]\nwould-change=1\n")
    BAD_PRIMARIES[name](primary_tree)
    age(primary_tree)
    before = live_state(target)
    result = run(settings)
    assert result.outcome is Outcome.REJECTED, result.summary()
    assert result.exit_code == 3
    assert result.error is not None and result.error.reason is Reason.VALIDATION
    named = " ".join(p.path for p in result.error.problems)
    assert name.split("/")[0] in named or name in str(result.error), str(result.error)
    after = live_state(target)
    assert after == before
    assert result.generation == good.generation


def test_a_key_deleted_on_the_primary_syncs_with_a_warning(
    sshd: Sshd, primary_tree: Path, target: Path
) -> None:
    """The admin UI's key deletion: the .p12 goes at once, keyconf.xml follows within a minute.
    The secondary mirrors that window as the primary's signer runs it: applied, warned."""
    settings = settings_for(sshd, primary_tree, target)
    assert run(settings).outcome is Outcome.APPLIED
    p12 = next((primary_tree / "signer/softtoken").glob("[0-9A-F]*.p12"))
    p12.unlink()
    age(primary_tree)
    result = run(settings)
    assert result.outcome is Outcome.APPLIED and result.exit_code == 0, result.summary()
    assert result.removed == [f"signer/softtoken/{p12.name}"]
    assert [w.path for w in result.warnings] == ["signer/keyconf.xml"]
    assert p12.stem in result.warnings[0].message
    assert result.to_json()["warnings"][0]["path"] == "signer/keyconf.xml"
    assert not (target / "signer/softtoken" / p12.name).exists()


def test_validate_command_can_reject(
    make_settings: MakeSettings, target: Path, primary_tree: Path, tmp_path: Path
) -> None:
    check = tmp_path / "check.sh"
    check.write_text(
        '#!/bin/sh\ntest -f "$SYNCAGENT_STAGING/conf.d/local.ini" || exit 9\n'
        'grep -q forbidden "$SYNCAGENT_STAGING/conf.d/local.ini" && '
        '{ echo "local.ini says forbidden" >&2; exit 1; }\nexit 0\n'
    )
    check.chmod(0o755)
    settings = make_settings(sync__validate_command=str(check))
    assert run(settings).outcome is Outcome.APPLIED
    (primary_tree / "conf.d" / "local.ini").write_text("[x]\nforbidden=1\n")
    age(primary_tree)
    before = live_state(target)
    result = run(settings)
    assert result.outcome is Outcome.REJECTED
    assert "local.ini says forbidden" in str(result.error)
    assert live_state(target) == before


def test_local_node_must_be_a_secondary(make_settings: MakeSettings, target: Path) -> None:
    (target / "conf.d" / "node.ini").write_text("[node]\ntype = master\n")
    before = live_state(target)
    result = run(make_settings())
    assert result.outcome is Outcome.REJECTED
    assert "master" in str(result.error)
    assert live_state(target) == before


def test_xroad_node_type_alone_says_secondary(make_settings: MakeSettings, target: Path) -> None:
    """X-Road 8 may give the node type in the environment and have no node.ini."""
    (target / "conf.d" / "node.ini").unlink()
    refused = run(make_settings())
    assert refused.outcome is Outcome.REJECTED, refused.summary()
    result = run(make_settings(sync__node_type="secondary"))
    assert result.outcome is Outcome.APPLIED, result.summary()
    assert not (target / "conf.d" / "node.ini").exists(), "node.ini stays node-local"


@pytest.mark.parametrize(("declared", "ini"), [("primary", "slave"), ("secondary", "master")])
def test_xroad_node_type_and_node_ini_that_disagree_are_refused(
    make_settings: MakeSettings, target: Path, declared: str, ini: str
) -> None:
    (target / "conf.d" / "node.ini").write_text(f"[node]\ntype = {ini}\n")
    before = live_state(target)
    result = run(make_settings(sync__node_type=declared))
    assert result.outcome is Outcome.REJECTED and result.exit_code == 3, result.summary()
    assert declared in str(result.error) and ini in str(result.error)
    assert live_state(target) == before


@pytest.mark.parametrize(("version", "outcome"), [("8.0.0\n", "applied"), ("7.6.2\n", "nope")])
def test_an_x_road_8_primary_has_no_keyconf(
    make_settings: MakeSettings, primary_tree: Path, target: Path, version: str, outcome: str
) -> None:
    """From X-Road 8 the signer's keys live in the database: no signer/keyconf.xml, and that
    is an initialised primary; a 7.x primary without it is not initialised."""
    (primary_tree / "signer" / "keyconf.xml").unlink()
    (primary_tree / "VERSION").write_text(version)
    age(primary_tree)
    before = live_state(target)
    result = run(make_settings())
    if outcome == "applied":
        assert result.outcome is Outcome.APPLIED, result.summary()
        assert not (target / "signer" / "keyconf.xml").exists()
        assert not (target / "VERSION").exists(), "VERSION stays node-local"
    else:
        assert result.outcome is Outcome.NOT_INITIALIZED and result.exit_code == 4
        assert "signer/keyconf.xml" in str(result.error)
        assert live_state(target) == before


@pytest.mark.parametrize(
    ("key", "value", "reason"),
    [
        ("sync__max_file_bytes", "1000", Reason.LIMITS),
        ("sync__max_files", "10", Reason.LIMITS),
        ("sync__max_total_bytes", "5000", Reason.LIMITS),
        ("sync__max_depth", "1", Reason.LIMITS),
    ],
)
def test_limits_refuse_before_fetching(
    make_settings: MakeSettings, target: Path, key: str, value: str, reason: Reason
) -> None:
    before = live_state(target)
    result = run(make_settings(**{key: value}))
    assert result.error is not None and result.error.reason is reason, result.summary()
    assert result.bytes_fetched == 0
    assert live_state(target) == before


def test_empty_primary_is_not_initialized(sshd: Sshd, tree_area: Path, target: Path) -> None:
    empty = tree_area / "empty-primary"
    empty.mkdir(mode=0o755, exist_ok=True)
    result = run(settings_for(sshd, empty, target))
    assert result.outcome is Outcome.NOT_INITIALIZED
    assert result.exit_code == 4
    missing = run(settings_for(sshd, tree_area / "does-not-exist", target))
    assert missing.exit_code == 4


# --- crash safety -----------------------------------------------------------------------------


class Crash(BaseException):
    pass


@pytest.fixture
def two_generations(primary_tree: Path, tree_area: Path) -> tuple[Path, Path]:
    """Primary state A and a B that exercises every kind of apply operation."""
    b = copy_tree(primary_tree, tree_area / f"b-{os.getpid()}-{time.monotonic_ns()}")
    add_softtoken_key(b)
    (b / "conf.d" / "local.ini").write_text("[proxy]\nchanged=1\n")
    (b / "devices.ini").unlink()
    (b / "jetty" / "serverproxy.xml").unlink()
    (b / "jetty").rmdir()
    (b / "extra" / "deep").mkdir(parents=True, mode=0o750)
    (b / "extra" / "deep" / "x.properties").write_text("a=b\n")
    os.chmod(b / "ssl" / "internal.key", 0o640)
    age(b)
    return primary_tree, b


def test_crash_at_every_apply_step_recovers_to_the_new_generation(
    sshd: Sshd, two_generations: tuple[Path, Path], tmp_path: Path
) -> None:
    a, b = two_generations
    k = 0
    while True:
        t = tmp_path / f"t{k}"
        t.mkdir()
        build_secondary_local(t)
        run(settings_for(sshd, a, t))
        settings_b = settings_for(sshd, b, t)
        expected = managed(b, settings_b)
        local = node_local(t)

        def crash(i: int, k: int = k) -> None:
            if i == k:
                raise Crash

        try:
            finished = run(settings_b, on_op=crash)
        except Crash:
            pass
        else:
            assert finished.outcome is Outcome.APPLIED, finished.summary()
            break  # k is past the last operation: every step has been crashed at
        state = t / ".syncagent"
        assert (state / "journal.json").exists()
        assert applying.recover(StateDir(state), t) is not None
        assert managed(t, settings_b) == expected, f"crash after op {k}"
        assert node_local(t) == local
        again = run(settings_b)
        assert again.outcome is Outcome.UNCHANGED, again.summary()
        k += 1
    assert k >= 8, f"only {k} apply operations were exercised"


def test_sigkill_mid_apply_then_restart(
    sshd: Sshd, two_generations: tuple[Path, Path], target: Path
) -> None:
    a, b = two_generations
    run(settings_for(sshd, a, target))
    settings_b = settings_for(sshd, b, target)
    env = {**os.environ, **cli_env(settings_b), testhooks.KILL_AFTER_OP: "3"}
    killed = run_syncagent("once", env=env, timeout=60)
    assert killed.returncode == -9, killed.stderr
    assert (target / ".syncagent" / "journal.json").exists()
    env.pop(testhooks.KILL_AFTER_OP)
    done = run_syncagent("once", env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert managed(target, settings_b) == managed(b, settings_b)
    assert not (target / ".syncagent" / "journal.json").exists()


# --- host keys --------------------------------------------------------------------------------


def test_strict_refuses_an_unknown_host_key(
    make_settings: MakeSettings, tmp_path: Path, target: Path
) -> None:
    wrong = tmp_path / "known_hosts"
    wrong.write_text(
        "[127.0.0.1]:1 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJdD7y3aLq454yWBdwLWbieU"
        "1ebz9/cu7/QEXn9OIeZJ\n"
    )
    settings = make_settings(primary__known_hosts=wrong)
    before = live_state(target)
    result = run(settings)
    assert result.error is not None and result.error.reason is Reason.HOST_KEY
    assert result.exit_code == 1
    assert live_state(target) == before


def test_accept_new_pins_then_refuses_a_changed_key(
    fresh_sshd: Sshd, primary_tree: Path, target: Path
) -> None:
    settings = settings_for(
        fresh_sshd,
        primary_tree,
        target,
        primary__host_key_policy="accept-new",
        primary__known_hosts="",
    )
    assert run(settings).outcome is Outcome.APPLIED
    assert (target / ".syncagent" / "known_hosts.pinned").exists()
    fresh_sshd.regenerate_host_key()
    fresh_sshd.restart()
    result = run(settings)
    assert result.error is not None and result.error.reason is Reason.HOST_KEY, result.summary()


def test_unreachable_primary_is_a_connect_failure(
    make_settings: MakeSettings, target: Path
) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = run(make_settings(primary__port=port, primary__connect_timeout=2))
    assert result.error is not None and result.error.reason is Reason.CONNECT
    assert result.exit_code == 1


def test_cert_authority_known_hosts(
    fresh_sshd: Sshd, primary_tree: Path, target: Path, tmp_path: Path
) -> None:
    """A fleet can trust the primary's host CA instead of one key that changes on rebuild."""
    ca = tmp_path / "host_ca"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(ca)], check=True)
    subprocess.run(
        [
            "ssh-keygen",
            "-q",
            "-s",
            str(ca),
            "-I",
            "primary",
            "-h",
            "-n",
            "127.0.0.1",
            f"{fresh_sshd.host_key}.pub",
        ],
        check=True,
    )
    cert = Path(f"{fresh_sshd.host_key}-cert.pub")
    fresh_sshd.config.write_text(f"HostCertificate {cert}\n" + fresh_sshd.config.read_text())
    fresh_sshd.restart()
    known = tmp_path / "known_hosts_ca"
    known.write_text(
        f"@cert-authority [127.0.0.1]:{fresh_sshd.port} {Path(f'{ca}.pub').read_text()}"
    )
    result = run(settings_for(fresh_sshd, primary_tree, target, primary__known_hosts=known))
    assert result.outcome is Outcome.APPLIED, result.summary()
    other_ca = tmp_path / "other_ca"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other_ca)], check=True)
    known.write_text(
        f"@cert-authority [127.0.0.1]:{fresh_sshd.port} {Path(f'{other_ca}.pub').read_text()}"
    )
    refused = run(settings_for(fresh_sshd, primary_tree, target, primary__known_hosts=known))
    assert refused.error is not None and refused.error.reason is Reason.HOST_KEY


def test_state_dir_on_another_filesystem_is_a_config_error(
    make_settings: MakeSettings, target: Path
) -> None:
    other = Path("/dev/shm") / f"syncagent-state-{os.getpid()}"
    if os.stat("/dev/shm").st_dev == os.stat(target).st_dev:
        pytest.fail("/dev/shm and the test target share a filesystem; cannot test")
    try:
        result = run(make_settings(sync__state_dir=other))
        assert result.exit_code == 2
        assert result.error is not None and "another filesystem" in result.error.message
        assert not (target / "signer").exists()
    finally:
        import shutil

        shutil.rmtree(other, ignore_errors=True)


async def test_cancelled_apply_finishes_before_the_lock_is_released(tmp_path: Path) -> None:
    """Sync and rollback both publish through finish_in_thread: a cancel (SIGTERM) must not
    let the lock go while the apply thread is still renaming files."""
    state = StateDir(tmp_path / "state")
    state.ensure()
    events: list[str] = []

    def slow_apply() -> None:
        time.sleep(0.5)
        events.append("applied")

    async def holder() -> None:
        async with locked(state, 5):
            await applying.finish_in_thread(slow_apply)

    task = asyncio.create_task(holder())
    await asyncio.sleep(0.1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert events == ["applied"], "the cancel returned before the apply finished"
    async with locked(state, 0.5):
        events.append("relocked")
    assert events == ["applied", "relocked"]


# --- content verification ---------------------------------------------------------------------


def rewrite_keeping_size_and_mtime(path: Path) -> bytes:
    """What a backup restore, `cp -p` or `rsync -t` does: new bytes, same size, same mtime."""
    st = path.stat()
    data = path.read_bytes()
    new = data.replace(b"=", b":", 1)
    assert new != data and len(new) == len(data)
    with path.open("r+b") as fh:  # in place: the inode stays too
        fh.write(new)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert (path.stat().st_size, path.stat().st_mtime_ns) == (st.st_size, st.st_mtime_ns)
    return new


def test_a_same_size_same_mtime_rewrite_on_the_primary_is_found_by_verification(
    make_settings: MakeSettings, primary_tree: Path, target: Path
) -> None:
    settings = make_settings()
    assert run(settings).outcome is Outcome.APPLIED
    new = rewrite_keeping_size_and_mtime(primary_tree / "conf.d" / "local.ini")
    blind = run(settings)
    assert blind.outcome is Outcome.UNCHANGED and blind.verified == 0
    assert (target / "conf.d" / "local.ini").read_bytes() != new, "(size, mtime) cannot see it"
    result = run(settings, verify_all=True)
    assert result.outcome is Outcome.APPLIED, result.summary()
    assert result.modified == ["conf.d/local.ini"]
    assert result.mismatches == [("conf.d/local.ini", "primary")]
    tree = primary_tree
    files = [p for p in managed(tree, settings) if managed(tree, settings)[p][0] == "file"]
    assert result.verified == len(files)
    assert result.verified_pass_at is not None
    assert (target / "conf.d" / "local.ini").read_bytes() == new
    assert managed(target, settings) == managed(primary_tree, settings)
    again = run(settings, verify_all=True)
    assert again.outcome is Outcome.UNCHANGED and again.mismatches == []


def test_a_local_edit_that_keeps_inode_size_and_mtime_is_found_by_verification(
    make_settings: MakeSettings, primary_tree: Path, target: Path
) -> None:
    settings = make_settings(sync__verify_interval="0")  # every file, every sync
    assert run(settings).outcome is Outcome.APPLIED
    live = target / "conf.d" / "local.ini"
    ino = live.stat().st_ino
    rewrite_keeping_size_and_mtime(live)
    assert live.stat().st_ino == ino
    result = run(settings)
    assert result.outcome is Outcome.APPLIED, result.summary()
    assert result.mismatches == [("conf.d/local.ini", "local")]
    assert live.read_bytes() == (primary_tree / "conf.d" / "local.ini").read_bytes()
    assert managed(target, settings) == managed(primary_tree, settings)


def test_the_default_interval_verifies_a_rotating_share_not_everything(
    make_settings: MakeSettings, primary_tree: Path, target: Path
) -> None:
    """A no-op right after a sync verifies nothing and fetches nothing; once a whole
    interval has passed the pass has covered every file."""
    hourly = make_settings()  # the default, 3600 s
    assert run(hourly).outcome is Outcome.APPLIED
    quick = run(hourly)
    assert quick.outcome is Outcome.UNCHANGED and quick.verified == 0
    assert (quick.files_fetched, quick.bytes_fetched) == (0, 0)
    new = rewrite_keeping_size_and_mtime(primary_tree / "conf.d" / "local.ini")
    time.sleep(2.2)
    result = run(make_settings(sync__verify_interval="2"))
    assert result.verified_pass_at is not None, "a whole interval passed: a whole pass"
    assert ("conf.d/local.ini", "primary") in result.mismatches
    assert (target / "conf.d" / "local.ini").read_bytes() == new


# --- version skew -----------------------------------------------------------------------------


@pytest.fixture
def node_version(tmp_path: Path) -> Path:
    """This node's /usr/share/xroad/config/VERSION, as a sidecar image records it."""
    return tmp_path / "usr-share-xroad-config-VERSION"


def test_a_primary_on_another_release_is_held_until_the_versions_match(
    make_settings: MakeSettings, primary_tree: Path, target: Path, node_version: Path
) -> None:
    assert (primary_tree / "VERSION").read_text() == "7.6.2\n"
    node_version.write_text("7.5.0-1.ubuntu24.04\n")
    settings = make_settings(sync__version_source=str(node_version))
    before = live_state(target)
    held = run(settings)
    assert held.error is not None and held.error.reason is Reason.VERSION_SKEW, held.summary()
    assert held.outcome is Outcome.REJECTED and held.exit_code == 3
    assert held.versions is not None and held.versions.skew is True
    assert (held.versions.primary, held.versions.local) == ("7.6.2", "7.5.0-1.ubuntu24.04")
    assert "7.6.2" in str(held.error) and "7.5.0" in str(held.error)
    assert (held.files_fetched, held.bytes_fetched) == (0, 0)
    assert live_state(target) == before, "a held sync touches nothing"
    node_version.write_text("7.6.2-1.ubuntu24.04\n")  # this node was upgraded too
    resumed = run(settings)
    assert resumed.outcome is Outcome.APPLIED, resumed.summary()
    assert resumed.versions is not None and resumed.versions.skew is False
    assert not (target / "VERSION").exists(), "VERSION is the node's own: node-local"


def test_version_skew_warn_applies_and_ignore_does_not_look(
    make_settings: MakeSettings, target: Path, node_version: Path
) -> None:
    node_version.write_text("7.5.0\n")
    warned = run(make_settings(sync__version_source=str(node_version), sync__version_skew="warn"))
    assert warned.outcome is Outcome.APPLIED and warned.versions is not None
    assert warned.versions.skew is True
    ignored = run(
        make_settings(sync__version_source=str(node_version), sync__version_skew="ignore")
    )
    assert ignored.outcome is Outcome.UNCHANGED and ignored.versions is None


def test_no_readable_version_means_no_check_and_says_why(
    make_settings: MakeSettings, node_version: Path
) -> None:
    missing = run(make_settings(sync__version_source=str(node_version)))
    assert missing.outcome is Outcome.APPLIED
    assert missing.versions is not None and missing.versions.skew is None
    assert str(node_version) in missing.versions.note
    not_installed = run(make_settings(sync__version_source="dpkg:xroad-proxy-not-installed"))
    assert not_installed.outcome is Outcome.UNCHANGED
    assert not_installed.versions is not None and "not installed" in not_installed.versions.note


def test_the_ig_xlb_source_reads_the_package_version_with_dpkg(make_settings: MakeSettings) -> None:
    """dpkg:<package> as IG-XLB hosts use it (xroad-proxy there; bash here, at 5.x, is
    certainly not the primary's 7.6.2)."""
    held = run(make_settings(sync__version_source="dpkg:bash"))
    assert held.error is not None and held.error.reason is Reason.VERSION_SKEW, held.summary()
    assert held.versions is not None and held.versions.local
    assert held.versions.local.split(".")[0].isdigit()


# --- seeds ------------------------------------------------------------------------------------


def test_globalconf_is_seeded_once_where_absent_then_left_to_the_local_confclient(
    make_settings: MakeSettings, primary_tree: Path, target: Path
) -> None:
    settings = make_settings()
    assert settings.sync.seed == ("/globalconf/",)
    shutil.rmtree(target / "globalconf")
    seeded = run(settings)
    assert seeded.outcome is Outcome.APPLIED, seeded.summary()
    primary_gc = snapshot(primary_tree / "globalconf")
    assert snapshot(target / "globalconf") == primary_gc
    assert "globalconf/instance-identifier" in seeded.added

    # from now on the local confclient owns it: no overwrite, no repair, no delete
    (primary_tree / "globalconf" / "instance-identifier").write_text("CHANGED-ON-PRIMARY\n")
    age(primary_tree)
    (target / "globalconf" / "EE" / "private-params.xml").write_text("<downloaded/>\n")
    local = snapshot(target / "globalconf")
    again = run(settings)
    assert again.outcome is Outcome.UNCHANGED, again.summary()
    shutil.rmtree(primary_tree / "globalconf")
    age(primary_tree)
    gone = run(settings)
    assert gone.outcome is Outcome.UNCHANGED, gone.summary()
    assert snapshot(target / "globalconf") == local


def test_no_seed_without_the_sidecar_profile(make_settings: MakeSettings, target: Path) -> None:
    shutil.rmtree(target / "globalconf")
    result = run(make_settings(sync__profile="xlb"))
    assert result.outcome is Outcome.APPLIED, result.summary()
    assert not (target / "globalconf").exists()
