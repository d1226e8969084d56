"""The XMPP session: the stream, login, reconnect, room joins and keep-alive.

The relay must be in its rooms whenever it is connected, and nothing sent before a lost
session may be given up on until the rooms' archives have been read: a new session joins
every room, reads each archive from its cursor (handing the results to the inbound
consumer, in order), and only then releases for a resend what no room confirmed. A
resumed stream (XEP-0198) needs none of that: the server kept the relay's presence, and
slixmpp resends what the server had not acknowledged.

How the stream is opened is the mode's (`Login`): a client account with TLS, SASL and
stream management (`ClientLogin`, here), or a component handshake (`component`). The
session is the only part that opens, reads or closes the stream: every stanza it reads
goes into its `inbox`, in order, reading paused while the inbox is full.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import ssl
import xml.etree.ElementTree as ET
from collections.abc import Callable, Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol, cast

from slixmpp import JID, BaseXMPP, ClientXMPP
from slixmpp.exceptions import IqError, IqTimeout
from slixmpp.xmlstream import StanzaBase, XMLStream
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from imbridge.errors import AdapterError

from .config import XmppConfig
from .delivery import Delivery
from .history import fetch_after
from .inbox import CatchUp, Inbox
from .media import Uploader
from .proto.stanzas import NS_CLIENT, WireMessage, q
from .proto.uploads import discovery_domain
from .rooms import Cursor, Room, cursor_key
from .writes import CoalescedWrites

Spawn = Callable[[Coroutine[Any, Any, None], str], "asyncio.Task[None] | None"]
"""Starts a task in the adapter's task tree under a name; None once the adapter closes."""
Refuse = Callable[[str], None]
"""Tells the session its login was refused, and why."""

LOGIN_TIMEOUT = 30.0
JOIN_TIMEOUT = 15.0
LOOK_BACK = timedelta(seconds=60)  # how far before its cursor a new process reads
PLUGINS = ("xep_0030", "xep_0045", "xep_0199", "xep_0313")
"""The slixmpp plugins both modes call (join stanzas, pings, archive queries); a client
adds stream management (XEP-0198). Stanzas are built and read by `stanzas` on plain
ElementTree, so the XEPs they carry (0066, 0308, 0359, 0424, 0461) need no plugin: each
loaded plugin would only add handlers that slixmpp matches every incoming stanza
against."""
UNUSED_HANDLERS = (
    "IM", "IMError", "Presence", "Data Form", "Entity Capabilities",
    "Pubsub Event: Items", "Pubsub Event: Purge", "Pubsub Event: Delete",
    "Pubsub Event: Configuration", "Pubsub Event: Subscription",
    "MUCPresence", "MUCPresenceError", "MUCError", "MUCMessage", "MUCSubject", "MUCConfig",
    "MUCInvite", "MUCDecline", "MUCAffiliationChange", "Ad-Hoc Execute", "Forwarded Stanza",
)  # fmt: skip
"""Handlers the plugins (and their dependencies) register that only turn stanzas into
slixmpp events nobody here listens to, or keep rosters nobody reads (the base roster and
MUC's grow with every occupant ever seen). The adapter reads every message and presence
through its own two handlers; slixmpp matches each incoming stanza against every
registered handler, so these 21 of 38 were most of the per-stanza cost. What stays:
stream features, TLS, SASL, stream management, roster pushes, disco and ping answers."""


def prune_handlers(client: BaseXMPP) -> None:
    """Removes `UNUSED_HANDLERS`, and entity capabilities' outgoing filter (XEP-0115,
    loaded as a dependency): it only adds a capabilities hash to presence, which nobody
    needs of a relay (disco queries are still answered), but being a coroutine it made
    slixmpp start a task and a one-second timer for every stanza sent, each message
    included. Call once the plugins are registered."""
    for name in UNUSED_HANDLERS:
        client.remove_handler(name)
    if "xep_0115" in client.plugin:
        caps = client.plugin["xep_0115"]._filter_add_caps
        client.del_filter("out", caps)  # type: ignore[arg-type]  # typed for sync filters only


