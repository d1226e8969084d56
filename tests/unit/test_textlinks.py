"""Long messages toward a network that reads in lines: the first lines and a signed link
to the full text (`textlinks`), kept beside the archive and purged with it."""

from __future__ import annotations

import dataclasses
import time

from imbridge.adapter import Capabilities
from imbridge.archive.retention import purge_relay_state
from imbridge.archive.sealing import Sealer
from imbridge.daemon import Daemon
from imbridge.db import Conn
from imbridge.textlinks import TextLinks, head, lines_needed, load_sync, too_long
from tests.unit.conftest import StartDaemon, until

KEY = b"k" * 32
IRC = Capabilities(
    edits=False,
    deletes=False,
    replies=False,
    attachments=False,
    formatting="irc",
    max_text_bytes=65_536,
    max_lines=3,
    line_bytes=100,
)


def test_a_link_opens_only_as_signed_and_only_until_it_expires() -> None:
    now = [1_000_000.0]
    links = TextLinks(KEY, "https://b.example", lifetime_days=1, clock=lambda: now[0])
    link = links.link("abc123")
    assert link.startswith("https://b.example/text/")
    sig, name = link.removeprefix("https://b.example/text/").split("/")
    found = links.verify(sig, name)
    assert found is not None
    assert (found.key, found.expired) == ("abc123", False)
    assert links.verify(sig, "abc124.txt") is None  # another text, same signature
    assert links.verify(sig.replace(".", ".x", 1), name) is None
    other = TextLinks(b"o" * 32, "https://b.example", lifetime_days=1, clock=lambda: now[0])
    assert other.verify(sig, name) is None
    now[0] += 86_400
    expired = links.verify(sig, name)
    assert expired is not None
    assert expired.expired


def test_only_text_past_the_line_limit_is_linked_and_its_head_ends_with_the_link() -> None:
    short = "a" * 250
    assert lines_needed(short, 100) == 3
    assert not too_long(short, IRC)
    long = "\n".join(["first line", "word " * 60, "last"])
    assert too_long(long, IRC)
    shown = head(long, IRC, "https://b.example/text/1.s/k.txt")
    lines = shown.split("\n")
    assert lines[0] == "first line"
    assert lines[1].endswith("…")
    assert lines[-1] == "[full text: https://b.example/text/1.s/k.txt]"
    assert lines_needed("\n".join(lines[:-1]), 100) <= IRC.max_lines - 1
    assert not too_long(long, dataclasses.replace(IRC, max_lines=0))  # not read in lines


LINKED = """
networks:
  a: {type: memory}
  i: {type: memory, capabilities: {edits: false, max_lines: 3, line_bytes: 60}}
gateways:
  g:
    nick_format: "[{nick}] "
    rooms:
      - {network: a, room: "#x"}
      - {network: i, room: "#i"}
"""


async def test_a_long_message_is_linked_and_its_full_text_kept_for_the_route(
    start_daemon: StartDaemon,
) -> None:
    daemon, hub = await start_daemon(LINKED)
    # What `bridge.http.public_url` gives the relay; set here, so no listener is opened.
    links = TextLinks(KEY, "https://bridge.example/", lifetime_days=1)
    assert daemon.relay is not None
    daemon.relay.text_links = links
    long = " ".join(f"w{i}" for i in range(200))
    hub.post("#x", "alice", long)
    hub.post("#x", "alice", "short one")
    await until(lambda: len(hub.in_room("#i")) == 2)
    linked, short = (p.text for p in hub.in_room("#i"))
    assert short == "[alice] short one"
    assert linked.startswith("[alice] w0 w1")
    link = linked.rsplit("[full text: ", 1)[1].rstrip("]")
    assert link.startswith("https://bridge.example/text/")
    assert await full_text(daemon, links, link) == f"[alice] {long}"


async def full_text(daemon: Daemon, links: TextLinks, link: str) -> str | None:
    sig, name = link.removeprefix("https://bridge.example/text/").split("/")
    found = links.verify(sig, name)
    assert found is not None
    sealer: Sealer = daemon.sealer
    return await daemon.db.read(lambda c: load_sync(c, found.key, sealer))


async def test_without_a_public_url_every_line_is_sent(start_daemon: StartDaemon) -> None:
    _, hub = await start_daemon(LINKED)
    long = " ".join(f"w{i}" for i in range(200))
    hub.post("#x", "alice", long)
    await until(lambda: len(hub.in_room("#i")) == 1)
    assert hub.in_room("#i")[0].text == f"[alice] {long}"


async def test_the_full_text_goes_with_the_archives_retention_unless_held(
    start_daemon: StartDaemon,
) -> None:
    daemon, hub = await start_daemon(LINKED)
    assert daemon.relay is not None
    daemon.relay.text_links = TextLinks(KEY, "https://bridge.example/", lifetime_days=1)
    long = " ".join(f"w{i}" for i in range(200))
    hub.post("#x", "alice", long)
    hub.post("#x", "alice", "kept " + long)
    await until(lambda: len(hub.in_room("#i")) == 2)

    def rows(conn: Conn) -> list[tuple[str, str]]:
        return conn.execute("SELECT key, event_id FROM long_texts ORDER BY event_id").fetchall()

    _, (kept_key, held) = await daemon.db.read(rows)  # event ids sort by creation
    later = time.time() + 1
    gone = await daemon.db.transact(lambda c: purge_relay_state(c, later, {held}))
    assert gone >= 1
    assert [k for k, _ in await daemon.db.read(rows)] == [kept_key]
