"""Exports that carry the attachment bytes, not just their links: a deletion at the
source must not leave the reviewer with a dead URL.

* jsonl: a `files/` folder beside the output file, each file named by the SHA-256 of its
  bytes and referenced from its line (`files[].file`);
* eml: each stored attachment as a MIME part, with its name and type (see `export`);
* zip: one file holding `export.jsonl`, `files/<sha256>` and `manifest.json`, the
  SHA-256 and size of every other member, so the package can be checked on its own.

Every file is decrypted (this needs the archive key) and checked against the digest in
its chained record before it is written; a missing or altered file is left out, named
in `problems` and marked `export_error` on its line, never exported silently.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TextIO

from imbridge.archive.export import Item, stored_files
from imbridge.archive.files import FileStore, FileStoreError

FILES = "files"
ZIP_JSONL = "export.jsonl"
ZIP_MANIFEST = "manifest.json"


class Carrier:
    """Reads stored attachments for an export, checked against their records."""

    def __init__(self, files: FileStore) -> None:
        self.files = files
        self.problems: list[str] = []

    def read(self, entry: dict[str, Any]) -> bytes | None:
        sha = str(entry["sha256"])
        try:
            return self.files.read_checked(self.files.find(sha), sha)
        except (FileStoreError, ValueError) as exc:
            entry["export_error"] = str(exc)
            self.problems.append(f"record {entry.get('seq')}: {exc}")
            return None


def _line(item: Item) -> str:
    return json.dumps(item.as_json(), ensure_ascii=False, sort_keys=True) + "\n"


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".part")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def write_jsonl_files(found: Iterator[Item], out: TextIO, folder: Path, carrier: Carrier) -> int:
    """JSON Lines to `out`, the attachments into `folder` (the `files/` beside it)."""
    n = 0
    for item in found:
        for entry in stored_files(item):
            target = folder / str(entry["sha256"])
            if not target.exists():
                data = carrier.read(entry)
                if data is None:
                    continue
                folder.mkdir(parents=True, exist_ok=True)
                _write_atomic(target, data)
            entry["file"] = f"{FILES}/{entry['sha256']}"
        out.write(_line(item))
        n += 1
    return n


def write_zip(found: Iterator[Item], path: Path, carrier: Carrier) -> int:
    """One zip holding the JSON Lines, the files and a manifest of their digests."""
    members: dict[str, dict[str, Any]] = {}
    n = 0
    with (
        tempfile.TemporaryFile("w+b", dir=path.parent) as lines,
        zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as zf,
    ):
        for item in found:
            for entry in stored_files(item):
                name = f"{FILES}/{entry['sha256']}"
                if name not in members:
                    data = carrier.read(entry)
                    if data is None:
                        continue
                    # Images and archives are compressed already.
                    zf.writestr(name, data, compress_type=zipfile.ZIP_STORED)
                    members[name] = {"sha256": entry["sha256"], "size": len(data)}
                entry["file"] = name
            lines.write(_line(item).encode("utf-8"))
            n += 1
        lines.seek(0)
        digest = hashlib.sha256()
        size = 0
        with zf.open(ZIP_JSONL, "w", force_zip64=True) as member:
            while block := lines.read(1 << 20):
                digest.update(block)
                size += len(block)
                member.write(block)
        members[ZIP_JSONL] = {"sha256": digest.hexdigest(), "size": size}
        manifest = {
            "format": "imbridge-export-1",
            "created": datetime.now(UTC).isoformat(timespec="seconds"),
            "records": n,
            "members": dict(sorted(members.items())),
        }
        zf.writestr(ZIP_MANIFEST, json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    return n
