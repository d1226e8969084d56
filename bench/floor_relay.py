"""The least a relay written in Python can do: the floor of the per-network benchmarks.

    python bench/floor_relay.py HOST PORT NICK FROM_CHANNEL TO_CHANNEL

An IRC client on a bare asyncio stream that copies every PRIVMSG said in FROM_CHANNEL
into TO_CHANNEL with a `<nick> ` prefix: no parsing beyond splitting the line, no
translation, no policy, no state, nothing written to disk, and nothing imported beyond the
standard library.
"""

from __future__ import annotations

import asyncio
import sys


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


if __name__ == "__main__":
    host, port, nick, source, dest = sys.argv[1:6]
    asyncio.run(relay(host, int(port), nick, source, dest))
