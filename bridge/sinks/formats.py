"""How records are written on each kind of sink: pure functions from record dicts to
bytes, no I/O.

* `lines`: one JSON object per line (what Vector, Fluent Bit, Filebeat and Logstash read).
* `hec`: Splunk's HTTP Event Collector, JSON objects one after another, the record under
  `event` and its time as epoch seconds.
* `bulk`: Elasticsearch's `_bulk` API, a `create` action line before each record, the
  record with `@timestamp` (and its chain `seq` as `_id`, so a batch sent twice after an
  outage is not indexed twice).
* syslog: RFC 5424 messages, the record as JSON in MSG, its kind as MSGID and its
  sequence number as structured data, framed by octet counting over TCP (RFC 6587
  section 3.4.1).
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Sequence
from datetime import datetime
from typing import Any

_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), sort_keys=True)
SD_ID = "imbridge@32473"
"""Structured-data id: name@<private enterprise number>; 32473 is IANA's example PEN
(RFC 5612), the usual choice for software without its own."""
NILVALUE = "-"


def dumps(record: dict[str, Any]) -> str:
    return _ENCODER.encode(record)


def _epoch(record: dict[str, Any]) -> float:
    when = record.get("time") or record.get("at")
    try:
        return datetime.fromisoformat(str(when)).timestamp()
    except ValueError:
        return 0.0


def lines(records: Sequence[dict[str, Any]]) -> bytes:
    return "".join(dumps(r) + "\n" for r in records).encode("utf-8")


def hec(records: Sequence[dict[str, Any]], host: str) -> bytes:
    return "".join(
        dumps(
            {
                "time": _epoch(r),
                "host": host,
                "source": "imbridge",
                "sourcetype": f"imbridge:{r['kind']}",
                "event": r,
            }
        )
        + "\n"
        for r in records
    ).encode("utf-8")


def bulk(records: Sequence[dict[str, Any]]) -> bytes:
    out: list[str] = []
    for r in records:
        ident = f"{r['kind']}-{r['seq']}" if "seq" in r else None
        out.append(dumps({"create": {"_id": ident} if ident else {}}))
        out.append(dumps({"@timestamp": r.get("time") or r.get("at"), **r}))
    return "".join(line + "\n" for line in out).encode("utf-8")


def _printable(text: str, limit: int) -> str:
    """RFC 5424 header fields: printable US-ASCII without spaces, or the NILVALUE."""
    kept = "".join(c for c in text if 33 <= ord(c) <= 126)[:limit]
    return kept or NILVALUE


def syslog_message(record: dict[str, Any], *, facility: int, app_name: str, host: str) -> bytes:
    severity = 5 if record.get("action") in ("deny", "failed") else 6  # notice, info
    stamp = str(record.get("time") or record.get("at") or NILVALUE).replace("+00:00", "Z")
    seq = record.get("seq")
    sd = f'[{SD_ID} seq="{seq}"]' if isinstance(seq, int) else NILVALUE
    header = (
        f"<{facility * 8 + severity}>1 {stamp} {_printable(host, 255)} "
        f"{_printable(app_name, 48)} {os.getpid()} {_printable(str(record['kind']), 32)} {sd} "
    )
    return header.encode("ascii") + dumps(record).encode("utf-8")


def octet_counted(message: bytes) -> bytes:
    return f"{len(message)} ".encode("ascii") + message


def hostname() -> str:
    return socket.gethostname()
