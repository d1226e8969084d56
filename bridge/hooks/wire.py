"""The JSON an HTTP policy hook receives and answers (docs/hooks.md).

Version 1 is one event per request; version 2 carries several (`events: [...]`), so a
busy room pays one HTTP exchange per batch instead of one per event. Pure functions: the
request body from `HookRequest`s, the verdicts from the answer. An answer that is not
exactly understood is an error (`HookAnswerError`), which the caller turns into the
hook's `on_error`: a DLP service that changed its format must not be read as "allow". In
a batch, an event the answer leaves out or gets wrong fails alone; the others keep their
decisions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from imbridge.hooks.verdict import HookAction, HookRequest, Span, Verdict
from imbridge.policy import Destination

VERSION = 1
BATCH_VERSION = 2


class HookAnswerError(ValueError):
    """The hook answered something that is not a valid decision."""


def request_body(request: HookRequest) -> dict[str, Any]:
    """Version 1: one event."""
    return {"version": VERSION, **event_body(request)}


def batch_body(requests: Sequence[HookRequest]) -> dict[str, Any]:
    """Version 2: several events, each as version 1 has it without `version`."""
    return {"version": BATCH_VERSION, "events": [event_body(r) for r in requests]}


def event_body(request: HookRequest) -> dict[str, Any]:
    o = request.origin
    return {
        "event_id": request.event.id,
        "kind": request.kind,
        "origin": {
            "network": o.network,
            "room": o.room,
            "sender": {"id": o.sender.id, "name": o.sender.name},
        },
        "text": request.text,
        "formatted_text": request.formatted,
        "texts": list(request.texts),
        "quoted": request.quoted,
        "attachments": [
            {"name": a.name, "mimetype": a.mimetype, "size": a.size} for a in request.attachments
        ],
        "destinations": [{"network": d.network, "room": d.room} for d in request.destinations],
    }


_ALLOW = Verdict(action=HookAction.ALLOW)


def _verdict(item: Mapping[str, Any], where: str) -> Verdict:
    action = item.get("action")
    if action == "allow" and "reason" not in item and "spans" not in item:
        return _ALLOW  # the common answer, shared: a Verdict is immutable
    try:
        kind = HookAction(str(action))
    except ValueError:
        raise HookAnswerError(f"{where}: action {action!r} is not allow, deny or redact") from None
    reason = item.get("reason", "")
    if not isinstance(reason, str):
        raise HookAnswerError(f"{where}: reason must be a string")
    spans: list[Span] = []
    raw = item.get("spans", [])
    if not isinstance(raw, list):
        raise HookAnswerError(f"{where}: spans must be a list of [start, end]")
    for span in raw:
        if (
            not isinstance(span, list)
            or len(span) != 2
            or not all(isinstance(n, int) and not isinstance(n, bool) for n in span)
        ):
            raise HookAnswerError(f"{where}: a span must be [start, end] integers")
        spans.append((span[0], span[1]))
    try:
        return Verdict(action=kind, reason=reason[:500], spans=tuple(spans))
    except ValueError as exc:
        raise HookAnswerError(f"{where}: {exc}") from None


def parse_answer(body: Any, dests: Sequence[Destination]) -> dict[Destination, Verdict]:
    """Version 1: a verdict for every destination asked."""
    if not isinstance(body, dict):
        raise HookAnswerError("the answer is not a JSON object")
    version = body.get("version", VERSION)
    if version != VERSION:
        raise HookAnswerError(f"answer version {version!r}; this request was version {VERSION}")
    return event_verdicts(body, dests)


BatchResult = dict[Destination, Verdict] | HookAnswerError


def parse_batch_answer(body: Any, requests: Sequence[HookRequest]) -> list[BatchResult]:
    """Version 2: for each request, in order, its verdicts or what was wrong with its
    part of the answer. An answer that cannot be read as a whole (not an object, another
    version, `events` not a list, an event that was not asked) raises: then no part of it
    can be trusted to belong to the event it names."""
    if not isinstance(body, dict):
        raise HookAnswerError("the answer is not a JSON object")
    version = body.get("version")
    if version != BATCH_VERSION:
        raise HookAnswerError(
            f"answer version {version!r}; this request was version {BATCH_VERSION}"
        )
    entries = body.get("events")
    if not isinstance(entries, list):
        raise HookAnswerError("events must be a list")
    asked = {r.event.id: i for i, r in enumerate(requests)}
    found: dict[int, Any] = {}
    dup: set[int] = set()
    for n, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("event_id"), str):
            raise HookAnswerError(f"events[{n}] is not an object with an event_id")
        i = asked.get(entry["event_id"])
        if i is None:
            raise HookAnswerError(f"events[{n}]: event {entry['event_id']} was not asked")
        if i in found:
            dup.add(i)
        found[i] = entry
    out: list[BatchResult] = []
    for i, request in enumerate(requests):
        if i in dup:
            out.append(HookAnswerError("answered twice"))
        elif i not in found:
            out.append(HookAnswerError("the answer has no entry for this event"))
        else:
            try:
                out.append(event_verdicts(found[i], request.destinations))
            except HookAnswerError as exc:
                out.append(exc)
    return out


def event_verdicts(
    body: Mapping[str, Any], dests: Sequence[Destination]
) -> dict[Destination, Verdict]:
    """A verdict for every destination asked: each from its entry in `decisions`, else
    from the top-level `action`; a destination left without one is an error."""
    fallback = _verdict(body, "answer") if "action" in body else None
    out: dict[Destination, Verdict] = {}
    entries = body.get("decisions", [])
    if not isinstance(entries, list):
        raise HookAnswerError("decisions must be a list")
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise HookAnswerError(f"decisions[{i}] is not an object")
        dest = Destination(str(entry.get("network", "")), str(entry.get("room", "")))
        if dest not in dests:
            raise HookAnswerError(f"decisions[{i}]: {dest.network}:{dest.room} was not asked")
        out[dest] = _verdict(entry, f"decisions[{i}]")
    for dest in dests:
        if dest not in out:
            if fallback is None:
                raise HookAnswerError(f"no decision for {dest.network}:{dest.room}")
            out[dest] = fallback
    return out
