"""HTTP policy hooks in batches (schema version 2): several events per request, a decision
per event, and an answer that leaves an event out or gets it wrong failing that event
alone. The service is a function of the request body (no sockets in unit tests): the
hook's one exchange is replaced, everything around it (queueing, batching, parsing,
on_error, counting) is the daemon's own."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import pytest

from imbridge.config.schema import PolicyHook
from imbridge.events import EventId, Message, Origin, Sender
from imbridge.hooks import Destination, HookRequest, Verdict
from imbridge.hooks.remote import HttpHook
from imbridge.hooks.wire import HookAnswerError, batch_body, parse_batch_answer
from tests.unit.conftest import StartDaemon, settle, until
from tests.unit.test_policy_hooks import ROOMS, use_hooks

Service = Callable[[dict[str, Any]], dict[str, Any]]


class FakeService(HttpHook):
    """The hook, its exchange answered by `service`; holds answers until `release`."""

    def __init__(self, service: Service, **config: Any) -> None:
        super().__init__(PolicyHook(name="dlp", url="http://dlp.invalid/check", **config))
        self.service = service
        self.bodies: list[dict[str, Any]] = []
        self.gate = asyncio.Event()
        self.gate.set()

    async def _exchange(self, data: bytes) -> bytes:
        body = json.loads(data)
        self.bodies.append(body)
        await self.gate.wait()
        return json.dumps(self.service(body)).encode()


def per_event(decide: Callable[[dict[str, Any]], dict[str, Any]]) -> Service:
    def answer(body: dict[str, Any]) -> dict[str, Any]:
        if body["version"] == 1:
            return {"version": 1, **decide(body)}
        events = [{"event_id": e["event_id"], **decide(e)} for e in body["events"]]
        return {"version": 2, "events": events}

    return answer


def marker(event: dict[str, Any]) -> dict[str, Any]:
    if "aurora" in event["text"]:
        return {"action": "deny", "reason": "project name"}
    return {"action": "allow"}


def request(text: str, *dests: Destination) -> HookRequest:
    origin = Origin(network="a", room="#x", sender=Sender(id="alice", name="alice"))
    event = Message(id=EventId(f"id-{text}"), origin=origin, text=text)
    return HookRequest(event=event, kind="message", origin=origin, text=text, formatted=None,
                       texts=(text,), quoted=None, attachments=(), destinations=dests)  # fmt: skip


def test_a_batch_answer_decides_each_event_and_fails_only_those_it_gets_wrong() -> None:
    x, y = Destination("b", "#y"), Destination("c", "#z")
    asked = [request("one", x, y), request("two", x), request("three", x), request("four", x)]
    body = batch_body(asked)
    assert body["version"] == 2
    assert [e["event_id"] for e in body["events"]] == ["id-one", "id-two", "id-three", "id-four"]
    got = parse_batch_answer({"version": 2, "events": [
        {"event_id": "id-one", "action": "allow",
         "decisions": [{"network": "c", "room": "#z", "action": "deny", "reason": "no"}]},
        {"event_id": "id-two", "action": "redact", "spans": [[0, 2]]},
        {"event_id": "id-three", "action": "maybe"},
    ]}, asked)  # fmt: skip
    one, two, three, four = got
    assert not isinstance(one, HookAnswerError)
    assert not isinstance(two, HookAnswerError)
    assert (one[x].action.value, one[y].action.value) == ("allow", "deny")
    assert two[x].spans == ((0, 2),)
    assert isinstance(three, HookAnswerError)
    assert "maybe" in str(three)
    assert isinstance(four, HookAnswerError)
    assert "no entry" in str(four)


def test_a_batch_answer_that_cannot_be_trusted_as_a_whole_fails_every_event() -> None:
    asked = [request("one", Destination("b", "#y"))]
    for body, why in [
        ({"version": 1, "action": "allow"}, "version"),
        ({"action": "allow"}, "version"),
        ({"version": 2, "events": {}}, "list"),
        ({"version": 2, "events": [{"event_id": "id-other", "action": "allow"}]}, "not asked"),
        ([], "object"),
    ]:
        with pytest.raises(HookAnswerError, match=why):
            parse_batch_answer(body, asked)
    twice = [{"event_id": "id-one", "action": "allow"}] * 2
    (result,) = parse_batch_answer({"version": 2, "events": twice}, asked)
    assert isinstance(result, HookAnswerError)


async def test_events_arriving_while_a_request_is_out_go_together_in_the_next(
    start_daemon: StartDaemon,
) -> None:
    daemon, hub = await start_daemon(ROOMS)
    hook = FakeService(per_event(marker))
    use_hooks(daemon, hook)
    hook.gate.clear()  # the first request stays out while the next events arrive
    hub.post("#x", "alice", "first")
    await until(lambda: len(hook.bodies) == 1)
    for i in range(5):
        hub.post("#x", "alice", f"aurora {i}" if i == 2 else f"line {i}")
    await until(lambda: hook.queued == 5)
    hook.gate.set()
    await until(lambda: "[alice] line 4" in hub.texts("#y"))
    await settle(daemon)
    assert [len(b["events"]) for b in hook.bodies] == [1, 5]
    assert hook.batches == 2  # /metrics: imbridge_policy_hook_http_requests_total
    assert hub.texts("#y") == ["[alice] first"] + [f"[alice] line {i}" for i in (0, 1, 3, 4)]
    assert daemon.relay is not None
    assert daemon.relay.stats["a"].denied == 1


async def test_an_event_the_batch_answer_leaves_out_gets_on_error_and_is_counted(
    start_daemon: StartDaemon,
) -> None:
    daemon, hub = await start_daemon(ROOMS)

    def forgetful(body: dict[str, Any]) -> dict[str, Any]:
        """Answers every event but the one saying "left out"."""
        answer = per_event(marker)(body)
        skip = {e["event_id"] for e in body["events"] if e["text"] == "left out"}
        answer["events"] = [e for e in answer["events"] if e["event_id"] not in skip]
        return answer

    hook = FakeService(forgetful)
    engine = use_hooks(daemon, hook)
    hook.gate.clear()
    hub.post("#x", "alice", "first")
    await until(lambda: len(hook.bodies) == 1)
    for text in ("kept 1", "left out", "kept 2"):
        hub.post("#x", "alice", text)
    await until(lambda: hook.queued == 3)
    hook.gate.set()
    await until(lambda: len(hook.bodies) == 2)
    await until(lambda: "[alice] kept 2" in hub.texts("#y"))
    await settle(daemon)
    assert hub.texts("#y") == ["[alice] first", "[alice] kept 1", "[alice] kept 2"]
    assert engine.stats["dlp"].errors["deny"] == 1  # on_error: deny (fail closed)
    assert engine.stats["dlp"].requests == 4


async def test_batch_false_sends_one_event_per_request_in_version_1(
    start_daemon: StartDaemon,
) -> None:
    daemon, hub = await start_daemon(ROOMS)
    hook = FakeService(per_event(marker), batch=False)
    use_hooks(daemon, hook)
    for text in ("one", "aurora two", "three"):
        hub.post("#x", "alice", text)
    await until(lambda: "[alice] three" in hub.texts("#y"))
    await settle(daemon)
    assert [(b["version"], b["text"]) for b in hook.bodies] == [
        (1, "one"), (1, "aurora two"), (1, "three")
    ]  # fmt: skip
    assert hub.texts("#y") == ["[alice] one", "[alice] three"]


async def test_an_event_past_its_budget_in_a_batch_gets_on_error(
    start_daemon: StartDaemon,
) -> None:
    daemon, hub = await start_daemon(ROOMS)
    hook = FakeService(per_event(marker), timeout_ms=100, on_error="allow")
    engine = use_hooks(daemon, hook)
    hook.gate.clear()  # the service never answers
    hub.post("#x", "alice", "crosses by on_error allow")
    await until(lambda: "[alice] crosses by on_error allow" in hub.texts("#y"))
    assert engine.stats["dlp"].errors["allow"] == 1
    hook.gate.set()
    await settle(daemon)


async def test_each_waiting_event_keeps_its_own_budget_and_an_answer_in_time_still_counts() -> None:
    hook = FakeService(per_event(marker), timeout_ms=400)
    hook.gate.clear()  # the service holds its answers
    first = asyncio.ensure_future(hook.ask(request("a", Destination("b", "#y"))))
    await asyncio.sleep(0.25)
    second = asyncio.ensure_future(hook.ask(request("b", Destination("b", "#y"))))
    with pytest.raises(TimeoutError):
        await first
    assert not second.done()  # its budget started later and is not spent
    hook.gate.set()  # the answers come, within the second event's budget
    assert await second == {Destination("b", "#y"): Verdict.allow()}
    await hook.aclose()


def test_batch_settings_are_refused_on_a_python_hook() -> None:
    with pytest.raises(ValueError, match="HTTP hooks"):
        PolicyHook(name="cards", entry_point="luhn-cards", max_batch=8)
    assert PolicyHook(name="dlp", url="https://dlp.example/v1").batch  # batched by default


async def test_closing_the_hook_gives_waiting_events_on_error_not_a_cancellation() -> None:
    hook = FakeService(per_event(marker), on_error="allow")
    hook.gate.clear()
    asked = [asyncio.ensure_future(hook.ask(request(t, Destination("b", "#y")))) for t in "ab"]
    await until(lambda: len(hook.bodies) == 1)
    third = asyncio.ensure_future(hook.ask(request("c", Destination("b", "#y"))))
    await until(lambda: hook.queued == 1)
    await hook.aclose()
    for task in (*asked, third):
        with pytest.raises(HookAnswerError, match="closed"):
            await task
