"""The bridge as a real process, killed with SIGKILL five times at random points while
people on Matrix and XMPP talk into an IRC channel (and to each other) and someone on IRC
talks back, all in one gateway.

What must hold, per destination, as each network's own client saw it:

* Matrix and XMPP rooms, whose protocols let a retry carry an idempotency key (the
  Matrix transaction id, the XMPP origin-id): every message exactly once, in order.
* The IRC channel, whose protocol has no such key: every message, in order. A kill that
  falls between the bridge's write of a line and the commit that records it leaves one
  line whose fate the bridge cannot know; it is sent again after the restart (at least
  once beats silently lost). The test tolerates exactly that and nothing else: the
  repeated line must be the last one before the relay's QUIT and the first one after its
  JOIN, at most one per kill. It prints how many it saw, so the rate is measured, not
  hidden.
* From IRC: IRC keeps no history, so what is said while the bridge is dead is gone for it.
  What was said while the relay was in the channel arrives once and in order; a kill can
  only cut off the tail of what the dead process had read but not yet committed.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.integration.fault_helpers import (
    BridgeProcess,
    IrcSends,
    People,
    config_text,
    exactly_once_in_order,
    irc_timeline,
    matrix_bodies,
    numbered,
    poll,
    relay_presence,
    split_kill_duplicates,
    xmpp_archive_bodies,
)
from tests.servers.ircd import Ircd, IrcUser
from tests.servers.prosody import Prosody
from tests.servers.synapse import SynapseServer

pytestmark = pytest.mark.integration

FROM_MATRIX = FROM_XMPP = 500  # the 1 000 numbered messages into IRC
FROM_IRC = 150
KILLS = 5


def irc_origin_problems(sends: IrcSends, got: list[int]) -> tuple[str, int]:
    """Checks the IRC -> elsewhere stream as described in the module docstring; returns
    ("" or the problem, how many lines said while the relay was present were lost)."""
    if got != sorted(set(got)):
        return f"duplicated or reordered: {got}", 0
    received = set(got)
    lost = 0
    # Only the last process's epoch is live: on a slow machine Ivan may have said his
    # last line before the final start, and then every epoch he spoke in ended in a kill,
    # which may cut off its tail (what `complete()` waits for is the same epoch).
    last = KILLS + 1
    for epoch, numbers in sorted(sends.present.items()):
        delivered = [n for n in numbers if n in received]
        lost += len(numbers) - len(delivered)
        if delivered != numbers[: len(delivered)]:
            return f"a gap inside epoch {epoch}: sent {numbers}, got {delivered}", lost
        if epoch == last and delivered != numbers:
            return f"the live epoch lost lines: sent {numbers}, got {delivered}", lost
    return "", lost


@dataclass
class Outcome:
    """What each network's own client saw over the whole run."""

    seed: int
    points: list[int]
    kill_log: list[str]
    irc_lines: list[tuple[str, int]]
    irc_repeats: list[tuple[str, int]]
    in_matrix: list[str]
    in_xmpp: list[str]
    irc_sends: IrcSends
    relay_quits: list[str]
    exit_code: int
    log_tail: str

    def irc_origin_report(self, lost: int) -> str:
        present = sum(len(v) for v in self.irc_sends.present.values())
        return (
            f"IRC -> elsewhere: {present} said while the relay was present, {lost} of them "
            f"cut off by a kill; {len(self.irc_sends.absent)} said while it was absent"
        )

    def report(self) -> str:
        return (
            f"seed {self.seed}, kill points {self.points}; {'; '.join(self.kill_log)}; "
            f"{len(self.irc_repeats)} IRC line(s) sent twice across a kill: {self.irc_repeats}"
        )


def missing(people: People, last_epoch: list[int]) -> str:
    """What has not arrived yet, for the report of a wait that timed out."""
    ivan, xavier, alice = people.ivan, people.xavier, people.alice
    lines, _ = split_kill_duplicates(irc_timeline(ivan, people.chan))
    from_irc = set(numbered(alice.bodies(people.room, sender=people.relay_mx.user_id), "i"))
    in_xmpp = set(numbered(xavier.bodies(people.muc), "m"))
    in_matrix = set(numbered(alice.bodies(people.room), "x"))
    said = {("m", n) for n in range(1, FROM_MATRIX + 1)}
    said |= {("x", n) for n in range(1, FROM_XMPP + 1)}
    return (
        f"IRC lacks {sorted(said - set(lines))[:20]},"
        f" XMPP lacks m{sorted(set(range(1, FROM_MATRIX + 1)) - in_xmpp)[:20]},"
        f" Matrix lacks x{sorted(set(range(1, FROM_XMPP + 1)) - in_matrix)[:20]}"
        f" and i{sorted(set(last_epoch) - from_irc)[:20]}"
    )


