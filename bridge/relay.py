"""The sink every adapter awaits: from one incoming event to committed deliveries.

adapter → sink → router → policy (each destination) → archive → render → outbox

When `Relay.__call__` returns, the event, its decisions, its archive records and every
queued delivery are committed in one transaction; only then may the adapter advance its
cursor. One bad event is logged and counted, never allowed to stop the daemon.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import structlog

from imbridge import authorship, codec, direct, reactions, textlinks
from imbridge.adapter import Adapter, NetworkConfig
from imbridge.archive import NullRecorder, Recorder
from imbridge.archive.sealing import Sealer
from imbridge.db import Conn, Database, Slot
from imbridge.events import (
    MEMBERSHIP_EVENTS,
    Delete,
    Edit,
    Event,
    EventId,
    Message,
    MessageKind,
    Origin,
    Reaction,
    Recipient,
    Sender,
    Topic,
    new_event_id,
)
from imbridge.hooks.combine import combine
from imbridge.hooks.engine import cache_key
from imbridge.hooks.turns import RoomTurns
from imbridge.hooks.verdict import request_for
from imbridge.idmap import confined_sync, confines, record_sync
from imbridge.outbox import Item, Outbox, enqueue_sync, txn_id_for
from imbridge.policy import (
    CompiledPolicy,
    Decision,
    Destination,
    PolicyTexts,
    decide,
    policy_texts,
    sender_notice,
)
from imbridge.render import render
from imbridge.router import Route, Router
from imbridge.sanitize import clean_text
from imbridge.screening import OWN_ECHO, Ignored, screen
from imbridge.shedding import Shedding

if TYPE_CHECKING:
    from imbridge.hooks.engine import Hooks
    from imbridge.membership_relay import MembershipRelay
    from imbridge.textlinks import TextLinks

log = structlog.get_logger("imbridge.relay")

NOTICE_SENDER = Sender(id="imbridge", name="imbridge")
DIRECT_ROUTE = "direct"
"""The gateway name a direct message's render sees: it crosses none."""
DIRECT_NICK_FORMAT = "<{nick}@{network}> "
"""How a direct message names its sender where the relay speaks for everyone (IRC)."""


@dataclass(slots=True)
class RelayStats:
    received: int = 0
    handled: int = 0  # received and done with: relayed, dropped or failed
    dropped_echo: int = 0
    """The bridge's own messages seen again: on the record as deliveries already."""
    ignored: int = 0
    """Events from `ignore_users` senders: archived as `ignored`, never relayed."""
    duplicates: int = 0
    denied: int = 0
    errors: int = 0


@dataclass(frozen=True, slots=True)
class Setup:
    """What a reload may swap at once: routes, policy and per-network settings."""

    router: Router
    policy: CompiledPolicy
    networks: Mapping[str, NetworkConfig]
    log_text: bool = False
    hooks: Hooks | None = None
    """The policy hooks (`policy.hooks`), asked after the rules; None when there are none."""
    moderator_deletes: bool = False
    """`policy.relay_moderator_deletes`: a deletion by another sender crosses too."""


