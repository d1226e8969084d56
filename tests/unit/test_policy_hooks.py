"""Policy hooks on the relay path, with memory adapters and in-process hooks: a hook's
deny keeps a message back and names the hook, a redaction removes only its spans, a
failure applies `on_error`, a slow hook holds back its own room only, and an event is
never asked about twice."""

from __future__ import annotations

import asyncio
import dataclasses
import io
from pathlib import Path
from typing import Any

import pytest

from imbridge.adapters.memory import MemoryAdapter
from imbridge.commands.policy import policy_explain
from imbridge.config.schema import PolicyHook
from imbridge.daemon import Daemon
from imbridge.hooks import Destination, HookRequest, Verdict
from imbridge.hooks.engine import Hook, Hooks
from imbridge.hooks.plugins import PythonHook
from imbridge.hooks.wire import HookAnswerError, parse_answer
from tests.unit.conftest import StartDaemon, settle, until

ROOMS = """
networks:
  a: {type: memory}
  b: {type: memory}
gateways:
  g:
    nick_format: "[{nick}] "
    rooms:
      - {network: a, room: "#x"}
      - {network: b, room: "#y"}
  h:
    nick_format: "[{nick}] "
    rooms:
      - {network: a, room: "#p"}
      - {network: b, room: "#q"}
"""


def use_hooks(daemon: Daemon, *hooks: Hook) -> Hooks:
    assert daemon.relay is not None
    engine = Hooks(hooks)
    daemon.relay.setup = dataclasses.replace(daemon.relay.setup, hooks=engine)
    daemon.hooks = engine
    return engine


def python_hook(decider: Any, **config: Any) -> PythonHook:
    return PythonHook(PolicyHook(name=config.pop("name", "words"), entry_point="x", **config),
                      decider)  # fmt: skip


