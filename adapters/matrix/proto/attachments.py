"""Matrix media as attachments other networks can open: an `mxc://server/id` URI
(Matrix spec, "Matrix Content (mxc://) URIs") becomes an HTTP link, the bridge's signed
one when it serves media, and attachments go out as text lines where media cannot.
Pure functions, no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from imbridge.events import Attachment
from imbridge.sanitize import clean_nick

MediaLinker = Callable[[str, str, str], str]
"""(server name, media id, file name) -> the link to relay: the bridge's signed link
when `bridge.http.public_url` is set (see `imbridge.medialinks`)."""

# Matrix spec, "Server Name" and "Matrix Content (mxc://) URIs".
_SERVER_NAME = re.compile(r"[A-Za-z0-9.-]+(:[0-9]{1,5})?|\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?")
_MEDIA_ID = re.compile(r"[A-Za-z0-9_-]+")


def mxc_parts(mxc: str) -> tuple[str, str] | None:
    """(server name, media id) of an `mxc://server/id` URI, or None if malformed."""
    if not mxc.startswith("mxc://"):
        return None
    server, _, media_id = mxc[6:].partition("/")
    if not _SERVER_NAME.fullmatch(server) or ".." in server or server == ".":
        return None
    if not _MEDIA_ID.fullmatch(media_id):
        return None
    return server, media_id


def media_url(homeserver: str, mxc: str) -> str | None:
    """A plain HTTP download URL for an `mxc://server/id` URI, or None if malformed.
    Homeservers with authenticated media (Matrix 1.11) refuse it to anyone but clients."""
    parts = mxc_parts(mxc)
    if parts is None:
        return None
    return f"{homeserver}/_matrix/media/v3/download/{parts[0]}/{parts[1]}"


def attachment(
    content: dict[str, Any], homeserver: str, link: MediaLinker | None
) -> Attachment | None:
    url = content.get("url")
    if not isinstance(url, str):
        return None
    parts = mxc_parts(url)
    if parts is None:
        return None
    info = content.get("info")
    info = info if isinstance(info, dict) else {}
    name = content.get("filename") or content.get("body") or ""
    clean = clean_nick(name)[:255] if isinstance(name, str) and name else ""
    if link is not None:
        http = link(parts[0], parts[1], clean)
    else:
        http = f"{homeserver}/_matrix/media/v3/download/{parts[0]}/{parts[1]}"
    mimetype = info.get("mimetype")
    size = info.get("size")
    return Attachment(
        url=http,
        name=clean,
        mimetype=mimetype if isinstance(mimetype, str) and mimetype else "application/octet-stream",
        size=size if isinstance(size, int) and size >= 0 else None,
    )


def attachment_lines(attachments: tuple[Attachment, ...]) -> str:
    """Attachments as text lines, for `media: link` and for readers without media."""
    return "\n".join(f"{a.name}: {a.url}" if a.name else a.url for a in attachments)