class Relay:
    def __init__(
        self,
        db: Database,
        setup: Setup,
        adapters: Mapping[str, Adapter],
        outbox: Outbox,
        recorder: Recorder,
        *,
        on_event: Callable[[Event, list[tuple[Destination, Decision]]], None] | None = None,
        sealer: Sealer | None = None,
        text_links: TextLinks | None = None,
    ) -> None:
        self.db = db
        self.text_links = text_links
        """Links long messages' full text for networks that read in lines (`textlinks`);
        None without `bridge.http.public_url`: every line is sent then."""
        self.sealer = sealer or outbox.sealer
        """Seals the quoting copies in `messages` (the outbox's sealer by default)."""
        self.setup = setup
        self.adapters = adapters
        self.outbox = outbox
        self.recorder = recorder
        self.shedding = Shedding(outbox, recorder, adapters)
        """Sheds deliveries to rooms whose backlog is full (see `shedding`)."""
        self.stats: dict[str, RelayStats] = {}
        self.on_event = on_event
        self.archived = 0
        """Events committed with their archive records, for the metrics."""
        self._turns = RoomTurns()
        self._waiting: dict[EventId, Message] = {}
        """Messages asking hooks, not yet committed: a reply to one finds its quote here."""
        self._waiting_ids: dict[tuple[str, str], EventId] = {}
        """Remote ids of events asking hooks, for the adapters' lookups (`waiting_event`)."""
        self.membership: MembershipRelay | None = None
        """Collects joins, leaves, renames and kicks for gateways with `relay_membership`."""

    async def __call__(self, event: Event) -> None:
        stats = self.stats.setdefault(event.origin.network, RelayStats())
        stats.received += 1
        try:
            await self._relay(event, stats)
        except Exception:  # one bad event never stops the daemon
            stats.errors += 1
            origin = event.origin
            log.exception(
                "relay_failed", network=origin.network, room=origin.room, event_id=event.id
            )
        finally:
            stats.handled += 1

    def waiting_event(self, network: str, remote_id: str) -> EventId | None:
        """The id of an event handed over but still asking hooks, not yet in the id map."""
        return self._waiting_ids.get((network, remote_id))

    def _screen(self, event: Event) -> Ignored | None:
        """The bridge's own echoes and configured bots (see `screening`); a relay marker
        counts only on a bot's event."""
        network = event.origin.network
        adapter = self.adapters.get(network)
        net = self.setup.networks.get(network)
        return screen(
            event,
            identity=adapter.identity if adapter is not None else None,
            ignore_users=net.ignore_users if net is not None else (),
        )

    async def _relay(self, event: Event, stats: RelayStats) -> None:
        ignored = self._screen(event)
        if ignored is not None and ignored.rule == OWN_ECHO:
            stats.dropped_echo += 1
            return
        try:
            event, pre, slot = await self._take_place(event, ignored)
            try:
                if ignored is not None:
                    committed = await self._commit_ignored(event, ignored, slot)
                    decisions: list[tuple[Destination, Decision]] = []
                    items: list[Item] = []
                else:
                    committed, decisions, items = await self._commit(event, stats, slot, pre)
            finally:
                slot.release()
        finally:
            self._waiting.pop(event.id, None)
            if event.origin.remote_id is not None:
                self._waiting_ids.pop((event.origin.network, event.origin.remote_id), None)
        if not committed:
            stats.duplicates += 1
            return
        self.archived += 1
        if ignored is not None:
            stats.ignored += 1
            return
        self.outbox.wake(items)
        if isinstance(event, MEMBERSHIP_EVENTS):
            self._collect_membership(event, decisions)
        if self.on_event is not None:
            self.on_event(event, decisions)
        if self.setup.log_text and isinstance(event, Message | Edit | Topic):
            origin = event.origin
            log.info(
                "received",
                network=origin.network,
                room=origin.room,
                event_id=event.id,
                text=event.text,
                routes=len(decisions),
            )

    def _collect_membership(
        self, event: Event, decisions: list[tuple[Destination, Decision]]
    ) -> None:
        """A committed membership change, toward each room policy lets it reach in a
        gateway that relays membership (debounced there, see `membership`)."""
        if self.membership is None:
            return
        router = self.setup.router
        allowed = {dest for dest, decision in decisions if decision.event is not None}
        for route in router.routes(event.origin.network, event.origin.room):
            window = router.membership_window(route.gateway)
            if window is not None and route.dest in allowed:
                self.membership.collect(event, route.dest, window=window)

    async def _take_place(
        self, event: Event, ignored: Ignored | None
    ) -> tuple[Event, dict[Destination, Decision] | None, Slot]:
        """The event's place in the commit order, and the hooks' decisions if any."""
        setup = self.setup
        if not setup.hooks:
            # Taken before the first await: events commit in the order the adapter
            # handed them over, even when it does not wait for each one (see
            # `Database.reserve`).
            return event, None, self.db.reserve()
        # Hooks are asked before the event takes its commit place, so a slow hook holds
        # back its own room only (see `imbridge.hooks.turns`).
        turn = self._turns.enter((event.origin.network, event.origin.room))
        if isinstance(event, Message):
            self._waiting[event.id] = event
        if event.origin.remote_id is not None:
            self._waiting_ids[(event.origin.network, event.origin.remote_id)] = event.id
        try:
            pre = None
            if ignored is None:
                event, pre = await self._consult(event, setup)
            await turn.wait()
            return event, pre, self.db.reserve()
        finally:
            turn.done()

    async def _consult(
        self, event: Event, setup: Setup
    ) -> tuple[Event, dict[Destination, Decision] | None]:
        """The cleaned event and, when hooks were asked, the decision for each
        destination: the rules', narrowed by the hooks for those the rules let through.
        None when no hook applies (nothing to ask)."""
        hooks = setup.hooks
        origin = event.origin
        event = _clean(event, setup.router.canonical_room(origin.network, origin.room))
        if hooks is None or isinstance(event, Delete):
            return event, None
        quoted = await self._quote_for(event)
        qtext = quoted.text if quoted else None
        if event.origin.direct:
            # A direct message to a person meets the hooks as a room message does: a
            # private channel is no way around a DLP check.
            if not isinstance(event, Message):
                return event, None
            if event.origin.recipient is None:
                event = await self._address(event, self.db.read)
            to = event.origin.recipient
            if to is None or not self._reaches(to):
                return event, None
            dests = [direct.destination(to)]
        else:
            dests = [r.dest for r in setup.router.routes(event.origin.network, event.origin.room)]
        texts = policy_texts(event, qtext)  # once for the rules and the hooks' request
        ruled = {
            dest: decide(event, dest, setup.policy, quoted=qtext, texts=texts) for dest in dests
        }
        asked = [dest for dest, d in ruled.items() if d.event is not None]
        request = request_for(event, texts.pieces, qtext, asked) if asked else None
        if request is None:
            return event, None
        answers = await hooks.ask(cache_key(event), request)
        return event, {
            dest: combine(event, dest, d, answers, setup.policy, quoted=qtext)
            if d.event is not None
            else d
            for dest, d in ruled.items()
        }

    async def _quote_for(self, event: Event) -> Message | None:
        """A reply's original, for the hooks: from the messages still asking hooks, else
        from the database. Only replies and thread messages read (a thread's root is
        quoted like a reply's original: its words name the thread): a read per event
        would split the group commits (a read runs alone in the write queue)."""
        target = (event.reply_to or event.thread) if isinstance(event, Message) else None
        if target is None:
            return None
        waiting = self._waiting.get(target)
        if waiting is not None:
            return _quote_copy(waiting)

        def q(conn: Conn) -> str | None:
            row = conn.execute(
                "SELECT payload FROM messages WHERE event_id = ?", (target,)
            ).fetchone()
            return str(row[0]) if row else None

        payload = await self.db.read(q)
        return self._open_quoted(payload, target) if payload else None

    async def _commit(
        self,
        event: Event,
        stats: RelayStats,
        slot: Slot,
        pre: Mapping[Destination, Decision] | None = None,
    ) -> tuple[bool, list[tuple[Destination, Decision]], list[Item]]:
        setup = self.setup
        event = _clean(event, setup.router.canonical_room(event.origin.network, event.origin.room))
        if isinstance(event, Message) and event.origin.direct and event.origin.recipient is None:
            event = await self._address(event, slot.read)
        if isinstance(event, Delete):
            event = await slot.read(lambda conn: reactions.as_removal(conn, event, self.sealer))
        if confines(event):
            confined = event
            event = await slot.read(lambda conn: confined_sync(conn, confined))
        previous = await self._original(event, slot)
        if isinstance(previous, Ignored) and isinstance(event, Edit | Delete):
            return await self._commit_refused(event, previous, stats, slot), [], []
        previous = previous if isinstance(previous, Message) else None
        quoted = await self._quoted(event, slot)
        # A correction line quotes the words an edit changed: only where the rules alone
        # decide what crossed (`decide` below), since hooks are not asked about the
        # earlier text, and one that redacted it would otherwise see its words quoted.
        diffable = isinstance(event, Edit) and not self.setup.hooks
        decisions, items, notice = self._plan(
            event, quoted, stats, pre, previous=previous if diffable else None
        )
        long_texts = self._link_long(items)

        def commit(conn: Conn) -> bool:
            if not _first_sighting(conn, event):
                return False  # replayed by the adapter after a restart, or our own echo
            self._keep_sync(conn, event, previous)
            for key, text in long_texts:
                textlinks.store_sync(conn, key, event.id, text, self.sealer)
            if isinstance(event, Reaction):
                reactions.record_sync(conn, event, self.sealer)
            self.recorder.record_event(conn, event, decisions)
            if notice is not None:
                note, why = notice
                self.recorder.record_notice(
                    conn, note, purpose="policy", about=event.id, rule=why.rule
                )
            if event.origin.direct:
                self._direct_sync(conn, event, decisions, items)
            # Last: the backlog counts what this commit queues only if it gets this far.
            items[:] = self.shedding.admit_sync(conn, event, items, setup.networks)
            enqueue_sync(conn, items, sealer=self.outbox.sealer)
            return True

        return await slot.run(commit), decisions, items

    def _direct_sync(
        self,
        conn: Conn,
        event: Event,
        decisions: list[tuple[Destination, Decision]],
        items: list[Item],
    ) -> None:
        """A private message's bookkeeping in its commit: for one to a person, the pair
        remembered for their answers once it goes out; for one to the relay itself, the
        one-time answer (`direct`)."""
        if event.origin.recipient is not None:
            if any(d.allowed for _, d in decisions):
                direct.remember_sync(conn, event)
            return
        archived = not isinstance(self.recorder, NullRecorder)
        for reply in direct.reply_sync(conn, event, archived=archived):
            items.append(reply)
            if isinstance(reply.event, Message):
                self.recorder.record_notice(
                    conn, reply.event, purpose="direct-reply", about=event.id
                )

    async def _commit_ignored(self, event: Event, ignored: Ignored, slot: Slot) -> bool:
        """Archives a bot's event as seen, with the decision `ignored`; nothing is queued
        and nothing is kept for quoting, since it never crosses."""
        event = _clean(
            event, self.setup.router.canonical_room(event.origin.network, event.origin.room)
        )

        def commit(conn: Conn) -> bool:
            if not _first_sighting(conn, event):
                return False
            self.recorder.record_ignored(conn, event, rule=ignored.rule, reason=ignored.reason)
            return True

        return await slot.run(commit)

    def _link_long(self, items: list[Item]) -> list[tuple[str, str]]:
        """Turns each message too long for its destination's lines into its first lines
        and a link (see `textlinks`); returns the full texts to keep, by key."""
        links = self.text_links
        kept: list[tuple[str, str]] = []
        if links is None:
            return kept
        for item in items:
            adapter = self.adapters.get(item.network)
            shown = item.event
            if adapter is None or not isinstance(shown, Message):
                continue
            caps = adapter.capabilities
            if not textlinks.too_long(shown.text, caps):
                continue
            key = textlinks.key_for(item.txn_id)
            text = textlinks.head(shown.text, caps, links.link(key))
            item.event = dataclasses.replace(shown, text=text, rich=None)
            kept.append((key, shown.text))
        return kept

    async def _commit_refused(
        self, event: Edit | Delete, refused: Ignored, stats: RelayStats, slot: Slot
    ) -> bool:
        """An edit or deletion of someone else's message (see `authorship`): archived
        with the decision `ignored` and why, relayed nowhere."""
        committed = await self._commit_ignored(event, refused, slot)
        if committed:
            stats.ignored += 1
            origin = event.origin
            log.info(
                "edit_not_relayed",
                network=origin.network,
                room=origin.room,
                event_id=event.id,
                rule=refused.rule,
                reason=refused.reason,
            )
        return committed

    async def _original(self, event: Event, slot: Slot) -> Message | Ignored | None:
        """For an edit or deletion, the message it targets, or why it may not cross (see
        `authorship`); None for other events."""
        if not isinstance(event, Edit | Delete):
            return None
        changed = event
        original = await slot.read(lambda c: authorship.original(c, changed, self.sealer))
        moderated = self.setup.moderator_deletes
        return authorship.check(changed, original, moderator_deletes=moderated) or original

    def _keep_sync(self, conn: Conn, event: Event, edited: Message | None) -> None:
        """A message's quoting copy; for an edit, its target's copy updated to the new
        text, so a reply quotes what it reads now and the next edit's correction line
        says what changed since this one."""
        if isinstance(event, Message):
            self._keep_for_quoting(conn, event)
        elif isinstance(event, Edit) and edited is not None:
            now = dataclasses.replace(edited, text=event.text)
            payload = self.sealer.seal(codec.dumps(now), table="messages", key=now.id)
            conn.execute("UPDATE messages SET payload = ? WHERE event_id = ?", (payload, now.id))

    def _keep_for_quoting(self, conn: Conn, event: Message) -> None:
        """What a reply's quote needs of its original (sender and text), sealed with the
        archive key when one is set; retention deletes it with the archive's records."""
        kept = _quote_copy(event)
        payload = self.sealer.seal(codec.dumps(kept), table="messages", key=event.id)
        conn.execute(
            "INSERT INTO messages VALUES (?, ?, ?) ON CONFLICT DO NOTHING",
            (event.id, payload, time.time()),
        )

    def _plan(
        self,
        event: Event,
        quoted: Message | None,
        stats: RelayStats,
        pre: Mapping[Destination, Decision] | None = None,
        *,
        previous: Message | None = None,
    ) -> tuple[list[tuple[Destination, Decision]], list[Item], tuple[Message, Decision] | None]:
        """The decision for every destination, the deliveries they allow (with the notice
        to the sender, if one is due), and that notice with the decision it explains."""
        if event.origin.direct:
            to = event.origin.recipient
            if to is None or not isinstance(event, Message):
                return direct.decisions(event), [], None
            return self._plan_direct(event, to, stats, pre)
        decisions: list[tuple[Destination, Decision]] = []
        items: list[Item] = []
        notify: list[Decision] = []
        quote = quoted.text if quoted else None
        texts = policy_texts(event, quote)  # parsed and normalised once, for every route
        bare: PolicyTexts | None = None
        policy = self.setup.policy
        for route in self.setup.router.routes(event.origin.network, event.origin.room):
            decision = pre.get(route.dest) if pre is not None else None
            if decision is not None:
                pass  # the rules' decision as the policy hooks narrowed it
            elif quoted is not None and not decide(quoted, route.dest, policy).allowed:
                # The quote under its own origin's barriers and rules: where it may not
                # go, the reply goes without it.
                bare = bare or policy_texts(event)
                decision = decide(event, route.dest, policy, texts=bare)
            else:
                decision = decide(event, route.dest, policy, quoted=quote, texts=texts)
            decisions.append((route.dest, decision))
            if sender_notice(decision, event) is not None:
                notify.append(decision)
            if decision.event is None:
                stats.denied += 1
                log.info(
                    "policy_denied",
                    network=event.origin.network,
                    room=event.origin.room,
                    event_id=event.id,
                    dest_network=route.dest.network,
                    dest_room=route.dest.room,
                    rule=decision.rule,
                )
                continue
            adapter = self.adapters.get(route.dest.network)
            shown = quoted
            if quoted is not None and decision.quoted != quoted.text:
                # the quote as policy lets it cross there (redacted), or not at all
                shown = (
                    dataclasses.replace(quoted, text=decision.quoted) if decision.quoted else None
                )
            before = None
            if previous is not None:
                # What the edited message read there: under policy too, so a correction
                # line never quotes words a rule kept from that destination.
                was = decide(previous, route.dest, policy).event
                before = was.text if isinstance(was, Message) else None
            shaped = adapter and render(
                decision.event, route, adapter.capabilities, quoted=shown, previous=before
            )
            if shaped:
                items.append(
                    Item(
                        network=route.dest.network,
                        room=route.dest.room,
                        event=shaped,
                        txn_id=txn_id_for(event.id, route.dest.network, route.dest.room),
                    )
                )
        notice: tuple[Message, Decision] | None = None
        if notify:
            note = self._notice(event, notify[0])
            origin = event.origin
            items.append(
                Item(
                    network=origin.network,
                    room=origin.room,
                    event=note,
                    txn_id=txn_id_for(event.id, origin.network, origin.room, "notice"),
                )
            )
            notice = (note, notify[0])
        return decisions, items, notice

    def _reaches(self, to: Recipient) -> bool:
        """Whether an adapter can send a direct message to `to`."""
        adapter = self.adapters.get(to.network)
        return adapter is not None and adapter.capabilities.direct_sends

    async def _address(
        self, event: Message, read: Callable[[Callable[[Conn], Any]], Awaitable[Any]]
    ) -> Message:
        """A private message to the relay, as one to the person it names or, naming no
        one, to the person its sender last exchanged direct messages with (`direct`);
        unchanged when neither applies."""
        named = direct.addressed(event, self.adapters)
        if named is not None:
            return named
        origin = event.origin
        peer: Recipient | None = await read(lambda conn: direct.peer_sync(conn, origin))
        if peer is None:
            return event
        return dataclasses.replace(event, origin=dataclasses.replace(origin, recipient=peer))

    def _plan_direct(
        self,
        event: Message,
        to: Recipient,
        stats: RelayStats,
        pre: Mapping[Destination, Decision] | None = None,
    ) -> tuple[list[tuple[Destination, Decision]], list[Item], tuple[Message, Decision] | None]:
        """A direct message to one person: barriers and rules as for a room (the
        destination being that person), delivered only by an adapter that can; a
        refusal is always told to the sender, in the conversation they wrote in."""
        dest = direct.destination(to)
        adapter = self.adapters.get(to.network)
        if adapter is None or not self._reaches(to):
            decision = direct.unreachable(to)
        elif pre is not None and dest in pre:
            decision = pre[dest]  # the rules' decision as the policy hooks narrowed it
        else:
            decision = decide(event, dest, self.setup.policy)
        shaped = None
        if decision.event is not None and adapter is not None:
            route = Route(DIRECT_ROUTE, dest, DIRECT_NICK_FORMAT)
            shaped = render(decision.event, route, adapter.capabilities)
        if shaped is None:
            stats.denied += 1
            log.info(
                "direct_denied",
                network=event.origin.network,
                event_id=event.id,
                dest_network=to.network,
                rule=decision.rule,
            )
            refusal = direct.refusal_notice(event, decision)
            assert isinstance(refusal.event, Message)  # noqa: S101 - built as one just above
            return [(dest, decision)], [refusal], (refusal.event, decision)
        item = Item(
            network=to.network,
            room=to.user,
            event=shaped,
            txn_id=txn_id_for(event.id, to.network, to.user),
        )
        return [(dest, decision)], [item], None

    async def _quoted(self, event: Event, slot: Slot) -> Message | None:
        """A reply's original, a thread message's root, or what an added reaction reacts
        to (its excerpt)."""
        target: EventId | None
        if isinstance(event, Reaction) and not event.removed:
            target = event.target
        elif isinstance(event, Message):
            target = event.reply_to or event.thread
        else:
            target = None
        if target is None:
            return None

        def q(conn: Conn) -> str | None:
            row = conn.execute(
                "SELECT payload FROM messages WHERE event_id = ?", (target,)
            ).fetchone()
            return str(row[0]) if row else None

        payload = await slot.read(q)
        return self._open_quoted(payload, target) if payload else None

    def _open_quoted(self, payload: str, target: EventId) -> Message | None:
        found = codec.loads(self.sealer.open(payload, table="messages", key=target))
        return found if isinstance(found, Message) else None

    def _notice(self, event: Event, decision: Decision) -> Message:
        """Tells the sender, in the origin room, which rule held the message back."""
        origin = event.origin
        return Message(
            id=new_event_id(),
            origin=Origin(network=origin.network, room=origin.room, sender=NOTICE_SENDER),
            text=sender_notice(decision, event) or "",
            kind=MessageKind.NOTICE,
        )


