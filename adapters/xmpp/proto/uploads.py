"""HTTP File Upload (XEP-0363): the stanzas and decisions of re-uploading an attachment.

An attachment relayed from another network points at that network's server, which XMPP
users may not reach (a Matrix media URL, an intranet link). When the XMPP server offers
an upload service, the adapter copies the file there and sends that URL instead. Here
are the pure parts: finding the service in disco answers (XEP-0030, its size limit in
the XEP-0128 form), the slot request and its answer, and the choice between uploading
and keeping the original link. Nothing here touches the network (`media` does), and
nothing here can lose a message: every doubt ends in "keep the link".
"""

from __future__ import annotations

import dataclasses
import posixpath
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from imbridge.events import Attachment, Message

from .stanzas import NS_CLIENT, q
from .xmlsafe import xml_text

NS_UPLOAD = "urn:xmpp:http:upload:0"
NS_DISCO_INFO = "http://jabber.org/protocol/disco#info"
NS_DISCO_ITEMS = "http://jabber.org/protocol/disco#items"
NS_DATA = "jabber:x:data"  # XEP-0004 form, carried in disco#info by XEP-0128
# XEP-0363 §4: the only headers a slot may ask for; anything else is ignored.
_SLOT_HEADERS = frozenset({"authorization", "cookie", "expires"})
_MAX_NAME = 120  # characters; a file name, not a caption
_UNSAFE_NAME = re.compile(r"[\x00-\x1f\x7f/\\]+")


@dataclass(frozen=True, slots=True)
class Service:
    """An upload service the server offers."""

    jid: str
    max_bytes: int | None  # its advertised max-file-size; None: it states none


@dataclass(frozen=True, slots=True)
class Slot:
    """Where to PUT a file, with which headers, and the URL it is then served at."""

    put_url: str
    get_url: str
    headers: tuple[tuple[str, str], ...] = ()


def _iq(iq_id: str, to: str, sender: str | None, payload: ET.Element) -> ET.Element:
    attrs = {"type": "get", "id": iq_id, "to": xml_text(to)}
    if sender:
        attrs["from"] = xml_text(sender)
    iq = ET.Element(q(NS_CLIENT, "iq"), attrs)
    iq.append(payload)
    return iq


def info_query(iq_id: str, to: str, sender: str | None = None) -> ET.Element:
    return _iq(iq_id, to, sender, ET.Element(q(NS_DISCO_INFO, "query")))


def items_query(iq_id: str, to: str, sender: str | None = None) -> ET.Element:
    return _iq(iq_id, to, sender, ET.Element(q(NS_DISCO_ITEMS, "query")))


def slot_request(
    iq_id: str, to: str, sender: str | None, *, filename: str, size: int, mimetype: str
) -> ET.Element:
    """XEP-0363 §4 request for one slot."""
    request = ET.Element(
        q(NS_UPLOAD, "request"),
        {"filename": xml_text(filename), "size": str(size), "content-type": xml_text(mimetype)},
    )
    return _iq(iq_id, to, sender, request)


def read_items(reply: ET.Element) -> tuple[str, ...]:
    """The JIDs a disco#items answer lists, in its order."""
    query = reply.find(q(NS_DISCO_ITEMS, "query"))
    if query is None:
        return ()
    jids = (item.get("jid", "").strip() for item in query.findall(q(NS_DISCO_ITEMS, "item")))
    return tuple(jid for jid in jids if jid)


def read_service(jid: str, reply: ET.Element) -> Service | None:
    """The upload service a disco#info answer describes, or None if it is not one. The
    limit comes from the XEP-0128 form whose FORM_TYPE is the upload namespace."""
    query = reply.find(q(NS_DISCO_INFO, "query"))
    if query is None:
        return None
    features = {f.get("var") for f in query.findall(q(NS_DISCO_INFO, "feature"))}
    if NS_UPLOAD not in features:
        return None
    limit: int | None = None
    for form in query.findall(q(NS_DATA, "x")):
        fields = {
            f.get("var"): (f.findtext(q(NS_DATA, "value")) or "").strip()
            for f in form.findall(q(NS_DATA, "field"))
        }
        if fields.get("FORM_TYPE") != NS_UPLOAD:
            continue
        raw = fields.get("max-file-size", "")
        if raw.isdigit():
            limit = int(raw)
    return Service(jid=jid, max_bytes=limit)


def _http_url(url: str | None) -> str | None:
    if not url:
        return None
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    return url.strip()


def read_slot(reply: ET.Element) -> Slot:
    """The slot in a request's answer; ValueError if it has no usable URLs."""
    slot = reply.find(q(NS_UPLOAD, "slot"))
    if slot is None:
        raise ValueError("no slot in the answer")
    put, get = slot.find(q(NS_UPLOAD, "put")), slot.find(q(NS_UPLOAD, "get"))
    put_url = _http_url(put.get("url") if put is not None else None)
    get_url = _http_url(get.get("url") if get is not None else None)
    if put is None or put_url is None or get_url is None:
        raise ValueError("the slot has no http(s) put and get URLs")
    headers = tuple(
        (name, re.sub(r"[\r\n]", "", header.text or ""))
        for header in put.findall(q(NS_UPLOAD, "header"))
        if (name := header.get("name", "")).lower() in _SLOT_HEADERS
    )
    return Slot(put_url=put_url, get_url=get_url, headers=headers)


def discovery_domain(own_domain: str, *, component: bool) -> str:
    """Where to look for the service: a client asks its account's domain; a component
    (`bridge.example.org`) asks the domain it is a subdomain of, which lists its sibling
    components (`upload.example.org`) in disco#items."""
    if component and own_domain.count(".") >= 1:
        return own_domain.partition(".")[2]
    return own_domain


def file_name(attachment: Attachment) -> str:
    """A file name for the slot: the attachment's name, else the last segment of its
    URL's path, without separators or controls (a slot's name ends up in its URL)."""
    name = attachment.name.strip()
    if not name:
        name = unquote(posixpath.basename(urlsplit(attachment.url).path))
    name = xml_text(_UNSAFE_NAME.sub("_", name)).strip(" .")[-_MAX_NAME:]
    return name or "file"


def limit(service: Service, max_bytes: int) -> int:
    """The largest file to upload: the configured cap, or the service's, if lower."""
    if service.max_bytes is None:
        return max_bytes
    return min(max_bytes, service.max_bytes)


def link_reason(
    attachment: Attachment, *, service: Service | None, max_bytes: int, same_network: bool
) -> str | None:
    """Why `attachment` keeps its original link, or None to re-upload it."""
    if same_network:
        return "already on this network"  # its users can open it where it is
    if service is None:
        return "no upload service"
    if _http_url(attachment.url) is None:
        return "not an http(s) URL"
    if attachment.size is not None and attachment.size > limit(service, max_bytes):
        return "too large"
    return None


def relinked(event: Message, urls: Mapping[str, str]) -> Message:
    """`event` with each attachment (and any mention of it in the text) pointing at its
    uploaded copy; attachments without one keep their link."""
    if not urls:
        return event
    attachments = tuple(
        dataclasses.replace(a, url=urls[a.url]) if a.url in urls else a for a in event.attachments
    )
    text = event.text
    for old, new in urls.items():
        text = text.replace(old, new)
    return dataclasses.replace(event, text=text, attachments=attachments)
