"""XEP-0363 re-upload decisions and stanzas, on answers recorded from Prosody 0.12; and the
`media` keys of an XMPP section, reported at their YAML path."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from imbridge.adapters.xmpp.proto.uploads import (
    NS_UPLOAD,
    Service,
    discovery_domain,
    file_name,
    limit,
    link_reason,
    read_items,
    read_service,
    read_slot,
    relinked,
    slot_request,
)
from imbridge.adapters.xmpp.proto.xmlsafe import is_xml_text
from imbridge.config.load import parse_config
from imbridge.errors import ConfigError
from imbridge.events import Attachment, Message, Origin, Sender, new_event_id

ITEMS = """<iq xmlns="jabber:client" type="result" from="localhost"><query
 xmlns="http://jabber.org/protocol/disco#items"><item jid="bridge.localhost"/><item
 jid="upload.localhost"/><item jid="conference.localhost"/></query></iq>"""
INFO = """<iq xmlns="jabber:client" type="result" from="upload.localhost"><query
 xmlns="http://jabber.org/protocol/disco#info"><identity category="store" type="file"
 name="HTTP File Upload"/><feature var="http://jabber.org/protocol/disco#info"/><feature
 var="urn:xmpp:http:upload:0"/><x xmlns="jabber:x:data" type="result"><field type="hidden"
 var="FORM_TYPE"><value>urn:xmpp:http:upload:0</value></field><field type="text-single"
 var="max-file-size"><value>1048576</value></field></x></query></iq>"""
MUC_INFO = """<iq xmlns="jabber:client" type="result"><query
 xmlns="http://jabber.org/protocol/disco#info"><identity category="conference"
 type="text"/><feature var="http://jabber.org/protocol/muc"/></query></iq>"""
SLOT = """<iq xmlns="jabber:client" type="result" from="upload.localhost"><slot
 xmlns="urn:xmpp:http:upload:0"><get url="http://127.0.0.1:4/file_share/S/a%20b.txt"/><put
 url="http://127.0.0.1:4/file_share/S/a%20b.txt"><header name="Authorization">Bearer
 x.y.z</header><header name="Host">evil</header></put></slot></iq>"""


def xml(text: str) -> ET.Element:
    return ET.fromstring(text)  # noqa: S314 - answers recorded from our own test server


def attachment(url: str = "https://media.example/f/cat.png", **kw: object) -> Attachment:
    return Attachment(url=url, **kw)  # type: ignore[arg-type]


def test_service_found_in_disco_with_its_advertised_limit() -> None:
    assert read_items(xml(ITEMS)) == (
        "bridge.localhost", "upload.localhost", "conference.localhost",
    )  # fmt: skip
    assert read_service("upload.localhost", xml(INFO)) == Service("upload.localhost", 1048576)
    assert read_service("conference.localhost", xml(MUC_INFO)) is None


def test_slot_keeps_only_the_headers_xep_0363_allows() -> None:
    slot = read_slot(xml(SLOT))
    assert slot.get_url == slot.put_url == "http://127.0.0.1:4/file_share/S/a%20b.txt"
    assert slot.headers == (("Authorization", "Bearer x.y.z"),)  # no Host; no line break
    no_urls = SLOT.replace('url="http://127.0.0.1:4', 'url="file://')
    with pytest.raises(ValueError, match="http"):
        read_slot(xml(no_urls))
    request = slot_request("i1", "upload.localhost", "carol@bridge.localhost",
                           filename="a b.txt", size=5, mimetype="text/plain")  # fmt: skip
    assert request.get("from") == "carol@bridge.localhost"
    asked = request.find(f"{{{NS_UPLOAD}}}request")
    assert asked is not None
    assert (asked.get("filename"), asked.get("size")) == ("a b.txt", "5")


def test_what_keeps_its_link_and_why() -> None:
    service = Service("upload.localhost", 1000)
    assert limit(service, 5000) == 1000
    assert limit(Service("u", None), 5000) == 5000
    small, big = attachment(size=10), attachment(size=1001)

    def reason(att: Attachment, svc: Service | None = service, same: bool = False) -> str | None:
        return link_reason(att, service=svc, max_bytes=5000, same_network=same)

    assert reason(small) is None
    assert reason(attachment()) is None  # size unknown: found out while downloading
    assert reason(big) == "too large"
    assert reason(small, svc=None) == "no upload service"
    assert reason(small, same=True) == "already on this network"
    assert reason(attachment("mxc://hs/id")) == "not an http(s) URL"


def test_component_looks_for_the_service_beside_itself() -> None:
    assert discovery_domain("bridge.corp.example", component=True) == "corp.example"
    assert discovery_domain("corp.example", component=False) == "corp.example"


def test_relinked_message_points_at_the_uploaded_copies_only() -> None:
    origin = Origin(network="matrix", room="!r", sender=Sender(id="c", name="c"))
    up, kept = attachment("https://a/1.png"), attachment("https://a/2.png")
    event = Message(id=new_event_id(), origin=origin, text="see https://a/1.png",
                    attachments=(up, kept))  # fmt: skip
    new = relinked(event, {"https://a/1.png": "https://up/S/1.png"})
    assert [a.url for a in new.attachments] == ["https://up/S/1.png", "https://a/2.png"]
    assert new.text == "see https://up/S/1.png"
    assert relinked(event, {}) is event


@given(st.text(), st.text(alphabet=st.characters(), max_size=40))
def test_any_file_name_is_one_path_segment_of_xml_text(name: str, path: str) -> None:
    got = file_name(Attachment(url="https://h/" + path.replace("?", "").replace("#", ""),
                               name=name))  # fmt: skip
    assert got
    assert "/" not in got
    assert "\\" not in got
    assert is_xml_text(got)
    assert got not in {".", ".."}


BASE = """
bridge: {{state_dir: ./state}}
networks:
  mem: {{type: memory}}
  xm:
    type: xmpp
    jid: relay@localhost
    password: pw
{extra}
gateways:
  g:
    rooms: [{{network: mem, room: "#a"}}, {{network: xm, room: a@conference.localhost}}]
"""


def issues(extra: str, tmp_path: Path) -> list[str]:
    text = BASE.format(extra="\n".join("    " + line for line in extra.splitlines()))
    try:
        parse_config(text, base=tmp_path)
    except ConfigError as exc:
        return [f"{i.path}: {i.message}" for i in exc.issues]
    return []


def test_media_keys_are_checked_at_their_path(tmp_path: Path) -> None:
    assert issues("media: upload\nmedia_max_bytes: 1000\nupload_service: up.localhost",
                  tmp_path) == []  # fmt: skip
    found = issues("media: fax\nmedia_timeout: 0\nupload_service: a b", tmp_path)
    assert any(f.startswith("networks.xm.media:") for f in found)
    assert any(f.startswith("networks.xm.media_timeout:") for f in found)
    assert any(f.startswith("networks.xm.upload_service:") for f in found)
    assert issues("media: link\nmedia_max_bytes: 5", tmp_path) == [
        "networks.xm.media_max_bytes: applies to media: upload only (media: link)"
    ]