def _quote_copy(event: Message) -> Message:
    """What a reply's quote needs of its original: sender and text."""
    text = event.text or " ".join(f"[{a.name or 'attachment'}]" for a in event.attachments)
    return Message(id=event.id, origin=event.origin, text=text, kind=event.kind)


def _first_sighting(conn: Conn, event: Event) -> bool:
    """Maps the event's remote id; False when it was mapped before (a replay)."""
    origin = event.origin
    return origin.remote_id is None or record_sync(
        conn,
        network=origin.network,
        room=origin.room,
        remote_id=origin.remote_id,
        event_id=EventId(event.id),
        inbound=True,
    )


def _clean(event: Event, room: str) -> Event:
    """Text from any adapter passes the core's sanitiser once more: the invariant that no
    control character crosses must not depend on every adapter getting it right."""
    origin = (
        event.origin if event.origin.room == room else dataclasses.replace(event.origin, room=room)
    )
    if isinstance(event, Message | Edit | Topic):
        text = clean_text(event.text)
        if text != event.text or origin is not event.origin:
            return dataclasses.replace(event, text=text, origin=origin)
        return event
    if origin is not event.origin:
        return dataclasses.replace(event, origin=origin)
    return event


__all__ = ["NOTICE_SENDER", "Relay", "RelayStats", "Setup"]
