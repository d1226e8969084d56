"""Turns validation errors into `networks.corp-irc.port (line 12): must be an integer`.

Messages never include the offending value: it may be a secret.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, TextIO

from pydantic import ValidationError

from imbridge.errors import ConfigError, ConfigIssue

Loc = tuple[str | int, ...]

_PLAIN = {
    "missing": "is required",
    "extra_forbidden": "unknown key",
    "int_parsing": "must be an integer",
    "int_type": "must be an integer",
    "int_from_float": "must be an integer",
    "float_parsing": "must be a number",
    "float_type": "must be a number",
    "bool_parsing": "must be true or false",
    "bool_type": "must be true or false",
    "string_type": "must be a string",
    "dict_type": "must be a mapping",
    "model_type": "must be a mapping",
    "model_attributes_type": "must be a mapping",
    "list_type": "must be a list",
    "tuple_type": "must be a list",
    "path_type": "must be a path",
}


def format_path(loc: Loc) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def line_of(loc: Loc, lines: Mapping[Loc, int]) -> int | None:
    """The line of `loc`, or of its nearest ancestor that is in the file (a missing key is
    reported at the mapping that lacks it)."""
    for end in range(len(loc), -1, -1):
        if loc[:end] in lines:
            return lines[loc[:end]]
    return None


def _message(err: Mapping[str, Any]) -> str:
    kind = str(err.get("type", ""))
    if kind in _PLAIN:
        return _PLAIN[kind]
    ctx = err.get("ctx") or {}
    if kind == "literal_error" and "expected" in ctx:
        return f"must be {ctx['expected']}"
    if kind == "too_short" and "min_length" in ctx:
        return f"needs at least {ctx['min_length']} item(s)"
    msg = str(err.get("msg", "is invalid"))
    msg = msg.removeprefix("Value error, ")
    return msg[:1].lower() + msg[1:]


def from_validation(
    exc: ValidationError, lines: Mapping[Loc, int], prefix: Loc = ()
) -> list[ConfigIssue]:
    issues = []
    for err in exc.errors(include_input=False, include_url=False):
        loc: Loc = prefix + tuple(err["loc"])
        # pydantic appends the validator's type to some locs (e.g. "function-after");
        # drop parts that are not keys of the file.
        loc = tuple(p for p in loc if not (isinstance(p, str) and "[" in p))
        issues.append(ConfigIssue(format_path(loc), line_of(loc, lines), _message(err)))
    return issues


def issue(loc: Sequence[str | int], lines: Mapping[Loc, int], message: str) -> ConfigIssue:
    key = tuple(loc)
    return ConfigIssue(format_path(key), line_of(key, lines), message)


def ordered(issues: Iterable[ConfigIssue]) -> list[ConfigIssue]:
    """Issues in file order, each once."""
    seen: dict[str, ConfigIssue] = {}
    for i in issues:
        seen.setdefault(str(i), i)
    return sorted(seen.values(), key=lambda i: (i.line or 0, i.path))


def print_config_error(path: object, exc: ConfigError, out: TextIO) -> None:
    """How every command shows an unusable config: one line per issue, file first."""
    for problem in exc.issues:
        print(f"{path}: {problem}", file=out)


def log_config_error(exc: ConfigError, logger: Any) -> None:
    """How the daemon tells the same on a reload: one `config_invalid` line per issue."""
    for problem in exc.issues:
        logger.error("config_invalid", issue=str(problem))
