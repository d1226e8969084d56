"""Component mode (XEP-0114): the bridge as a server component, one JID per relayed user.

The component's own domain JID joins each room as the listening occupant: it receives the
room's traffic, reads the archive and sees reflections exactly as the client-mode relay
does, so everything inbound (ordering, catch-up, cursors, delivery confirmation) is the
same parts' work (`session`, `receive`, `send`). This part is composed into the adapter
in their place where modes differ: it opens the stream (`session.Login`) and it says who
speaks (`voices.Voices`): every relayed sender gets a puppet JID (`puppets.puppet_jid`)
that joins a room on its first message there, under the sender's name, and sends that
sender's messages without the core's `<nick@net>` prefix.

Every stanza the server routes to the component arrives on one stream, whichever of its
JIDs it is addressed to; a room's message reaches every puppet in it as well as the
listener. Only what is addressed to the listener enters the inbound queue; a puppet's own
presence settles its join, and an error bounced to a puppet fails that delivery.
"""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Any

from slixmpp import JID, BaseXMPP, ComponentXMPP

from imbridge.adapter import Outgoing
from imbridge.errors import AdapterError, PermanentSendError, RetryableSendError
from imbridge.events import Origin, Recipient

from .config import XmppConfig
from .delivery import NOT_IN_ROOM, PERMANENT, Delivery
from .proto.stanzas import NS_CLIENT, parse_message, parse_presence, q, split_jid
from .proto.uploads import discovery_domain
from .puppets import nick_candidates, person_of, puppet_jid
from .rooms import Room
from .session import JOIN_TIMEOUT, PLUGINS, Backoff, Refuse, prune_handlers

NS_ACCEPT = "jabber:component:accept"
_STANZAS = frozenset(q(NS_ACCEPT, name) for name in ("message", "presence", "iq"))
_RETRY_NICK = frozenset({"conflict", "jid-malformed", "not-acceptable"})


def to_client_ns(element: ET.Element) -> None:
    """Moves a stanza from the component namespace into `jabber:client`, in place.

    The server writes a component's stanzas, children included, in
    `jabber:component:accept`; the stanza readers (and slixmpp's MAM result matcher)
    expect `jabber:client`, as on a client stream. Outgoing stanzas need nothing: the
    stream runs with `use_jc_ns`, so `jabber:client` is the default namespace that is
    left unwritten, which the server reads as its own."""
    prefix = f"{{{NS_ACCEPT}}}"
    for node in element.iter():
        if isinstance(node.tag, str) and node.tag.startswith(prefix):
            node.tag = q(NS_CLIENT, node.tag[len(prefix) :])


class _Component(Backoff, ComponentXMPP):
    def __init__(self, domain: str, secret: str, host: str, port: int, backoff_max: float):
        super().__init__(domain, secret, host, port, use_jc_ns=True)  # type: ignore[no-untyped-call]  # slixmpp
        self.backoff_max = backoff_max

    def incoming_filter(self, xml: ET.Element) -> ET.Element:
        if xml.tag in _STANZAS:  # not the handshake: slixmpp matches it in its own ns
            to_client_ns(xml)
        return xml


@dataclass(slots=True)
class Puppet:
    """One relayed sender's occupancy of one room."""

    jid: str
    nick: str = ""
    joined: bool = False
    result: asyncio.Future[str | None] | None = None
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)


