"""Tests for syncagent.xroad.restarts: which programs wait for a restart, and when they are done."""

from __future__ import annotations

import subprocess
import time

from syncagent.xroad.paths import PROGRAMS, Program, is_program, programs_reading
from syncagent.xroad.restarts import PendingRestarts, Process, now_since_boot, processes

PROXY_7_6 = (
    "java",
    "-Xmx1g",
    "-cp",
    "/usr/share/xroad/jlib/proxy.jar",
    "ee.ria.xroad.proxy.ProxyMain",
)
PROXY_7_8 = ("java", "-cp", "x", "org.niis.xroad.proxy.application.ProxyMain")
UI = ("java", "-jar", "/usr/share/xroad/jlib/proxy-ui-api.jar")
OPMON = ("java", "-cp", "x", "org.niis.xroad.opmonitor.application.OpMonitorDaemonMain")


def program(name: str) -> Program:
    return next(p for p in PROGRAMS if p.name == name)


def test_processes_are_known_by_the_main_class_or_jar_their_launcher_execs() -> None:
    assert is_program(program("xroad-proxy"), PROXY_7_6)
    assert is_program(program("xroad-proxy"), PROXY_7_8)
    assert is_program(program("xroad-proxy-ui-api"), UI)
    assert is_program(program("xroad-opmonitor"), OPMON)
    assert not is_program(program("xroad-monitor"), OPMON), "OpMonitorDaemonMain is not MonitorMain"
    assert not is_program(program("xroad-proxy"), ("bash", "/usr/share/xroad/bin/xroad-proxy"))


def test_which_programs_read_a_changed_path() -> None:
    def names(paths: list[str]) -> list[str]:
        return [p.name for p in programs_reading(paths)]

    assert names(["signer/keyconf.xml"]) == [], "the signer applies keyconf live"
    assert names(["devices.ini"]) == ["xroad-signer"]
    assert "xroad-proxy" in names(["conf.d/local.ini"]) and len(names(["conf.d/local.ini"])) == 6
    assert names(["ssl/proxy-ui-api.crt"]) == ["xroad-proxy", "xroad-proxy-ui-api"]


def test_pending_until_every_process_started_after_the_change() -> None:
    pending = PendingRestarts()
    old = [Process(10, PROXY_7_8, 100.0), Process(11, UI, 100.0)]
    marked = pending.changed(["db.properties"], 1e9 + 200, 200.0, old)
    assert marked == ["xroad-proxy", "xroad-proxy-ui-api"]
    assert pending.since == {"xroad-proxy": 1e9 + 200, "xroad-proxy-ui-api": 1e9 + 200}
    assert pending.changed(["db.properties"], 1e9 + 300, 300.0, old) == [], "the oldest counts"
    assert pending.since["xroad-proxy"] == 1e9 + 200
    assert pending.refresh(old) == []
    restarted = [Process(12, PROXY_7_8, 250.0), Process(11, UI, 100.0)]
    assert pending.refresh(restarted) == ["xroad-proxy"]
    assert pending.refresh([]) == ["xroad-proxy-ui-api"], "not running: it reads the new files"
    assert pending.since == {}


def test_a_program_that_does_not_run_is_never_pending() -> None:
    pending = PendingRestarts()
    procs = [Process(10, PROXY_7_8, 100.0)]
    assert pending.changed(["conf.d/local.ini"], 1e9, 200.0, procs) == ["xroad-proxy"]


def test_a_successful_reload_rule_naming_the_program_clears_it() -> None:
    pending = PendingRestarts()
    procs = [Process(10, PROXY_7_8, 1.0), Process(11, ("java", "x.SignerMain"), 1.0)]
    assert pending.changed(["conf.d/x.ini"], 1e9, 5.0, procs) == ["xroad-proxy", "xroad-signer"]
    assert pending.reloaded(("supervisorctl", "restart", "xroad-proxy"), "proxy") == ["xroad-proxy"]
    assert pending.since == {"xroad-signer": 1e9}


def test_the_real_process_table_holds_processes_on_the_boot_clock() -> None:
    before = now_since_boot()
    child = subprocess.Popen(["/usr/bin/perl", "-e", "sleep 30", "x.ProxyMain"])
    try:
        time.sleep(0.2)
        (found,) = [p for p in processes() if p.pid == child.pid]
        assert found.argv == ("/usr/bin/perl", "-e", "sleep 30", "x.ProxyMain")
        assert before - 0.02 <= found.started <= now_since_boot()
    finally:
        child.kill()
        child.wait()
