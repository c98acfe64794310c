"""``syncagent run``: scheduled syncs over a kept connection, probes, metrics, control, drift.

The pieces (keeper, reloader, watchers, HTTP) each live in their own module; this one decides
when a sync runs and folds its result into the one ``DaemonState`` everything else reads.

- Every sync goes through one worker task, so two never overlap, and triggers that arrive while
  one runs (schedule, SIGHUP, trigger file, drift, reconnect) coalesce into one follow-up sync.
- The first sync is retried with exponential backoff until it succeeds; the process stays up and
  live meanwhile, and ready only if a validated generation is already live from before.
- Only then does APScheduler start the interval job, at a random phase plus per-run jitter, so
  replicas started together do not stay in step.
- A heartbeat job proves the scheduler fires (/healthz, sd_notify WATCHDOG=1) and re-checks the
  control files in case a watch was lost.
- Every task, scheduler job and callback runs under the supervisor (supervise.py): nothing that
  raises dies unnoticed, and what cannot be kept alive fails /healthz by name.
- The probes and the status file read what is live from the state dir when they answer
  (status.read_live), not the generation this process last applied: another process may have
  replaced the record, or made it unreadable to us.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import structlog
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.interval import IntervalTrigger

from syncagent import engine
from syncagent.daemon import http as http_server
from syncagent.daemon.control import ControlFiles, ControlWatcher
from syncagent.daemon.heap import release_free_memory
from syncagent.daemon.keeper import ConnectionKeeper, backoff_delay
from syncagent.daemon.metrics import Metrics
from syncagent.daemon.reload import Reloader, applied_elsewhere, changed_paths
from syncagent.daemon.sdnotify import Notifier
from syncagent.daemon.status import SUCCESS, DaemonState, read_live, write_status
from syncagent.daemon.supervise import Supervisor, TaskHealth
from syncagent.errors import ExitCode, Reason, SyncError, exit_code_for
from syncagent.local import apply as applying
from syncagent.local.drift import DriftWatcher
from syncagent.local.manifest import Manifest
from syncagent.local.state import StateDir, open_state
from syncagent.remote.head import poll_head
from syncagent.remote.head_rules import HeadStat, poll_due, poll_wants_sync
from syncagent.report import Outcome, SyncResult, outcome_for
from syncagent.settings import Settings
from syncagent.xroad.restarts import now_since_boot, processes

log = structlog.get_logger("syncagent.daemon.service")

HEARTBEAT = 15.0  # liveness allows 30 s; control files are watched, this is the fallback poll
DRIFT_MIN_GAP = 10.0  # a runaway writer must not turn drift repair into a sync storm
STOP_GRACE = 3.0  # a running sync gets this long to finish on SIGTERM, then it is abandoned
RESTORE_LOCK_TIMEOUT = 2.0
RECONNECT_TRIGGERS = (Reason.TIMEOUT, Reason.CONNECT)


class Daemon:
    def __init__(
        self,
        settings: Settings,
        *,
        rng: random.Random | None = None,
        notifier: Notifier | None = None,
        hostname: str | None = None,
    ) -> None:
        self.settings = settings
        self.sync_settings = sync = settings.sync
        self.state = DaemonState()
        self.store = StateDir(sync.state_dir)
        self.state.disk = lambda: read_live(self.store)
        self.health = TaskHealth()
        self.state.task_checks = lambda mono: [self.health.check(mono)]
        self.control_files = ControlFiles(self.store, sync.disable_flag)
        self.metrics = Metrics(self.state, settings.reload.rules, sync.max_staleness)
        self._stop = asyncio.Event()
        self.supervisor = Supervisor(self.health, self._stop, self.metrics.observe_task_failure)
        self.rng = rng or random.Random()
        self.notifier = notifier or Notifier()
        self.keeper = ConnectionKeeper(
            settings.primary,
            self.store.pinned_host_key,
            sync.interval,
            self.state,
            rng=self.rng,
            on_connected=self._on_connected,
            on_change=self._write_status,
        )
        self.reloader = Reloader(settings.reload, sync.target, self._on_reload, hostname)
        self.drift = DriftWatcher(
            sync.target,
            sync.path_filter(),
            self.store,
            self.supervisor.callback("drift", self._on_drift),
            busy=lambda: self.state.syncing_since is not None,
            on_error=lambda e: self.supervisor.failed("drift", e),
        )
        self.control = ControlWatcher(
            self.control_files, self.supervisor.callback("control", self._on_control)
        )
        self.scheduler: AsyncIOScheduler | None = None
        self.http_port: int | None = None
        self.first_sync_done = asyncio.Event()
        self._wake = asyncio.Event()
        self._reasons: list[str] = []
        self._last_drift_sync = -DRIFT_MIN_GAP
        self._drift_timer: asyncio.TimerHandle | None = None
        self._announced = False
        self._current_sig: tuple[int, int, int] | None = None
        self._status_warned = False
        self._status_said: tuple[object, ...] | None = None  # readiness the status file holds
        self._record_warned = False
        self._version_note_logged = False
        self._followed: tuple[str, int] | None = None  # the HEAD the last sync followed
        self._head_stat: HeadStat | None = None  # what the last poll saw of the HEAD file
        self._walking_polled_at: float | None = None  # monotonic

    # ---- triggers --------------------------------------------------------------------------

    def trigger(self, why: str) -> None:
        """Ask for a sync; triggers that arrive before the worker picks them up coalesce."""
        if why not in self._reasons:
            self._reasons.append(why)
        self._wake.set()

    def sync_now(self, why: str) -> None:
        """An operator's request: also skips what is left of a reconnect backoff."""
        self.keeper.retry_now()
        self.trigger(why)

    def _take_reasons(self) -> str:
        reasons, self._reasons = self._reasons, []
        self._wake.clear()
        return ",".join(reasons)

    async def _wait_wake(self, timeout: float | None) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._wake.wait(), timeout)

    # ---- one sync --------------------------------------------------------------------------

    async def _attempt(self) -> SyncResult | None:
        try:
            session = await self.keeper.session()
        except SyncError as e:
            gen = self.state.generation
            return SyncResult(outcome_for(e.reason), gen, gen, error=e)
        async with self.keeper.lease():
            try:
                # re-checked under the state lock: a rollback that paused meanwhile wins
                return await engine.sync(
                    self.settings, session, should_run=lambda: not self._refresh_pause()
                )
            except engine.SyncSkipped:
                return None

    async def run_sync(self, why: str) -> SyncResult | None:
        """One sync unless paused; None when skipped."""
        if self._refresh_pause():
            log.info("sync_skipped", why=why, paused_by=list(self.state.paused_by))
            return None
        self.state.syncing_since = time.monotonic()
        try:
            result = await self._attempt()
        finally:
            self.state.syncing_since = None
        if result is None:
            log.info("sync_skipped", why=why, paused_by=list(self.state.paused_by))
            return None
        if self._stop.is_set() and result.outcome not in SUCCESS:
            interrupted = result.error.message if result.error else None
            result = result.cancelled()
            self.metrics.observe_sync(result)
            log.info("sync", result=str(result.outcome), why=why, interrupted=interrupted)
            return result
        self._followed = result.followed if result.outcome in SUCCESS else None
        if self.state.following_head and result.outcome in SUCCESS and result.source == "walk":
            log.warning("walking", why=result.source_note or "no usable HEAD", was="following")
        self.state.record(result, time.time())
        self._note_version_check(result)
        self.state.journal_pending = self.store.journal.exists()
        self.metrics.observe_sync(result)
        _log_result(result, why, self.state.consecutive_failures)
        if result.reason in RECONNECT_TRIGGERS:
            self.keeper.discard()
        if result.outcome is Outcome.APPLIED:
            self._restart_pending(result)
            self.reloader.schedule(result)
            release_free_memory()
        else:
            self._refresh_restarts()
        self._write_status()
        self.notifier.status(result.summary())
        self.drift.evaluate()  # events held while this sync applied
        return result

    # ---- the worker ------------------------------------------------------------------------

    async def _first_sync(self) -> None:
        """Retried with backoff until it succeeds; a manual trigger retries at once."""
        attempt = 0
        while not self._stop.is_set():
            why = self._take_reasons() or "first sync"
            result = await self.run_sync(why)
            self._announce_ready()
            if result is None:
                await self._wait_wake(None)
                continue
            if result.outcome in SUCCESS:
                self.first_sync_done.set()
                return
            delay = backoff_delay(attempt, rng=self.rng)
            attempt += 1
            log.warning(
                "first_sync_failed",
                attempt=attempt,
                reason=str(result.reason),
                error=result.error.message if result.error else None,
                retry_in=round(delay, 2),
            )
            await self._wait_wake(delay)

    async def _worker(self) -> None:
        """Restartable: the supervisor runs it again after a failure, which resumes where the
        daemon stands (first sync or not, schedule there or not) with one sync at once."""
        if not self.first_sync_done.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self.keeper.wait_first_attempt(), self.settings.primary.connect_timeout + 2
                )
            await self._first_sync()
            if self._stop.is_set():
                return
        if self.scheduler is not None and self.scheduler.get_job("sync") is None:
            self._schedule_syncs()
        else:
            self.trigger("restarted")  # what failed is tried again now, not at the next tick
        while not self._stop.is_set():
            await self._wake.wait()
            if self._stop.is_set():
                return
            await self.run_sync(self._take_reasons())

    def _note_version_check(self, result: SyncResult) -> None:
        """An unavailable version check is said once, not every minute."""
        versions = result.versions
        unavailable = versions is not None and versions.skew is None
        if unavailable and not self._version_note_logged and versions is not None:
            log.info("version_check_unavailable", why=versions.note, action="no version check")
        self._version_note_logged = unavailable

    def _announce_ready(self) -> None:
        """READY=1 once serving and the first sync was tried: X-Road units start after it."""
        if not self._announced:
            self._announced = True
            self.notifier.ready(f"generation {self.state.generation or '(none)'}")

    # ---- scheduler -------------------------------------------------------------------------

    def _start_scheduler(self) -> None:
        interval = HEARTBEAT
        if self.notifier.watchdog_interval:
            interval = min(interval, self.notifier.watchdog_interval)
        self.scheduler = AsyncIOScheduler(timezone=UTC)
        self.scheduler.add_job(
            self.supervisor.job("heartbeat", self._heartbeat),
            IntervalTrigger(seconds=interval, timezone=UTC),
            id="heartbeat",
            coalesce=True,
            max_instances=1,
            next_run_time=datetime.now(UTC),
        )
        self.scheduler.start()

    def _schedule_syncs(self) -> None:
        """Interval job at a random phase, each run delayed by up to jitter * interval more."""
        assert self.scheduler is not None
        interval = self.sync_settings.interval
        jitter = interval * self.sync_settings.jitter
        first = datetime.now(UTC) + timedelta(seconds=self.rng.uniform(0, interval))
        self.scheduler.add_job(
            self.supervisor.job("schedule", self._scheduled),
            IntervalTrigger(seconds=interval, jitter=jitter or None, timezone=UTC),
            id="sync",
            coalesce=True,
            max_instances=1,
            misfire_grace_time=None,
            next_run_time=first,
        )
        self.scheduler.add_job(
            self.supervisor.job("poll", self._poll_head),
            IntervalTrigger(seconds=self.sync_settings.poll, timezone=UTC),
            id="poll",
            coalesce=True,
            max_instances=1,
        )
        log.info(
            "scheduled",
            interval=interval,
            poll=self.sync_settings.poll,
            jitter=round(jitter, 3),
            first_in=round((first - datetime.now(UTC)).total_seconds(), 2),
        )

    def scheduler_running(self) -> bool:
        return self.scheduler is not None and bool(self.scheduler.running)

    # Jobs are coroutines on purpose: APScheduler's asyncio executor runs plain functions in a
    # thread pool, where touching asyncio events is unsafe and a heartbeat would prove nothing
    # about the event loop.

    async def _scheduled(self) -> None:
        self.trigger("schedule")

    async def _poll_head(self) -> None:
        """One stat of HEAD over the kept connection (a read when it changed), and a sync only
        when it names another generation; while walking (every WALKING_POLL seconds), when a
        publisher starts or returns, else the walk would last until the next scheduled sync."""
        publish_dir = self.settings.primary.published_root
        if publish_dir is None or self.state.syncing_since is not None or not self.keeper.usable:
            return
        now = time.monotonic()
        if not poll_due(self._followed is not None, self._walking_polled_at, now):
            return
        self._walking_polled_at = None if self._followed is not None else now
        try:
            session = await self.keeper.session()
            async with self.keeper.lease():
                poll = await poll_head(session, publish_dir, self._head_stat)
        except SyncError as e:  # while walking, the walk's own syncs report the connection
            say = log.info if self._followed is not None else log.debug
            say("head_poll_failed", reason=str(e.reason), error=e.message)
            return
        polled_before = self._head_stat.named if self._head_stat is not None else None
        self._head_stat = poll.stat
        if poll_wants_sync(self._followed, polled_before, poll.named):
            self.trigger("published")

    async def _heartbeat(self) -> None:
        self.state.heartbeat = time.monotonic()
        try:
            self.control_files.keep_pid()
            self._on_control()
            self._refresh_restarts()
            self._write_status(only_if_changed=True)  # what is live may change under us
        finally:  # a failure above is the supervisor's to count; the watchdog still hears
            if self.notifier.watchdog_interval and self.healthy():
                self.notifier.watchdog()

    def healthy(self) -> bool:
        checks = self.state.liveness(
            time.monotonic(), self.sync_settings.timeout, self.scheduler_running()
        )
        return all(c.ok for c in checks)

    # ---- events from the keeper and the watchers -------------------------------------------

    def _on_connected(self) -> None:
        """After a loss that cost syncs, sync at once instead of waiting for the schedule
        (or for the first sync's backoff)."""
        if self.state.consecutive_failures:
            self.trigger("reconnected")

    def _on_control(self) -> None:
        self._refresh_pause()
        if self.control_files.take_trigger():
            self.sync_now("sync-now file")
        self._refresh_generation()

    def _refresh_pause(self) -> bool:
        by = self.control_files.paused_by()
        if by != self.state.paused_by:
            resumed = self.state.paused and not by
            self.state.paused_by = by
            log.info("paused" if by else "resumed", paused_by=list(by))
            self._write_status()
            if resumed:
                self.trigger("resumed")
        return self.state.paused

    def _refresh_generation(self) -> None:
        """Follow current.json when something else applied (rollback, ``syncagent once``)."""
        if self.state.syncing_since is not None:
            return
        sig = _file_signature(self.store.current_file)
        if sig == self._current_sig and self.state.journal_pending == self.store.journal.exists():
            return  # unchanged: parsing a 10k-file record every heartbeat would cost idle CPU
        try:
            current = self.store.current()
        except SyncError as e:
            if not self._record_warned:  # once, not every heartbeat; the probes say it too
                log.warning("current_record_unreadable", reason=str(e.reason), error=e.message)
                self._record_warned = True
            self._write_status(only_if_changed=True)
            return
        if self._record_warned:
            log.info("current_record_readable", generation=current.generation if current else None)
            self._record_warned = False
        self._current_sig = sig
        gen = current.generation if current else None
        pending = self.store.journal.exists()
        if gen != self.state.generation and current is not None:
            self._applied_elsewhere(current)
        if gen != self.state.generation or pending != self.state.journal_pending:
            self.state.generation = gen
            self.state.journal_pending = pending
            self._write_status()

    def _applied_elsewhere(self, current: Manifest) -> None:
        """A rollback changed the live tree: its files need their programs restarted too."""
        old = self.state.generation
        try:
            previous = self.store.generation_manifest(old) if old else None
        except (OSError, ValueError, KeyError, TypeError):
            previous = None  # then every path counts as changed: restart rather than not
        result = applied_elsewhere(previous, current)
        self._restart_pending(result)
        log.info(
            "generation_changed",
            generation=current.generation,
            previous=old,
            added=len(result.added),
            modified=len(result.modified),
            removed=len(result.removed),
            why="applied by another process (rollback or `syncagent once`)",
        )
        self.reloader.schedule(result)

    # ---- pending restarts ------------------------------------------------------------------

    def _restart_pending(self, result: SyncResult) -> None:
        try:
            procs = list(processes())
        except OSError as e:
            log.warning("process_table_unreadable", error=str(e), action="no restart tracking")
            return
        changed = changed_paths(result)
        if self.state.restarts.changed(changed, time.time(), now_since_boot(), procs):
            self._write_status()

    def _refresh_restarts(self) -> None:
        if not self.state.restarts.since:
            return
        try:
            procs = list(processes())
        except OSError:
            return
        if self.state.restarts.refresh(procs):
            self._write_status()

    def _on_reload(self, rule: str, result: str) -> None:
        self.metrics.observe_reload(rule, result)
        command = next((r.command for r in self.settings.reload.rules if r.name == rule), ())
        if result == "ok" and self.state.restarts.reloaded(command, rule):
            self._write_status()

    def _on_drift(self, paths: list[str]) -> None:
        if self.state.generation is None:
            return  # nothing validated to restore yet
        if self.control_files.paused_by():
            log.info("live_tree_changed_while_paused", count=len(paths), paths=paths[:10])
            return
        self.metrics.observe_drift(len(paths))
        log.warning(
            "drift",
            count=len(paths),
            paths=paths[:10],
            action="syncing to restore the primary's version",
        )
        gap = min(self.sync_settings.interval, DRIFT_MIN_GAP)
        wait = self._last_drift_sync + gap - time.monotonic()
        if wait <= 0:
            self._fire_drift()
        elif self._drift_timer is None:
            self._drift_timer = asyncio.get_running_loop().call_later(wait, self._fire_drift)

    def _fire_drift(self) -> None:
        self._drift_timer = None
        self._last_drift_sync = time.monotonic()
        self.trigger("drift")

    # ---- status ----------------------------------------------------------------------------

    def _write_status(self, only_if_changed: bool = False) -> None:
        """``only_if_changed``: the heartbeat's call, which writes only when readiness or the
        live generation differ from what the file says (an idle daemon does not fsync)."""
        doc = self.state.to_json(time.time(), self.sync_settings.max_staleness)
        doc["http_port"] = self.http_port
        said = (doc["ready"], doc["generation"])
        if only_if_changed and said == self._status_said:
            return
        self._status_said = said
        try:
            write_status(self.store.status_file, doc)
        except OSError as e:
            if not self._status_warned:
                log.warning("status_file_not_written", error=e.strerror or str(e))
                self._status_warned = True

    # ---- lifecycle -------------------------------------------------------------------------

    async def _restore(self) -> None:
        """Finish an interrupted apply, then trust current.json: a restart must not un-ready."""
        sync = self.sync_settings
        open_state(sync.state_dir, sync.target)
        try:
            async with applying.locked_and_recovered(self.store, sync.target, RESTORE_LOCK_TIMEOUT):
                pass
        except SyncError as e:
            log.warning("roll_forward_deferred", reason=str(e.reason), error=e.message)
        try:
            current = self.store.current()
        except SyncError as e:
            log.warning("current_record_unreadable", reason=str(e.reason), error=e.message)
            current = None
        if current is not None:
            self.state.generation = current.generation
            self.state.last_success = current.listed_at
        self.state.last_verified = self.store.verify_cursor().last_full_pass
        self.state.journal_pending = self.store.journal.exists()
        self.state.paused_by = self.control_files.paused_by()
        log.info(
            "starting",
            generation=self.state.generation,
            paused_by=list(self.state.paused_by),
            interval=sync.interval,
            target=str(sync.target),
        )

    async def run_until(self, stop: asyncio.Event) -> int:
        """Run until ``stop`` is set; returns the process exit code."""
        self._stop = self.supervisor.stop = stop
        try:
            await self._restore()
        except SyncError as e:
            log.error("cannot_start", reason=str(e.reason), error=e.message)
            return int(exit_code_for(e.reason))
        other = self.control_files.running_pid()
        if other is not None and other != os.getpid():
            log.error("already_running", pid=other, state_dir=str(self.store.path))
            return int(ExitCode.FAILED)  # not a configuration error: it may go away
        listen = self.settings.http.listen
        probe = http_server.Probe(
            self.state,
            self.settings.http,
            self.sync_settings.timeout,
            self.sync_settings.max_staleness,
            self.metrics,
            self.scheduler_running,
        )
        try:
            runner, self.http_port = await http_server.start(probe, listen)
        except OSError as e:
            log.error("cannot_listen", listen=listen, error=str(e))
            return int(http_server.bind_failure(e))
        self.control_files.write_pid()
        loop = asyncio.get_running_loop()
        previous_handler = loop.get_exception_handler()
        loop.set_exception_handler(self.supervisor.loop_error)
        self._start_scheduler()
        log.info("serving", listen=listen, port=self.http_port)
        self._write_status()
        sup = self.supervisor
        worker = sup.spawn("sync-worker", self._worker)
        server = _HttpServer(probe, listen, runner, self.http_port)
        others = [
            sup.spawn("keeper", lambda: self.keeper.run(stop)),
            sup.spawn("control", lambda: self.control.run(stop)),
            sup.spawn("drift", lambda: self.drift.run(stop)),
            sup.spawn("credentials", lambda: self.keeper.watch_credentials(stop)),
            sup.spawn("http", lambda: server.hold(stop)),
        ]
        try:
            await stop.wait()
        finally:
            await self._shutdown(worker, others, server)
            loop.set_exception_handler(previous_handler)
        return int(ExitCode.OK)

    async def _shutdown(
        self, worker: asyncio.Task[None], others: list[asyncio.Task[None]], server: _HttpServer
    ) -> None:
        self.notifier.stopping()
        log.info("stopping", syncing=self.state.syncing_since is not None)
        if self.scheduler is not None:
            self.scheduler.shutdown(wait=False)
        if self._drift_timer is not None:
            self._drift_timer.cancel()
        self._wake.set()
        done, _ = await asyncio.wait({worker}, timeout=STOP_GRACE)
        if not done:
            log.warning("sync_abandoned", why="stopping; the journal keeps the tree consistent")
            worker.cancel()
        await asyncio.wait(others, timeout=STOP_GRACE)
        for task in [worker, *others]:
            task.cancel()
        await asyncio.gather(worker, *others, return_exceptions=True)
        await self.reloader.close()
        await self.keeper.close()
        await server.close()
        self.state.syncing_since = None
        self._write_status()
        self.control_files.remove_pid()
        log.info("stopped")


