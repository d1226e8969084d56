"""mIRC codes ⇄ neutral rich text: the formats people use map both ways, colours are
stripped, and nothing but the formatting codes themselves ever reaches a wire line."""

from __future__ import annotations

import re

from hypothesis import given, settings
from hypothesis import strategies as st

from imbridge.adapters.irc.proto.formatting import irc_to_rich, rich_to_irc, strip_codes, tokens
from imbridge.richtext import clean, to_plain

CONTROLS = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
CODE_CHARS = set("\x02\x1d\x1f\x1e\x11")


def test_bold_italic_underline_strike_mono_become_tags() -> None:
    text, rich = irc_to_rich("a \x02b\x02 \x1di\x1d \x1fu\x1f \x1es\x1e \x11m\x11 z")
    assert text == "a b i u s m z"
    assert rich == "a <b>b</b> <i>i</i> <u>u</u> <s>s</s> <code>m</code> z"


def test_colours_and_reverse_are_stripped_with_their_digits() -> None:
    text, rich = irc_to_rich("\x0304,12red\x03 \x0312blue \x04FF0000hex\x04 \x16rev\x0f")
    assert text == "red blue hex rev"
    assert rich is None


def test_overlapping_codes_give_well_formed_html_and_reset_closes_all() -> None:
    text, rich = irc_to_rich("\x02bold \x1dboth\x02 italic\x0f plain <b>&")
    assert text == "bold both italic plain <b>&"
    assert rich == ("<b>bold </b><b><i>both</i></b><i> italic</i> plain &lt;b&gt;&amp;")
    assert clean(rich) == rich


def test_plain_text_gives_no_rich_form() -> None:
    assert irc_to_rich("just text") == ("just text", None)


def test_rich_to_irc_maps_tags_links_lists_and_quotes() -> None:
    assert rich_to_irc("<b>bold</b> <em>it</em> <u>u</u> <del>s</del> <code>c</code>") == (
        "\x02bold\x02 \x1dit\x1d \x1fu\x1f \x1es\x1e \x11c"
    )
    assert rich_to_irc('see <a href="https://x.example/a">the doc</a>') == (
        "see the doc (https://x.example/a)"
    )
    assert rich_to_irc('<a href="https://x.example/">https://x.example/</a>') == (
        "https://x.example/"
    )
    assert rich_to_irc("<ul><li>one</li><li>two</li></ul>") == "• one\n• two"
    assert rich_to_irc("<blockquote>quoted<br>twice</blockquote>reply") == (
        "> quoted\n> twice\nreply"
    )


def test_formatting_is_reopened_on_each_line_of_a_multi_line_rich_text() -> None:
    assert rich_to_irc("<b>one<br>two</b> three") == "\x02one\n\x02two\x02 three"


def test_entities_that_decode_to_line_breaks_or_controls_are_dropped() -> None:
    out = rich_to_irc("a&#13;b&#0;c&#1;d\x01e")
    assert "\r" not in out
    assert "\0" not in out
    assert "\x01" not in out
    assert strip_codes(out) == "a\nb\ufffdcde"  # CR is a line break, NUL U+FFFD


@settings(max_examples=2_000, deadline=None)
@given(st.text())
def test_any_irc_text_gives_clean_plain_text_and_rich_text_that_reads_the_same(
    raw: str,
) -> None:
    line = raw.replace("\r", "").replace("\n", "")
    text, rich = irc_to_rich(line)
    assert not CONTROLS.search(text)
    if rich is not None:
        assert to_plain(rich) == text.strip("\n")


TAGS = st.sampled_from(["b", "i", "u", "s", "code", "em", "strong", "del", "p", "li", "ul",
                        "blockquote", "pre", "a"])  # fmt: skip


@st.composite
def markup(draw: st.DrawFn, depth: int = 0) -> str:
    parts = []
    for _ in range(draw(st.integers(0, 4))):
        if depth < 3 and draw(st.booleans()):
            tag = draw(TAGS)
            attrs = ' href="https://e.example/x"' if tag == "a" else ""
            parts.append(f"<{tag}{attrs}>{draw(markup(depth + 1))}</{tag}>")
        elif draw(st.booleans()):
            parts.append("<br>")
        else:
            parts.append(draw(st.text(max_size=20)))
    return "".join(parts)


@settings(max_examples=500, deadline=None)
@given(markup())
def test_any_rich_text_gives_irc_text_with_no_control_but_the_codes(html: str) -> None:
    out = rich_to_irc(clean(html))
    assert not (set(CONTROLS.findall(out)) - CODE_CHARS)


def test_colour_codes_are_one_token_with_their_arguments() -> None:
    assert list(tokens("\x0312,04x\x03y")) == [
        (True, "\x0312,04"),
        (False, "x"),
        (True, "\x03"),
        (False, "y"),
    ]
