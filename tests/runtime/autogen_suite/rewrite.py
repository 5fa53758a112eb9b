"""Rewrite the ``autogen_core`` imports of a test file to axonbus names (``mapping``).

Each import statement is replaced in place by one line, padded with blank lines, so line
numbers in tracebacks are those of autogen's file. Nothing else in the file changes.

>>> rewrite_imports("from autogen_core import SingleThreadedAgentRuntime, AgentId\\n")
'from axonbus.runtime import AgentRuntime as SingleThreadedAgentRuntime, AgentId\\n'
"""

from __future__ import annotations

import ast

from .mapping import MODULES, NAMES

__all__ = ["UnmappedImport", "rewrite_imports"]

ROOT = "autogen_core"


class UnmappedImport(Exception):
    """An ``autogen_core`` import the table does not cover."""


def _is_autogen(module: str | None) -> bool:
    return module is not None and (module == ROOT or module.startswith(ROOT + "."))


def _target(module: str, where: str) -> str:
    try:
        return MODULES[module]
    except KeyError:
        raise UnmappedImport(
            f"{where}: no axonbus module for {module!r} in mapping.MODULES"
        ) from None


def _alias(name: str, asname: str | None) -> str:
    new = NAMES.get(name, name)
    shown = asname or name
    return new if new == shown else f"{new} as {shown}"


def _replacement(node: ast.Import | ast.ImportFrom, where: str) -> str | None:
    if isinstance(node, ast.ImportFrom):
        if node.level or not _is_autogen(node.module):
            return None
        assert node.module is not None
        target = _target(node.module, where)
        names = ", ".join(_alias(a.name, a.asname) for a in node.names)
        return f"from {target} import {names}"
    if not any(_is_autogen(a.name) for a in node.names):
        return None
    parts = []
    for a in node.names:
        if not _is_autogen(a.name):
            parts.append(f"import {a.name}" + (f" as {a.asname}" if a.asname else ""))
            continue
        if a.asname is None and "." in a.name:
            # "import autogen_core.x" binds "autogen_core": there is no such name to give it
            raise UnmappedImport(f"{where}: 'import {a.name}' without 'as' cannot be mapped")
        parts.append(f"import {_target(a.name, where)} as {a.asname or a.name}")
    return "; ".join(parts)


def rewrite_imports(source: str, filename: str = "<test>") -> str:
    """``source`` with every ``autogen_core`` import pointing at axonbus."""
    tree = ast.parse(source, filename)
    lines = source.splitlines(keepends=True)
    edits: list[tuple[int, int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import | ast.ImportFrom):
            new = _replacement(node, f"{filename}:{node.lineno}")
            if new is not None:
                assert node.end_lineno is not None
                edits.append((node.lineno - 1, node.end_lineno, new))
    for start, end, new in sorted(edits, reverse=True):
        indent = lines[start][: len(lines[start]) - len(lines[start].lstrip())]
        padding = ["\n"] * (end - start - 1)
        lines[start:end] = [f"{indent}{new}\n", *padding]
    return "".join(lines)
