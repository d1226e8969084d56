"""Matrix media for the bridge's signed links (`imbridge.medialinks`), read with the
relay account's token, and the check that tells whether plain links would open at all.

Authenticated media (Matrix 1.11, MSC3916) serves media only to logged-in clients at
`/_matrix/client/v1/media/download`; older homeservers know only the unauthenticated
`/_matrix/media/v3/download`, which is tried when the first is not recognised. Redirects
are never followed: the request carries the account's token, which must not travel to
another host.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import quote, unquote

import aiohttp

from imbridge.adapter import MediaGone, MediaUnavailable
from imbridge.medialinks import MediaLinks, valid_ref

CHUNK = 65536
AUTH_MEDIA_FEATURE = "org.matrix.msc3916.stable"

MediaStream = tuple[str, int | None, AsyncIterator[bytes]]


def advertises_auth_media(versions: dict[str, Any]) -> bool:
    """Whether a `/_matrix/client/versions` answer promises authenticated media."""
    listed = versions.get("versions")
    if isinstance(listed, list) and any(_at_least_1_11(v) for v in listed):
        return True
    features = versions.get("unstable_features")
    return isinstance(features, dict) and features.get(AUTH_MEDIA_FEATURE) is True


def _at_least_1_11(version: object) -> bool:
    if not isinstance(version, str) or not version.startswith("v1."):
        return False
    minor = version[3:]
    return minor.isdigit() and int(minor) >= 11


async def requires_auth(session: aiohttp.ClientSession, homeserver: str) -> bool:
    async with session.get(f"{homeserver}/_matrix/client/versions") as resp:
        if resp.status != 200:
            return False
        body = await resp.json(content_type=None)
    return isinstance(body, dict) and advertises_auth_media(body)


def ref_of(url: str, *, homeserver: str, network: str, links: MediaLinks | None) -> str | None:
    """The `server/media_id` an attachment URL this adapter made stands for (a signed
    bridge link, or the plain download URL used without one); None for any other URL,
    and for a bridge link whose signature does not hold."""
    if links is not None:
        prefix = f"{links.public_url}media/{quote(network, safe='')}/"
        if url.startswith(prefix):
            sig, _, tail = url[len(prefix) :].partition("/")
            request = links.verify(network, sig, unquote(tail))
            return request.ref if request is not None else None
    plain = f"{homeserver.rstrip('/')}/_matrix/media/v3/download/"
    if url.startswith(plain):
        ref = url[len(plain) :]
        return ref if ref.count("/") == 1 and valid_ref(ref) else None
    return None


async def _errcode(resp: aiohttp.ClientResponse) -> str | None:
    try:
        body = await resp.json(content_type=None)
    except (ValueError, aiohttp.ClientError):
        return None
    code = body.get("errcode") if isinstance(body, dict) else None
    return code if isinstance(code, str) else None


@asynccontextmanager
async def download(
    session: aiohttp.ClientSession,
    homeserver: str,
    ref: str,
    token: str | None,
    *,
    timeout: float,
) -> AsyncIterator[MediaStream]:
    """(mimetype, announced size, body chunks) of `server/media_id`; the response stays
    open while the caller streams. MediaGone for a 404, MediaUnavailable otherwise."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    paths = (f"/_matrix/client/v1/media/download/{ref}", f"/_matrix/media/v3/download/{ref}")
    for i, path in enumerate(paths):
        try:
            async with asyncio.timeout(timeout):
                resp = await session.get(homeserver + path, headers=headers,
                                         allow_redirects=False)  # fmt: skip
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise MediaUnavailable(f"matrix media: {type(exc).__name__}: {exc}") from exc
        try:
            if resp.status != 200:
                code = await _errcode(resp)
                # A homeserver before Matrix 1.11 does not know the v1 endpoint.
                if i == 0 and resp.status in (400, 404, 405) and code == "M_UNRECOGNIZED":
                    continue
                if resp.status == 404:
                    raise MediaGone(f"matrix media: {code or 'HTTP 404'}")
                raise MediaUnavailable(f"matrix media: HTTP {resp.status} {code or ''}".rstrip())
            yield (
                resp.content_type or "application/octet-stream",
                resp.content_length,
                _chunks(resp),
            )
            return
        finally:
            resp.release()
    raise MediaUnavailable("matrix media: the homeserver knows no download endpoint")


async def _chunks(resp: aiohttp.ClientResponse) -> AsyncIterator[bytes]:
    try:
        async for chunk in resp.content.iter_chunked(CHUNK):
            yield chunk
    except (aiohttp.ClientError, OSError) as exc:
        raise MediaUnavailable(f"matrix media: {type(exc).__name__}: {exc}") from exc
