"""The dependency rules of docs/architecture.md, checked on the source tree:

* `bridge/` (the core) imports no adapter and no protocol library: it learns what a
  network can do from its `Capabilities`, never from its protocol;
* `adapters/<net>/proto/` (sans-I/O translation) imports only the standard library, the
  core's value modules and its own `proto` package: no client library, no sockets, so
  it can be tested and fuzzed without a server.

Every import counts, including those inside functions and `if TYPE_CHECKING:` blocks.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

PROTOCOL_LIBRARIES = ("irc", "jaraco", "slixmpp", "nio", "aioxmpp", "matrix_client")
VALUE_MODULES = (
    "imbridge.events",
    "imbridge.richtext",
    "imbridge.sanitize",
    "imbridge.errors",
    "imbridge.adapter",
    "imbridge.mentions",
)
"""What a translator may take from the core: values and pure functions, no I/O."""


def imports(path: Path, root: Path) -> Iterator[tuple[int, str]]:
    """(line, absolute module name) of every import in one file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    package = _package_of(path, root)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            yield node.lineno, module


def _package_of(path: Path, root: Path) -> str:
    """The installed package a source file belongs to (bridge/ is imbridge, adapters/
    is imbridge.adapters)."""
    rel = path.relative_to(root).with_suffix("").parts
    top = {"bridge": ("imbridge",), "adapters": ("imbridge", "adapters")}.get(rel[0], (rel[0],))
    return ".".join((*top, *rel[1:-1]))


def _within(module: str, prefixes: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def core_violations(root: Path) -> list[str]:
    out = []
    for path in sorted((root / "bridge").rglob("*.py")):
        for line, module in imports(path, root):
            if _within(module, ("imbridge.adapters", *PROTOCOL_LIBRARIES)):
                out.append(f"{path.relative_to(root)}:{line} imports {module}")
    return out


def proto_violations(root: Path) -> list[str]:
    out = []
    for proto in sorted((root / "adapters").glob("*/proto")):
        own = _package_of(proto / "__init__.py", root)
        for path in sorted(proto.rglob("*.py")):
            for line, module in imports(path, root):
                top = module.split(".")[0]
                if top in sys.stdlib_module_names or top == "__future__":
                    continue
                if _within(module, (*VALUE_MODULES, own)):
                    continue
                out.append(f"{path.relative_to(root)}:{line} imports {module}")
    return out


def test_the_core_imports_no_adapter_and_no_protocol_library() -> None:
    assert core_violations(ROOT) == []


def test_every_proto_package_imports_only_the_stdlib_and_core_values() -> None:
    checked = {p.parent.name for p in (ROOT / "adapters").glob("*/proto")}
    # The rule is only worth something while the adapters keep their pure code there.
    assert {"irc", "matrix", "memory"} <= checked
    assert proto_violations(ROOT) == []


def test_the_checks_catch_what_they_forbid(tmp_path: Path) -> None:
    """The rules above pass on the tree as it is; this shows they would fail on a
    breach, including a `proto/` folder that does not exist yet."""
    (tmp_path / "bridge").mkdir()
    (tmp_path / "bridge" / "relay.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from imbridge.adapters.irc import IrcAdapter\n"
        "def f() -> None:\n    import slixmpp\n"
    )
    proto = tmp_path / "adapters" / "chat" / "proto"
    proto.mkdir(parents=True)
    (proto / "__init__.py").write_text("")
    (proto / "translate.py").write_text(
        "import re\nfrom imbridge.events import Message\nfrom . import formatting\n"
        "from imbridge.db import Database\nimport aiohttp\nfrom ..session import Session\n"
    )
    assert core_violations(tmp_path) == [
        "bridge/relay.py:3 imports imbridge.adapters.irc",
        "bridge/relay.py:5 imports slixmpp",
    ]
    assert proto_violations(tmp_path) == [
        "adapters/chat/proto/translate.py:4 imports imbridge.db",
        "adapters/chat/proto/translate.py:5 imports aiohttp",
        "adapters/chat/proto/translate.py:6 imports imbridge.adapters.chat.session",
    ]