def in_channel_since_start(ivan: IrcUser, chan: str, starts: int) -> bool:
    """Whether Ivan sees the relay in the channel, joined at least once per start."""
    present, joins = relay_presence(ivan, chan)
    return present and joins >= starts


def kill_points(rng: random.Random, total: int) -> list[int]:
    """Five points (lines seen in IRC) spread over the stream, at least 80 apart."""
    while True:
        points = sorted(rng.sample(range(60, total - 100), KILLS))
        if all(b - a >= 80 for a, b in itertools.pairwise(points)):
            return points


async def run_with_kills(
    ngircd: Ircd, prosody: Prosody, synapse: SynapseServer, tmp_path: Path
) -> Outcome:
    seed = int(os.environ.get("IMBRIDGE_FAULT_SEED", time.time_ns() % 1_000_000))
    rng = random.Random(seed)
    points = kill_points(rng, FROM_MATRIX + FROM_XMPP)
    async with contextlib.AsyncExitStack() as stack:
        people = await People.gather(ngircd, prosody, synapse, stack)
        ivan, xavier, alice = people.ivan, people.xavier, people.alice
        chan, muc, room = people.chan, people.muc, people.room
        config = tmp_path / "bridge.yaml"
        config.write_text(
            config_text(
                tmp_path / "state",
                people.networks(ngircd, prosody, synapse),
                {"g": people.rooms()},
            )
        )
        bridge = BridgeProcess(config, tmp_path / "bridge.log")
        bridge.start()
        stack.callback(bridge.terminate)
        await bridge.ready()
        await poll(lambda: relay_presence(ivan, chan)[0], 15, "relay in the IRC channel")

        into_irc = people.into_irc
        sends = IrcSends()
        talk = people.talk((FROM_MATRIX, FROM_XMPP, FROM_IRC), (0.01, 0.03, 0.1), sends)
        kill_log: list[str] = []
        try:
            for point in points:
                await poll(lambda p=point: into_irc() >= p, 120, f"{point} lines in IRC")  # type: ignore[misc]
                # Lines the previous process wrote before its kill may still be reaching
                # Ivan and count toward this point: kill only a process Ivan has seen
                # join, so that each kill is one the channel sees (its QUIT).
                await poll(
                    lambda: in_channel_since_start(ivan, chan, bridge.starts),
                    60,
                    f"the relay's start {bridge.starts} in the IRC channel",
                )
                await asyncio.sleep(rng.uniform(0, 0.3))
                bridge.kill()
                kill_log.append(f"killed at {into_irc()} lines in IRC")
                await asyncio.sleep(rng.uniform(0, 1.0))  # people talk on meanwhile
                bridge.start()
            await asyncio.gather(*talk)
        finally:
            for task in talk:
                task.cancel()
            await asyncio.gather(*talk, return_exceptions=True)
        assert bridge.starts == KILLS + 1

        # Everything said must now come through; then a late duplicate gets time to show.
        # Only the last process's lines must all arrive: a line said in an earlier epoch
        # may be cut off by the kill that ends it, even when it is the last line said
        # (Ivan can say it before he sees the killed relay's QUIT).
        last_epoch = sends.present.get(KILLS + 1, [])

        def complete() -> bool:
            lines, _ = split_kill_duplicates(irc_timeline(ivan, chan))
            from_irc = set(numbered(alice.bodies(room, sender=people.relay_mx.user_id), "i"))
            return (
                len(set(lines)) >= FROM_MATRIX + FROM_XMPP
                and len(set(numbered(xavier.bodies(muc), "m"))) >= FROM_MATRIX
                and len(set(numbered(alice.bodies(room), "x"))) >= FROM_XMPP
                and set(last_epoch) <= from_irc
            )

        await poll(
            complete,
            180,
            f"every message delivered (seed {seed})",
            lambda: missing(people, last_epoch),
        )
        await people.sentinels((FROM_MATRIX, FROM_XMPP, FROM_IRC))
        exit_code = bridge.terminate()

        def quits() -> list[str]:
            return [s.text for s in ivan.seen if s.kind == "quit" and s.nick.startswith("relay")]

        def comings_and_goings() -> str:
            seen = [f"{s.kind} {s.nick} {s.text}" for s in ivan.seen
                    if s.kind in ("join", "quit", "nick", "part", "kick", "error", "disconnect")
                    and (s.nick.startswith("relay") or not s.nick)]  # fmt: skip
            return f"exit code {exit_code}; Ivan saw: {seen}"

        await poll(lambda: len(quits()) > KILLS, 30, "the relay's final QUIT", comings_and_goings)
        lines, repeats = split_kill_duplicates(irc_timeline(ivan, chan))
        outcome = Outcome(
            seed=seed,
            points=points,
            kill_log=kill_log,
            irc_lines=lines,
            irc_repeats=repeats,
            in_matrix=await asyncio.to_thread(
                matrix_bodies, synapse, alice.user.access_token, room, people.relay_mx.user_id
            ),
            in_xmpp=await xmpp_archive_bodies(xavier, muc),
            irc_sends=sends,
            relay_quits=quits(),
            exit_code=exit_code,
            log_tail=bridge.tail(),
        )
    print(outcome.report())  # the measured rate of the one ambiguity IRC leaves
    return outcome


