"""Incoming stanzas read into plain values, before anything decides what they mean.

Parsing works on the stanza's XML element, not on slixmpp's stanza plugins, so the same
code reads live messages, MUC history and MAM results (whose payload is a forwarded
message), and unit tests feed it recorded XML from `tests/data/xmpp/`. Every string taken
from the wire is kept raw here; `translate` cleans it. Pure functions, no I/O.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from datetime import datetime

NS_CLIENT = "jabber:client"
NS_SID = "urn:xmpp:sid:0"  # XEP-0359
NS_CORRECT = "urn:xmpp:message-correct:0"  # XEP-0308
NS_RETRACT = "urn:xmpp:message-retract:1"  # XEP-0424 v1 (0.4+)
NS_RETRACT0 = "urn:xmpp:message-retract:0"  # XEP-0424 v0, inside a fastening
NS_FASTEN = "urn:xmpp:fasten:0"  # XEP-0422
NS_MODERATE = "urn:xmpp:message-moderate:1"  # XEP-0425 v1
NS_MODERATE0 = "urn:xmpp:message-moderate:0"  # XEP-0425 v0
NS_REPLY = "urn:xmpp:reply:0"  # XEP-0461
NS_FALLBACK = "urn:xmpp:fallback:0"  # XEP-0428
NS_OOB = "jabber:x:oob"  # XEP-0066
NS_DELAY = "urn:xmpp:delay"  # XEP-0203
NS_MUC = "http://jabber.org/protocol/muc"
NS_MUC_USER = "http://jabber.org/protocol/muc#user"
NS_HINTS = "urn:xmpp:hints"  # XEP-0334
NS_MAM = "urn:xmpp:mam:2"  # XEP-0313
NS_FORWARD = "urn:xmpp:forward:0"  # XEP-0297
NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
NS_XHTML_IM = "http://jabber.org/protocol/xhtml-im"
NS_REACTIONS = "urn:xmpp:reactions:0"  # XEP-0444
NS_CONFERENCE = "jabber:x:conference"  # XEP-0249 direct invitation
NS_REFERENCE = "urn:xmpp:reference:0"  # XEP-0372
NS_RELAY = "urn:imbridge:relay:0"
"""imbridge's own marker on every message it relays, so no bridge relays it again."""


def q(ns: str, name: str) -> str:
    """ElementTree's `{namespace}name`."""
    return f"{{{ns}}}{name}"


def split_jid(jid: str) -> tuple[str, str]:
    """(bare, resource) of a JID string; MUC occupant JIDs are room@service/nick."""
    bare, _, resource = jid.partition("/")
    return bare.lower(), resource


@dataclass(frozen=True, slots=True, kw_only=True)
class WireMessage:
    """The parts of a message stanza the bridge uses, unvalidated."""

    room: str
    nick: str  # "" when the room itself speaks (subject at join, moderation)
    type: str
    id: str | None = None
    origin_id: str | None = None
    stanza_id: str | None = None  # assigned by the room, XEP-0359 `by` == room
    body: str | None = None
    subject: str | None = None
    xhtml: ET.Element | None = None
    replace_id: str | None = None
    retract_id: str | None = None
    moderated: bool = False
    reply_id: str | None = None
    reply_fallback: tuple[int, int] | None = None  # XEP-0428 body range to strip
    oob: tuple[tuple[str, str], ...] = ()  # (url, description)
    relayed_by: str | None = None  # the relay marker's `by`, if any
    stamp: datetime | None = None  # XEP-0203 delay, for history and archive results
    error: str | None = None  # defined condition of a type=error message
    reactions: tuple[str, ...] | None = None  # XEP-0444: the sender's whole set, raw
    reaction_id: str | None = None  # XEP-0444: the id of the message reacted to
    account_stanza_id: str | None = None  # XEP-0359 `by` the recipient's own bare JID
    muc_user: bool = False  # carries a MUC <x/>: a private message through a room
    invitation: bool = False  # a room invitation (XEP-0045 mediated or XEP-0249)
    thread: str | None = None  # XEP-0201 thread id
    mention_refs: tuple[tuple[str, int, int], ...] = ()  # XEP-0372 (uri, begin, end)
    to: str = ""  # the bare JID it was addressed to (a puppet's, for a direct message)

    @property
    def remote_id(self) -> str | None:
        """The id other stanzas and the id map use: the room's stanza-id when it gave
        one, else the sender's origin-id, else the plain stanza id."""
        return self.stanza_id or self.origin_id or self.id