class _HttpServer:
    """The HTTP endpoints as a supervised task: bound once at start (a bind failure there is an
    exit code), held until stop, and bound again on the same port if it was lost."""

    def __init__(self, probe: http_server.Probe, listen: str, runner: Any, port: int) -> None:
        self.probe = probe
        host, _ = http_server.parse_listen(listen)
        self.listen = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        self.runner: Any = runner

    async def hold(self, stop: asyncio.Event) -> None:
        if self.runner is None:
            self.runner, _ = await http_server.start(self.probe, self.listen)
        try:
            await stop.wait()
        except BaseException:
            await self.close()
            raise

    async def close(self) -> None:
        runner, self.runner = self.runner, None
        if runner is not None:
            await runner.cleanup()


def _log_result(result: SyncResult, why: str, failures: int) -> None:
    """One event per sync, with the same reason codes as the metrics."""
    fields: dict[str, Any] = {**result.log_fields(), "why": why}
    if failures:
        fields["consecutive_failures"] = failures
    if result.outcome in SUCCESS:
        log.info("sync", **fields)
    elif result.outcome is Outcome.REJECTED:
        log.error("sync", **fields)
    else:
        log.warning("sync", **fields)


class _ToStructlog(logging.Handler):
    """Library warnings (apscheduler, asyncssh) as structured lines, not stray plain text."""

    def emit(self, record: logging.LogRecord) -> None:
        structlog.get_logger(record.name).warning(record.getMessage())