@pytest.fixture(scope="module")
def outcome(
    ngircd: Ircd,
    prosody: Prosody,
    synapse: SynapseServer,
    tmp_path_factory: pytest.TempPathFactory,
) -> Outcome:
    """One run of the whole scenario (about a minute), which the tests below read."""
    tmp = tmp_path_factory.mktemp("kills")
    return asyncio.run(run_with_kills(ngircd, prosody, synapse, tmp))


def test_bridge_was_killed_five_times_and_stopped_cleanly_at_the_end(outcome: Outcome) -> None:
    assert len(outcome.kill_log) == KILLS
    assert outcome.exit_code == 0, outcome.log_tail
    # Five crashes (the server noticed the dead socket: no QUIT of the bridge's own) and
    # the final SIGTERM, which says goodbye.
    assert len(outcome.relay_quits) == KILLS + 1, outcome.relay_quits
    assert not any("imbridge" in q for q in outcome.relay_quits[:-1]), outcome.relay_quits
    assert "imbridge" in outcome.relay_quits[-1]


def test_irc_gets_every_matrix_and_xmpp_message_in_order_repeating_at_most_the_kill_line(
    outcome: Outcome,
) -> None:
    for tag, count in (("m", FROM_MATRIX), ("x", FROM_XMPP)):
        got = [n for t, n in outcome.irc_lines if t == tag and n <= count]  # not the sentinel
        problem = exactly_once_in_order(got, list(range(1, count + 1)))
        assert not problem, f"{tag}: {problem}\n{outcome.report()}"
    assert len(outcome.irc_repeats) <= KILLS, outcome.report()


def test_matrix_room_gets_every_xmpp_and_irc_message_exactly_once_in_order(
    outcome: Outcome,
) -> None:
    got = [n for n in numbered(outcome.in_matrix, "x") if n <= FROM_XMPP]
    problem = exactly_once_in_order(got, list(range(1, FROM_XMPP + 1)))
    assert not problem, f"{problem}\n{outcome.report()}"
    problem, lost = irc_origin_problems(outcome.irc_sends, numbered(outcome.in_matrix, "i"))
    print(outcome.irc_origin_report(lost))
    assert not problem, f"{problem}\n{outcome.report()}"
    assert outcome.irc_sends.present, "nothing was said on IRC while the relay was there"


def test_xmpp_room_gets_every_matrix_and_irc_message_exactly_once_in_order(
    outcome: Outcome,
) -> None:
    got = [n for n in numbered(outcome.in_xmpp, "m") if n <= FROM_MATRIX]
    problem = exactly_once_in_order(got, list(range(1, FROM_MATRIX + 1)))
    assert not problem, f"{problem}\n{outcome.report()}"
    problem, _ = irc_origin_problems(outcome.irc_sends, numbered(outcome.in_xmpp, "i"))
    assert not problem, f"{problem}\n{outcome.report()}"
