"""Attachments from other networks, re-uploaded to the homeserver (`media: upload`).

The download is capped at `media_max_bytes` while it streams, so a hostile or mistaken
link can never make the bridge hold more than the cap in memory; anything larger is
refused as a permanent failure (the outbox tells the sender) rather than truncated.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

import aiohttp

from imbridge.errors import PermanentSendError, RetryableSendError


@dataclass(frozen=True, slots=True)
class Download:
    data: bytes
    mimetype: str


async def fetch_capped(url: str, max_bytes: int, timeout: float) -> Download:
    """GET `url`, at most `max_bytes`; network trouble is retryable, a refusal not."""
    if not url.startswith(("http://", "https://")):
        raise PermanentSendError(f"cannot fetch attachment scheme of {url[:40]!r}")
    try:
        async with (
            asyncio.timeout(timeout),
            aiohttp.ClientSession() as session,
            session.get(url, allow_redirects=True, max_redirects=3) as resp,
        ):
            if resp.status >= 500 or resp.status == 429:
                raise RetryableSendError(f"attachment fetch: HTTP {resp.status}")
            if resp.status != 200:
                raise PermanentSendError(f"attachment fetch: HTTP {resp.status}")
            if resp.content_length is not None and resp.content_length > max_bytes:
                raise PermanentSendError(f"attachment over {max_bytes} bytes")
            chunks: list[bytes] = []
            total = 0
            async for chunk in resp.content.iter_chunked(65536):
                total += len(chunk)
                if total > max_bytes:
                    raise PermanentSendError(f"attachment over {max_bytes} bytes")
                chunks.append(chunk)
            mimetype = resp.content_type or "application/octet-stream"
    except (aiohttp.ClientError, TimeoutError, OSError) as exc:
        raise RetryableSendError(f"attachment fetch: {type(exc).__name__}") from exc
    return Download(b"".join(chunks), mimetype)


def msgtype_for(mimetype: str) -> str:
    """The Matrix msgtype a client will render best for a MIME type."""
    major = mimetype.split("/", 1)[0]
    return {"image": "m.image", "video": "m.video", "audio": "m.audio"}.get(major, "m.file")
