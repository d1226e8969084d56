"""Re-upload of attachments to the server's HTTP File Upload service (XEP-0363): the I/O.

For each attachment of an outgoing message: find the service once per session (disco),
download the file with a cap while it streams, ask the service for a slot, PUT the bytes
there, and hand back the URL the server will serve it at. A message is never held back
or lost for an attachment: whatever goes wrong (no service, too large, the download or
the upload fails, the time is up) leaves that attachment's original link in place. The
download goes through the core's guard (`imbridge.safefetch`): a link to a loopback,
private or link-local address (or a redirect to one) is never fetched, unless its origin
is in `media_allow_origins`, so nobody can make the bridge publish an internal page in
the room. The decisions are in `uploads`; this module only moves bytes and stanzas.
"""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from typing import Any

import aiohttp
from slixmpp.exceptions import IqError, IqTimeout
from slixmpp.stanza import Iq

from imbridge.adapter import MediaGone, MediaUnavailable
from imbridge.events import Attachment, Message
from imbridge.safefetch import Download, fetch_capped, normalise_origins

from .config import XmppConfig
from .proto.uploads import (
    Service,
    Slot,
    file_name,
    info_query,
    items_query,
    limit,
    link_reason,
    read_items,
    read_service,
    read_slot,
    relinked,
    slot_request,
)

IQ_TIMEOUT = 10.0
PARALLEL = 4
"""Files copied at once per adapter: each is held whole in memory, up to the cap."""
_OCTETS = "application/octet-stream"


class LinkInstead(Exception):
    """This attachment goes as its original link; the message says why."""


_FAILURES = (
    LinkInstead,
    MediaGone,
    MediaUnavailable,
    aiohttp.ClientError,
    OSError,
    TimeoutError,
    IqError,
    IqTimeout,
    ValueError,
)


class Uploader:
    """One adapter's uploads: its HTTP session and what it found out about the service."""

    def __init__(self, config: XmppConfig, *, log: Any) -> None:
        self.config = config
        self._log = log
        self._http: aiohttp.ClientSession | None = None
        self._service: Service | None = None
        self._looked = False  # a disco answer said what the service is, or that there is none
        self._parallel = asyncio.Semaphore(PARALLEL)
        self._allowed = normalise_origins(config.media_allow_origins)

    def forget(self) -> None:
        """A new session: the server may have been reconfigured; ask again when needed."""
        self._service, self._looked = None, False

    async def aclose(self) -> None:
        http, self._http = self._http, None
        if http is not None:
            await http.close()

    async def relink(
        self, client: Any, event: Message, *, network: str, sender: str | None, domain: str
    ) -> Message:
        """`event` with its attachments copied to the upload service where possible, all
        within `media_timeout`; what is not copied by then keeps its link."""
        urls: dict[str, str] = {}
        try:
            async with asyncio.timeout(self.config.media_timeout):
                for attachment in event.attachments:
                    if attachment.url not in urls:
                        same = event.origin.network == network
                        copy = await self._copied(client, attachment, same, sender, domain)
                        if copy is not None:
                            urls[attachment.url] = copy
        except TimeoutError:
            self._log.warning("attachment_linked", reason="media_timeout passed")
        return relinked(event, urls)

    async def _copied(
        self, client: Any, attachment: Attachment, same: bool, sender: str | None, domain: str
    ) -> str | None:
        """The uploaded copy's URL, or None (logged with the reason) to keep the link."""
        service = None if same else await self._find(client, sender, domain)
        reason = link_reason(attachment, service=service, same_network=same,
                             max_bytes=self.config.media_max_bytes)  # fmt: skip
        if reason is not None or service is None:
            self._log.debug("attachment_linked", reason=reason)
            return None
        try:
            async with self._parallel:
                return await self._copy(client, service, sender, attachment)
        except _FAILURES as exc:
            self._log.warning("attachment_linked", reason=_why(exc))
            return None

    async def _copy(
        self, client: Any, service: Service, sender: str | None, attachment: Attachment
    ) -> str:
        got = await self._download(attachment.url, limit(service, self.config.media_max_bytes))
        mimetype = attachment.mimetype if attachment.mimetype != _OCTETS else got.mimetype
        request = slot_request(
            client.new_id(), service.jid, sender, filename=file_name(attachment),
            size=len(got.data), mimetype=mimetype,
        )  # fmt: skip
        slot = read_slot(await _ask(client, request))
        await self._put(slot, got.data, mimetype)
        self._log.debug("attachment_uploaded", size=len(got.data), service=service.jid)
        return slot.get_url

    def _session(self) -> aiohttp.ClientSession:
        if self._http is None:
            self._http = aiohttp.ClientSession()
        return self._http

    async def _download(self, url: str, max_bytes: int) -> Download:
        """GET `url` through the guard, refusing it as soon as it is known to pass
        `max_bytes`, so a hostile or mistaken link can never make the bridge hold more
        than the cap."""
        return await fetch_capped(
            url, max_bytes=max_bytes, allow_origins=self._allowed,
            timeout=self.config.media_timeout,
        )  # fmt: skip

    async def _put(self, slot: Slot, data: bytes, mimetype: str) -> None:
        headers = {**dict(slot.headers), "Content-Type": mimetype}
        async with self._session().put(slot.put_url, data=data, headers=headers) as resp:
            if resp.status not in (200, 201):
                raise LinkInstead(f"upload: HTTP {resp.status}")

    async def _find(self, client: Any, sender: str | None, domain: str) -> Service | None:
        """The upload service: the configured one, else the domain itself or one of its
        disco items that offers the upload feature. A definite answer is kept for the
        session; a timeout is asked again with the next attachment."""
        if self._looked:
            return self._service
        try:
            if self.config.upload_service is not None:
                found = await self._info(client, sender, self.config.upload_service)
            else:
                found = await self._info(client, sender, domain)
                if found is None:
                    reply = await _ask(client, items_query(client.new_id(), domain, sender))
                    for jid in read_items(reply):
                        if (found := await self._info(client, sender, jid)) is not None:
                            break
        except (IqError, IqTimeout) as exc:
            self._log.warning("upload_service_unknown", error=_why(exc))
            return None
        self._service, self._looked = found, True
        self._log.info("upload_service", service=found.jid if found else None,
                       max_bytes=found.max_bytes if found else None)  # fmt: skip
        return found

    async def _info(self, client: Any, sender: str | None, jid: str) -> Service | None:
        try:
            reply = await _ask(client, info_query(client.new_id(), jid, sender))
        except IqError:
            return None  # that JID does not answer disco#info: not a service
        return read_service(jid, reply)


async def _ask(client: Any, request: ET.Element) -> ET.Element:
    """Sends an IQ get and returns the result's element; IqError for an error answer."""
    iq = Iq(client, xml=request)  # type: ignore[no-untyped-call]  # slixmpp
    reply = await iq.send(timeout=IQ_TIMEOUT)  # type: ignore[no-untyped-call]  # slixmpp
    element: ET.Element = reply.xml
    return element


def _why(exc: BaseException) -> str:
    if isinstance(exc, IqError):
        return f"{exc.condition}: {exc.text}".rstrip(": ")
    if isinstance(exc, IqTimeout):
        return "no answer from the upload service"
    return str(exc) or type(exc).__name__