class Backoff(XMLStream):
    """A bounded, jittered reconnect backoff instead of slixmpp's own doubling up to five
    minutes, so a restarted server is reached again in seconds. Mixed into the client
    here and the component in `component`."""

    backoff_max: float

    def reschedule_connection_attempt(self) -> asyncio.Future[Any] | None:
        if self._current_connection_attempt is None:
            return None
        wait = min(self.backoff_max, self._connect_loop_wait * 2 + 0.5)
        self._connect_loop_wait = wait * random.uniform(0.6, 1.0)  # noqa: S311 - jitter
        self._current_connection_attempt = asyncio.ensure_future(self._connect_loop())
        return cast("asyncio.Future[Any]", self._current_connection_attempt)


class Client(Backoff, ClientXMPP):
    def __init__(
        self, jid: str, password: str, backoff_max: float, ssl_context: ssl.SSLContext
    ) -> None:
        # Given at construction: otherwise slixmpp builds a default context of its own
        # (the system's CA store parsed again, about 1 MiB resident) only to be replaced.
        super().__init__(jid, password, ssl_context=ssl_context)
        self.backoff_max = backoff_max


class Login(Protocol):
    """How one mode opens its stream, and what it does with the stanzas and session
    changes that concern it alone."""

    upload_domain: str
    """Where to look for an HTTP upload service (`media`)."""
    upload_sender: str | None
    """Which of the stream's JIDs asks the upload service; None: the session's own."""

    def make(self, refuse: Refuse) -> BaseXMPP:
        """A new stream object with the mode's plugins and its own event handlers."""
        ...

    def connect(self, stream: BaseXMPP) -> None: ...

    def listens(self, kind: str, element: ET.Element) -> bool:
        """Whether a stanza is the listener's, for the inbound queue; a stanza the mode
        handles itself (addressed to a puppet) is not."""
        ...

    def lost(self) -> None:
        """The stream is gone."""
        ...

    def renewed(self) -> None:
        """A new session starts (before the rooms are joined again)."""
        ...


class ClientLogin:
    """Client mode: one account, over TLS as configured, with stream management."""

    def __init__(self, name: str, config: XmppConfig, *, log: Any) -> None:
        self.name = name
        self.config = config
        self._log = log
        self.upload_domain = discovery_domain(
            (config.jid or "").partition("@")[2].lower(), component=False
        )
        self.upload_sender: str | None = None  # the session's own JID: no `from` needed

    def make(self, refuse: Refuse) -> BaseXMPP:
        cfg = self.config
        if cfg.jid is None or cfg.password is None:  # the config model requires both
            raise AdapterError(f"{self.name}: a client needs a jid and a password")
        context = ssl.create_default_context(cafile=str(cfg.ca_file) if cfg.ca_file else None)
        if not cfg.tls_verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        client = Client(cfg.jid, cfg.password.get_secret_value(), cfg.reconnect_max, context)
        for plugin in (*PLUGINS, "xep_0198"):
            client.register_plugin(plugin)
        prune_handlers(client)
        client.enable_direct_tls = cfg.tls == "direct"
        client.enable_starttls = cfg.tls == "starttls"
        client.enable_plaintext = cfg.tls == "plain"
        if cfg.tls == "plain":
            client.plugin["feature_mechanisms"].unencrypted_plain = True

        def untrusted(error: object) -> None:
            """A certificate that does not verify will not verify on the next try
            either: say so at once instead of timing out (the reconnect keeps trying
            meanwhile)."""
            self._log.error("tls_untrusted", error=str(error))
            refuse(f"TLS certificate not trusted: {error}")
            if client.transport is not None:
                client.abort()

        def connection_failed(error: object) -> None:
            if isinstance(error, ssl.SSLCertVerificationError):
                untrusted(error)

        client.add_event_handler("failed_all_auth", lambda _: refuse("authentication refused"))
        client.add_event_handler("connection_failed", connection_failed)
        client.add_event_handler("ssl_invalid_chain", untrusted)
        return client

    def connect(self, stream: BaseXMPP) -> None:
        if self.config.host and self.config.port:
            stream.connect(self.config.host, self.config.port)
        else:
            stream.connect()

    def listens(self, kind: str, element: ET.Element) -> bool:
        return True

    def lost(self) -> None:
        return None

    def renewed(self) -> None:
        return None


