"""The test infrastructure itself: a real sshd behaves as the primary will, and trees look real.

If these fail, every sync test built on them would be testing something other than production.
"""

from __future__ import annotations

import asyncio
import os
import pwd
import stat
from pathlib import Path
from typing import Any

import asyncssh
import defusedxml.ElementTree as SafeET
import pytest
from support.sshd import Sshd

from syncagent.demo.sample_tree import (
    add_softtoken_key,
    build_primary_tree,
    build_secondary_local,
    remove_softtoken_key,
)
from syncagent.xroad.paths import softtoken_key_ids

CONNECT_TIMEOUT = 10


async def _connect(server: Sshd, user: str, **kw: Any) -> asyncssh.SSHClientConnection:
    options: dict[str, Any] = {
        "port": server.port,
        "username": user,
        "client_keys": [str(server.client_key)],
        "known_hosts": str(server.known_hosts),
        "agent_path": None,
        "config": None,
        "connect_timeout": CONNECT_TIMEOUT,
    }
    options.update(kw)
    return await asyncssh.connect(server.host, **options)


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


# ---- sshd ------------------------------------------------------------------------------------


async def test_root_lists_tree_with_strict_host_key(sshd: Sshd, primary_tree: Path) -> None:
    async with await _connect(sshd, "root") as conn, conn.start_sftp_client() as sftp:
        names = set(await sftp.listdir(str(primary_tree)))
        assert {"conf.d", "signer", "ssl", "gpghome", "xroad.properties", "VERSION"} <= names
        result = await conn.run("id -u", check=True)
        assert str(result.stdout).strip() == "0"


async def test_xroad_slave_is_read_only_sftp(sshd: Sshd, primary_tree: Path) -> None:
    async with await _connect(sshd, "xroad-slave") as conn:
        async with conn.start_sftp_client() as sftp:
            softtoken = await sftp.listdir(str(primary_tree / "signer/softtoken"))
            assert ".softtoken.p12" in softtoken
            async with sftp.open(str(primary_tree / "signer/keyconf.xml"), "rb") as fh:
                keyconf = await fh.read()
            assert isinstance(keyconf, bytes)
            assert softtoken_key_ids(keyconf)
            # Modes, not the SFTP server, keep these from xroad-slave, as on a real primary.
            with pytest.raises(asyncssh.SFTPError):
                await sftp.listdir(str(primary_tree / "gpghome"))
            with pytest.raises(asyncssh.SFTPError):
                await sftp.open(str(primary_tree / "xroad.properties"), "rb")
            # internal-sftp -R: every write is refused, even where modes would allow it.
            with pytest.raises(asyncssh.SFTPError):
                await sftp.mkdir(str(primary_tree / "newdir"))
            with pytest.raises(asyncssh.SFTPError):
                await sftp.remove(str(primary_tree / "signer/keyconf.xml"))
            with pytest.raises(asyncssh.SFTPError):
                await sftp.open(str(primary_tree / "signer/keyconf.xml"), "ab")
            with pytest.raises(asyncssh.SFTPError):
                await sftp.put(str(sshd.config), str(primary_tree / "sshd_config"))
            with pytest.raises(asyncssh.SFTPError):
                await sftp.rename(str(primary_tree / "VERSION"), str(primary_tree / "VERSION.bak"))
        # ForceCommand wins over the requested command: no shell. (OpenSSH 9.2 answers an exec
        # with "This service allows sftp connections only." and exit 1.)
        try:
            result = await asyncio.wait_for(conn.run("id", input=""), CONNECT_TIMEOUT)
        except (TimeoutError, asyncssh.Error):
            pass
        else:
            assert "uid=" not in str(result.stdout)
            assert result.exit_status != 0
    assert "xroad-slave" in sshd.log_text()


async def test_unknown_host_key_is_refused(sshd: Sshd, tmp_path: Path) -> None:
    other = asyncssh.generate_private_key("ssh-ed25519")
    wrong = tmp_path / "known_hosts"
    wrong.write_bytes(f"[{sshd.host}]:{sshd.port} ".encode() + other.export_public_key())
    with pytest.raises((asyncssh.HostKeyNotVerifiable, asyncssh.DisconnectError)):
        await _connect(sshd, "root", known_hosts=str(wrong))


async def test_regenerated_host_key_and_restart(fresh_sshd: Sshd, primary_tree: Path) -> None:
    async with await _connect(fresh_sshd, "xroad-slave") as conn:
        sftp = await conn.start_sftp_client()
        assert await sftp.exists(str(primary_tree / "VERSION"))
        fresh_sshd.stop()  # drops live sessions, like a primary pod going away
        with pytest.raises((asyncssh.Error, OSError)):
            await asyncio.wait_for(sftp.listdir(str(primary_tree)), CONNECT_TIMEOUT)
    with pytest.raises(OSError):
        await _connect(fresh_sshd, "xroad-slave")

    port = fresh_sshd.port
    fresh_sshd.regenerate_host_key()
    fresh_sshd.start()
    assert fresh_sshd.port == port
    with pytest.raises((asyncssh.HostKeyNotVerifiable, asyncssh.DisconnectError)):
        await _connect(fresh_sshd, "xroad-slave")
    fresh_sshd.refresh_known_hosts()
    async with (
        await _connect(fresh_sshd, "xroad-slave") as conn,
        conn.start_sftp_client() as sftp,
    ):
        assert await sftp.exists(str(primary_tree / "VERSION"))
    fresh_sshd.kill()
    assert fresh_sshd.pid is None


