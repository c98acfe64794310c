"""What people do by hand on a secondary cannot break the agent, and its probes never lie.

The daemon runs as ``xroad`` against the real sshd, the way the image and the unit run it. A
person then does, during syncs and between them, what operators really do: commands as root
(``kubectl exec``) and as the owner, in-place edits (``>>``, ``sed -i``, an editor writing in
place and one that renames), ``kubectl cp``-style copies, deleting the state dir or the pid
file, both pause flags, ``once`` beside the daemon, ``rollback`` during a sync, SIGKILL during a
rollback. After each, the daemon converges on the primary by itself; all along, a watcher polls
/readyz and holds it to what is live on disk.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from support.operator import Run, as_user, xroad_secondary
from support.sshd import Sshd, free_port
from support.trees import age
from support.waiting import until

from syncagent import testhooks

LOCAL_INI = "conf.d/local.ini"


class Probes:
    """Polls /readyz and /status every 0.2 s and records every answer that lies: ready while
    no record is on disk, or ready naming a generation that is not the one on disk."""

    def __init__(self, url: str, state: Path) -> None:
        self.url, self.state = url, state
        self.lies: list[str] = []
        self.samples = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def __enter__(self) -> Probes:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def _on_disk(self) -> str | None:
        try:
            return str(json.loads((self.state / "current.json").read_bytes())["generation"])
        except (OSError, ValueError, KeyError):
            return None

    def _get(self, path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(self.url + path, timeout=5) as r:
                return r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            return e.code, e.read().decode()
        except OSError:
            return 0, ""

    def _poll(self) -> None:
        while not self._stop.wait(0.2):
            before = self._on_disk()
            code, body = self._get("/readyz")
            after = self._on_disk()
            if code != 200:
                continue
            self.samples += 1
            if before is None and after is None:
                self.lies.append(f"/readyz 200 with no record on disk: {body.strip()}")
            elif not any(g and f"generation {g}" in body for g in (before, after)):
                self.lies.append(f"/readyz 200 naming another generation than {after}: {body}")


def files(root: Path, skip: tuple[str, ...]) -> dict[str, bytes]:
    """Managed file contents below ``root`` (node-local paths and the state dir not entered:
    the daemon prunes generations while this reads)."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        prefix = "" if dirpath == str(root) else os.path.relpath(dirpath, root) + "/"
        dirnames[:] = [d for d in dirnames if not (prefix + d).startswith(skip)]
        for name in filenames:
            rel, path = prefix + name, Path(dirpath) / name
            if rel.startswith(skip) or name.endswith(".tmp") or path.is_symlink():
                continue
            try:
                out[rel] = path.read_bytes()
            except FileNotFoundError:
                continue
    return out


NODE_LOCAL = (
    ".syncagent",
    "conf.d/node.ini",
    "xroad.properties",
    "VERSION",
    "gpghome",
    "globalconf",
)


def converged(primary: Path, target: Path) -> bool:
    return files(primary, NODE_LOCAL) == files(target, NODE_LOCAL)


def status(run: Run) -> dict[str, Any]:
    res = run("status", "--json")
    try:
        doc: dict[str, Any] = json.loads(res.stdout)
    except ValueError:
        return {}
    return doc


def change_primary(primary: Path, n: int) -> None:
    """A new size each time: age() gives every file the same old mtime, and an unchanged size
    and mtime is what the walk trusts (as rsync's quick check does)."""
    (primary / LOCAL_INI).write_text(f"[proxy]\nclient-timeout={30000 + n}\n;{'.' * n}\n")
    age(primary)