@dataclass(frozen=True, slots=True, kw_only=True)
class WirePresence:
    room: str
    nick: str
    type: str  # "available", "unavailable" or "error"
    codes: frozenset[int] = frozenset()
    real_jid: str | None = None
    new_nick: str | None = None  # status 303: nick change
    error: str | None = None
    actor: str = ""  # status 307 (kick): the moderator's nick, where the room says it
    reason: str = ""  # status 307: the moderator's reason


def _stamp(element: ET.Element) -> datetime | None:
    delay = element.find(q(NS_DELAY, "delay"))
    if delay is None:
        return None
    raw = delay.get("stamp", "")
    try:
        return datetime.fromisoformat(raw.replace("Z", "+00:00"))
    except ValueError:
        return None


def _error(element: ET.Element) -> str | None:
    error = element.find(q(NS_CLIENT, "error"))
    if error is None:
        return None
    for child in error:
        if isinstance(child.tag, str) and child.tag.startswith(f"{{{NS_STANZAS}}}"):
            tag = child.tag.rpartition("}")[2]
            if tag != "text":
                return tag
    return "undefined-condition"


def _retraction(message: ET.Element) -> tuple[str | None, bool]:
    """(target id, moderated) of a XEP-0424 retraction or XEP-0425 moderation."""
    retract = message.find(q(NS_RETRACT, "retract"))
    if retract is not None:
        moderated = retract.find(q(NS_MODERATE, "moderated")) is not None
        return retract.get("id"), moderated
    apply_to = message.find(q(NS_FASTEN, "apply-to"))
    if apply_to is not None:
        if apply_to.find(q(NS_RETRACT0, "retract")) is not None:
            return apply_to.get("id"), False
        moderated0 = apply_to.find(q(NS_MODERATE0, "moderated"))
        if moderated0 is not None and moderated0.find(q(NS_RETRACT0, "retract")) is not None:
            return apply_to.get("id"), True
    return None, False


def _reply(message: ET.Element) -> tuple[str | None, tuple[int, int] | None]:
    reply = message.find(q(NS_REPLY, "reply"))
    if reply is None:
        return None, None
    span: tuple[int, int] | None = None
    for fallback in message.findall(q(NS_FALLBACK, "fallback")):
        if fallback.get("for") != NS_REPLY:
            continue
        body = fallback.find(q(NS_FALLBACK, "body"))
        try:
            if body is not None:
                span = (int(body.get("start", "")), int(body.get("end", "")))
        except ValueError:
            span = None
    return reply.get("id"), span


def _reactions(message: ET.Element) -> tuple[tuple[str, ...] | None, str | None]:
    """(keys, target id) of a XEP-0444 update; (None, None) when it is none."""
    reactions = message.find(q(NS_REACTIONS, "reactions"))
    if reactions is None:
        return None, None
    keys = tuple(r.text or "" for r in reactions.findall(q(NS_REACTIONS, "reaction")))
    return keys, reactions.get("id") or None


def _invitation(message: ET.Element) -> bool:
    x = message.find(q(NS_MUC_USER, "x"))
    if x is not None and (x.find(q(NS_MUC_USER, "invite")) is not None
                          or x.find(q(NS_MUC_USER, "decline")) is not None):  # fmt: skip
        return True
    return message.find(q(NS_CONFERENCE, "x")) is not None


def read_references(element: ET.Element) -> tuple[tuple[str, int, int], ...]:
    """(uri, begin, end) of each well-formed mention reference, unvalidated otherwise."""
    found: list[tuple[str, int, int]] = []
    for ref in element.findall(q(NS_REFERENCE, "reference")):
        if ref.get("type") != "mention" or not ref.get("uri", "").startswith("xmpp:"):
            continue
        try:
            begin, end = int(ref.get("begin", "")), int(ref.get("end", ""))
        except ValueError:
            continue
        found.append((ref.get("uri", ""), begin, end))
    return tuple(found)


def thread_of(element: ET.Element) -> str | None:
    """The XEP-0201 thread id of a message, if any."""
    thread = element.findtext(q(NS_CLIENT, "thread"))
    return thread.strip() or None if thread is not None else None