# ---- trees -----------------------------------------------------------------------------------

EXPECTED_MODES = {
    "": 0o751,
    "jetty": 0o751,
    "conf.d": 0o750,
    "conf.d/addons": 0o750,
    "signer": 0o750,
    "signer/softtoken": 0o750,
    "gpghome": 0o700,
    "gpghome/pubring.kbx": 0o600,
    "signer/keyconf.xml": 0o660,
    "ssl/internal.crt": 0o660,
    "ssl/internal.key": 0o660,
    "ssl/internal.p12": 0o660,
    "ssl/proxy-ui-api.crt": 0o660,
    "ssl/proxy-ui-api.key": 0o660,
    "backup.d/10_xroad-confclient": 0o440,
    "xroad.properties": 0o600,
    "conf.d/local.ini": 0o640,
    "conf.d/node.ini": 0o640,
    "services/local.conf": 0o640,
    "db.properties": 0o640,
    "VERSION": 0o640,
    "signer/tmpconf123456.tmp": 0o640,
}


def test_primary_tree_modes_owner_and_mtimes(primary_tree: Path) -> None:
    for rel, mode in EXPECTED_MODES.items():
        assert _mode(primary_tree / rel) == mode, rel
    everything = [primary_tree, *primary_tree.rglob("*")]
    assert len({p.lstat().st_mtime for p in everything}) == 1
    if os.geteuid() == 0:
        xroad = pwd.getpwnam("xroad")
        for path in everything:
            st = path.lstat()
            expected = (0, 0) if path.name == "xroad.properties" else (xroad.pw_uid, xroad.pw_gid)
            assert (st.st_uid, st.st_gid) == expected, path
    assert (primary_tree / "conf.d/node.ini").read_text() == "[node]\ntype = master\n"
    assert "ssl-enabled=false # " in (primary_tree / "conf.d/local.ini").read_text()
    assert "-Xmx1536m" in (primary_tree / "services/local.conf").read_text()
    for xml in [*primary_tree.rglob("*.xml")]:
        SafeET.fromstring(xml.read_bytes())


def test_keyconf_matches_p12_files(tmp_path: Path) -> None:
    root = tmp_path / "xroad"
    key_ids = build_primary_tree(root, keys=4)
    assert len(key_ids) == 4
    assert all(len(k) == 40 and k == k.upper() for k in key_ids)
    assert softtoken_key_ids((root / "signer/keyconf.xml").read_bytes()) == key_ids
    p12 = {p.stem for p in (root / "signer/softtoken").glob("*.p12")}
    assert p12 == {*key_ids, ".softtoken"}


def test_add_and_remove_key_like_the_signer(primary_tree: Path) -> None:
    keyconf = primary_tree / "signer/keyconf.xml"
    before = softtoken_key_ids(keyconf.read_bytes())
    inode = keyconf.stat().st_ino
    old_mtime = keyconf.stat().st_mtime

    new = add_softtoken_key(primary_tree, mtime=old_mtime + 60)
    p12 = primary_tree / f"signer/softtoken/{new}.p12"
    assert p12.is_file()
    assert p12.stat().st_mtime_ns <= keyconf.stat().st_mtime_ns
    assert softtoken_key_ids(keyconf.read_bytes()) == [*before, new]
    assert keyconf.stat().st_ino != inode  # replaced by rename, not rewritten in place
    assert _mode(keyconf) == 0o660
    assert _mode(p12) == 0o640
    assert (p12.stat().st_gid, keyconf.stat().st_gid) == (2 * (keyconf.parent.stat().st_gid,))
    tmps = sorted(p.name for p in primary_tree.rglob("*.tmp"))
    assert tmps == ["tmpconf123456.tmp"]

    remove_softtoken_key(primary_tree, before[0])
    assert softtoken_key_ids(keyconf.read_bytes()) == [*before[1:], new]
    assert not (primary_tree / f"signer/softtoken/{before[0]}.p12").exists()
    with pytest.raises(KeyError):
        remove_softtoken_key(primary_tree, before[0])
    assert sorted(p.name for p in primary_tree.rglob("*.tmp")) == ["tmpconf123456.tmp"]


def test_secondary_local(tmp_path: Path) -> None:
    target = tmp_path / "etc-xroad"
    build_secondary_local(target)
    assert (target / "conf.d/node.ini").read_text() == "[node]\ntype = slave\n"
    assert _mode(target / "xroad.properties") == 0o600
    assert _mode(target / "gpghome") == 0o700
    assert (target / "globalconf/instance-identifier").read_text().strip()
