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

from imbridge.sinks.feed import Shipped

_ENCODER = json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), sort_keys=True)
SD_ID = "imbridge@32473"
"""Structured-data id: name@<private enterprise number>; 32473 is IANA's example PEN
(RFC 5612), the usual choice for software without its own."""
NILVALUE = "-"


def dumps(value: Any) -> str:
    return _ENCODER.encode(value)


def _epoch(when: str) -> float:
    try:
        return datetime.fromisoformat(when).timestamp()
    except ValueError:
        return 0.0


def lines(records: Sequence[Shipped]) -> bytes:
    return "".join(r.json + "\n" for r in records).encode("utf-8")


def hec(records: Sequence[Shipped], host: str) -> bytes:
    out: list[str] = []
    for r in records:
        meta = dumps({"time": _epoch(r.time), "host": host, "source": "imbridge",
                      "sourcetype": f"imbridge:{r.kind}"})  # fmt: skip
        out.append(f'{meta[:-1]},"event":{r.json}}}\n')
    return "".join(out).encode("utf-8")


def bulk(records: Sequence[Shipped]) -> bytes:
    out: list[str] = []
    for r in records:
        ident = f"{r.kind}-{r.seq}" if r.seq is not None else None
        out.append(dumps({"create": {"_id": ident} if ident else {}}))
        out.append(f'{{"@timestamp":{dumps(r.time)},{r.json[1:]}')
    return "".join(line + "\n" for line in out).encode("utf-8")


def _printable(text: str, limit: int) -> str:
    """RFC 5424 header fields: printable US-ASCII without spaces, or the NILVALUE."""
    kept = "".join(c for c in text if 33 <= ord(c) <= 126)[:limit]
    return kept or NILVALUE


def syslog_message(record: Shipped, *, facility: int, app_name: str, host: str) -> bytes:
    severity = 5 if record.action in ("deny", "failed") else 6  # notice, info
    stamp = (record.time or NILVALUE).replace("+00:00", "Z")
    sd = f'[{SD_ID} seq="{record.seq}"]' if record.seq is not None else NILVALUE
    header = (
        f"<{facility * 8 + severity}>1 {stamp} {_printable(host, 255)} "
        f"{_printable(app_name, 48)} {os.getpid()} {_printable(record.kind, 32)} {sd} "
    )
    return header.encode("ascii") + record.json.encode("utf-8")


def octet_counted(message: bytes) -> bytes:
    return f"{len(message)} ".encode("ascii") + message


def hostname() -> str:
    return socket.gethostname()
