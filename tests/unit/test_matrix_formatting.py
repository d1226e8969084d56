"""The HTML path, Matrix room to Matrix room: whatever a sender puts in a
`formatted_body`, what the bridge posts holds only allowed tags and attributes, no event
handler, no script and no URL outside the allowed schemes (property-tested)."""

from __future__ import annotations

from html.parser import HTMLParser
from urllib.parse import urlsplit

from hypothesis import given, settings
from hypothesis import strategies as st

from imbridge.adapter import Outgoing
from imbridge.adapters.matrix.proto.formatting import MATRIX_TAGS, from_matrix, to_matrix
from imbridge.adapters.matrix.proto.translate import SendWire, parse_event, to_core, to_wire
from imbridge.events import Message, RichText, new_event_id
from imbridge.richtext import ALLOWED_TAGS, URL_SCHEMES

FRAGMENTS = [
    "<script>", "</script>", "alert(1)", "<img src=x onerror=alert(1)>", "<svg onload=x>",
    '<a href="javascript:alert(1)">', "<a href='JaVaScRiPt:x'>", "<a href=java\tscript:x>",
    '<a href="&#106;avascript:x">', '<a href="data:text/html,<script>x</script>">',
    '<a href="https://ok.example/">', "</a>", "<b>", "</b>", "<i", " onclick=", "=", '"',
    "'", "<", ">", "/", "<mx-reply>", "</mx-reply>", "<!--", "-->", "<![CDATA[", "]]>",
    "<style>", "</style>", "<iframe src=//x>", "<p>", "<font color=red onmouseover=x>",
    "<span data-mx-spoiler>", "<math><mi xlink:href=javascript:x>", "<h1>", "</h1>",
    "<table><tr><td>", "<form action=javascript:x>", "<object data=x>", "&lt;", "&amp;",
    "<br/>", "<code class='language-x' onfocus=y>", "<ol start=3 onload=z>", "<li>",
    "<pre>", "\x00", "\u202e", "<details open ontoggle=x>",
]  # fmt: skip
# Single characters that matter to an HTML tokenizer, plus a few ordinary ones.
CHARS = list("<>/=\"'&#;:! \t\nabcxyzjavscriptonerr0123é")


def _assemble(seed: int) -> str:
    """Each byte of `seed` picks a fragment or a character. One integer is one draw,
    which keeps 10 000 examples within seconds (a list strategy draws per element), and
    it still shrinks: smaller integers are shorter inputs."""
    data = seed.to_bytes(24, "little").rstrip(b"\0")
    pool = len(FRAGMENTS) + len(CHARS)
    return "".join(
        FRAGMENTS[b % pool] if b % pool < len(FRAGMENTS) else CHARS[b % pool - len(FRAGMENTS)]
        for b in data
    )


html_inputs = st.integers(min_value=0, max_value=2**192 - 1).map(_assemble)


class _Audit(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.problems: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag not in ALLOWED_TAGS:
            self.problems.append(f"tag {tag}")
        for name, value in attrs:
            if name.startswith("on") or (tag, name) != ("a", "href"):
                self.problems.append(f"attribute {name} on {tag}")
            elif value is not None:
                scheme = urlsplit(value.strip()).scheme.lower()
                if scheme and scheme not in URL_SCHEMES:
                    self.problems.append(f"url {value!r}")


def audit(html: str) -> list[str]:
    parser = _Audit()
    parser.feed(html)
    parser.close()
    return parser.problems


@settings(max_examples=10_000, deadline=None)
@given(html_inputs)
def test_any_formatted_body_relays_only_safe_html(markup: str) -> None:
    source = {
        "type": "m.room.message", "event_id": "$1", "sender": "@a:localhost",
        "content": {"msgtype": "m.text", "body": "b", "format": "org.matrix.custom.html",
                    "formatted_body": markup},
    }  # fmt: skip
    inbound = parse_event(source, "http://hs")
    assert inbound is not None  # never dropped: the body at least is kept
    event = to_core(inbound, event_id=new_event_id(), network="mx", room="!r", sender_name="a")
    assert isinstance(event, Message)
    wire = to_wire(Outgoing(room="!other", event=event, txn_id="t"))
    assert isinstance(wire, SendWire)
    html = wire.content.get("formatted_body", "")
    assert audit(html) == [], (markup, html)
    assert "<script" not in html.lower()


def test_core_rich_text_is_rechecked_on_the_way_out() -> None:
    """Even a RichText that skipped cleaning (a core bug) cannot carry script out."""
    dirty = RichText('<b onclick="x">hi</b><script>alert(1)</script><a href="javascript:y">z</a>')
    assert to_matrix(dirty) == "<b>hi</b><a>z</a>"


def test_matrix_extras_reduce_to_neutral() -> None:
    assert from_matrix("<h2>T</h2>x") == "<p><b>T</b></p>x"
    assert from_matrix('<span data-mx-spoiler="r">s</span>') == "s"
    assert from_matrix("<mx-reply><blockquote>q</blockquote></mx-reply>a") == "a"
    assert set(ALLOWED_TAGS) <= MATRIX_TAGS  # the neutral subset is valid Matrix HTML


def test_audit_catches_what_it_must() -> None:
    assert audit('<a href="javascript:x">a</a><img src=x><b onclick=y>b</b>') == [
        "url 'javascript:x'", "tag img", "attribute src on img", "attribute onclick on b",
    ]  # fmt: skip


def test_wire_keeps_neutral_formatting() -> None:
    neutral = RichText('<p>a <b>b</b> <i>c</i> <code>d</code> <a href="https://e">e</a></p>')
    assert to_matrix(neutral) == str(neutral)
