"""Media both ways: the homeserver's media read with the account's token for the
bridge's signed links and the archive (`MatrixMedia`, over `proxy`), and attachments
from other networks fetched to be re-uploaded to the homeserver (`media: upload`).

The upload's download goes through the core's guard (`imbridge.safefetch`): only public addresses,
checked on every redirect hop, unless the origin is in `media_allow_origins`, so a posted
link to an internal service is never fetched and published in the room; such a link is
relayed as text instead. The download is capped at `media_max_bytes` while it streams,
so a hostile or mistaken link can never make the bridge hold more than the cap in memory;
anything larger is refused as a permanent failure (the outbox tells the sender) rather
than truncated.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import aiohttp

from imbridge.adapter import Media, MediaGone, MediaUnavailable
from imbridge.errors import PermanentSendError, RetryableSendError
from imbridge.events import Attachment
from imbridge.medialinks import MediaLinks
from imbridge.safefetch import Download, RefusedURL, fetch_capped, normalise_origins

from . import proxy
from .config import MatrixConfig
from .proto.attachments import MediaLinker
from .session import Session

__all__ = ["Download", "LinkOnly", "MatrixMedia", "fetch", "msgtype_for"]


class MatrixMedia:
    """The homeserver's media as the bridge serves and archives them; the only owner of
    the HTTP session for media downloads (with its own timeouts)."""

    def __init__(
        self,
        name: str,
        config: MatrixConfig,
        *,
        session: Session,
        links: MediaLinks | None,
        log: Any,
    ) -> None:
        self.name = name
        self.config = config
        self._session = session
        self._links = links
        self._log = log
        self._http: aiohttp.ClientSession | None = None
        self._auth_media_checked = False

    def linker(self) -> MediaLinker | None:
        """How a received attachment is linked: the bridge's signed link, or None for the
        homeserver's plain download URL."""
        links = self._links
        if links is None:
            return None
        return lambda server, media_id, name: links.link(self.name, f"{server}/{media_id}", name)

    def _http_session(self) -> aiohttp.ClientSession:
        if self._http is None or self._http.closed:
            self._http = aiohttp.ClientSession()
        return self._http

    async def check_links(self) -> None:
        """Without signed links, relayed media are plain download URLs, which a homeserver
        with authenticated media (Matrix 1.11) refuses: say so once, with the fix."""
        if self._links is not None or self._auth_media_checked:
            return
        self._auth_media_checked = True
        with contextlib.suppress(aiohttp.ClientError, TimeoutError, OSError, ValueError):
            async with asyncio.timeout(self.config.request_timeout):
                authenticated = await proxy.requires_auth(
                    self._http_session(), self.config.homeserver
                )
            if authenticated:
                self._log.warning(
                    "media_links_will_not_open",
                    reason="the homeserver serves media only to logged-in clients "
                    "(authenticated media), so relayed attachment links will not open",
                    fix="set bridge.http.public_url (and bridge.http.listen) so the bridge "
                    "serves them through signed links",
                )

    def open_attachment(self, attachment: Attachment) -> AbstractAsyncContextManager[Media] | None:
        """For the archive (`AttachmentSource`): media this adapter linked, read with its
        token, so the bytes are kept even where plain download links open for no one."""
        ref = proxy.ref_of(
            attachment.url, homeserver=self.config.homeserver, network=self.name, links=self._links
        )
        return None if ref is None else self.open_media(ref)

    @asynccontextmanager
    async def open_media(self, ref: str) -> AsyncIterator[Media]:
        """Stream `server/media_id` from the homeserver with this account's token."""
        token = self._session.client.access_token
        if self._session.closed or not token:
            raise MediaUnavailable(f"matrix {self.name}: not logged in")
        async with proxy.download(
            self._http_session(), self.config.homeserver, ref, token,
            timeout=self.config.request_timeout,
        ) as (mimetype, size, chunks):  # fmt: skip
            yield Media(mimetype=mimetype, size=size, chunks=chunks,
                        max_bytes=self.config.media_max_bytes)  # fmt: skip

    async def aclose(self) -> None:
        http, self._http = self._http, None
        if http is not None:
            await http.close()


class LinkOnly(Exception):
    """The bridge will not fetch this URL: relay it as a link, with the reason."""


async def fetch(
    url: str, max_bytes: int, timeout: float, allow_origins: tuple[str, ...] = ()
) -> Download:
    """GET `url`, at most `max_bytes`; network trouble is retryable, a refusal not, and a
    URL the guard refuses is `LinkOnly`."""
    try:
        return await fetch_capped(
            url, max_bytes=max_bytes, allow_origins=normalise_origins(allow_origins),
            timeout=timeout,
        )  # fmt: skip
    except RefusedURL as exc:
        raise LinkOnly(str(exc)) from exc
    except MediaGone as exc:
        raise PermanentSendError(f"attachment fetch: {exc}") from exc
    except MediaUnavailable as exc:
        raise RetryableSendError(f"attachment fetch: {exc}") from exc


def msgtype_for(mimetype: str) -> str:
    """The Matrix msgtype a client will render best for a MIME type."""
    major = mimetype.split("/", 1)[0]
    return {"image": "m.image", "video": "m.video", "audio": "m.audio"}.get(major, "m.file")
