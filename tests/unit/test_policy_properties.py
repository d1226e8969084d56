"""Properties of the rule engine over generated events: the promises hold for any input,
not only the table's rows."""

from __future__ import annotations

from urllib.parse import quote

from hypothesis import given, settings
from hypothesis import strategies as st

from imbridge.config.schema import Policy
from imbridge.events import (
    Attachment,
    Delete,
    Edit,
    Event,
    EventId,
    Join,
    Leave,
    Message,
    Origin,
    Presence,
    PresenceState,
    RichText,
    Sender,
    Topic,
)
from imbridge.policy import Action, Destination, compile_policy, decide
from imbridge.richtext import escape

names = st.text(st.characters(codec="utf-8", exclude_categories=["Cs"]), min_size=1, max_size=12)
texts = st.text(max_size=60)
KEYWORD = "confidential"


@st.composite
def origins(draw: st.DrawFn) -> Origin:
    return Origin(
        network=draw(names), room=draw(names), sender=Sender(id=draw(names), name=draw(names))
    )


@st.composite
def events(draw: st.DrawFn) -> Event:  # noqa: PLR0911 - one branch per event kind
    o = draw(origins())
    eid = EventId(draw(st.text("0123456789abcdef", min_size=1, max_size=8)))
    kind = draw(
        st.sampled_from(["message", "edit", "delete", "join", "leave", "topic", "presence"])
    )
    text = draw(texts) or "x"
    if kind == "message":
        return Message(id=eid, origin=o, text=text, reply_to=draw(st.none() | st.just(eid)))
    if kind == "edit":
        return Edit(id=eid, origin=o, target=eid, text=text)
    if kind == "delete":
        return Delete(id=eid, origin=o, target=eid)
    if kind == "join":
        return Join(id=eid, origin=o)
    if kind == "leave":
        return Leave(id=eid, origin=o, reason=draw(texts))
    if kind == "topic":
        return Topic(id=eid, origin=o, text=text)
    return Presence(id=eid, origin=o, state=PresenceState.AWAY, status=draw(texts))


destinations = st.builds(Destination, names, names)
DENY_ALL = compile_policy(Policy(default="deny"))


@settings(max_examples=2_000, deadline=None)
@given(events(), destinations, st.none() | texts)
def test_default_deny_with_no_rules_relays_nothing(
    event: Event, dest: Destination, quoted: str | None
) -> None:
    d = decide(event, dest, DENY_ALL, quoted=quoted)
    assert d.action is Action.DENY
    assert d.event is None
    assert d.quoted is None


KEYWORD_POLICY = compile_policy(
    Policy.model_validate(
        {
            "rules": [
                {"name": "allow-harmless", "action": "allow", "text": "^harmless$"},
                {"name": "strip-video", "action": "redact", "attachments": {"types": ["video/*"]}},
                {"name": "no-keyword", "action": "deny", "text": f"(?i){KEYWORD}"},
                {"name": "no-exe", "action": "deny", "attachments": {"names": ["*.exe"]}},
            ],
        }
    )
)


@st.composite
def smuggling(draw: st.DrawFn) -> tuple[Event, str | None]:  # noqa: PLR0911 - one per hiding place
    """An event carrying the denied keyword (or a denied attachment) somewhere: in its
    text, its formatting, an edit, a reply's quote, or an attachment."""
    o = draw(origins())
    eid = EventId("e")
    before, after = draw(texts), draw(texts)
    secret = before + draw(st.sampled_from([KEYWORD, KEYWORD.upper(), "Confidential"])) + after
    where = draw(
        st.sampled_from(
            ["text", "rich", "link", "edit", "edit-rich", "quote", "att-name", "att-exe"]
        )
    )
    innocent = draw(texts) or "harmless"
    att = Attachment(url="mxc://h/1", name="a.png", mimetype="image/png", size=1)
    match where:
        case "text":
            return Message(id=eid, origin=o, text=secret, attachments=(att,)), None
        case "rich":
            return Message(id=eid, origin=o, text=innocent, rich=escape(secret)), None
        case "link":
            link = RichText(f'<a href="https://x.example/{quote(secret)}">here</a>')
            return Message(id=eid, origin=o, text=innocent, rich=link), None
        case "edit":
            return Edit(id=eid, origin=o, target=eid, text=secret), None
        case "edit-rich":
            return Edit(id=eid, origin=o, target=eid, text=innocent, rich=escape(secret)), None
        case "quote":
            return Message(id=eid, origin=o, text=innocent, reply_to=eid), secret
        case "att-name":
            video = Attachment(url="mxc://h/2", name="v", mimetype="video/mp4")
            doc = Attachment(url="mxc://h/3", name=secret or "x")
            return Message(id=eid, origin=o, text=innocent, attachments=(video, doc)), None
        case _:
            exe = Attachment(url="mxc://h/4", name=draw(names) + ".EXE")
            return Message(id=eid, origin=o, text=innocent, attachments=(exe,)), None


@settings(max_examples=3_000, deadline=None)
@given(smuggling(), destinations)
def test_deny_rule_never_bypassed(case: tuple[Event, str | None], dest: Destination) -> None:
    event, quoted = case
    d = decide(event, dest, KEYWORD_POLICY, quoted=quoted)
    assert d.action is Action.DENY, (d.rule, d.reason)
    assert d.event is None
