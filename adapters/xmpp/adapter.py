"""The XMPP adapter's I/O: one slixmpp client session that joins MUC rooms and relays.

Everything that arrives (live, from MUC, or from a MAM catch-up) goes through one queue
and one consumer task, so events reach the sink in the order the rooms sent them and a
cursor is stored only after the sink has taken the event. Outgoing items are confirmed by
their MUC reflection (see `delivery`); stream management (XEP-0198) resends what the
server had not acknowledged when a stream is resumed. The adapter owns every task it
starts and cancels them in `aclose`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import random
import ssl
import time
import xml.etree.ElementTree as ET
from collections import OrderedDict
from collections.abc import Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, cast

import structlog
from slixmpp import JID, ClientXMPP
from slixmpp.exceptions import IqError, IqTimeout
from slixmpp.stanza import Message as SlixMessage
from slixmpp.xmlstream import StanzaBase, XMLStream
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import MatchXPath

from imbridge.adapter import (
    Capabilities,
    Cursors,
    EventSink,
    NetworkConfig,
    Outgoing,
    RateLimit,
)
from imbridge.errors import AdapterError, PermanentSendError, RetryableSendError
from imbridge.events import (
    Edit,
    Event,
    EventId,
    Join,
    Leave,
    Message,
    Origin,
    RemoteId,
    Sender,
    Topic,
    new_event_id,
)
from imbridge.intake import Intake
from imbridge.sanitize import clean_nick, clean_text

from .config import XmppConfig
from .delivery import RESEND, Delivery, Pending
from .history import fetch_after
from .media import Uploader
from .rooms import Cursor, Room, Turn, cursor_key
from .stanzas import (
    NS_CLIENT,
    NS_MAM,
    WireMessage,
    WirePresence,
    parse_message,
    parse_presence,
    q,
)
from .translate import Inbound, build, origin_id, references, to_core
from .uploads import discovery_domain
from .xmlsafe import xml_nick

log = structlog.get_logger("imbridge.adapters.xmpp")

LOGIN_TIMEOUT = 30.0
JOIN_TIMEOUT = 15.0
LOOK_BACK = timedelta(seconds=60)  # how far before its cursor a new process reads
# Errors after which the same stanza can never be accepted (RFC 6120 §8.3.3).
_PERMANENT = frozenset({
    "forbidden", "not-allowed", "policy-violation", "bad-request", "not-authorized",
    "item-not-found", "jid-malformed", "not-acceptable-permanently",
})  # fmt: skip
_NOT_IN_ROOM = frozenset({"not-acceptable"})  # XEP-0045 §7.4: not an occupant
PLUGINS = ("xep_0030", "xep_0045", "xep_0199", "xep_0313")
"""The slixmpp plugins both modes call (join stanzas, pings, archive queries); a client
adds stream management (XEP-0198). Stanzas are built and read by `stanzas` on plain
ElementTree, so the XEPs they carry (0066, 0308, 0359, 0424, 0461) need no plugin: each
loaded plugin would only add handlers that slixmpp matches every incoming stanza
against."""


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


class _Client(Backoff, ClientXMPP):
    def __init__(self, jid: str, password: str, backoff_max: float) -> None:
        super().__init__(jid, password)
        self.backoff_max = backoff_max


@dataclass(slots=True)
class _CatchUp:
    """Archive results for one room, handled in the consumer's order."""

    room: Room
    messages: list[WireMessage]
    done: asyncio.Future[None]


_Work = tuple[str, ET.Element] | _CatchUp


