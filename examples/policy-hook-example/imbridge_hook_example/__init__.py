"""Redacts payment card numbers that pass the Luhn check, and only those.

An imbridge policy hook is any object with a `decide(request, destination)` method that
returns a `Verdict`; the entry point names the factory that builds it, called once with
the hook's `options` as keyword arguments. `decide` may be plain (it then runs in a worker
thread) or `async`; it must stay within the hook's `timeout_ms`.
"""

from __future__ import annotations

import re

from imbridge.hooks import Destination, HookRequest, Verdict

# Digits with optional single spaces or hyphens between them; the checksum decides.
CANDIDATE = re.compile(r"(?<!\d)\d(?:[ -]?\d){12,18}(?!\d)")


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        n = int(ch)
        if i % 2 == 1:
            n = n * 2 - 9 if n > 4 else n * 2
        total += n
    return total % 10 == 0


class LuhnCards:
    def __init__(self, min_digits: int = 13, destinations: list[str] | None = None) -> None:
        self.min_digits = min_digits
        self.networks = set(destinations or [])
        """Only these destination networks (all when empty)."""

    def decide(self, request: HookRequest, destination: Destination) -> Verdict:
        if self.networks and destination.network not in self.networks:
            return Verdict.allow()
        spans = []
        for m in CANDIDATE.finditer(request.text):
            digits = re.sub(r"\D", "", m.group())
            if len(digits) >= self.min_digits and luhn_ok(digits):
                spans.append((m.start(), m.end()))
        if spans:
            return Verdict.redact(spans, f"{len(spans)} card number(s)")
        return Verdict.allow()