def _route_library_logs() -> None:
    for name in ("apscheduler", "asyncssh"):
        lib = logging.getLogger(name)
        lib.setLevel(logging.WARNING)
        lib.propagate = False
        if not any(isinstance(h, _ToStructlog) for h in lib.handlers):
            lib.addHandler(_ToStructlog())


@contextlib.contextmanager
def signals(daemon: Daemon, stop: asyncio.Event) -> Iterator[None]:
    """SIGTERM/SIGINT stop, SIGHUP syncs now (``systemctl reload``, ``syncagent sync-now``)."""
    loop = asyncio.get_running_loop()
    handlers = {
        signal.SIGTERM: stop.set,
        signal.SIGINT: stop.set,
        signal.SIGHUP: lambda: daemon.sync_now("SIGHUP"),
    }
    for sig, fn in handlers.items():
        loop.add_signal_handler(sig, fn)
    try:
        yield
    finally:
        for sig in handlers:
            loop.remove_signal_handler(sig)


async def serve(
    settings: Settings, stop: asyncio.Event | None = None, daemon: Daemon | None = None
) -> int:
    """What ``syncagent run`` (and ``syncagent demo``) execute."""
    _route_library_logs()
    daemon = daemon or Daemon(settings)
    stop = stop or asyncio.Event()
    with signals(daemon, stop):
        return await daemon.run_until(stop)


def _file_signature(path: Path) -> tuple[int, int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return st.st_ino, st.st_mtime_ns, st.st_size
