"""Matrix polls (MSC3381, stable as `m.poll.*` in Matrix 1.x) as the text a reader sees.

A poll start becomes "Poll: question" and its numbered answers, which is what clients
without poll support show from the event's text fallback and all a reader on IRC or
XMPP can use. A poll end has its own announcement text ("The poll has ended..."). A
vote (`poll.response`) has no text at all, only answer ids: it is archived as
"voted: <ids>" for the record and never relayed. Both the stable and the unstable
(`org.matrix.msc3381.*`) spellings are read, since clients send either. Pure, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from imbridge.sanitize import clean_text

START = ("m.poll.start", "org.matrix.msc3381.poll.start")
RESPONSE = ("m.poll.response", "org.matrix.msc3381.poll.response")
END = ("m.poll.end", "org.matrix.msc3381.poll.end")
POLL_TYPES = frozenset((*START, *RESPONSE, *END))
MAX_ANSWERS = 20  # MSC3381: clients cap polls at 20 answers


@dataclass(frozen=True, slots=True)
class PollText:
    text: str
    archive_only: bool


def _text_of(value: object) -> str:
    """An extensible-events text block: a plain string (unstable `org.matrix.msc1767.text`)
    or a list of representations (stable `m.text`), the plain one preferred."""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        plain = [r for r in value if isinstance(r, dict) and isinstance(r.get("body"), str)]
        for rep in plain:
            if rep.get("mimetype", "text/plain") == "text/plain":
                return str(rep["body"])
        return str(plain[0]["body"]) if plain else ""
    return ""


def _block_text(block: dict[str, Any]) -> str:
    return _text_of(block.get("m.text")) or _text_of(block.get("org.matrix.msc1767.text"))


def _start(content: dict[str, Any]) -> str:
    poll = content.get("m.poll") or content.get("org.matrix.msc3381.poll.start")
    if not isinstance(poll, dict):
        return _block_text(content)
    question = poll.get("question")
    asked = _block_text(question) if isinstance(question, dict) else ""
    answers = poll.get("answers")
    lines = [f"Poll: {asked}" if asked else "Poll:"]
    if isinstance(answers, list):
        for n, answer in enumerate(answers[:MAX_ANSWERS], start=1):
            if isinstance(answer, dict):
                lines.append(f"{n}. {_block_text(answer)}")
    return "\n".join(lines)


def _response(content: dict[str, Any]) -> str:
    chosen = content.get("m.selections")
    if not isinstance(chosen, list):
        unstable = content.get("org.matrix.msc3381.poll.response")
        chosen = unstable.get("answers") if isinstance(unstable, dict) else None
    ids = (
        [a for a in chosen if isinstance(a, str)][:MAX_ANSWERS] if isinstance(chosen, list) else []
    )
    return "voted: " + ", ".join(ids) if ids else "withdrew their vote"


def poll_text(event_type: str, content: dict[str, Any]) -> PollText | None:
    """What a poll event says as text, or None if it says nothing readable."""
    if event_type in START:
        text = _start(content)
    elif event_type in RESPONSE:
        return PollText(clean_text(_response(content)), archive_only=True)
    else:
        text = _block_text(content) or "The poll has ended."
    text = clean_text(text)
    return PollText(text, archive_only=False) if text.strip() else None


__all__ = ["POLL_TYPES", "PollText", "poll_text"]