class XmppAdapter:
    """Relays through MUC rooms as one client account (XEP-0045)."""

    config_model: ClassVar[type[NetworkConfig]] = XmppConfig
    default_rate_limit: ClassVar[RateLimit] = RateLimit(per_second=50, burst=100)
    capabilities = Capabilities(
        edits=True,
        deletes=True,
        replies=True,
        attachments=True,
        formatting="xhtml",
        max_text_bytes=32_000,  # well under Prosody's 256 KiB stanza limit
        # One ordered stream, and origin-ids make a resend harmless: several messages may
        # wait for their reflection at once instead of one per round trip.
        send_window=16,
    )

    def __init__(self, name: str, config: NetworkConfig, cursors: Cursors) -> None:
        if not isinstance(config, XmppConfig):
            raise TypeError("XmppAdapter needs an XmppConfig")
        self.name = name
        self.config = config
        self._cursors = cursors
        self._identity = (config.jid or config.component or name).lower()
        self._sink: EventSink | None = None
        self._intake: Intake  # made by `start`, with the sink
        self._client: _Client | None = None
        self._rooms: dict[str, Room] = {}
        self._queue: asyncio.Queue[_Work] = asyncio.Queue()
        self._tasks: set[asyncio.Task[None]] = set()
        self._delivery = Delivery()
        self._looked_back: set[str] = set()
        """Rooms whose archive this process has read back past its cursor once."""
        self._sent_ids: OrderedDict[str, str] = OrderedDict()  # our stanza-id -> origin-id
        self._aliases: OrderedDict[str, str] = OrderedDict()  # room+their id -> stanza-id
        self._ready = asyncio.Event()
        self._login_settled = asyncio.Event()  # logged in and joined, or refused
        self._topic_oids: dict[str, list[str]] = {}  # room -> subject changes in flight
        self._login_failed: str | None = None
        self._session_alive = False
        self._generation = 0
        self._session_task: asyncio.Task[None] | None = None
        self._closing = False
        self._log = log.bind(network=name)
        self._uploads = Uploader(config, log=self._log)
        self._uploaded: OrderedDict[str, Message] = OrderedDict()  # origin-id -> relinked
        self._upload_domain = discovery_domain(
            (config.jid or "").partition("@")[2].lower(), component=False
        )
        self._upload_sender: str | None = None  # the session's own JID: no `from` needed

    # -- contract ------------------------------------------------------------------------

    @property
    def identity(self) -> str:
        return self._identity

    @property
    def connected(self) -> bool:
        return self._ready.is_set() and not self._closing

    async def start(self, sink: EventSink) -> None:
        # The daemon retries a failed start on the same instance, after `aclose`.
        self._sink = sink
        self._intake = Intake(sink)
        self._closing = False
        self._login_failed = None
        self._login_settled.clear()
        self._ready.clear()
        self._queue = asyncio.Queue()  # nothing from a previous connection is replayed
        self._client = self._make_client()
        self._spawn(self._consume())
        self._spawn(self._ping_loop())
        self._connect()
        try:
            async with asyncio.timeout(LOGIN_TIMEOUT):
                await self._login_settled.wait()
        except TimeoutError:
            await self.aclose()
            raise AdapterError(
                f"{self.name}: no XMPP session within {LOGIN_TIMEOUT:.0f}s"
            ) from None
        if (reason := self._refusal()) is not None:
            await self.aclose()
            raise AdapterError(f"{self.name}: login failed: {reason}")

    def _refusal(self) -> str | None:
        """Why the login was refused, if it was (set by stream event handlers)."""
        return self._login_failed

    async def join(self, room: str) -> None:
        jid = room.lower()
        if jid in self._rooms:
            return
        secret = self.config.room_passwords.get(room) or self.config.room_passwords.get(jid)
        state = Room(
            jid=jid,
            wanted_nick=xml_nick(self.config.nick),
            password=secret.get_secret_value() if secret else None,
        )
        self._rooms[jid] = state
        if self._session_alive:
            await self._join(state)

    async def send(self, item: Outgoing) -> RemoteId:
        client = self._client
        if client is None or not self.connected:
            raise RetryableSendError("not connected")
        room = self._rooms.get(item.room.lower())
        if room is None or not room.joined:  # the daemon joins every room it routes to
            raise RetryableSendError(f"not in {item.room}")
        turn = room.take_turn()  # before the first wait: the room gets sends in this order
        try:
            if room.catching_up:  # its archive may still confirm this item: no resend yet
                try:
                    async with asyncio.timeout(self.config.ack_timeout):
                        await room.caught_up.wait()
                except TimeoutError:
                    raise RetryableSendError(f"still reading the archive of {item.room}") from None
            written = await self._write(client, room, item, turn)
        finally:
            turn.done()
        if not isinstance(written, Pending):
            return written
        pending = written
        try:
            async with asyncio.timeout(self.config.ack_timeout):
                result = await asyncio.shield(pending.future)
        except TimeoutError:
            raise RetryableSendError("the room did not confirm the message in time") from None
        if result is RESEND:
            raise RetryableSendError("connection lost before the room confirmed the message")
        return result

    async def _write(
        self, client: XMLStream, room: Room, item: Outgoing, turn: Turn
    ) -> Pending | RemoteId:
        """Puts the item's stanza on the wire, in its turn, unless the room has it already
        (its id) or it is in flight (its pending delivery)."""
        oid = origin_id(item.txn_id)
        if (done := self._delivery.delivered(oid)) is not None:
            return done
        if (pending := self._in_flight(oid)) is not None:
            return pending
        item = await self._with_uploads(item, oid)
        element = build(item, identity=self.identity, replace_id=await self._replace_id(item))
        if (sender := self._speaker(item)) is not None:
            element.set("from", sender)
        await turn.wait()
        if not self.connected or client is not self._client:
            raise RetryableSendError("connection lost while the message got ready")
        if (done := self._delivery.delivered(oid)) is not None:
            return done  # confirmed while this one got ready (a catch-up, a retry)
        if (pending := self._in_flight(oid)) is not None:
            return pending
        pending = self._delivery.track(oid, room.jid, self._generation, time.time())
        if isinstance(item.event, Topic):
            # MUC rebuilds subject messages, dropping ids: matched by room instead.
            self._topic_oids.setdefault(room.jid, []).append(oid)
        client.send(SlixMessage(client, xml=element))  # type: ignore[no-untyped-call]  # slixmpp
        return pending

    def _in_flight(self, oid: str) -> Pending | None:
        """The delivery to wait for instead of writing again; None once none is, or once
        it has waited so long in this session that it is written again (the same id, so
        the room's reflection confirms either copy)."""
        pending = self._delivery.pending(oid)
        if pending is None:
            return None
        stale = time.time() - pending.sent_at > 3 * self.config.ack_timeout
        return None if stale and pending.generation == self._generation else pending

    async def _with_uploads(self, item: Outgoing, oid: str) -> Outgoing:
        """The item with its attachments re-uploaded to the server (XEP-0363), once per
        item: a resend after a lost session reuses the copies."""
        event = item.event
        if self.config.media != "upload" or not isinstance(event, Message):
            return item
        if not event.attachments:
            return item
        relinked = self._uploaded.get(oid)
        if relinked is None:
            relinked = await self._uploads.relink(
                self._client, event, network=self.name, domain=self._upload_domain,
                sender=self._speaker(item) or self._upload_sender,
            )  # fmt: skip
            self._uploaded[oid] = relinked
            while len(self._uploaded) > 1_000:
                self._uploaded.popitem(last=False)
        return dataclasses.replace(item, event=relinked)

    async def aclose(self) -> None:
        self._closing = True
        self._ready.clear()
        self._session_alive = False
        client = self._client
        if client is not None:
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
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self._uploads.aclose()
        self._delivery.release_older_than(self._generation + 1)

    # -- session -------------------------------------------------------------------------

    def _make_client(self) -> _Client:
        cfg = self.config
        if cfg.jid is None or cfg.password is None:  # the config model requires both
            raise AdapterError(f"{self.name}: a client needs a jid and a password")
        client = _Client(cfg.jid, cfg.password.get_secret_value(), cfg.reconnect_max)
        for plugin in (*PLUGINS, "xep_0198"):
            client.register_plugin(plugin)
        context = ssl.create_default_context(cafile=str(cfg.ca_file) if cfg.ca_file else None)
        if not cfg.tls_verify:
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        client.ssl_context = context
        client.enable_direct_tls = cfg.tls == "direct"
        client.enable_starttls = cfg.tls == "starttls"
        client.enable_plaintext = cfg.tls == "plain"
        if cfg.tls == "plain":
            client.plugin["feature_mechanisms"].unencrypted_plain = True
        self._handle_stanzas(client)
        client.add_event_handler("session_resumed", self._on_session_resumed)
        client.add_event_handler("failed_all_auth", self._on_auth_failed)
        client.add_event_handler("connection_failed", self._on_connection_failed)
        client.add_event_handler("ssl_invalid_chain", self._on_untrusted)
        return client

    def _handle_stanzas(self, client: XMLStream) -> None:
        """Every message and presence into the inbound queue, and the session events."""
        client.register_handler(
            Callback("imbridge message", MatchXPath(q(NS_CLIENT, "message")), self._on_message)
        )
        client.register_handler(
            Callback("imbridge presence", MatchXPath(q(NS_CLIENT, "presence")), self._on_presence)
        )
        client.add_event_handler("session_start", self._on_session_start)
        client.add_event_handler("disconnected", self._on_disconnected)

    def _connect(self) -> None:
        if self._client is None or self._closing:
            return
        if self.config.host and self.config.port:
            self._client.connect(self.config.host, self.config.port)
        else:
            self._client.connect()

    def _on_message(self, stanza: StanzaBase) -> None:
        self._queue.put_nowait(("message", stanza.xml))

    def _on_presence(self, stanza: StanzaBase) -> None:
        self._queue.put_nowait(("presence", stanza.xml))

    def _on_auth_failed(self, _event: object) -> None:
        self._login_failed = "authentication refused"
        self._login_settled.set()

    def _on_connection_failed(self, error: object) -> None:
        if isinstance(error, ssl.SSLCertVerificationError):
            self._on_untrusted(error)

    def _on_untrusted(self, error: object) -> None:
        """A certificate that does not verify will not verify on the next try either:
        say so at once instead of timing out (the reconnect keeps trying meanwhile)."""
        self._log.error("tls_untrusted", error=str(error))
        if not self._ready.is_set() and self._login_failed is None:
            self._login_failed = f"TLS certificate not trusted: {error}"
            self._login_settled.set()
        client = self._client
        if client is not None and client.transport is not None:
            client.abort()

    def _on_session_start(self, _event: object) -> None:
        if self._session_task is not None:
            self._session_task.cancel()
        self._session_task = self._spawn(self._new_session())

    def _on_session_resumed(self, _event: object) -> None:
        # XEP-0198 resumption: the server kept our room presence, and slixmpp has resent
        # what it had not acknowledged; nothing else to do.
        self._session_alive = True
        self._ready.set()
        self._log.info("connected", resumed=True)

    def _on_disconnected(self, reason: object) -> None:
        was_ready = self._ready.is_set()
        self._ready.clear()
        self._session_alive = False
        if self._session_task is not None:
            self._session_task.cancel()  # its joins would wait for a stream that is gone
            self._session_task = None
        if self._closing:
            return
        self._log.warning("disconnected", reason=str(reason or ""), was_ready=was_ready)
        self._spawn(self._reconnect())

    async def _reconnect(self) -> None:
        await asyncio.sleep(random.uniform(0.2, 0.6))  # noqa: S311 - jitter, not crypto
        self._connect()

    async def _new_session(self) -> None:
        """A fresh session (first login, or resumption failed): join every room, catch up
        from the archives, then release for a resend whatever the rooms never got."""
        self._generation += 1
        generation = self._generation
        self._session_alive = True
        self._uploads.forget()
        for room in list(self._rooms.values()):
            room.joined = False
            room.occupants.clear()
        for room in list(self._rooms.values()):
            try:
                await self._join(room)
            except Exception as exc:  # noqa: BLE001 - one bad room must not block the others
                self._log.error("join_failed", room=room.jid, error=str(exc))
        if generation != self._generation or not self._session_alive:
            return
        released = self._delivery.release_older_than(generation)
        if released:
            self._log.warning("send_retry", reason="not in the room archive", count=released)
        self._ready.set()
        self._login_settled.set()
        self._log.info("connected", resumed=False)

    async def _join(self, room: Room) -> None:
        client = self._client
        if client is None:
            raise AdapterError("join before start")
        cursor = Cursor.loads(await self._cursors.get(cursor_key(room.jid)))
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
        if cursor is None:
            # Nothing seen here yet: remember when we arrived, so that after a restart
            # the archive is read from this moment even if nobody spoke meanwhile.
            arrived = Cursor("", datetime.now(UTC) - timedelta(seconds=1))
            await self._cursors.set(cursor_key(room.jid), arrived.dumps())
        if not room.catching_up:
            return
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
        self._queue.put_nowait(_CatchUp(room, messages, done))
        await done

    async def _ping_loop(self) -> None:
        """XEP-0199 keep-alive: a connection that stopped answering is dropped, so the
        reconnect logic takes over instead of waiting for TCP to notice."""
        interval = self.config.ping_interval
        while True:
            await asyncio.sleep(interval)
            client = self._client
            if client is None or not self._session_alive:
                continue
            try:
                await client.plugin["xep_0199"].ping(
                    jid=JID(client.boundjid.domain), timeout=min(30.0, interval)
                )
            except IqTimeout:
                self._log.warning("ping_timeout")
                client.abort()
            except IqError:
                pass  # an error reply is still a reply: the stream is alive

    # -- incoming ------------------------------------------------------------------------

    async def _consume(self) -> None:
        intake = self._intake
        try:
            while True:
                work = await self._queue.get()
                try:
                    if isinstance(work, _CatchUp):
                        await self._catch_up(work)
                    elif work[0] == "message":
                        await self._message(work[1])
                    else:
                        await self._presence(work[1])
                except Exception as exc:  # noqa: BLE001 - one bad stanza never stops the relay
                    self._log.exception("inbound_failed", error=str(exc))
        finally:
            await intake.aclose()

    async def _catch_up(self, work: _CatchUp) -> None:
        room = work.room
        try:
            for wire in work.messages:
                await self._process(room, wire)
            buffered, room.buffer = room.buffer, []
            for wire in buffered:
                await self._process(room, wire)
            await self._intake.drain()  # on disk before sends resume (no resend of these)
        finally:
            room.set_catching_up(False)
            if not work.done.done():
                work.done.set_result(None)
        self._log.info("caught_up", room=room.jid, archived=len(work.messages))

    async def _message(self, element: ET.Element) -> None:
        if element.find(q(NS_MAM, "result")) is not None:
            return  # an archive result: handled by the catch-up that asked for it
        wire = parse_message(element)
        room = self._rooms.get(wire.room)
        if room is None:
            return
        if wire.type == "error":
            self._send_failed(room, wire)
        elif wire.type == "groupchat":
            if room.catching_up:
                room.buffer.append(wire)
            else:
                await self._process(room, wire)

    def _send_failed(self, room: Room, wire: WireMessage) -> None:
        oid = wire.id or ""
        condition = wire.error or "undefined-condition"
        if condition in _NOT_IN_ROOM:
            room.joined = False
            self._spawn(self._rejoin(room))
            self._delivery.fail(oid, RetryableSendError(f"not in {room.jid}"))
        elif condition in _PERMANENT:
            self._delivery.fail(oid, PermanentSendError(f"{room.jid} refused it: {condition}"))
        else:
            self._delivery.fail(oid, RetryableSendError(f"{room.jid}: {condition}"))

    async def _process(self, room: Room, wire: WireMessage) -> None:
        sid = wire.stanza_id
        if sid is not None and sid in room.seen:
            return
        oid = wire.origin_id or wire.id
        is_subject = wire.subject is not None and wire.body is None
        if is_subject and not room.subject_seen and wire.stamp is None:
            room.subject_seen = True  # the room's current subject, sent on every join
            self._confirm_topics(room, wire)
            return
        event: Event | None = None
        own = wire.nick == room.nick or wire.relayed_by == self.identity
        if own or self._speaks_for(room, wire.nick, room.occupants.get(wire.nick)):
            if is_subject:
                self._confirm_topics(room, wire)
            elif oid:
                self._delivery.confirm(oid, RemoteId(sid or oid))
                if sid:
                    self._remember_sent(sid, oid)
        else:
            event = await self._to_event(room, wire)
            if sid:
                self._remember_alias(room, wire, sid)
        if sid is not None:
            room.seen.add(sid)
            cursor = Cursor(sid, wire.stamp or datetime.now(UTC))
            # The cursor moves once the event (if any) is on disk, never past it.
            save = functools.partial(self._cursors.set, cursor_key(room.jid), cursor.dumps())
            await self._intake.put(event, save)
        elif event is not None:
            await self._intake.put(event)

    def _confirm_topics(self, room: Room, wire: WireMessage) -> None:
        for oid in self._topic_oids.pop(room.jid, []):
            self._delivery.confirm(oid, RemoteId(wire.stanza_id or oid))

    async def _to_event(self, room: Room, wire: WireMessage) -> Event | None:
        resolved: dict[str, EventId] = {}
        for ref in references(wire):
            event_id = await self._cursors.event_id(RemoteId(ref))
            if event_id is None:
                key = _alias_key(room.jid, ref)
                sid = self._aliases.get(key) or await self._cursors.get(key)
                if sid:
                    event_id = await self._cursors.event_id(RemoteId(sid))
            if event_id is not None:
                resolved[ref] = event_id
        sender = room.sender_id(wire.nick) if wire.nick else room.jid
        ctx = Inbound(
            network=self.name, event_id=new_event_id(), sender_id=sender, resolved=resolved
        )
        return to_core(wire, ctx)

    async def _presence(self, element: ET.Element) -> None:
        presence = parse_presence(element)
        room = self._rooms.get(presence.room)
        if room is None:
            return
        if presence.type == "error":
            if room.join_result is not None and not room.join_result.done():
                room.join_result.set_result(presence.error or "undefined-condition")
            return
        if 110 in presence.codes or presence.nick == room.nick:
            self._own_presence(room, presence)
            return
        if self._speaks_for(room, presence.nick, presence.real_jid):
            return
        event: Event | None = None
        origin = Origin(
            network=self.name,
            room=room.jid,
            sender=Sender(id=room.sender_id(presence.nick), name=clean_nick(presence.nick)),
        )
        if presence.type == "unavailable":
            if room.joined and presence.nick in room.occupants:
                reason = f"now known as {presence.new_nick}" if 303 in presence.codes else ""
                event = Leave(id=new_event_id(), origin=origin, reason=clean_text(reason))
            room.occupants.pop(presence.nick, None)
        elif presence.type == "available":
            known = presence.nick in room.occupants
            room.occupants[presence.nick] = presence.real_jid
            if room.joined and not known:
                event = Join(id=new_event_id(), origin=origin)
        if event is not None:
            await self._intake.put(event)

    def _own_presence(self, room: Room, presence: WirePresence) -> None:
        if presence.type == "available":
            room.nick = presence.nick
            room.joined = True
            if room.join_result is not None and not room.join_result.done():
                room.join_result.set_result(None)
            return
        if presence.type != "unavailable":
            return
        if 303 in presence.codes and presence.new_nick:
            room.nick = presence.new_nick
            return
        room.joined = False
        self._log.warning("left_room", room=room.jid, codes=sorted(presence.codes))
        # 301 banned: rejoining is pointless; 332 shutdown: the reconnect rejoins.
        if not self._closing and not presence.codes & {301, 332}:
            self._spawn(self._rejoin(room))

    async def _rejoin(self, room: Room) -> None:
        await asyncio.sleep(random.uniform(1.0, 3.0))  # noqa: S311 - jitter, not crypto
        if self._session_alive and not room.joined and not self._closing:
            try:
                await self._join(room)
            except Exception as exc:  # noqa: BLE001 - retried on the next kick or session
                self._log.error("join_failed", room=room.jid, error=str(exc))

    # -- hooks for component mode (see `component`) ----------------------------------

    def _speaker(self, item: Outgoing) -> str | None:
        """The JID an item is sent from; None: the session's own."""
        return None

    def _speaks_for(self, room: Room, nick: str, real_jid: str | None) -> bool:
        """Whether occupant `nick` is this adapter's own besides its relay occupant: its
        messages then only confirm deliveries, and its presence is no Join or Leave."""
        return False

    # -- helpers -------------------------------------------------------------------------

    async def _replace_id(self, item: Outgoing) -> str | None:
        """For an Edit of one of our own copies: the origin-id that copy carried."""
        if not isinstance(item.event, Edit) or not item.target:
            return None
        target = str(item.target)
        oid = self._sent_ids.get(target) or await self._cursors.get(f"oid:{target}")
        return oid or target

    def _remember_sent(self, sid: str, oid: str) -> None:
        """Our copy's stanza-id -> its origin-id, which a later correction must name.
        Stored without holding up the inbound queue; concurrent writes commit together."""
        _bounded_put(self._sent_ids, sid, oid)
        self._spawn(self._cursors.set(f"oid:{sid}", oid))

    def _remember_alias(self, room: Room, wire: WireMessage, sid: str) -> None:
        """A sender's own message ids -> the room's stanza-id the id map knows it by:
        corrections (XEP-0308) name the former, so they resolve even after a restart."""
        for mid in {wire.id, wire.origin_id} - {None, sid}:
            key = _alias_key(room.jid, str(mid))
            _bounded_put(self._aliases, key, sid)
            self._spawn(self._cursors.set(key, sid))

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task


def _alias_key(room: str, message_id: str) -> str:
    return f"mid:{room}:{message_id}"


def _bounded_put(mapping: OrderedDict[str, str], key: str, value: str, limit: int = 50_000) -> None:
    mapping[key] = value
    mapping.move_to_end(key)
    while len(mapping) > limit:
        mapping.popitem(last=False)
