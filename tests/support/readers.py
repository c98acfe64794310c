"""X-Road's own readers, run for real: the oracle the validation gate is tested against.

syncagent decides whether a pulled /etc/xroad may be applied. Whether it decided right can only
be judged by what X-Road itself would make of the same bytes, so the tests ask the very
libraries X-Road reads them with (commons-configuration2, java.util.Properties, SnakeYAML,
java.nio's WatchService), set up as X-Road sets them up, through the small Java harness in
tests/oracle/java (see tests/oracle/README.md for what each mode mirrors).

The harness is compiled at test time, once per source version, into a cache directory keyed by
the hash of its sources, the JDK and the jars; one JVM then reads a whole batch of files.
A missing JDK or jar skips locally and fails under CI=true, like every other required tool.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import queue
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Literal, NamedTuple, cast

import pytest

from support import REPO
from support.tools import require_tool

JAVA_SOURCES = REPO / "tests" / "oracle" / "java"
JAR_DIR = Path("/usr/share/java")
# commons-configuration2 needs lang3 and text (interpolation lookups) and logging at run time;
# Debian's jar manifest names more, but INIConfiguration reaches none of the others. JAXB (the
# keyconf mode) is the RI 2.3 and its runtime pieces.
JARS = (
    "commons-configuration2",
    "commons-lang3",
    "commons-text",
    "commons-logging",
    "snakeyaml",
    "jaxb-api",
    "jaxb-runtime",
    "jaxb-core",
    "javax.activation",
    "istack-commons-runtime",
    "txw2",
)
DEFAULT_CACHE = Path("/var/cache/syncagent-test")
# short-lived JVMs: the C1 compiler alone and the serial collector start fastest and change
# nothing the readers do
JVM_FLAGS = ("-Xshare:auto", "-XX:TieredStopAtLevel=1", "-XX:+UseSerialGC")
# one command line stays far below ARG_MAX even with long paths
BATCH = 400

YamlFlavour = Literal["yaml", "acme", "mail", "yaml-smallrye", "yaml-spring"]
JsonValue = None | bool | int | float | str | list["JsonValue"] | dict[str, "JsonValue"]


class OracleError(RuntimeError):
    """The harness itself misbehaved (not a reader's verdict on a file)."""


class Entry(NamedTuple):
    """One key as X-Road derives it: section None is INI's global section (keys before any
    section header; X-Road 7 names its system property "xroad.null.<key>"), "" is a
    properties file's only section."""

    section: str | None
    key: str
    value: str | None


class ListEntry(NamedTuple):
    """A devices.ini key split on ',' as the signer's ModuleConf reads lists (slot_ids)."""

    section: str | None
    key: str
    values: list[str]


@dataclass(frozen=True)
class Reading:
    """A reader's verdict on one file: ``ok`` and what it read, or the exception and what
    X-Road does about it (``consequence``: file-skipped, service-fails, modules-cleared,
    defaults, unreadable; see tests/oracle/README.md)."""

    path: Path
    ok: bool
    sections: list[str | None] = field(default_factory=list)  # INI: getSections(), in order
    entries: list[Entry] = field(default_factory=list)
    properties: list[tuple[str, str]] = field(default_factory=list)
    lists: list[ListEntry] = field(default_factory=list)
    logged: list[str] = field(default_factory=list)
    data: JsonValue = None
    error: str | None = None
    exception: str | None = None
    consequence: str | None = None

    def value(self, section: str | None, key: str) -> str | None:
        """The value X-Road reads for section/key; KeyError when the reader has no such key
        (absent and empty are different verdicts)."""
        for e in self.entries:
            if e.section == section and e.key == key:
                return e.value
        raise KeyError((section, key))

    def keys(self, section: str | None) -> list[str]:
        return [e.key for e in self.entries if e.section == section]


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def _missing(what: str) -> None:
    if _in_ci():
        pytest.fail(f"{what} is required in CI (tests/run.sh installs it)")
    pytest.skip(f"{what} is not installed (tests/run.sh installs it)")


def cache_root() -> Path:
    """Where compiled harnesses live: SYNCAGENT_TEST_CACHE, else /var/cache/syncagent-test,
    else (not writable, not root) a directory under the system temp dir."""
    configured = os.environ.get("SYNCAGENT_TEST_CACHE")
    for candidate in ([Path(configured)] if configured else []) + [DEFAULT_CACHE]:
        with contextlib.suppress(OSError):
            candidate.mkdir(parents=True, exist_ok=True)
            if os.access(candidate, os.W_OK):
                return candidate
    fallback = Path(tempfile.gettempdir()) / f"syncagent-test-{os.getuid()}"
    fallback.mkdir(mode=0o700, exist_ok=True)
    return fallback


def find_jars() -> list[Path]:
    """The jars on the harness's class path, resolved to their versioned files so the cache key
    changes when Debian upgrades one."""
    jars = []
    for name in JARS:
        jar = JAR_DIR / f"{name}.jar"
        if not jar.exists():
            _missing(f"{jar} (Debian package for {name})")
        jars.append(jar.resolve())
    return jars


@dataclass(frozen=True)
class Harness:
    """A compiled harness: run readers over batches of files, or start a watcher."""

    java: str
    classes: Path
    jars: tuple[Path, ...]

    @property
    def classpath(self) -> str:
        return os.pathsep.join([str(self.classes), *map(str, self.jars)])

    def command(self, *args: str) -> list[str]:
        return [self.java, *JVM_FLAGS, "-cp", self.classpath, "Oracle", *args]

    def read(self, mode: str, paths: Iterable[Path | str]) -> list[Reading]:
        """One Reading per path, in order; a few JVMs for any number of files."""
        todo = [Path(p) for p in paths]
        out: list[Reading] = []
        for start in range(0, len(todo), BATCH):
            chunk = todo[start : start + BATCH]
            proc = subprocess.run(
                self.command(mode, *map(str, chunk)),
                capture_output=True,
                text=True,
                encoding="utf-8",
                timeout=300,
                check=False,
            )
            lines = proc.stdout.splitlines()
            if proc.returncode != 0 or len(lines) != len(chunk):
                raise OracleError(
                    f"oracle {mode} exited {proc.returncode} with {len(lines)} lines for "
                    f"{len(chunk)} files: {proc.stderr[-2000:]}"
                )
            out.extend(_reading(p, json.loads(line)) for p, line in zip(chunk, lines, strict=True))
        return out


def _reading(path: Path, raw: dict[str, JsonValue]) -> Reading:
    def rows(name: str) -> list[list[JsonValue]]:
        return cast(list[list[JsonValue]], raw.get(name) or [])

    entries = [
        Entry(cast(str | None, s), cast(str, k), cast(str | None, v)) for s, k, v in rows("entries")
    ]
    lists = [
        ListEntry(cast(str | None, s), cast(str, k), cast(list[str], v))
        for s, k, v in rows("lists")
    ]
    props = cast(list[list[str]] | dict[str, str], raw.get("properties") or [])
    properties = list(props.items()) if isinstance(props, dict) else [(n, v) for n, v in props]
    return Reading(
        path=path,
        ok=bool(raw["ok"]),
        sections=cast(list[str | None], raw.get("sections") or []),
        entries=entries,
        properties=properties,
        lists=lists,
        logged=cast(list[str], raw.get("logged") or []),
        data=raw.get("data"),
        error=cast(str | None, raw.get("error")),
        exception=cast(str | None, raw.get("exception")),
        consequence=cast(str | None, raw.get("consequence")),
    )


def source_hash(java: str, jars: Sequence[Path]) -> str:
    """Key of a compiled harness: its sources, the JDK's version and the jars' names."""
    version = subprocess.run(
        [java, "-version"], capture_output=True, text=True, check=False
    ).stderr.strip()
    h = hashlib.sha256(version.encode())
    for jar in jars:
        h.update(str(jar).encode() + b"\0")
    for src in sorted(JAVA_SOURCES.glob("*.java")):
        h.update(src.name.encode() + b"\0" + src.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def compile_harness(javac: str, java: str, jars: Sequence[Path]) -> Path:
    """Compile into <cache>/oracle-<hash> unless it is there; atomic (compile aside, rename),
    so concurrent sessions never see half a harness."""
    root = cache_root()
    final = root / f"oracle-{source_hash(java, jars)}"
    if (final / "Oracle.class").exists():
        return final
    work = Path(tempfile.mkdtemp(prefix=".oracle-", dir=root))
    try:
        proc = subprocess.run(
            [
                javac,
                "-Xlint:all,-path",
                "-Werror",
                "-d",
                str(work),
                "-cp",
                os.pathsep.join(map(str, jars)),
                *map(str, sorted(JAVA_SOURCES.glob("*.java"))),
            ],
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if proc.returncode != 0:
            raise OracleError(f"javac failed:\n{proc.stdout}{proc.stderr}")
        os.chmod(work, 0o755)
        try:
            os.rename(work, final)
        except OSError:
            if not (final / "Oracle.class").exists():
                raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return final


@functools.cache
def harness() -> Harness:
    """The session's harness: compiled at most once per process (and once per source
    version across processes, through the cache)."""
    java = require_tool("java")
    javac = require_tool("javac")
    jars = find_jars()
    return Harness(java=java, classes=compile_harness(javac, java, jars), jars=tuple(jars))


def read_ini(paths: Iterable[Path | str]) -> list[Reading]:
    """conf.d/*.ini, conf.d/addons/*.ini, override-*.ini, local.ini as SystemPropertiesLoader
    reads them (list splitting off)."""
    return harness().read("ini", paths)


def read_devices(paths: Iterable[Path | str]) -> list[Reading]:
    """devices.ini as the signer's ModuleConf reads it (',' splits lists)."""
    return harness().read("devices", paths)


def read_properties(paths: Iterable[Path | str], *, utf8: bool = False) -> list[Reading]:
    """.properties through java.util.Properties.load: from an InputStream (ISO-8859-1; X-Road 7's
    db.properties readers, logback) or, ``utf8``, from a UTF-8 reader (SmallRye Config: X-Road
    8's Quarkus services reading db.properties)."""
    return harness().read("properties-utf8" if utf8 else "properties", paths)


def read_yaml(paths: Iterable[Path | str], flavour: YamlFlavour = "yaml") -> list[Reading]:
    """YAML as one of X-Road's readers loads it: "yaml" (X-Road 7's SnakeYAML set-up, no
    bean), "acme"/"mail" (bound to the acme.yml/mail.yml bean), "yaml-smallrye" (X-Road 8
    Quarkus services, local.yaml), "yaml-spring" (X-Road 8 admin service, local.yaml)."""
    return harness().read(flavour, paths)


def read_keyconf(paths: Iterable[Path | str]) -> list[Reading]:
    """signer/keyconf.xml as the signer's JAXB unmarshaller binds it; ``data``: the keyIds of
    softToken keys, in order, None where a key has none."""
    return harness().read("keyconf", paths)


class WatchEvent(NamedTuple):
    """What the WatchService reported; ``target`` is whether X-Road's FileWatcher would call
    its listener (the event names the watched file)."""

    kind: str
    name: str
    target: bool


class KeyconfWatcher:
    """X-Road's keyconf.xml watch (FileWatcherRunner as the signer sets it up) on a directory,
    as a context manager: entering waits until the key is registered."""

    def __init__(
        self, directory: Path, file_name: str = "keyconf.xml", *, startup_timeout: float = 60.0
    ) -> None:
        self.directory = directory
        self.file_name = file_name
        self.startup_timeout = startup_timeout
        self._events: list[WatchEvent] = []
        self._lines: queue.Queue[dict[str, JsonValue] | None] = queue.Queue()
        self._cond = threading.Condition()
        self._invalid = False
        self._proc: subprocess.Popen[str] | None = None
        self._reader: threading.Thread | None = None

    def __enter__(self) -> KeyconfWatcher:
        self._proc = subprocess.Popen(
            harness().command("watch", str(self.directory), self.file_name),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            encoding="utf-8",
        )
        self._reader = threading.Thread(target=self._pump, daemon=True)
        self._reader.start()
        deadline = time.monotonic() + self.startup_timeout
        while True:
            try:
                first = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                first = None
            if first is not None and first.get("ready") is True:
                return self
            self.__exit__(None, None, None)
            raise OracleError(f"watcher did not come up: {first!r}")

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if self._reader is not None:
            self._reader.join(timeout=10)
        if proc is not None and proc.stderr is not None:
            proc.stderr.close()

    def _pump(self) -> None:
        assert self._proc is not None and self._proc.stdout is not None
        ready_seen = False
        for line in self._proc.stdout:
            raw = cast(dict[str, JsonValue], json.loads(line))
            if not ready_seen:
                ready_seen = True
                self._lines.put(raw)
                continue
            with self._cond:
                if raw.get("invalid") is True:
                    self._invalid = True
                elif "kind" in raw:
                    self._events.append(
                        WatchEvent(
                            cast(str, raw["kind"]),
                            cast(str, raw.get("name", "")),
                            bool(raw.get("target", False)),
                        )
                    )
                self._cond.notify_all()
        self._lines.put(None)
        with self._cond:
            self._cond.notify_all()

    def events(self) -> list[WatchEvent]:
        with self._cond:
            return list(self._events)

    @property
    def valid(self) -> bool:
        """False once the watch key was invalidated: X-Road's watcher has stopped for good."""
        with self._cond:
            return not self._invalid

    def wait_for(self, pred: Callable[[WatchEvent], bool], timeout: float = 10.0) -> WatchEvent:
        """The first event (already seen or still to come) that ``pred`` accepts."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                for ev in self._events:
                    if pred(ev):
                        return ev
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no matching event within {timeout}s: {self._events}")
                self._cond.wait(left)

    def wait_invalid(self, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        with self._cond:
            while not self._invalid:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"watch key still valid after {timeout}s")
                self._cond.wait(left)

    def clear(self) -> None:
        """Forget the events so far, so the next wait_for sees only what follows."""
        with self._cond:
            self._events.clear()