class Session:
    """Connects, logs in, joins and keeps the stream alive; the adapter's only part that
    opens, reads or closes the connection."""

    def __init__(
        self,
        name: str,
        config: XmppConfig,
        *,
        login: Login,
        rooms: dict[str, Room],
        writes: CoalescedWrites,
        delivery: Delivery,
        uploads: Uploader,
        spawn: Spawn,
        log: Any,
    ) -> None:
        self.name = name
        self.config = config
        self._login = login
        self._rooms = rooms
        self._writes = writes
        self._delivery = delivery
        self._uploads = uploads
        self._spawn = spawn
        self._log = log
        self.inbox = Inbox(self)
        self._client: BaseXMPP | None = None
        self._ready = asyncio.Event()
        self._login_settled = asyncio.Event()  # logged in and joined, or refused
        self._login_failed: str | None = None
        self._alive = False
        self._generation = 0
        self._session_task: asyncio.Task[None] | None = None
        self._closing = False
        self._looked_back: set[str] = set()
        """Rooms whose archive this process has read back past its cursor once."""

    @property
    def client(self) -> Any:
        """The current stream object (slixmpp's), None before the first `open`."""
        return self._client

    @property
    def connected(self) -> bool:
        return self._ready.is_set() and not self._closing

    @property
    def alive(self) -> bool:
        """Logged in, on a stream not yet lost (the rooms may still be joining)."""
        return self._alive

    @property
    def closing(self) -> bool:
        return self._closing

    @property
    def generation(self) -> int:
        """Counts new sessions (not resumed ones): a send belongs to the one it was
        written in."""
        return self._generation

    # -- the run: open, connect, settle, close --------------------------------------------

    def open(self) -> None:
        """A fresh stream object; the daemon retries a failed start on the same adapter,
        after `close`, so everything of the last run is forgotten here."""
        self._closing = False
        self._login_failed = None
        self._login_settled.clear()
        self._ready.clear()
        self.inbox.clear()  # nothing from a previous connection is replayed
        client = self._login.make(self.refuse)
        client.register_handler(
            Callback("imbridge message", MatchXPath(q(NS_CLIENT, "message")), self._on_message)
        )
        client.register_handler(
            Callback("imbridge presence", MatchXPath(q(NS_CLIENT, "presence")), self._on_presence)
        )
        client.add_event_handler("connected", self._on_connected)
        client.add_event_handler("session_start", self._on_session_start)
        client.add_event_handler("session_resumed", self._on_session_resumed)
        client.add_event_handler("disconnected", self._on_disconnected)
        self._client = client

    def connect(self) -> None:
        if self._client is None or self._closing:
            return
        self._login.connect(self._client)

    async def settle(self) -> str | None:
        """Waits until the first session is up (None) or refused (why); TimeoutError
        after LOGIN_TIMEOUT."""
        async with asyncio.timeout(LOGIN_TIMEOUT):
            await self._login_settled.wait()
        return self._login_failed

    def refuse(self, reason: str) -> None:
        """A refusal that will not pass on the next try either (wrong password, an
        untrusted certificate, a refused handshake): `start` says so at once."""
        if not self._ready.is_set() and self._login_failed is None:
            self._login_failed = reason
            self._login_settled.set()

    async def close(self) -> None:
        """Ends the stream and every task slixmpp keeps for it, whatever state it is in."""
        self._closing = True
        self._ready.clear()
        self._alive = False
        client = self._client
        if client is None:
            return
        try:
            if client.transport is not None:
                await asyncio.wait_for(client.disconnect(wait=1), 3)
        except (TimeoutError, OSError) as exc:
            self._log.warning("disconnect_failed", error=str(exc))
        client.cancel_connection_attempt()
        if client.transport is not None:
            client.abort()
        # slixmpp keeps its send-queue task for reconnects and only cancels it in
        # __del__; end it here so no task outlives the adapter.
        sender = client._run_out_filters
        if sender is not None and not sender.done():
            sender.cancel()
            await asyncio.gather(sender, return_exceptions=True)

    # -- reading: into the inbox, paused while it is full ---------------------------------

    def _on_message(self, stanza: StanzaBase) -> None:
        if self._login.listens("message", stanza.xml):
            self.inbox.put(("message", stanza.xml))

    def _on_presence(self, stanza: StanzaBase) -> None:
        if self._login.listens("presence", stanza.xml):
            self.inbox.put(("presence", stanza.xml))

    def pause_reading(self) -> None:
        client = self._client
        if client is not None and client.transport is not None:
            self._log.warning("inbound_paused", waiting=len(self.inbox))
            client.transport.pause_reading()

    def resume_reading(self) -> None:
        client = self._client
        if client is not None and client.transport is not None:
            self._log.info("inbound_resumed", waiting=len(self.inbox))
            with contextlib.suppress(RuntimeError):  # a transport closing meanwhile
                client.transport.resume_reading()

    def _not_reading(self) -> bool:
        return self.inbox.paused

    def _on_connected(self, _event: object) -> None:
        """A new connection reads at once: hold it too while the inbox is still full."""
        if self.inbox.paused:
            self.pause_reading()

    # -- sessions -------------------------------------------------------------------------

    def _on_session_start(self, _event: object) -> None:
        if self._session_task is not None:
            self._session_task.cancel()
        self._session_task = self._spawn(self._new_session(), "session")

    def _on_session_resumed(self, _event: object) -> None:
        # XEP-0198 resumption: the server kept our room presence, and slixmpp has resent
        # what it had not acknowledged; nothing else to do.
        self._alive = True
        self._ready.set()
        self._log.info("connected", resumed=True)

    def _on_disconnected(self, reason: object) -> None:
        self._login.lost()
        was_ready = self._ready.is_set()
        self._ready.clear()
        self._alive = False
        if self._session_task is not None:
            self._session_task.cancel()  # its joins would wait for a stream that is gone
            self._session_task = None
        if self._closing:
            return
        self._log.warning("disconnected", reason=str(reason or ""), was_ready=was_ready)
        self._spawn(self._reconnect(), "reconnect")

    async def _reconnect(self) -> None:
        await asyncio.sleep(random.uniform(0.2, 0.6))  # noqa: S311 - jitter, not crypto
        self.connect()

    async def _new_session(self) -> None:
        """A fresh session (first login, or resumption failed): join every room, catch up
        from the archives, then release for a resend whatever the rooms never got."""
        self._login.renewed()
        self._generation += 1
        generation = self._generation
        self._alive = True
        self._uploads.forget()
        client = self._client
        if client is not None and self.config.direct_messages and self.config.mode == "client":
            # Available, so the server passes chat messages to the bare JID here (RFC 6121
            # §8.5.2.1.1); without it they would bounce or wait offline, never seen.
            client.send_presence()
        for room in list(self._rooms.values()):
            room.joined = False
            room.emptied()
        for room in list(self._rooms.values()):
            try:
                await self.join(room)
            except Exception as exc:  # noqa: BLE001 - one bad room must not block the others
                self._log.error("join_failed", room=room.jid, error=str(exc))
        if generation != self._generation or not self._alive:
            return
        released = self._delivery.release_older_than(generation)
        if released:
            self._log.warning("send_retry", reason="not in the room archive", count=released)
        self._ready.set()
        self._login_settled.set()
        self._log.info("connected", resumed=False)

    # -- rooms ----------------------------------------------------------------------------
    async def join(self, room: Room) -> None:
        client = self._client
        if client is None:
            raise AdapterError("join before start")
        cursor = Cursor.loads(await self._writes.get(cursor_key(room.jid)))
        since = self._delivery.earliest(room.jid)
        room.set_catching_up(self.config.catch_up and (cursor is not None or since is not None))
        room.buffer.clear()
        room.subject_seen = False
        error: str | None = "conflict"
        for nick in room.nick_candidates():
            room.nick = nick
            room.join_result = asyncio.get_running_loop().create_future()
            presence = client.plugin["xep_0045"].make_join_stanza(
                JID(room.jid), nick, password=room.password, maxstanzas=0
            )
            presence.send()
            async with asyncio.timeout(JOIN_TIMEOUT):
                error = await room.join_result
            if error != "conflict":
                break
        if error is not None:
            room.set_catching_up(False)
            raise AdapterError(f"cannot join {room.jid}: {error}")
        self._log.info("joined", room=room.jid, nick=room.nick)
        key = cursor_key(room.jid)
        if cursor is None and await self._writes.get(key) is None:
            # Nothing seen here yet: remember when we arrived, so that after a restart
            # the archive is read from this moment even if nobody spoke meanwhile. Put
            # after the check with no await between, so a cursor a message left during
            # the join is never replaced by this older one.
            arrived = Cursor("", datetime.now(UTC) - timedelta(seconds=1))
            self._writes.put(key, arrived.dumps())
        if room.catching_up:
            await self._read_archive(client, room, cursor, since)

    async def _read_archive(
        self, client: Any, room: Room, cursor: Cursor | None, since: float | None
    ) -> None:
        """Fetches what the room said since `cursor` (or since the oldest unconfirmed send)
        and waits until the inbound consumer has handled it."""
        start = cursor.stamp if cursor else None
        after = cursor.stanza_id if cursor and cursor.stanza_id else None
        if cursor is not None and room.jid not in self._looked_back:
            # A new process knows none of its earlier reflections. A kill between a
            # reflection and the outbox's commit leaves that message queued, so read the
            # archive from a little before the cursor: the reflection confirms it instead
            # of a resend posting it twice. Messages of others read again are recognised
            # by their stanza-id and dropped by the core.
            start = cursor.stamp - LOOK_BACK
            after = None
        self._looked_back.add(room.jid)
        if since is not None:
            earliest = datetime.fromtimestamp(since, UTC) - timedelta(seconds=5)
            start = earliest if start is None else min(start, earliest)
        messages: list[WireMessage] = []
        try:
            messages = await fetch_after(client, room.jid, after=after, start=start)
        except (IqError, IqTimeout) as exc:
            self._log.warning("catch_up_failed", room=room.jid, error=str(exc))
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.inbox.put(CatchUp(room, messages, done))
        await done

    def rejoin(self, room: Room) -> None:
        """Joins `room` again, soon, after the relay lost its place there."""
        if not self._closing:
            self._spawn(self._rejoin(room), "rejoin")

    async def _rejoin(self, room: Room) -> None:
        await asyncio.sleep(random.uniform(1.0, 3.0))  # noqa: S311 - jitter, not crypto
        if self._alive and not room.joined and not self._closing and self._wanted(room):
            try:
                await self.join(room)
            except Exception as exc:  # noqa: BLE001 - retried on the next kick or session
                self._log.error("join_failed", room=room.jid, error=str(exc))

    def _wanted(self, room: Room) -> bool:
        """Still one of the adapter's rooms (`leave` removes it)."""
        return self._rooms.get(room.jid) is room

    async def keep_alive(self) -> None:
        """XEP-0199 keep-alive: a connection that stopped answering is dropped, so the
        reconnect logic takes over instead of waiting for TCP to notice. While reading is
        paused (the inbox is full) no answer can be read: silence then proves nothing."""
        interval = self.config.ping_interval
        while True:
            await asyncio.sleep(interval)
            client = self._client
            if client is None or not self._alive or self._not_reading():
                continue
            try:
                await client.plugin["xep_0199"].ping(
                    jid=JID(client.boundjid.domain), timeout=min(30.0, interval)
                )
            except IqTimeout:
                if self._not_reading():
                    continue
                self._log.warning("ping_timeout")
                client.abort()
            except IqError:
                pass  # an error reply is still a reply: the stream is alive
