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
from imbridge.config.report import Loc, format_path, from_validation, issue, ordered
from imbridge.config.schema import Config, RawConfig
from imbridge.config.secretfile import SecretFileError, read_secret
from imbridge.errors import ConfigError, ConfigIssue

_ENV = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$\$")
MAX_BYTES = 1 << 20
"""A config file is a few kilobytes; anything past a mebibyte is a mistake or an attack."""
MAX_NODES = 100_000
"""Values after alias expansion. A config relaying hundreds of rooms holds a few thousand;
aliases nested ten deep turn a few hundred bytes into millions ("billion laughs")."""
_PLAIN_TAGS = frozenset(
    {
        "tag:yaml.org,2002:map",
        "tag:yaml.org,2002:seq",
    }
)
_SECRET_SUFFIXES = ("password", "token", "secret", "_key", "database_url")
_FILE_STEMS = {"database_url": "database"}
"""`*_file` keys whose value goes to a key of another name: `bridge.database_url_file`
holds the URL of `bridge.database` (the URL carries the password)."""


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
        self._nodes = 0
        self._open: set[int] = set()
        """The collections being built: meeting one again is a recursive alias."""

    def build(self, node: yaml.Node, loc: Loc) -> Any:
        line = node.start_mark.line + 1
        self.lines.setdefault(loc, line)
        self._nodes += 1
        if self._nodes > MAX_NODES:
            raise ConfigError(
                [
                    ConfigIssue(
                        format_path(loc),
                        line,
                        f"more than {MAX_NODES} values once aliases are expanded: "
                        "write the values out, or use fewer nested aliases",
                    )
                ]
            )
        if isinstance(node, yaml.MappingNode | yaml.SequenceNode):
            if id(node) in self._open:
                raise ConfigError(
                    [ConfigIssue(format_path(loc), line, "recursive alias: it contains itself")]
                )
            if node.tag not in _PLAIN_TAGS:
                self.issues.append(ConfigIssue(format_path(loc), line, _tag_problem(node.tag)))
                return None
            self._open.add(id(node))
            try:
                if isinstance(node, yaml.MappingNode):
                    return self._mapping(node, loc)
                return [self.build(item, (*loc, i)) for i, item in enumerate(node.value)]
            finally:
                self._open.discard(id(node))
        try:
            value = self._scalars.construct_object(node)
        except yaml.YAMLError:
            self.issues.append(ConfigIssue(format_path(loc), line, _tag_problem(node.tag)))
            return None
        if isinstance(value, str):
            return self._expand(value, loc)
        return value

    def _mapping(self, node: yaml.MappingNode, loc: Loc) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key_node, value_node in node.value:
            line = key_node.start_mark.line + 1
            if not isinstance(key_node, yaml.ScalarNode):
                self.issues.append(ConfigIssue(format_path(loc), line, "keys must be strings"))
                continue
            try:
                key = self._scalars.construct_object(key_node)
            except yaml.YAMLError:
                self.issues.append(ConfigIssue(format_path(loc), line, _tag_problem(key_node.tag)))
                continue
            if not isinstance(key, str):
                self.issues.append(issue(loc, self.lines, f"key {key!r} must be a string"))
                continue
            if key in out:
                self.issues.append(
                    ConfigIssue(
                        format_path((*loc, key)), line, "duplicate key (YAML keeps only one)"
                    )
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
            stem = _FILE_STEMS.get(key[:-5], key[:-5])
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
                secret = read_secret(path, credentials=self.env.get("CREDENTIALS_DIRECTORY"))
                data[stem] = secret.decode("utf-8").rstrip("\r\n")
            except SecretFileError as exc:
                self.issues.append(issue(kloc, self.lines, str(exc)))
                continue
            except UnicodeDecodeError:
                self.issues.append(issue(kloc, self.lines, f"{path} is not UTF-8 text"))
                continue
            self.lines[(*loc, stem)] = self.lines[kloc]


def _tag_problem(tag: str) -> str:
    return f"unsupported YAML tag {tag!r}: only plain strings, numbers, booleans, lists and maps"


def parse_config(
    text: str,
    *,
    env: Mapping[str, str] | None = None,
    base: Path | None = None,
    source: Path | None = None,
) -> Config:
    """Validates config text; raises ConfigError carrying every issue found."""
    reader = _Reader(os.environ if env is None else env, base or Path.cwd())
    if len(text) > MAX_BYTES:
        raise ConfigError(
            [ConfigIssue("", None, f"the file is larger than {MAX_BYTES} bytes: not a config")]
        )
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except RecursionError:
        raise ConfigError([ConfigIssue("", None, "values nested too deeply")]) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([ConfigIssue("", line, f"invalid YAML: {problem}")]) from None
    if root is None:
        raise ConfigError([ConfigIssue("", None, "the file is empty")])
    if not isinstance(root, yaml.MappingNode):
        raise ConfigError([ConfigIssue("", root.start_mark.line + 1, "must be a mapping")])
    try:
        data = reader.build(root, ())
    except RecursionError:
        raise ConfigError([ConfigIssue("", None, "values nested too deeply")]) from None
    issues = list(reader.issues)
    lines = reader.lines

    raw: RawConfig | None = None
    try:
        raw = RawConfig.model_validate(data, context={"base": reader.base})
    except ValidationError as exc:
        issues += from_validation(exc, lines)
        # Validate again without the broken sections, so cross-references between the
        # sound ones are still checked and reported in this same pass.
        broken = {err["loc"][0] for err in exc.errors() if err["loc"]}
        if not broken & {"networks", "gateways"}:
            try:
                raw = RawConfig.model_validate(
                    {k: v for k, v in data.items() if k not in broken},
                    context={"base": reader.base},
                )
            except ValidationError:
                raw = None

    networks = _networks(data.get("networks"), lines, issues)
    if raw is None:
        raise ConfigError(ordered(issues))
    config = Config(
        bridge=raw.bridge,
        networks=networks,
        gateways=raw.gateways,
        policy=raw.policy,
        archive=raw.archive,
        source=source,
        console=raw.console,
    )
    issues += _references(config, raw, lines)
    if issues:
        raise ConfigError(ordered(issues))
    return config


def load_config(path: Path | str, *, env: Mapping[str, str] | None = None) -> Config:
    path = Path(path)
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_BYTES + 1)  # never read a huge file whole
        text = raw.decode("utf-8")
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
            bridge=bridge,
            networks=config.networks,
            gateways=config.gateways,
            policy=config.policy,
            archive=config.archive,
            source=config.source,
            console=config.console,
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
            model = registry.config_model(kind)
        except KeyError:
            issues.append(
                issue(
                    (*loc, "type"),
                    lines,
                    f"unknown network type {kind!r}; known: {', '.join(known)}",
                )
            )
            continue
        except Exception as exc:  # noqa: BLE001 - a broken plugin is a config-time error
            issues.append(
                issue((*loc, "type"), lines, f"the {kind!r} adapter failed to load: {exc}")
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
                issues.append(
                    issue((*loc, "network"), lines, f"names undefined network {ref.network!r}")
                )
            key = (ref.network, ref.room)
            if key in seen:
                where = "this gateway" if seen[key] == gname else f"gateway {seen[key]!r}"
                issues.append(
                    issue(
                        (*loc, "room"),
                        lines,
                        f"room {ref.room!r} on {ref.network!r} is already in "
                        f"{where}; a room may belong to one gateway only, or "
                        "messages would loop between them",
                    )
                )
            seen.setdefault(key, gname)
        if all(r.direction == "out" for r in gateway.rooms):
            issues.append(
                issue(
                    ("gateways", gname, "rooms"),
                    lines,
                    "no room feeds this gateway (every direction is 'out')",
                )
            )
    issues += _policy_references(config, defined | raw_defined, lines)
    return issues


def _policy_references(
    config: Config, networks: set[str], lines: Mapping[Loc, int]
) -> list[ConfigIssue]:
    """Rule and barrier names are unique together (a decision carries one), groups named
    by rules and barriers exist, and every network glob matches some network: a typo in a
    deny rule must not silently deny nothing."""
    policy = config.policy
    issues = _policy_names(config, lines)

    def network_glob(loc: Loc, pattern: str) -> None:
        if not any(fnmatch.fnmatchcase(n, pattern) for n in networks):
            issues.append(
                issue((*loc, "network"), lines, f"pattern {pattern!r} matches no defined network")
            )

    def group_ref(loc: Loc, name: str | None) -> None:
        if name is not None and name not in policy.groups:
            issues.append(issue(loc, lines, f"names undefined group {name!r} (policy.groups)"))

    for gname, members in policy.groups.items():
        for j, member in enumerate(members):
            network_glob(("policy", "groups", gname, j), member.network)
    for i, barrier in enumerate(policy.barriers):
        for j, group in enumerate(barrier.between):
            group_ref(("policy", "barriers", i, "between", j), group)
        if barrier.between[0] == barrier.between[1]:
            issues.append(
                issue(
                    ("policy", "barriers", i, "between"),
                    lines,
                    "a barrier needs two different groups",
                )
            )
    for i, rule in enumerate(policy.rules):
        for side, match in (("from", rule.from_), ("to", rule.to)):
            network_glob(("policy", "rules", i, side), match.network)
            group_ref(("policy", "rules", i, side, "group"), match.group)
    return issues


def _policy_names(config: Config, lines: Mapping[Loc, int]) -> list[ConfigIssue]:
    issues: list[ConfigIssue] = []
    names: dict[str, str] = {"default": "the default decision"}
    named: list[tuple[Loc, str, str]] = []
    for i, barrier in enumerate(config.policy.barriers):
        named.append((("policy", "barriers", i, "name"), barrier.name, f"barriers[{i}]"))
    for i, rule in enumerate(config.policy.rules):
        named.append((("policy", "rules", i, "name"), rule.name, f"rules[{i}]"))
    for loc, name, where in named:
        if name in names:
            issues.append(issue(loc, lines, f"duplicate name {name!r} (first at {names[name]})"))
        names.setdefault(name, where)
    holds: set[str] = set()
    for i, hold in enumerate(config.archive.legal_hold):
        if hold.name in holds:
            issues.append(
                issue(
                    ("archive", "legal_hold", i, "name"),
                    lines,
                    f"duplicate legal hold name {hold.name!r}",
                )
            )
        holds.add(hold.name)
    return issues
