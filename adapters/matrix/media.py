"""Attachments from other networks, re-uploaded to the homeserver (`media: upload`).

The download goes through the core's guard (`imbridge.safefetch`): only public addresses,
checked on every redirect hop, unless the origin is in `media_allow_origins`, so a posted
link to an internal service is never fetched and published in the room; such a link is
relayed as text instead. The download is capped at `media_max_bytes` while it streams,
so a hostile or mistaken link can never make the bridge hold more than the cap in memory;
anything larger is refused as a permanent failure (the outbox tells the sender) rather
than truncated.
"""

from __future__ import annotations

from imbridge.adapter import MediaGone, MediaUnavailable
from imbridge.errors import PermanentSendError, RetryableSendError
from imbridge.safefetch import Download, RefusedURL, fetch_capped, normalise_origins

__all__ = ["Download", "LinkOnly", "fetch", "msgtype_for"]


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
