"""`imbridge policy test` and `imbridge policy explain`: let a security team check rules
before deploying them, with the very engine the daemon runs.

Exit codes of `policy test`: 0 the message would be relayed (allowed or redacted) to every
destination tested, 1 it would be denied to at least one, 2 bad config or arguments.
"""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from imbridge.config.load import load_config
from imbridge.config.report import print_config_error
from imbridge.config.schema import Config, Match, Rule
from imbridge.errors import ConfigError
from imbridge.events import Attachment, Edit, Event, EventId, Message, Origin, Sender
from imbridge.exitcodes import EXIT_DENIED, EXIT_OK, EXIT_USAGE
from imbridge.policy import (
    Action,
    CompiledPolicy,
    Decision,
    Destination,
    compile_policy,
    decide,
    policy_texts,
    sender_notice,
    texts_of,
)


class UsageError(ValueError):
    """A command-line value that cannot be used; printed as one line, exit 2."""


def parse_source(spec: str) -> tuple[str, str, str]:
    """`NET:ROOM:USER`. Rooms and users may hold colons (Matrix `!id:server`,
    `@user:server`): the user starts at the last `:@` when there is one, else after the
    room's first colon."""
    network, sep, rest = spec.partition(":")
    if not sep or not network or not rest:
        raise UsageError(f"--from {spec!r}: expected NETWORK:ROOM:USER")
    cut = rest.rfind(":@")
    if cut < 0:
        cut = rest.find(":")
    if cut <= 0 or cut == len(rest) - 1:
        raise UsageError(f"--from {spec!r}: expected NETWORK:ROOM:USER")
    return network, rest[:cut], rest[cut + 1 :]


def parse_attachment(spec: str) -> Attachment:
    """`NAME[,MIMETYPE[,SIZE]]`."""
    name, _, rest = spec.partition(",")
    mimetype, _, size = rest.partition(",")
    try:
        return Attachment(
            url=f"file:///{name}",
            name=name,
            mimetype=mimetype or "application/octet-stream",
            size=int(size) if size else None,
        )
    except ValueError as exc:
        raise UsageError(f"--attachment {spec!r}: {exc}") from None


def destinations(config: Config, spec: str) -> list[Destination]:
    """`NET:ROOM`, or `NET` for every room of that network in the gateways."""
    network, _, room = spec.partition(":")
    if not network:
        raise UsageError(f"--to {spec!r}: expected NETWORK[:ROOM]")
    if room:
        return [Destination(network, room)]
    rooms = [
        Destination(network, r.room)
        for g in config.gateways.values()
        for r in g.rooms
        if r.network == network
    ]
    return rooms or [Destination(network, "")]


def _load(path: Path, err: TextIO) -> Config | None:
    try:
        return load_config(path)
    except ConfigError as exc:
        print_config_error(path, exc, err)
        return None