class Component:
    """Component mode: the stream's handshake, and one puppet per sender in each room."""

    def __init__(
        self,
        name: str,
        config: XmppConfig,
        *,
        rooms: dict[str, Room],
        delivery: Delivery,
        log: Any,
    ) -> None:
        if config.mode != "component" or config.component is None:
            raise TypeError("Component needs an XmppConfig with mode: component")
        self.name = name
        self.config = config
        self.domain = config.component
        self.upload_domain = discovery_domain(self.domain, component=True)
        self.upload_sender: str | None = self.domain  # a component names which JID asks
        self._rooms = rooms
        self._delivery = delivery
        self._log = log
        self._puppets: dict[tuple[str, str], Puppet] = {}  # (room, puppet JID)
        self._nicks: dict[str, dict[str, str]] = {}  # room -> nick -> puppet JID

    # -- the stream (`session.Login`) -----------------------------------------------------

    def make(self, refuse: Refuse) -> BaseXMPP:
        cfg = self.config
        if cfg.component is None or cfg.secret is None or cfg.host is None:
            raise AdapterError(f"{self.name}: a component needs component, secret and host")
        client = _Component(
            cfg.component,
            cfg.secret.get_secret_value(),
            cfg.host,
            cfg.server_port or 5347,
            cfg.reconnect_max,
        )
        for plugin in PLUGINS:
            client.register_plugin(plugin)
        prune_handlers(client)

        def stream_error(error: Any) -> None:
            """A refused handshake (wrong secret, unknown domain) ends in a stream error;
            it will not pass on the next try either, so `start` says so at once."""
            condition = str(error["condition"] or "undefined-condition")
            self._log.error("stream_error", condition=condition)
            refuse(f"the server refused the component: {condition}")

        client.add_event_handler("stream_error", stream_error)
        return client

    def connect(self, stream: BaseXMPP) -> None:
        stream.connect(self.config.host, self.config.server_port)

    def lost(self) -> None:
        """A puppet's join in flight will get no answer on a stream that is gone: its
        send fails now and is retried on the next session, instead of after the join
        timeout."""
        for puppet in self._puppets.values():
            puppet.joined = False
            if puppet.result is not None and not puppet.result.done():
                puppet.result.set_result("remote-server-timeout")

    def renewed(self) -> None:
        for puppet in self._puppets.values():
            puppet.joined = False  # a new stream: each puppet joins again when it speaks

    # -- incoming: routed by the JID a stanza is addressed to -----------------------------

    def listens(self, kind: str, element: ET.Element) -> bool:
        to = split_jid(element.get("to", ""))[0]
        if to == self.domain:
            return True
        if kind == "message" and element.get("type", "normal") in ("chat", "normal"):
            if self.addressee(to) is not None:
                return True  # a direct message to the person a puppet stands for
        if kind == "presence":
            self._puppet_presence(to, element)
        elif element.get("type") == "error":
            self._puppet_error(to, element)
        # else: a room's message as one of the puppets received it; the listener has it too
        return False

    def _puppet_presence(self, to: str, element: ET.Element) -> None:
        presence = parse_presence(element)
        puppet = self._puppets.get((presence.room, to))
        if puppet is None:
            return
        if presence.type == "error":
            if puppet.result is not None and not puppet.result.done():
                puppet.result.set_result(presence.error or "undefined-condition")
        elif 110 not in presence.codes:
            return  # someone else's presence, as this puppet sees it
        elif presence.type == "available":
            self._held(presence.room, puppet, presence.nick)
            puppet.joined = True
            if puppet.result is not None and not puppet.result.done():
                puppet.result.set_result(None)
        elif presence.type == "unavailable":
            if 303 in presence.codes and presence.new_nick:
                self._held(presence.room, puppet, presence.new_nick)
            else:  # kicked, banned, or the room went away: joins again on its next message
                puppet.joined = False
                self._log.warning("puppet_left", room=presence.room, nick=puppet.nick)

    def _puppet_error(self, to: str, element: ET.Element) -> None:
        """A room bounced a puppet's message: the delivery fails, and a puppet that is no
        longer an occupant joins again on the retry."""
        wire = parse_message(element)
        room = self._rooms.get(wire.room)
        if room is None:
            return
        if (wire.error or "") in NOT_IN_ROOM:
            puppet = self._puppets.get((room.jid, to))
            if puppet is not None:
                puppet.joined = False
            self._delivery.fail(wire.id or "", RetryableSendError(f"{to} not in {room.jid}"))
        else:
            self._delivery.refused(wire.id or "", room.jid, wire.error or "undefined-condition")

    # -- who speaks (`voices.Voices`) -----------------------------------------------------

    def _relayed_from_elsewhere(self, origin: Origin) -> bool:
        return origin.network != self.name

    def speaker(self, item: Outgoing) -> str | None:
        origin = item.event.origin
        return puppet_jid(origin, self.domain) if self._relayed_from_elsewhere(origin) else None

    def addressee(self, to: str) -> Recipient | None:
        local, at, domain = to.rpartition("@")
        if not at or domain != self.domain:
            return None
        person = person_of(local)
        if person is None or person[1] == self.name:
            return None
        return Recipient(network=person[1], user=person[0])

    def speaks_for(self, room: Room, nick: str, real_jid: str | None) -> bool:
        if nick in self._nicks.get(room.jid, {}):
            return True
        bare = split_jid(real_jid or "")[0]
        return bare.endswith(f"@{self.domain}")

    def _held(self, room_jid: str, puppet: Puppet, nick: str) -> None:
        nicks = self._nicks.setdefault(room_jid, {})
        if puppet.nick and nicks.get(puppet.nick) == puppet.jid:
            del nicks[puppet.nick]
        puppet.nick = nick
        nicks[nick] = puppet.jid

    async def enter(self, client: Any, room: Room, item: Outgoing) -> None:
        """Makes sure the sender's puppet is in `room`, joining it under the first free
        nick; raises as a send does, so the outbox retries or gives up. Notices about
        this network are the listener's: no puppet."""
        origin = item.event.origin
        if not self._relayed_from_elsewhere(origin):
            return
        jid = puppet_jid(origin, self.domain)
        puppet = self._puppets.setdefault((room.jid, jid), Puppet(jid=jid))
        if puppet.joined:
            return
        async with puppet.lock:
            if not puppet.joined:
                await self._join_puppet(client, room, puppet, origin)

    async def _join_puppet(self, client: Any, room: Room, puppet: Puppet, origin: Origin) -> None:
        nicks = self._nicks.setdefault(room.jid, {})
        error: str | None = "conflict"
        sender = origin.sender
        for nick in nick_candidates(sender.name, sender.id, origin.network):
            if nicks.get(nick, puppet.jid) != puppet.jid:
                continue  # another puppet's
            if nick in room.occupants and nick not in nicks:
                continue  # someone in the room has it: a join would only be refused
            nicks[nick] = puppet.jid  # before the join: its presence must not be an event
            puppet.result = asyncio.get_running_loop().create_future()
            presence = client.plugin["xep_0045"].make_join_stanza(
                JID(room.jid), nick, password=room.password, maxstanzas=0,
                presence_options={"pfrom": JID(puppet.jid)},
            )  # fmt: skip
            presence.send()
            try:
                async with asyncio.timeout(JOIN_TIMEOUT):
                    error = await puppet.result
            except TimeoutError:
                error = "remote-server-timeout"
            if error is None:
                self._log.info("puppet_joined", room=room.jid, nick=puppet.nick)
                return
            if nicks.get(nick) == puppet.jid and nick != puppet.nick:
                del nicks[nick]
            if error not in _RETRY_NICK:
                break
        reason = f"{room.jid} refused {puppet.jid}: {error}"
        if error in PERMANENT:
            raise PermanentSendError(reason)
        raise RetryableSendError(reason)

    def leave_all(self, client: Any) -> None:
        """Leaves every room, puppets and listener: occupants of a component are not
        removed when its stream closes, so without this they would linger in the rooms."""
        for (room_jid, jid), puppet in self._puppets.items():
            if puppet.joined:
                self._leave(client, room_jid, puppet.nick, jid)
                puppet.joined = False
        for room in self._rooms.values():
            if room.joined:
                self._leave(client, room.jid, room.nick, None)

    def leave(self, client: Any, room: Room) -> None:
        for (room_jid, jid), puppet in self._puppets.items():
            if room_jid == room.jid and puppet.joined:
                self._leave(client, room_jid, puppet.nick, jid)
                puppet.joined = False
        if room.joined:
            self._leave(client, room.jid, room.nick, None)

    def _leave(self, client: Any, room_jid: str, nick: str, jid: str | None) -> None:
        presence = client.make_presence(
            pto=JID(f"{room_jid}/{nick}"), ptype="unavailable", pfrom=JID(jid) if jid else None
        )
        presence.send()
