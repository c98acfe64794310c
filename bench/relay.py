"""A loopback TCP relay that counts the bytes of every connection passing through it.

    python -m bench.relay UPSTREAM_PORT

Prints ``{"port": P, "stats_port": S}`` on one line, then relays 127.0.0.1:P to
127.0.0.1:UPSTREAM_PORT. Connecting to S returns ``{"up": .., "down": .., "connections": ..}``:
bytes client->server, server->client and connections accepted so far. It runs in its own process
so its CPU is charged to neither the client nor sshd, and it is only in the path during the passes
that count bytes (it adds latency; times are measured without it).
"""

from __future__ import annotations

import asyncio
import json
import sys

COUNTS = {"up": 0, "down": 0, "connections": 0}


async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, key: str) -> None:
    try:
        while data := await reader.read(256 * 1024):
            COUNTS[key] += len(data)
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        try:
            if writer.can_write_eof():
                writer.write_eof()
        except (ConnectionError, OSError):
            writer.close()


async def _client(
    upstream: int, c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter
) -> None:
    COUNTS["connections"] += 1
    try:
        s_reader, s_writer = await asyncio.open_connection("127.0.0.1", upstream)
    except OSError:
        c_writer.close()
        return
    await asyncio.gather(_pump(c_reader, s_writer, "up"), _pump(s_reader, c_writer, "down"))
    for w in (c_writer, s_writer):
        w.close()


async def _stats(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    writer.write(json.dumps(COUNTS).encode())
    await writer.drain()
    writer.close()


async def main(upstream: int) -> None:
    relay = await asyncio.start_server(
        lambda r, w: _client(upstream, r, w), "127.0.0.1", 0, backlog=512
    )
    stats = await asyncio.start_server(_stats, "127.0.0.1", 0)
    ports = {
        "port": relay.sockets[0].getsockname()[1],
        "stats_port": stats.sockets[0].getsockname()[1],
    }
    print(json.dumps(ports), flush=True)
    async with relay, stats:
        await asyncio.gather(relay.serve_forever(), stats.serve_forever())


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1])))