def test_what_people_do_by_hand(
    xroad_agent: Path, sshd: Sshd, primary_tree: Path, xroad_area: Path
) -> None:
    run, target, env = xroad_secondary(xroad_agent, sshd, primary_tree, xroad_area)
    state = target / ".syncagent"
    port = free_port()
    daemon_env = {
        **env,
        "SYNCAGENT_HTTP_LISTEN": f"127.0.0.1:{port}",
        "SYNCAGENT_SYNC_INTERVAL": "2",
        "SYNCAGENT_SYNC_JITTER": "0",
    }
    log = xroad_area / "daemon.log"
    with log.open("wb") as out:
        daemon = subprocess.Popen(
            [*as_user("xroad"), str(xroad_agent), "run"],
            env=daemon_env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
        )

    def settle(what: str, timeout: float = 60) -> None:
        """The daemon converges by itself: the primary's files live, ready, no failure."""
        try:
            until(lambda: converged(primary_tree, target), f"{what}: converged", timeout)
            until(lambda: status(run).get("ready") is True, f"{what}: ready again", timeout)
        except AssertionError as e:
            want, have = files(primary_tree, NODE_LOCAL), files(target, NODE_LOCAL)
            differ = sorted(p for p in want.keys() | have.keys() if want.get(p) != have.get(p))
            tail = log.read_text().splitlines()[-8:]
            raise AssertionError(f"{e}\ndiffering: {differ[:10]}\nlog: {tail}") from None

    try:
        with Probes(f"http://127.0.0.1:{port}", state) as probes:
            settle("first sync")
            n = 0

            # commands as root and as the owner, beside the running daemon
            for user in (None, "xroad"):
                n += 1
                change_primary(primary_tree, n)
                once = run("once", user=user)
                assert once.returncode == 0, once.stdout + once.stderr
                assert converged(primary_tree, target), once.stdout
                assert run("status", user=user).returncode == 0
                settle(f"once as {user or 'root'}")

            # edits in place and by rename, and a kubectl cp-style copy, as root
            live = target / LOCAL_INI

            def append() -> None:
                with live.open("a") as f:
                    f.write("x=1\n")

            def sed() -> None:
                subprocess.run(["sed", "-i", "s/client/klient/", str(live)], check=True)

            def in_place() -> None:
                with live.open("r+") as f:
                    f.write("[hand]")

            def by_rename() -> None:
                swap = target / "conf.d/.local.ini.swp"
                swap.write_text("[vim]\n")
                os.rename(swap, live)

            def kubectl_cp() -> None:
                live.write_bytes(b"[copied]\nfrom=laptop\n")

            edits = {
                ">>": append,
                "sed -i": sed,
                "editor in place": in_place,
                "editor by rename": by_rename,
                "kubectl cp": kubectl_cp,
            }
            for what, edit in edits.items():
                edit()
                settle(what)

            # the pid file, then the whole state dir, deleted under the daemon
            (state / "daemon.pid").unlink(missing_ok=True)
            n += 1
            change_primary(primary_tree, n)
            run("sync-now")
            settle("pid file deleted")
            shutil.rmtree(state)
            n += 1
            change_primary(primary_tree, n)
            settle("state dir deleted", timeout=90)

            # both pause flags hold; once refuses with its own exit code
            for flag in ("agent", "xroad"):
                if flag == "agent":
                    assert run("pause").returncode == 0
                else:
                    disable = Path(env["SYNCAGENT_SYNC_DISABLE_FLAG"])
                    disable.parent.mkdir(exist_ok=True)
                    disable.touch()
                before = files(target, NODE_LOCAL)
                n += 1
                change_primary(primary_tree, n)
                held = run("once")
                assert held.returncode == 5, held.stdout + held.stderr
                time.sleep(4)  # two scheduled rounds
                assert files(target, NODE_LOCAL) == before, f"{flag} pause did not hold"
                if flag == "agent":
                    assert run("resume").returncode == 0
                else:
                    disable.unlink()
                    run("sync-now")
                settle(f"{flag} pause lifted")

            # rollback while a sync runs, as root; the daemon follows again after resume
            n += 1
            change_primary(primary_tree, n)
            run("sync-now")
            back = run("rollback")
            assert back.returncode == 0, back.stdout + back.stderr
            assert run("resume").returncode == 0
            settle("rollback during a sync")

            # SIGKILL in the middle of a rollback's apply: the journal finishes it
            n += 1
            change_primary(primary_tree, n)
            settle("one more generation")
            killed = run("rollback", extra={testhooks.KILL_AFTER_OP: "1"})
            assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
            assert run("resume").returncode == 0
            settle("rollback killed mid-apply")
            assert probes.samples > 20
        assert probes.lies == [], probes.lies[:5]
    finally:
        daemon.terminate()
        daemon.wait(30)
    text = log.read_text()
    assert "task_failed" not in text, [ln for ln in text.splitlines() if "task_failed" in ln][:3]