def policy_test(
    config_path: Path,
    *,
    source: str,
    to: str,
    text: str = "",
    attachments: Sequence[str] = (),
    quoted: str | None = None,
    edit: bool = False,
    name: str | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Evaluates a hypothetical message from `source` (NET:ROOM:USER), shown as `name`, to
    `to` (NET[:ROOM]) and prints the normalised form of any text that has one (rules match
    it too), then per destination the decision, the rule that made it, and for `redact`
    the text as it would be relayed."""
    out, err = out or sys.stdout, err or sys.stderr
    config = _load(config_path, err)
    if config is None:
        return EXIT_USAGE
    try:
        network, room, user = parse_source(source)
        dests = destinations(config, to)
        event = _event(
            network,
            room,
            user,
            text,
            [parse_attachment(a) for a in attachments],
            quoted=quoted,
            edit=edit,
            name=name,
        )
    except (UsageError, ValueError) as exc:
        print(f"imbridge policy test: {exc}", file=err)
        return EXIT_USAGE
    policy = compile_policy(config.policy)
    texts = policy_texts(event, quoted)
    for forms in (*texts.forms, texts.name):
        if len(forms) > 1:
            print(f"read as:  {forms[1]!r} (normalised from {forms[0]!r})", file=out)
    try:
        decided = _decided(config, event, dests, policy, quoted)
    except ConfigError as exc:
        for issue in exc.issues:
            print(f"{config_path}: {issue}", file=err)
        return EXIT_USAGE
    denied = False
    for dest in dests:
        d = decided[dest]
        denied |= d.action is Action.DENY
        _print_decision(d, dest, event, quoted=quoted, attachments=bool(attachments), out=out)
        if len(dests) > 1:
            print(file=out)
    return EXIT_DENIED if denied else EXIT_OK


def _print_decision(
    d: Decision,
    dest: Destination,
    event: Event,
    *,
    quoted: str | None,
    attachments: bool,
    out: TextIO,
) -> None:
    """One destination's answer, as `policy test` prints it."""
    where = f"{dest.network}:{dest.room}" if dest.room else dest.network
    print(f"to:       {where}", file=out)
    print(f"decision: {d.action.value}", file=out)
    print(f"rule:     {d.rule} ({d.reason})", file=out)
    for hook, action, reason in d.hooks:
        print(f"hook:     {hook}: {action}" + (f" ({reason})" if reason else ""), file=out)
    if d.action is Action.REDACT and isinstance(d.event, Message | Edit):
        print(f"redacted: {d.event.text}", file=out)
        if isinstance(d.event, Message) and attachments:
            kept = ", ".join(a.name for a in d.event.attachments) or "none"
            print(f"kept:     {kept}", file=out)
        if quoted is not None and d.quoted != quoted:
            print(f"quoted:   {d.quoted}", file=out)
    notice = sender_notice(d, event)
    if notice is not None:
        print(f"notice:   {notice}", file=out)
    if d.flags:
        print(f"flagged:  {', '.join(d.flags)} (put in the review queue)", file=out)


def _decided(
    config: Config,
    event: Event,
    dests: list[Destination],
    policy: CompiledPolicy,
    quoted: str | None,
) -> dict[Destination, Decision]:
    """The decisions for every destination: the rules alone, or with the configured
    hooks really asked (their own event loop, so only when there are hooks)."""
    if not config.policy.hooks:
        texts = policy_texts(event, quoted)
        return {d: decide(event, d, policy, quoted=quoted, texts=texts) for d in dests}
    return asyncio.run(_decide_all(config, event, dests, policy, quoted))


async def _decide_all(
    config: Config,
    event: Event,
    dests: list[Destination],
    policy: CompiledPolicy,
    quoted: str | None,
) -> dict[Destination, Decision]:
    """The rules' decisions, narrowed by the configured hooks exactly as the relay does
    (`imbridge.hooks.combine`): a DLP service is really asked."""
    from imbridge.hooks import engine  # noqa: PLC0415 - only when hooks are configured
    from imbridge.hooks.combine import combine  # noqa: PLC0415
    from imbridge.hooks.verdict import request_for  # noqa: PLC0415

    ruled = {dest: decide(event, dest, policy, quoted=quoted) for dest in dests}
    asked = [dest for dest, d in ruled.items() if d.event is not None]
    if not config.policy.hooks or not asked:
        return ruled
    request = request_for(event, texts_of(event, quoted), quoted, asked)
    if request is None:
        return ruled
    base = config.source.parent if config.source is not None else None
    hooks = engine.Hooks(engine.build(config.policy.hooks, base))
    try:
        answers = await hooks.ask(engine.cache_key(event), request)
    finally:
        await hooks.aclose()
    return {
        dest: combine(event, dest, d, answers, policy, quoted=quoted) if d.event is not None else d
        for dest, d in ruled.items()
    }


def _event(
    network: str,
    room: str,
    user: str,
    text: str,
    attachments: list[Attachment],
    *,
    quoted: str | None,
    edit: bool,
    name: str | None = None,
) -> Event:
    origin = Origin(network=network, room=room, sender=Sender(id=user, name=name or user))
    if edit:
        return Edit(id=EventId("policy-test"), origin=origin, target=EventId("original"), text=text)
    return Message(
        id=EventId("policy-test"),
        origin=origin,
        text=text,
        attachments=tuple(attachments),
        reply_to=EventId("original") if quoted is not None else None,
    )


def _side(m: Match) -> str:
    glob = f"{m.network}:{m.room}:{m.user}"
    if m.group is not None:
        return f"group {m.group}" if glob == "*:*:*" else f"{glob} in group {m.group}"
    return "any" if glob == "*:*:*" else glob


def _conditions(rule: Rule) -> str:
    parts = []
    if rule.text is not None:
        parts.append(f"text /{rule.text}/")
    if rule.attachments is not None:
        a = rule.attachments
        if a.types:
            parts.append("type " + "|".join(a.types))
        if a.names:
            parts.append("name " + "|".join(a.names))
        if a.max_bytes is not None:
            parts.append(f"size > {a.max_bytes}")
    return ", ".join(parts) or "any event"


def policy_explain(
    config_path: Path, *, out: TextIO | None = None, err: TextIO | None = None
) -> int:
    """Prints the policy as it is evaluated: barriers first, then rules in order, then
    the default, then the hooks that may narrow it, with the groups the barriers and
    rules name."""
    out, err = out or sys.stdout, err or sys.stderr
    config = _load(config_path, err)
    if config is None:
        return EXIT_USAGE
    policy = config.policy
    rows = [("#", "NAME", "ACTION", "FROM", "TO", "WHEN", "NOTIFY")]
    for b in policy.barriers:
        a, z = b.between
        rows.append(
            (
                "barrier",
                b.name,
                "deny",
                f"group {a}",
                f"group {z}",
                "either direction, before any rule",
                "yes" if b.notify_sender else "no",
            )
        )
    for i, r in enumerate(policy.rules, 1):
        rows.append(
            (
                str(i),
                r.name,
                r.action,
                _side(r.from_),
                _side(r.to),
                _conditions(r),
                "yes" if r.notify_sender else "no",
            )
        )
    rows.append(("-", "default", policy.default, "any", "any", "no rule matched", "no"))
    for h in policy.hooks:
        asks = h.url if h.url is not None else f"entry point {h.entry_point}"
        rows.append(
            (
                "hook",
                h.name,
                f"ask, else {h.on_error}",
                "any",
                "what the rules allowed",
                f"{asks} within {h.timeout_ms} ms",
                "yes" if h.notify_sender else "no",
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip(), file=out)
    if policy.groups:
        print(file=out)
        for name, members in policy.groups.items():
            globs = ", ".join(f"{m.network}:{m.room}:{m.user}" for m in members)
            print(f"group {name}: {globs}", file=out)
    return EXIT_OK
