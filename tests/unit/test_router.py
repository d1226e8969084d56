"""Router properties over generated gateways: never back to the origin, directions hold,
every destination shares the origin's gateway."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from imbridge.config.schema import Direction, Gateway, RoomRef
from imbridge.router import Router

networks = st.sampled_from(["irc", "xmpp", "matrix", "mem"])
rooms = st.text(alphabet="#abcXYZ", min_size=1, max_size=4)
directions: st.SearchStrategy[Direction] = st.sampled_from(["both", "in", "out"])


@st.composite
def gateways(draw: st.DrawFn) -> dict[str, Gateway]:
    refs = draw(
        st.lists(
            st.tuples(networks, rooms, directions),
            min_size=2,
            max_size=12,
            unique_by=lambda t: (t[0], t[1].casefold()),
        )
    )
    count = draw(st.integers(min_value=1, max_value=max(1, len(refs) // 2)))
    out: dict[str, Gateway] = {}
    for g in range(count):
        members = refs[g::count]
        if len(members) >= 2:
            out[f"g{g}"] = Gateway(
                rooms=tuple(RoomRef(network=n, room=r, direction=d) for n, r, d in members)
            )
    return out


@settings(max_examples=500, deadline=None)
@given(gateways())
def test_routes_respect_gateways_and_directions(config: dict[str, Gateway]) -> None:
    router = Router(config)
    for name, gateway in config.items():
        for ref in gateway.rooms:
            routes = router.routes(ref.network, ref.room)
            dests = {(r.dest.network, r.dest.room) for r in routes}
            assert (ref.network, ref.room) not in dests  # never back to the origin
            if ref.direction == "out":
                assert routes == ()
            by_key = {(o.network, o.room): o for o in gateway.rooms}
            for route in routes:
                assert route.gateway == name
                assert (route.dest.network, route.dest.room) in by_key
                assert by_key[(route.dest.network, route.dest.room)].direction != "in"
            if ref.direction != "out":
                expected = {
                    (o.network, o.room)
                    for o in gateway.rooms
                    if o is not ref and o.direction != "in"
                }
                assert dests == expected


def test_rooms_outside_every_gateway_go_nowhere() -> None:
    router = Router(
        {"g": Gateway(rooms=(RoomRef(network="a", room="#x"), RoomRef(network="b", room="#y")))}
    )
    assert router.routes("a", "#elsewhere") == ()
    assert router.routes("c", "#x") == ()


def test_room_names_match_case_insensitively_and_keep_their_configured_spelling() -> None:
    router = Router(
        {"g": Gateway(rooms=(RoomRef(network="a", room="#Ops"), RoomRef(network="b", room="#y")))}
    )
    assert [r.dest.room for r in router.routes("a", "#OPS")] == ["#y"]
    assert router.canonical_room("a", "#ops") == "#Ops"
    assert router.rooms("a") == ["#Ops"]
