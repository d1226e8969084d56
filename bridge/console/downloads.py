"""What leaves the console as a file: captured attachments, exports of a search result,
and the console's own static assets.

An attachment is read from the archive's file store and checked against the digest in
its `file` record before a byte is sent; it is served under a sandboxing CSP, inline only
for the types a browser shows as media or text (`endpoints.INLINE_TYPES`), so no
captured file can act as a page of the console. An export is the search's hits (up to
`EXPORT_LIMIT`), written by the archive's own exporters, and recorded before it is sent.
"""

from __future__ import annotations

import asyncio
import io
import tempfile
import zipfile
from pathlib import Path

from aiohttp import web

from imbridge.archive.export import items, write_eml, write_jsonl
from imbridge.archive.exportfiles import Carrier, write_zip
from imbridge.archive.files import FileStoreError
from imbridge.archive.search import search
from imbridge.commands.archive import filters_of
from imbridge.console.app import CONSOLE, HERE, allow, render, signed_in
from imbridge.console.pages import search_form
from imbridge.console.users import Role, User
from imbridge.db import Conn
from imbridge.endpoints import content_disposition

EXPORT_LIMIT = 10_000
STATIC_TYPES = {".css": "text/css", ".js": "text/javascript", ".svg": "image/svg+xml"}


def _user(request: web.Request) -> User:
    return signed_in(request)


@allow(None)
async def static(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    path = HERE / "static" / name
    if "/" in name or name.startswith(".") or path.suffix not in STATIC_TYPES or not path.is_file():
        raise web.HTTPNotFound()
    return web.Response(
        body=await asyncio.to_thread(path.read_bytes),
        content_type=STATIC_TYPES[path.suffix],
        headers={"Cache-Control": "private, max-age=3600"},
    )


@allow(Role.REVIEWER, api=True)
async def attachment(request: web.Request) -> web.StreamResponse:
    console = request.app[CONSOLE]
    seq = int(request.match_info["seq"])

    def body(conn: Conn) -> dict[str, object] | None:
        row = next(console.store.rows(conn, "WHERE seq = ? AND kind = 'file'", (seq,)), None)
        return None if row is None else console.store.body(row.record)

    found = await console.db.read(body)
    sha = str(found.get("sha256") or "") if found else ""
    if found is None or not sha:
        raise web.HTTPNotFound(text="no stored file for this record\n")
    try:
        data = await asyncio.to_thread(console.files.read_checked, console.files.file_id(sha), sha)
    except (FileStoreError, ValueError, OSError) as exc:
        raise web.HTTPNotFound(text=f"the stored file is missing or altered: {exc}\n") from None
    await console.accessed(_user(request), "download", {"file_record": seq, "sha256": sha}, 1)
    mimetype = str(
        found.get("served_mimetype") or found.get("mimetype") or "application/octet-stream"
    )
    mimetype = mimetype.split(";", 1)[0].strip().lower() or "application/octet-stream"
    name = str(found.get("name") or sha)
    disposition = content_disposition(mimetype, name)
    if request.query.get("download"):
        disposition = "attachment" + disposition[disposition.index(";") :]
    return web.Response(
        body=data,
        headers={
            "Content-Type": mimetype,
            "Content-Disposition": disposition,
            "Content-Security-Policy": "sandbox; default-src 'none'",
        },
    )


@allow(Role.AUDITOR, api=True)
async def export(request: web.Request) -> web.StreamResponse:
    console = request.app[CONSOLE]
    fmt = request.query.get("format", "jsonl")
    if fmt not in ("jsonl", "eml", "zip"):
        return render(
            request,
            "error.html",
            status=400,
            title="Export",
            message="format: use jsonl, eml or zip",
        )
    try:
        form = search_form(request.query, limit=EXPORT_LIMIT)
    except ValueError as exc:
        return render(request, "error.html", status=400, title="Export", message=str(exc))
    await console.db.transact(console.store.index_pending, background=True)
    carrier = Carrier(console.files)

    def write(conn: Conn) -> tuple[bytes, int]:
        hits = search(conn, console.store, form.query)
        found = items(conn, console.store, form.query, seqs=[h.seq for h in hits])
        if fmt == "jsonl":
            text = io.StringIO()
            n = write_jsonl(found, text)
            return text.getvalue().encode("utf-8"), n
        with tempfile.TemporaryDirectory(prefix="imbridge-export-") as tmp:
            folder = Path(tmp)
            if fmt == "zip":
                n = write_zip(found, folder / "export.zip", carrier)
                return (folder / "export.zip").read_bytes(), n
            n = write_eml(found, folder / "eml", carrier.read)
            buffer = io.BytesIO()
            with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
                for path in sorted((folder / "eml").glob("*.eml")):
                    zf.write(path, path.name)
            return buffer.getvalue(), n

    data, n = await console.db.read(write, background=True)
    query = {**filters_of(form.query), "format": fmt, "left_out": carrier.problems or None}
    await console.accessed(_user(request), "export", query, n)
    name = {"jsonl": "export.jsonl", "zip": "export.zip", "eml": "export-eml.zip"}[fmt]
    kind = "application/x-ndjson" if fmt == "jsonl" else "application/zip"
    return web.Response(
        body=data,
        headers={
            "Content-Type": kind,
            "Content-Disposition": f'attachment; filename="{name}"',
        },
    )
