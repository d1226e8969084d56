"""The JSON an HTTP policy hook receives and answers (schema version 1, docs/hooks.md).

Pure functions: the request body from a `HookRequest`, the verdicts from the answer. An
answer that is not exactly understood is an error (`HookAnswerError`), which the caller
turns into the hook's `on_error`: a DLP service that changed its format must not be read
as "allow".
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from imbridge.hooks.verdict import HookAction, HookRequest, Span, Verdict
from imbridge.policy import Destination

VERSION = 1


class HookAnswerError(ValueError):
    """The hook answered something that is not a valid decision."""


def request_body(request: HookRequest) -> dict[str, Any]:
    o = request.origin
    return {
        "version": VERSION,
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


def _verdict(item: Mapping[str, Any], where: str) -> Verdict:
    action = item.get("action")
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
    """A verdict for every destination asked: each from its entry in `decisions`, else
    from the top-level `action`; a destination left without one is an error."""
    if not isinstance(body, dict):
        raise HookAnswerError("the answer is not a JSON object")
    version = body.get("version", VERSION)
    if version != VERSION:
        raise HookAnswerError(f"answer version {version!r}; this imbridge speaks {VERSION}")
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
