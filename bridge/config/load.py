"""Reads the YAML file keeping each key's line, resolves `${ENV}` and `*_file` secrets,
then validates: the common keys with `schema`, each network with its adapter's model, and
the cross-references between sections. Every issue is collected before raising, so a user
fixes a config in one pass.

Files are read here, at load, never later on the event loop.
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from imbridge import registry
from imbridge.adapter import NetworkConfig
from imbridge.config.report import Loc, from_validation, issue, ordered
from imbridge.config.schema import Config, RawConfig
from imbridge.errors import ConfigError, ConfigIssue

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$\$")
_SECRET_SUFFIXES = ("password", "token", "secret", "_key")


def is_secret_key(key: str) -> bool:
    return key.endswith(_SECRET_SUFFIXES)


class _Reader:
    """Builds plain data from a YAML node tree, recording the line of every key."""

    def __init__(self, env: Mapping[str, str], base: Path) -> None:
        self.env = env
        self.base = base
        self.lines: dict[Loc, int] = {}
        self.issues: list[ConfigIssue] = []
        self._scalars = yaml.SafeLoader("")

    def build(self, node: yaml.Node, loc: Loc) -> Any:
        self.lines.setdefault(loc, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            return self._mapping(node, loc)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*loc, i)) for i, item in enumerate(node.value)]
        value = self._scalars.construct_object(node)
        if isinstance(value, str):
            return self._expand(value, loc)
        return value

    def _mapping(self, node: yaml.MappingNode, loc: Loc) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            key = self._scalars.construct_object(key_node)
            line = key_node.start_mark.line + 1
            if not isinstance(key, str):
                self.issues.append(issue(loc, self.lines, f"key {key!r} must be a string"))
                continue
            if key in out:
                self.issues.append(
                    ConfigIssue(_path((*loc, key)), line, "duplicate key (YAML keeps only one)")
                )
                continue
            self.lines[(*loc, key)] = line
            out[key] = self.build(value_node, (*loc, key))
        self._secret_files(out, loc)
        return out

    def _expand(self, value: str, loc: Loc) -> str:
        def repl(m: re.Match[str]) -> str:
            if m.group(0) == "$$":
                return "$"
            name = m.group(1)
            if name not in self.env:
                self.issues.append(
                    issue(loc, self.lines, f"environment variable {name} is not set")
                )
                return ""
            return self.env[name]

        return _ENV.sub(repl, value)

    def _secret_files(self, data: dict[str, Any], loc: Loc) -> None:
        """`password_file: PATH` stands for `password: <contents of PATH>`."""
        for key in [k for k in data if k.endswith("_file") and is_secret_key(k[:-5])]:
            stem = key[:-5]
            kloc = (*loc, key)
            if stem in data:
                self.issues.append(
                    issue(kloc, self.lines, f"give either {stem} or {key}, not both")
                )
                continue
            raw = data.pop(key)
            if not isinstance(raw, str) or not raw:
                self.issues.append(issue(kloc, self.lines, "must be a file path"))
                continue
            path = Path(raw) if Path(raw).is_absolute() else self.base / raw
            try:
                data[stem] = path.read_text(encoding="utf-8").rstrip("\r\n")
            except OSError as exc:
                reason = exc.strerror or type(exc).__name__
                self.issues.append(issue(kloc, self.lines, f"cannot read {path}: {reason}"))
                continue
            self.lines[(*loc, stem)] = self.lines[kloc]


def _path(loc: Loc) -> str:
    from imbridge.config.report import format_path

    return format_path(loc)


def parse_config(
    text: str, *, env: Mapping[str, str] | None = None, base: Path | None = None,
    source: Path | None = None,
) -> Config:
    """Validates config text; raises ConfigError carrying every issue found."""
    reader = _Reader(os.environ if env is None else env, base or Path.cwd())
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([ConfigIssue("", line, f"invalid YAML: {problem}")]) from None
    if root is None:
        raise ConfigError([ConfigIssue("", None, "the file is empty")])
    if not isinstance(root, yaml.MappingNode):
        raise ConfigError([ConfigIssue("", root.start_mark.line + 1, "must be a mapping")])
    data = reader.build(root, ())
    issues = list(reader.issues)
    lines = reader.lines

    raw: RawConfig | None = None
    try:
        raw = RawConfig.model_validate(data)
    except ValidationError as exc:
        issues += from_validation(exc, lines)

    networks = _networks(data.get("networks"), lines, issues)
    if raw is None:
        raise ConfigError(ordered(issues))
    config = Config(
        bridge=raw.bridge, networks=networks, gateways=raw.gateways, policy=raw.policy,
        archive=raw.archive, source=source,
    )
    issues += _references(config, raw, lines)
    if issues:
        raise ConfigError(ordered(issues))
    return config


def load_config(path: Path | str, *, env: Mapping[str, str] | None = None) -> Config:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise ConfigError([ConfigIssue(str(path), None, f"cannot read: {reason}")]) from None
    config = parse_config(text, env=env, base=path.parent.resolve(), source=path.resolve())
    if not config.bridge.state_dir.is_absolute():
        # A relative state dir is relative to the config file, not to wherever the
        # service manager started us.
        bridge = config.bridge.model_copy(
            update={"state_dir": (path.parent / config.bridge.state_dir).resolve()}
        )
        config = Config(
            bridge=bridge, networks=config.networks, gateways=config.gateways,
            policy=config.policy, archive=config.archive, source=config.source,
        )
    return config


def _networks(
    data: Any, lines: Mapping[Loc, int], issues: list[ConfigIssue]
) -> dict[str, NetworkConfig]:
    out: dict[str, NetworkConfig] = {}
    if not isinstance(data, dict):
        return out
    known = registry.known_types()
    for name, section in data.items():
        loc: Loc = ("networks", name)
        if not isinstance(section, dict):
            continue  # already reported by RawConfig
        kind = section.get("type")
        if not isinstance(kind, str):
            issues.append(issue((*loc, "type"), lines, f"is required: one of {', '.join(known)}"))
            continue
        try:
            model = registry.adapter_class(kind).config_model
        except KeyError:
            issues.append(
                issue((*loc, "type"), lines, f"unknown network type {kind!r}; known: "
                      f"{', '.join(known)}")
            )
            continue
        try:
            out[name] = model.model_validate(section)
        except ValidationError as exc:
            issues += from_validation(exc, lines, loc)
    return out


def _references(config: Config, raw: RawConfig, lines: Mapping[Loc, int]) -> list[ConfigIssue]:
    """What no single section can check: names that point elsewhere, and loops."""
    issues: list[ConfigIssue] = []
    defined = set(config.networks)
    raw_defined = set(raw.networks)
    seen: dict[tuple[str, str], str] = {}
    for gname, gateway in config.gateways.items():
        for i, ref in enumerate(gateway.rooms):
            loc: Loc = ("gateways", gname, "rooms", i)
            if ref.network not in raw_defined:
                issues.append(issue((*loc, "network"), lines,
                                    f"names undefined network {ref.network!r}"))
            key = (ref.network, ref.room)
            if key in seen:
                where = "this gateway" if seen[key] == gname else f"gateway {seen[key]!r}"
                issues.append(issue((*loc, "room"), lines,
                                    f"room {ref.room!r} on {ref.network!r} is already in "
                                    f"{where}; a room may belong to one gateway only, or "
                                    "messages would loop between them"))
            seen.setdefault(key, gname)
        if all(r.direction == "out" for r in gateway.rooms):
            issues.append(issue(("gateways", gname, "rooms"), lines,
                                "no room feeds this gateway (every direction is 'out')"))
    names: dict[str, int] = {}
    for i, rule in enumerate(config.policy.rules):
        loc = ("policy", "rules", i)
        if rule.name in names:
            issues.append(issue((*loc, "name"), lines,
                                f"duplicate rule name {rule.name!r} (first at rules[{names[rule.name]}])"))
        names.setdefault(rule.name, i)
        for side, match in (("from", rule.from_), ("to", rule.to)):
            pattern = match.network
            if not any(fnmatch.fnmatchcase(n, pattern) for n in defined | raw_defined):
                issues.append(issue((*loc, side, "network"), lines,
                                    f"pattern {pattern!r} matches no defined network"))
    return issues
