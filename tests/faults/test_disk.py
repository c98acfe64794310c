"""Full disk: the target (and so its state dir, which must share the filesystem) on a small
tmpfs that the test fills up, by bytes and by inodes, before a sync and in the middle of one.

A sync that cannot get the space fails with reason ``disk``, leaves the live tree exactly as it
was (or, if the disk fills after the journal is written, exactly the new generation), gives the
space its failed fetch took back, and succeeds by itself once space is freed.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from support.config import settings_for
from support.faults import check_live_generation, read_node_local
from support.sshd import Sshd
from support.tools import require_root, require_tool
from support.trees import age, live_state, managed

from syncagent.demo.sample_tree import add_softtoken_key, build_secondary_local
from syncagent.engine import sync
from syncagent.errors import Reason
from syncagent.report import Outcome, SyncResult
from syncagent.settings import Settings

FS_SIZE = 4 * 1024**2
CHUNK = 64 * 1024


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    """A private tmpfs of FS_SIZE bytes and 400 inodes, unmounted at teardown whatever happens."""
    require_root("mount -t tmpfs")
    require_tool("mount")
    mnt = tmp_path / "fs"
    mnt.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={FS_SIZE},nr_inodes=400,mode=0755", "tmpfs", mnt],
        check=True,
    )
    try:
        yield mnt
    finally:
        if subprocess.run(["umount", mnt], capture_output=True).returncode != 0:
            subprocess.run(["umount", "-l", mnt], check=False)


@pytest.fixture
def target(small_fs: Path) -> Path:
    t = small_fs / "etc-xroad"
    t.mkdir(mode=0o751)
    build_secondary_local(t)
    return t


def run(settings: Settings, **kw: object) -> SyncResult:
    return asyncio.run(sync(settings, **kw))  # type: ignore[arg-type]


def free_bytes(path: Path) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def free_inodes(path: Path) -> int:
    return os.statvfs(path).f_favail


def fill_bytes(fs: Path, leave: int = 0) -> Path:
    """Take every free byte of ``fs`` but ``leave`` (rounded to pages) with one filler file."""
    filler = fs / "filler"
    with filler.open("ab") as fh:
        block = b"\0" * CHUNK
        while True:
            try:
                fh.write(block)
                fh.flush()
            except OSError as e:
                assert e.errno == errno.ENOSPC
                break
        size = fh.tell()
    # the buffered tail may not have landed; measure what did
    size = filler.stat().st_size
    if leave:
        os.truncate(filler, max(0, size - leave))
    return filler


def fill_inodes(fs: Path, leave: int = 0) -> list[Path]:
    holder = fs / "inode-filler"
    holder.mkdir(exist_ok=True)
    made: list[Path] = []
    while True:
        p = holder / f"i{len(made)}"
        try:
            p.touch()
        except OSError as e:
            assert e.errno == errno.ENOSPC
            break
        made.append(p)
    for p in made[len(made) - leave :] if leave else []:
        p.unlink()
    return made[: len(made) - leave]


def change_primary(primary: Path) -> None:
    """A change that needs new space: a new key (.p12 + keyconf.xml) and a 1 MiB file."""
    add_softtoken_key(primary)
    (primary / "ssl" / "bundle.p12").write_bytes(os.urandom(1024 * 1024))
    (primary / "conf.d" / "local.ini").write_text("[proxy]\nafter-disk-full=1\n")
    age(primary)


def staging_is_empty(target: Path) -> bool:
    staging = target / ".syncagent" / "staging"
    return not staging.exists() or not any(staging.iterdir())


def test_disk_full_during_fetch_fails_with_disk_and_recovers(
    sshd: Sshd, primary_tree: Path, target: Path, small_fs: Path
) -> None:
    settings = settings_for(sshd, primary_tree, target)
    pf = settings.sync.path_filter()
    local = read_node_local(target)
    assert run(settings).outcome is Outcome.APPLIED
    old_gen = check_live_generation(target, settings.sync.state_dir, pf)
    change_primary(primary_tree)

    filler = fill_bytes(small_fs, leave=256 * 1024)  # room for some files, not the 1 MiB one
    free_before = free_bytes(small_fs)
    before = live_state(target)
    result = run(settings)
    assert result.error is not None and result.error.reason is Reason.DISK, result.summary()
    assert result.outcome is Outcome.FAILED and result.exit_code == 1
    assert live_state(target) == before
    assert check_live_generation(target, settings.sync.state_dir, pf, node_local=local) == old_gen
    assert staging_is_empty(target), "the failed fetch kept its partial files"
    assert free_bytes(small_fs) >= free_before, "the failed sync kept space on a full disk"

    again = run(settings)  # still full: same answer, same tree
    assert again.error is not None and again.error.reason is Reason.DISK
    assert live_state(target) == before

    filler.unlink()
    healed = run(settings)
    assert healed.outcome is Outcome.APPLIED, healed.summary()
    assert managed(target, settings) == managed(primary_tree, settings)
    check_live_generation(target, settings.sync.state_dir, pf, node_local=local)


def test_no_free_inodes_fails_with_disk_and_recovers(
    sshd: Sshd, primary_tree: Path, target: Path, small_fs: Path
) -> None:
    settings = settings_for(sshd, primary_tree, target)
    pf = settings.sync.path_filter()
    assert run(settings).outcome is Outcome.APPLIED
    old_gen = check_live_generation(target, settings.sync.state_dir, pf)
    change_primary(primary_tree)

    made = fill_inodes(small_fs, leave=1)
    before = live_state(target)
    result = run(settings)
    assert result.error is not None and result.error.reason is Reason.DISK, result.summary()
    assert live_state(target) == before
    assert check_live_generation(target, settings.sync.state_dir, pf) == old_gen
    assert staging_is_empty(target)

    for p in made:
        p.unlink()
    healed = run(settings)
    assert healed.outcome is Outcome.APPLIED, healed.summary()
    assert managed(target, settings) == managed(primary_tree, settings)
    check_live_generation(target, settings.sync.state_dir, pf)


def test_disk_fills_up_in_the_middle_of_an_apply(
    sshd: Sshd, primary_tree: Path, target: Path, small_fs: Path
) -> None:
    """Another process takes the last byte while files are being renamed into place: the
    journal is already on disk, so the live tree never mixes generations, and the next sync
    after space is freed finishes the record."""
    settings = settings_for(sshd, primary_tree, target)
    pf = settings.sync.path_filter()
    local = read_node_local(target)
    assert run(settings).outcome is Outcome.APPLIED
    old_gen = check_live_generation(target, settings.sync.state_dir, pf)
    change_primary(primary_tree)
    filler: list[Path] = []

    def take_the_rest(op: int) -> None:
        if op == 0:
            filler.append(fill_bytes(small_fs))
            fill_inodes(small_fs)

    result = run(settings, on_op=take_the_rest)
    new_state = managed(primary_tree, settings)
    if result.error is None:  # every remaining step fitted: nothing to prove but consistency
        assert result.outcome is Outcome.APPLIED
    else:
        assert result.error.reason is Reason.DISK, result.summary()
        live = managed(target, settings)
        assert live == new_state, "the live tree mixes two generations"
        assert (target / ".syncagent" / "journal.json").exists()
        still = run(settings)  # the roll-forward itself needs space for the record
        assert still.error is not None and still.error.reason is Reason.DISK, still.summary()
        assert managed(target, settings) == new_state
    for p in filler:
        p.unlink()
    with contextlib.suppress(FileNotFoundError):
        for p in (small_fs / "inode-filler").iterdir():
            p.unlink()
    healed = run(settings)
    assert healed.error is None, healed.summary()
    gen = check_live_generation(target, settings.sync.state_dir, pf, node_local=local)
    assert gen != old_gen and managed(target, settings) == new_state


def test_first_sync_onto_a_full_disk_reports_disk(
    sshd: Sshd, primary_tree: Path, target: Path, small_fs: Path
) -> None:
    """No state dir yet and no inode to make it: still reason ``disk``, not a config error."""
    settings = settings_for(sshd, primary_tree, target)
    made = fill_inodes(small_fs)
    before = live_state(target)
    result = run(settings)
    assert result.error is not None and result.error.reason is Reason.DISK, result.summary()
    assert live_state(target) == before
    for p in made:
        p.unlink()
    assert run(settings).outcome is Outcome.APPLIED
