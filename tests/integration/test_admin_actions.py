"""What X-Road does in normal operation never fails a sync.

A realistic primary /etc/xroad (tests/support/xroad_etc.py: what X-Road's packages install and
its guides tell operators to create) is put, step by step, in the state each ordinary admin
action leaves on the primary, in the order X-Road writes it; after every step a secondary
syncs, and the outcome is one a person would agree with: applied, or held with a reason.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import os
import shutil
import time
from pathlib import Path
from typing import Any

import pytest
from support.config import settings_for
from support.sshd import Sshd, fresh_subdir
from support.trees import age, as_primary
from support.xroad_etc import EtcTree, build_xroad7_etc, keyconf_xml, make_soft_key

from syncagent.engine import sync
from syncagent.errors import Reason
from syncagent.report import Outcome, SyncResult
from syncagent.settings import Settings

KEYCONF = "signer/keyconf.xml"
SOFTTOKEN = "signer/softtoken"


@pytest.fixture
def real_primary(tree_area: Path) -> EtcTree:
    root = fresh_subdir(tree_area, "real-etc-xroad")
    tree = build_xroad7_etc(root)
    as_primary(root)
    return tree


def settings(sshd: Sshd, tree: EtcTree, target: Path, **extra: Any) -> Settings:
    return settings_for(sshd, tree.root, target, **{"sync__settle": "0", **extra})


def run(s: Settings) -> SyncResult:
    return asyncio.run(sync(s))


def applied(s: Settings, what: str) -> SyncResult:
    result = run(s)
    assert result.outcome in (Outcome.APPLIED, Outcome.UNCHANGED), f"{what}: {result.summary()}"
    assert result.error is None, what
    return result


_saves = itertools.count(1)


def save_keyconf(tree: EtcTree) -> None:
    """The signer's own save: tmpconf*.tmp in signer/, then an atomic move over keyconf.xml.
    Each save gets its own (old) mtime, as a real save has its own: age() alone would give a
    same-size rewrite the mtime it had, which no walk can tell from no change."""
    tmp = tree.root / "signer" / "tmpconf123.tmp"
    tmp.write_text(keyconf_xml(tree.keys))
    age(tree.root)
    os.rename(tmp, tree.root / KEYCONF)
    age(tree.root)
    when = time.time() - 7200 + next(_saves)
    os.utime(tree.root / KEYCONF, (when, when))


@pytest.mark.parametrize("profile", ["sidecar", "xlb"])
def test_a_real_security_servers_tree_syncs(
    sshd: Sshd, real_primary: EtcTree, target: Path, profile: str
) -> None:
    result = run(settings(sshd, real_primary, target, sync__profile=profile))
    assert result.outcome is Outcome.APPLIED, result.summary()
    assert (target / "messagelog" / "archive-encryption-mapping.ini").exists()
    assert (target / "conf.d" / "acme.yml").exists()
    assert (target / "conf.d" / "node.ini").read_text().strip().endswith("slave")  # never synced
    assert result.warnings == []


def test_a_file_the_sync_account_cannot_read_fails_naming_the_fix(
    sshd: Sshd, real_primary: EtcTree, target: Path
) -> None:
    """keytool run as the xroad user writes a 0600 keystore: the read-only account cannot read
    it. Nothing is applied (a secondary without its keystore would fail the message log), and
    the reason says which file and what to do."""
    s = settings(sshd, real_primary, target)
    applied(s, "first sync")
    keystore = real_primary.root / "messagelog" / "messagelog.p12"
    keystore.write_bytes(keystore.read_bytes() + b"\0")
    os.chmod(keystore, 0o600)
    age(real_primary.root)
    failed = run(s)
    assert failed.outcome is Outcome.FAILED and failed.error is not None
    assert "messagelog/messagelog.p12" in failed.error.message
    assert "chmod g+r" in failed.error.message and "sync.exclude" in failed.error.message
    os.chmod(keystore, 0o640)
    assert applied(s, "readable again").modified == ["messagelog/messagelog.p12"]


def test_key_generation_in_the_order_the_signer_writes_it(
    sshd: Sshd, real_primary: EtcTree, target: Path
) -> None:
    s = settings(sshd, real_primary, target)
    applied(s, "first sync")
    key = make_soft_key("SIGNING")
    p12 = real_primary.root / SOFTTOKEN / f"{key.key_id}.p12"
    p12.write_bytes(key.p12)  # 1. the token writes the key's .p12
    age(real_primary.root)
    r = applied(s, "a .p12 keyconf.xml does not name yet")
    assert r.added == [f"{SOFTTOKEN}/{key.key_id}.p12"]
    tmp = real_primary.root / "signer" / "tmpconf42.tmp"  # 2. keyconf saved as a temp file
    real_primary.keys.append(key)
    tmp.write_text(keyconf_xml(real_primary.keys))
    age(real_primary.root)
    r = applied(s, "keyconf.xml's temp file beside it")
    assert not (target / "signer" / "tmpconf42.tmp").exists()
    save_keyconf(real_primary)  # 3. moved over keyconf.xml
    r = applied(s, "keyconf.xml naming the new key")
    assert r.modified == [KEYCONF] and r.warnings == []


def test_key_deletion_window_syncs_with_a_warning(
    sshd: Sshd, real_primary: EtcTree, target: Path
) -> None:
    s = settings(sshd, real_primary, target)
    applied(s, "first sync")
    gone = real_primary.keys.pop()
    (real_primary.root / SOFTTOKEN / f"{gone.key_id}.p12").unlink()  # at once
    age(real_primary.root)
    r = applied(s, "the deletion window")
    assert r.outcome is Outcome.APPLIED and r.removed == [f"{SOFTTOKEN}/{gone.key_id}.p12"]
    assert [w.path for w in r.warnings] == [KEYCONF] and gone.key_id in r.warnings[0].message
    save_keyconf(real_primary)  # the signer's next module refresh
    r = applied(s, "keyconf.xml without the key")
    assert r.modified == [KEYCONF] and r.warnings == []


def test_certificate_import_is_a_keyconf_change(
    sshd: Sshd, real_primary: EtcTree, target: Path
) -> None:
    s = settings(sshd, real_primary, target)
    applied(s, "first sync")
    last = real_primary.keys[-1]
    real_primary.keys[-1] = dataclasses.replace(last, cert_der=make_soft_key("SIGNING").cert_der)
    save_keyconf(real_primary)
    r = applied(s, "an imported certificate")
    assert r.modified == [KEYCONF]


def test_settings_save_and_api_key_change(sshd: Sshd, real_primary: EtcTree, target: Path) -> None:
    s = settings(sshd, real_primary, target)
    applied(s, "first sync")
    local = real_primary.root / "conf.d" / "local.ini"
    local.write_text(local.read_text() + "\n[proxy]\nclient-timeout=45000\n")
    age(real_primary.root)
    r = applied(s, "an edited local.ini")
    assert r.modified == ["conf.d/local.ini"]
    # API keys live in the serverconf database in X-Road 7: /etc/xroad does not change
    r = applied(s, "an API key change")
    assert r.outcome is Outcome.UNCHANGED


def test_backup_restore_is_applied_once_it_settled(
    sshd: Sshd, real_primary: EtcTree, target: Path
) -> None:
    """The restore script unpacks the backup over /etc/xroad file by file; with the default
    settle, a sync during it waits, and the restored tree lands as one generation."""
    s = settings(sshd, real_primary, target, sync__settle="1.5")
    applied(s, "first sync")
    backup = real_primary.root.with_name("backup-copy")
    shutil.copytree(real_primary.root, backup, symlinks=True)
    (backup / "conf.d" / "local.ini").write_text("[proxy]\nrestored=1\n")
    for path in sorted(backup.rglob("*")):  # unpacked: every file new, one after another
        if path.is_file():
            dest = real_primary.root / path.relative_to(backup)
            shutil.copy2(path, dest)
            os.utime(dest)
    shutil.rmtree(backup)
    started = time.monotonic()
    r = applied(s, "a restored backup")
    assert r.modified == ["conf.d/local.ini"], r.summary()
    assert time.monotonic() - started >= 1.0, "young files made the sync wait to settle"


def test_an_upgrade_of_the_primary_is_held_until_this_node_matches(
    sshd: Sshd, real_primary: EtcTree, target: Path, tmp_path: Path
) -> None:
    node_version = tmp_path / "VERSION"
    node_version.write_text("7.8.0-1\n")
    s = settings(sshd, real_primary, target, sync__version_source=str(node_version))
    applied(s, "same release")
    (real_primary.root / "VERSION").write_text("7.9.0-1\n")
    age(real_primary.root)
    held = run(s)
    assert held.outcome is not Outcome.APPLIED
    assert held.error is not None and held.error.reason is Reason.VERSION_SKEW
    assert "7.9.0-1" in held.error.message and "7.8.0-1" in held.error.message
    node_version.write_text("7.9.0-1\n")  # this node upgraded too
    applied(s, "upgraded node")
