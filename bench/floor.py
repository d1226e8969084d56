"""The least a relay written in Python can do, as a floor for the per-network benchmarks.

    python bench/floor.py HOST PORT NICK FROM_CHANNEL TO_CHANNEL

An IRC client on a bare asyncio stream that copies every PRIVMSG said in FROM_CHANNEL
into TO_CHANNEL with a `<nick> ` prefix: no parsing beyond splitting the line, no
translation, no policy, no state, nothing written to disk. Run in its own process beside
`imbridge run`, its added latency is what this machine charges any Python process for
waking up and handling one line, however little it does; what imbridge adds beyond it is
imbridge's own.
"""

from __future__ import annotations

import asyncio
import secrets
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the relay process itself imports nothing but the standard library
    from bench.arrivals import Arrivals


async def relay(host: str, port: int, nick: str, source: str, dest: str) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    writer.write(f"NICK {nick}\r\nUSER {nick} 0 * :{nick}\r\n".encode())
    joined = False
    tail = f" PRIVMSG {source} :"
    while line := await reader.readline():
        text = line.decode("utf-8", "replace").rstrip("\r\n")
        if text.startswith("PING"):
            writer.write(("PONG" + text[4:] + "\r\n").encode())
        elif not joined and text.split(" ", 2)[1:2] == ["001"]:
            writer.write(f"JOIN {source},{dest}\r\n".encode())
            joined = True
        elif tail in text:
            prefix, said = text.split(tail, 1)
            who = prefix[1:].split("!", 1)[0]
            writer.write(f"PRIVMSG {dest} :<{who}> {said}\r\n".encode())


@asynccontextmanager
async def floor_process(
    host: str, port: int, source: str, dest: str, *, say: Callable[[str], object], seen: Arrivals
) -> AsyncIterator[None]:
    """The floor relay in its own process, ready once a probe said with `say` in `source`
    shows up in `seen`."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(Path(__file__)), host, str(port), "floor" + secrets.token_hex(2),
        source, dest,
    )  # fmt: skip
    try:
        deadline = time.perf_counter() + 30
        while "#floorprobe" not in seen.arrived and time.perf_counter() < deadline:
            say("probe #floorprobe")
            await asyncio.sleep(0.5)
        if "#floorprobe" not in seen.arrived:
            raise RuntimeError("the floor relay did not relay the probe within 30 s")
        yield
    finally:
        proc.terminate()
        await proc.wait()


if __name__ == "__main__":
    host, port, nick, source, dest = sys.argv[1:6]
    asyncio.run(relay(host, int(port), nick, source, dest))
