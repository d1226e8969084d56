"""Matrix reactions, stickers, polls, locations, unknown msgtypes and direct-chat
invites, translated from recorded wire samples (tests/data/matrix/features.json)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from imbridge.adapters.matrix.proto.translate import direct_inviter, parse_event, to_core
from imbridge.events import Delete, EventId, Message, Reaction, RemoteId, new_event_id

HS = "http://127.0.0.1:8008"
SAMPLES: dict[str, Any] = json.loads(
    (Path(__file__).parents[1] / "data" / "matrix" / "features.json").read_text()
)


def core(name: str, **kw: Any) -> Any:
    inbound = parse_event(SAMPLES[name], HS)
    if inbound is None:
        return None
    return to_core(inbound, event_id=new_event_id(), network="mx", room="!r",
                   sender_name="Bob", **kw)  # fmt: skip


def test_reaction_names_its_target_and_key() -> None:
    inbound = parse_event(SAMPLES["reaction"], HS)
    assert inbound is not None
    assert (inbound.action, inbound.target, inbound.text) == ("reaction", "$msg1", "👍")
    event = core("reaction", target=EventId("e-msg1"))
    assert isinstance(event, Reaction)
    assert (event.target, event.key, event.removed) == ("e-msg1", "👍", False)
    assert event.origin.remote_id == "$react1"


def test_reaction_key_is_cleaned_and_a_keyless_or_unknown_target_one_dropped() -> None:
    event = core("reaction_text_key", target=EventId("e-msg1"))
    assert isinstance(event, Reaction)
    assert event.key == "+1"
    assert parse_event(SAMPLES["reaction_no_key"], HS) is None
    assert core("reaction") is None  # reacting to a message the bridge never saw


def test_redacting_a_reaction_is_a_delete_of_the_reaction_event() -> None:
    # The core turns it into the removal (it knows the reaction by its event id).
    event = core("reaction_redaction", target=EventId("e-react1"))
    assert isinstance(event, Delete)
    assert event.target == "e-react1"


def test_sticker_is_its_body_and_image_and_says_it_was_a_sticker() -> None:
    event = core("sticker")
    assert isinstance(event, Message)
    assert (event.text, event.native_type, event.archive_only) == ("Happy cat", "m.sticker", False)
    (image,) = event.attachments
    assert image.url == f"{HS}/_matrix/media/v3/download/hs/AbCdEf"
    assert (image.mimetype, image.size) == ("image/png", 4242)


def test_poll_is_its_question_and_numbered_answers_in_either_spelling() -> None:
    unstable = core("poll_start_unstable")
    assert isinstance(unstable, Message)
    assert unstable.text == "Poll: Lunch where?\n1. Pizza\n2. Sushi"
    assert unstable.native_type == "org.matrix.msc3381.poll.start"
    stable = core("poll_start_stable")
    assert isinstance(stable, Message)
    assert stable.text == "Poll: Ship on Friday?\n1. Yes\n2. No"  # the plain representation
    assert stable.native_type == "m.poll.start"


def test_vote_is_archived_only_and_poll_end_is_relayed_as_its_announcement() -> None:
    vote = core("poll_response", reply_to=EventId("e-poll1"))
    assert isinstance(vote, Message)
    assert (vote.text, vote.archive_only, vote.reply_to) == ("voted: a2", True, "e-poll1")
    end = core("poll_end", reply_to=EventId("e-poll1"))
    assert isinstance(end, Message)
    assert (end.text, end.archive_only) == ("The poll has ended. Top answer: Sushi", False)
    assert end.native_type == "org.matrix.msc3381.poll.end"


def test_location_carries_description_and_geo_uri() -> None:
    event = core("location")
    assert isinstance(event, Message)
    assert event.text == "Location: Big Ben\ngeo:51.5007,-0.1246;u=35"
    assert event.native_type == "m.location"


def test_unknown_msgtype_is_its_body_and_keeps_its_type() -> None:
    event = core("unknown_msgtype")
    assert isinstance(event, Message)
    assert (event.text, event.native_type) == ("Rain expected at 3pm", "com.example.weather")
    plain = {"msgtype": "m.text", "body": "hi"}
    inbound = parse_event({"type": "m.room.message", "event_id": "$t", "sender": "@a:hs",
                           "content": plain}, HS)  # fmt: skip
    assert inbound is not None
    assert inbound.native_type == ""


def test_direct_chat_invite_is_told_apart_from_a_room_invite() -> None:
    assert direct_inviter(SAMPLES["direct_invite_state"], "@relay:hs") == "@carol:hs"
    assert direct_inviter(SAMPLES["direct_invite_state"], "@other:hs") is None
    assert direct_inviter(SAMPLES["room_invite_state"], "@relay:hs") is None


def test_message_in_a_direct_chat_is_marked_direct() -> None:
    event = core("unknown_msgtype", direct=True)
    assert isinstance(event, Message)
    assert event.origin.direct
    assert event.origin.room == "!r"
    assert event.origin.remote_id == RemoteId("$odd1")