class Marker:
    """Denies a marker word, redacts another by its spans."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def decide(self, request: HookRequest, destination: Destination) -> Verdict:
        self.asked.append(request.text)
        if "aurora" in request.texts[0]:
            return Verdict.deny("project name")
        at = request.text.find("4111")
        if at >= 0:
            return Verdict.redact([(at, at + 4)], "card prefix")
        return Verdict.allow()


async def test_hook_deny_keeps_the_message_back_tells_the_sender_and_names_the_hook(
    start_daemon: StartDaemon,
) -> None:
    daemon, hub = await start_daemon(ROOMS)
    marker = Marker()
    use_hooks(daemon, python_hook(marker, notify_sender=True))
    hub.post("#x", "alice", "the aurora launch")
    hub.post("#x", "alice", "card 4111 here")
    hub.post("#x", "alice", "lunch?")
    await until(lambda: "[alice] lunch?" in hub.texts("#y"))
    await settle(daemon)
    assert hub.texts("#y") == ["[alice] card [redacted] here", "[alice] lunch?"]
    notices = [p.text for p in hub.in_room("#x") if "policy hook" in p.text]
    assert notices == [
        "alice: your message was not relayed (policy hook 'words').",
        "alice: your message was relayed with parts removed (policy hook 'words').",
    ]
    assert daemon.relay is not None
    assert daemon.relay.stats["a"].denied == 1


async def test_failing_hook_applies_on_error_and_counts_it(start_daemon: StartDaemon) -> None:
    class Broken:
        def decide(self, request: HookRequest, destination: Destination) -> Verdict:
            raise RuntimeError("DLP engine crashed")

    daemon, hub = await start_daemon(ROOMS)
    engine = use_hooks(daemon, python_hook(Broken(), on_error="deny"))
    hub.post("#x", "alice", "held back")
    await until(lambda: engine.stats["words"].errors["deny"] == 1)
    engine = use_hooks(daemon, python_hook(Broken(), on_error="allow"))
    hub.post("#x", "alice", "let through")
    await until(lambda: "[alice] let through" in hub.texts("#y"))
    assert hub.texts("#y") == ["[alice] let through"]
    assert engine.stats["words"].errors["allow"] == 1


async def test_hook_over_its_time_budget_is_an_error(start_daemon: StartDaemon) -> None:
    class Slow:
        async def decide(self, request: HookRequest, destination: Destination) -> Verdict:
            await asyncio.sleep(30)
            return Verdict.allow()

    daemon, hub = await start_daemon(ROOMS)
    engine = use_hooks(daemon, python_hook(Slow(), timeout_ms=50))
    hub.post("#x", "alice", "slow")
    hub.post("#p", "alice", "sentinel")
    await until(lambda: engine.stats["words"].errors["deny"] == 2)
    await settle(daemon)
    assert hub.texts("#y") == []
    assert hub.texts("#q") == []


async def test_a_slow_hook_holds_back_its_room_only_and_keeps_its_order(
    start_daemon: StartDaemon,
) -> None:
    release = asyncio.Event()

    class Gate:
        async def decide(self, request: HookRequest, destination: Destination) -> Verdict:
            if "slow" in request.text:
                await release.wait()
            return Verdict.allow()

    daemon, hub = await start_daemon(ROOMS)
    use_hooks(daemon, python_hook(Gate(), timeout_ms=10_000))
    hub.post("#x", "alice", "slow one")
    hub.post("#x", "alice", "after it")
    hub.post("#p", "bob", "other room")
    await until(lambda: hub.texts("#q") == ["[bob] other room"])
    assert hub.texts("#y") == []  # "after it" waits for "slow one", its room's order
    release.set()
    await until(lambda: len(hub.texts("#y")) == 2)
    assert hub.texts("#y") == ["[alice] slow one", "[alice] after it"]


async def test_a_reply_to_a_message_still_asking_hooks_keeps_its_quote(
    start_daemon: StartDaemon,
) -> None:
    release = asyncio.Event()
    quotes: list[str | None] = []

    class Gate:
        async def decide(self, request: HookRequest, destination: Destination) -> Verdict:
            quotes.append(request.quoted)
            if "first" in request.text:
                await release.wait()
            return Verdict.allow()

    daemon, hub = await start_daemon(ROOMS)
    use_hooks(daemon, python_hook(Gate(), timeout_ms=10_000))
    first = hub.post("#x", "alice", "first words")
    await until(lambda: quotes == [None])
    hub.post("#x", "bob", "answer", reply_to=first.remote_id)
    await until(lambda: len(quotes) == 2)
    release.set()
    await until(lambda: len(hub.texts("#y")) == 2)
    assert quotes[1] == "first words"


async def test_an_event_handed_over_twice_asks_the_hook_once(start_daemon: StartDaemon) -> None:
    daemon, hub = await start_daemon(ROOMS)
    marker = Marker()
    use_hooks(daemon, python_hook(marker))
    post = hub.post("#x", "alice", "once")
    await until(lambda: "[alice] once" in hub.texts("#y"))
    adapter = daemon.adapters["a"]
    assert isinstance(adapter, MemoryAdapter)
    adapter.deliver(post)  # the network hands the same message over again
    hub.post("#x", "alice", "sentinel")
    await until(lambda: "[alice] sentinel" in hub.texts("#y"))
    await settle(daemon)
    assert marker.asked == ["once", "sentinel"]
    assert hub.texts("#y") == ["[alice] once", "[alice] sentinel"]


def test_http_answer_must_cover_every_destination_and_be_understood() -> None:
    x, y = Destination("b", "#y"), Destination("c", "#z")
    got = parse_answer({"decisions": [{"network": "b", "room": "#y", "action": "deny"}],
                        "action": "allow"}, [x, y])  # fmt: skip
    assert got[x].action.value == "deny"
    assert got[y].action.value == "allow"
    with pytest.raises(HookAnswerError, match="no decision"):
        parse_answer({"decisions": []}, [x])
    with pytest.raises(HookAnswerError, match="not allow, deny or redact"):
        parse_answer({"action": "maybe"}, [x])
    with pytest.raises(HookAnswerError, match="version"):
        parse_answer({"version": 2, "action": "allow"}, [x])
    with pytest.raises(HookAnswerError, match="span"):
        parse_answer({"action": "redact", "spans": [[3, 1]]}, [x])


def test_policy_explain_lists_hooks_after_the_default(tmp_path: Path) -> None:
    path = tmp_path / "bridge.yaml"
    path.write_text(
        "networks: {a: {type: memory}}\n"
        "policy:\n  hooks:\n"
        "    - {name: dlp, url: 'https://dlp.example/v1', on_error: allow, timeout_ms: 300}\n"
    )
    out = io.StringIO()
    assert policy_explain(path, out=out, err=out) == 0
    default, hook = out.getvalue().splitlines()[1:3]
    assert default.split()[:2] == ["-", "default"]
    assert hook.split()[:2] == ["hook", "dlp"]
    assert "ask, else allow" in hook
    assert "https://dlp.example/v1 within 300 ms" in hook


async def test_a_correction_line_never_quotes_words_a_hook_redacted(
    start_daemon: StartDaemon,
) -> None:
    """Only the rules are asked about the text an edit changes: with hooks, a correction
    line toward a network without edits gives the new text as the hook let it cross."""
    body = ROOMS.replace("b: {type: memory}", "b: {type: memory, capabilities: {edits: false}}")
    daemon, hub = await start_daemon(body)
    use_hooks(daemon, python_hook(Marker()))
    first = hub.post("#x", "alice", "card 4111 ok")
    await until(lambda: len(hub.texts("#y")) == 1)
    hub.post("#x", "alice", "card 4111 fine", kind="edit", target=first.remote_id)
    await until(lambda: len(hub.texts("#y")) == 2)
    await settle(daemon)
    assert not any("4111" in t for t in hub.texts("#y"))
    assert hub.texts("#y")[1] == "* corrected: [alice] card [redacted] fine"
