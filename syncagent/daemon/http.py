"""The one HTTP port: /healthz /readyz /metrics /status, all read-only.

Liveness and readiness answer different questions on purpose. /healthz fails only when the
agent itself is wedged (scheduler stopped, a sync past its timeout, a task the supervisor cannot
keep alive), never because the primary is down: restarting a secondary does not bring a primary
back. Readiness reads what is live from the state dir as it answers (status.read_live).
/readyz fails before the first validated configuration, when the live tree is mid-apply,
when that record cannot be read, when ``sync.max_staleness`` is exceeded, or when the optional
upstream (X-Road's own health check) fails, so one probe covers both. Bodies list every
check, one line each, so ``kubectl describe`` shows why.

Every method but GET and HEAD answers 405: nothing on the network can change state.
"""

from __future__ import annotations

import errno
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

import aiohttp
from aiohttp import web

from syncagent.daemon.metrics import CONTENT_TYPE, Metrics
from syncagent.daemon.status import Check, DaemonState
from syncagent.errors import ExitCode
from syncagent.settings import HttpSettings

READ_METHODS = frozenset({"GET", "HEAD"})
UPSTREAM_KEY = web.AppKey("upstream", aiohttp.ClientSession)


@dataclass
class Probe:
    """What the handlers read; the daemon owns all of it."""

    state: DaemonState
    http: HttpSettings
    sync_timeout: float
    max_staleness: float | None
    metrics: Metrics
    scheduler_running: Callable[[], bool]


def parse_listen(listen: str) -> tuple[str, int]:
    host, _, port = listen.rpartition(":")
    return host.strip("[]"), int(port)


@web.middleware
async def read_only(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    if request.method not in READ_METHODS:
        raise web.HTTPMethodNotAllowed(request.method, sorted(READ_METHODS))
    return await handler(request)


def checks_response(checks: list[Check]) -> web.Response:
    ok = all(c.ok for c in checks)
    body = "\n".join(c.line() for c in checks) + "\n"
    return web.Response(status=200 if ok else 503, text=body)


async def upstream_check(session: aiohttp.ClientSession, url: str, timeout: float) -> Check:
    try:
        async with session.get(
            url, timeout=aiohttp.ClientTimeout(total=timeout), allow_redirects=False
        ) as resp:
            ok = 200 <= resp.status < 300
            return Check("upstream", ok, f"{url} answered {resp.status}")
    except TimeoutError:
        return Check("upstream", False, f"{url} did not answer within {timeout:g}s")
    except aiohttp.ClientError as e:
        return Check("upstream", False, f"{url}: {type(e).__name__}: {e}")


def build_app(probe: Probe) -> web.Application:
    app = web.Application(middlewares=[read_only])

    def liveness() -> list[Check]:
        return probe.state.liveness(time.monotonic(), probe.sync_timeout, probe.scheduler_running())

    async def healthz(_: web.Request) -> web.Response:
        return checks_response(liveness())

    async def readyz(request: web.Request) -> web.Response:
        checks = probe.state.readiness(time.time(), probe.max_staleness)
        url = probe.http.upstream_health_url
        if url:
            checks.append(
                await upstream_check(request.app[UPSTREAM_KEY], url, probe.http.upstream_timeout)
            )
        return checks_response(checks)

    async def metrics(_: web.Request) -> web.Response:
        resp = web.Response(body=probe.metrics.render())
        resp.headers["Content-Type"] = CONTENT_TYPE
        return resp

    async def status(_: web.Request) -> web.Response:
        doc = probe.state.to_json(time.time(), probe.max_staleness)
        doc["healthy"] = all(c.ok for c in liveness())
        return web.json_response(doc)

    async def upstream_session(app: web.Application) -> AsyncIterator[None]:
        app[UPSTREAM_KEY] = aiohttp.ClientSession()
        yield
        await app[UPSTREAM_KEY].close()

    app.cleanup_ctx.append(upstream_session)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/status", status)
    return app


async def start(probe: Probe, listen: str) -> tuple[web.AppRunner, int]:
    """Serve until ``runner.cleanup()``; returns the runner and the bound port."""
    return await serve_app(build_app(probe), listen)


async def serve_app(app: web.Application, listen: str) -> tuple[web.AppRunner, int]:
    """Serve ``app`` on ``listen`` until ``runner.cleanup()``; the runner and the bound port
    (the daemon's endpoints and the publisher's share it)."""
    host, port = parse_listen(listen)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, reuse_address=True)
    try:
        await site.start()
    except BaseException:
        await runner.cleanup()
        raise
    addresses = runner.addresses
    bound = addresses[0][1] if addresses else port
    return runner, int(bound)


def bind_failure(e: OSError) -> ExitCode:
    """A port in use may be free at the next start; an address that cannot be bound is config."""
    return ExitCode.FAILED if e.errno == errno.EADDRINUSE else ExitCode.CONFIG