def parse_message(
    element: ET.Element, *, archive_id: str | None = None, stamp: datetime | None = None
) -> WireMessage:
    """Reads a `<message>`; MAM results pass the forwarded message with its archive id
    (the room's stanza-id) and the forwarding delay stamp."""
    room, nick = split_jid(element.get("from", ""))
    recipient = split_jid(element.get("to", ""))[0]
    stanza_id = archive_id
    account_stanza_id = None
    origin_id = None
    for sid in element.findall(q(NS_SID, "stanza-id")):
        by = sid.get("by", "").lower()
        if by == room and sid.get("id"):
            stanza_id = stanza_id or sid.get("id")
        elif by and by == recipient and sid.get("id"):
            # The recipient's server archived it (XEP-0313 on the account): an id no
            # sender chose, so unique, unlike the sender's own message id.
            account_stanza_id = account_stanza_id or sid.get("id")
    origin = element.find(q(NS_SID, "origin-id"))
    if origin is not None:
        origin_id = origin.get("id") or None
    replace = element.find(q(NS_CORRECT, "replace"))
    retract_id, moderated = _retraction(element)
    reply_id, reply_fallback = _reply(element)
    reactions, reaction_id = _reactions(element)
    oob = tuple(
        (x.findtext(q(NS_OOB, "url"), "").strip(), x.findtext(q(NS_OOB, "desc"), ""))
        for x in element.findall(q(NS_OOB, "x"))
    )
    relay = element.find(q(NS_RELAY, "relay"))
    return WireMessage(
        room=room,
        nick=nick,
        type=element.get("type", "normal"),
        id=element.get("id") or None,
        origin_id=origin_id,
        stanza_id=stanza_id,
        body=element.findtext(q(NS_CLIENT, "body")),
        subject=element.findtext(q(NS_CLIENT, "subject")),
        xhtml=element.find(q(NS_XHTML_IM, "html")),
        replace_id=replace.get("id") if replace is not None else None,
        retract_id=retract_id,
        moderated=moderated,
        reply_id=reply_id,
        reply_fallback=reply_fallback,
        oob=tuple((url, desc) for url, desc in oob if url),
        relayed_by=relay.get("by", "") if relay is not None else None,
        stamp=stamp or _stamp(element),
        error=_error(element) if element.get("type") == "error" else None,
        reactions=reactions,
        reaction_id=reaction_id,
        account_stanza_id=account_stanza_id,
        muc_user=element.find(q(NS_MUC_USER, "x")) is not None,
        invitation=_invitation(element),
        thread=thread_of(element),
        mention_refs=read_references(element),
        to=recipient,
    )


def parse_archived(result: ET.Element) -> WireMessage | None:
    """A MAM `<message><result id=…><forwarded>…` wrapper read as the message it holds."""
    found = result.find(q(NS_MAM, "result"))
    if found is None:
        return None
    forwarded = found.find(q(NS_FORWARD, "forwarded"))
    if forwarded is None:
        return None
    inner = forwarded.find(q(NS_CLIENT, "message"))
    if inner is None:
        return None
    return parse_message(inner, archive_id=found.get("id") or None, stamp=_stamp(forwarded))


def parse_presence(element: ET.Element) -> WirePresence:
    room, nick = split_jid(element.get("from", ""))
    codes: set[int] = set()
    real_jid = new_nick = None
    actor = reason = ""
    x = element.find(q(NS_MUC_USER, "x"))
    if x is not None:
        for status in x.findall(q(NS_MUC_USER, "status")):
            code = status.get("code", "")
            if code.isdigit():
                codes.add(int(code))
        item = x.find(q(NS_MUC_USER, "item"))
        if item is not None:
            real_jid = item.get("jid") or None
            new_nick = item.get("nick") or None
            found = item.find(q(NS_MUC_USER, "actor"))
            actor = found.get("nick", "") if found is not None else ""
            reason = item.findtext(q(NS_MUC_USER, "reason")) or ""
    kind = element.get("type", "available")
    return WirePresence(
        room=room,
        nick=nick,
        type=kind,
        codes=frozenset(codes),
        real_jid=real_jid,
        new_nick=new_nick,
        error=_error(element) if kind == "error" else None,
        actor=actor,
        reason=reason,
    )
