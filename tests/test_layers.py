"""The package's layers import one way only, and plugins use only the Bus's public surface.

Layers, lowest first (docs/layout.md, "Layers"): vocabulary, transports, engine, plugins,
composition. A module may import from its own layer or a lower one, never from above: not in a
function, not under ``TYPE_CHECKING`` (a type a lower layer needs from above is a protocol
defined down there). Every ``import`` and ``from`` counts, relative or absolute.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "axonbus"

VOCABULARY, TRANSPORTS, ENGINE, PLUGINS, COMPOSITION = range(5)
NAMES = ["vocabulary", "transports", "engine", "plugins", "composition"]

#: modules of the package root, by layer (subpackages are placed whole, below)
ROOT_MODULES = {
    VOCABULARY: {
        "_exceptions", "_topics", "_events", "_codec", "_cloudevents", "_retry", "_system_events",
        "_redact", "_version", "_config", "_config_errors", "_config_schema", "_config_vars",
        "_config_yaml",
    },
    PLUGINS: {"sync", "asyncapi"},
    COMPOSITION: {"__init__", "_compose", "cli", "_demo", "_cli_log", "_cli_dead_letters",
                  "_cli_asyncapi"},
}  # fmt: skip
SUBPACKAGES = {
    "transports": TRANSPORTS,
    "_engine": ENGINE,
    "testing": PLUGINS,
    "channels": PLUGINS,
    "agent": PLUGINS,
    "runtime": PLUGINS,
    "observability": PLUGINS,
    "integrations": PLUGINS,
    "gateway": PLUGINS,
}
#: modules inside a subpackage that belong to another layer than their subpackage
EXCEPTIONS = {"axonbus.gateway._cli": COMPOSITION}  # `axonbus serve`: the CLI builds the app


@dataclass(frozen=True)
class Import:
    importer: str
    imported: str
    line: int
    type_only: bool
    in_function: bool


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts.pop()
    return ".".join(parts)


def layer_of(module: str) -> int:
    if module in EXCEPTIONS:
        return EXCEPTIONS[module]
    parts = module.split(".")
    if module == "axonbus":
        return COMPOSITION
    if parts[1] in SUBPACKAGES:
        return SUBPACKAGES[parts[1]]
    for layer, names in ROOT_MODULES.items():
        if parts[1] in names:
            return layer
    raise AssertionError(f"{module} has no layer: add it to tests/test_layers.py")


def _lines_under(tree: ast.AST, inside: type[ast.AST] | tuple[type[ast.AST], ...]) -> set[int]:
    """Lines within the bodies of ``inside`` nodes (an ``if TYPE_CHECKING:``, a function)."""
    lines: set[int] = set()
    for node in ast.walk(tree):
        if not isinstance(node, inside):
            continue
        if isinstance(node, ast.If):
            test = node.test
            name = test.attr if isinstance(test, ast.Attribute) else getattr(test, "id", "")
            if name != "TYPE_CHECKING":
                continue
        for child in getattr(node, "body", []):
            for sub in ast.walk(child):
                if hasattr(sub, "lineno"):
                    lines.add(sub.lineno)
    return lines


def _resolve(importer: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = importer.split(".")
    if not is_package:
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _known(name: str, modules: set[str]) -> str | None:
    """The innermost package module ``name`` lies in (``axonbus.x.y`` -> ``axonbus.x``)."""
    while name and name not in modules:
        name = name.rpartition(".")[0]
    return name or None


def imports_of(path: Path, modules: set[str]) -> list[Import]:
    importer = module_name(path)
    tree = ast.parse(path.read_text(encoding="utf-8"))
    type_only = _lines_under(tree, ast.If)
    in_function = _lines_under(tree, (ast.FunctionDef, ast.AsyncFunctionDef))
    found = []
    for node in ast.walk(tree):
        targets: list[str] = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = _resolve(importer, path.name == "__init__.py", node)
            # `from . import channels` imports the module axonbus.channels
            targets = [f"{base}.{a.name}" for a in node.names]
        for name in targets:
            target = _known(name, modules)
            if target is not None:
                line = node.lineno
                found.append(Import(importer, target, line, line in type_only, line in in_function))
    return found


def package_imports() -> list[Import]:
    paths = sorted(SRC.rglob("*.py"))
    modules = {module_name(p) for p in paths}
    return [i for p in paths for i in imports_of(p, modules)]


def upward_imports(imports: list[Import]) -> list[str]:
    bad = []
    for imp in imports:
        low, high = layer_of(imp.importer), layer_of(imp.imported)
        if high <= low:
            continue
        where = "under TYPE_CHECKING " if imp.type_only else ""
        bad.append(
            f"{imp.importer} ({NAMES[low]}) imports {imp.imported} ({NAMES[high]}) "
            f"{where}at line {imp.line}"
        )
    return bad


def test_every_module_has_a_layer() -> None:
    for path in SRC.rglob("*.py"):
        layer_of(module_name(path))


def test_nothing_imports_upward() -> None:
    bad = upward_imports(package_imports())
    assert not bad, "imports against the layers:\n" + "\n".join(bad)


def test_an_upward_import_is_reported() -> None:
    """The check itself: a vocabulary module naming the Bus for type checkers fails it."""
    imp = Import("axonbus._topics", "axonbus._engine.bus", 7, type_only=True, in_function=False)
    assert upward_imports([imp]) == [
        "axonbus._topics (vocabulary) imports axonbus._engine.bus (engine) "
        "under TYPE_CHECKING at line 7"
    ]


def test_an_upward_import_inside_a_function_is_reported() -> None:
    """A call-time import reaches up all the same: ``Bus.from_config`` importing the
    composition layer inside the method would fail the check."""
    imp = Import("axonbus._engine.bus", "axonbus._compose", 121, type_only=False, in_function=True)
    assert upward_imports([imp]) == [
        "axonbus._engine.bus (engine) imports axonbus._compose (composition) at line 121"
    ]


def test_the_package_is_imported_only_from_the_top() -> None:
    """``from axonbus import Event`` inside the package ties every module to every other."""
    bad = [
        f"{i.importer} line {i.line}"
        for i in package_imports()
        if i.imported == "axonbus" and layer_of(i.importer) != COMPOSITION
    ]
    assert not bad, "import from the defining module, not the package:\n" + "\n".join(bad)


# -- private attributes ------------------------------------------------------------------------


def _subpackage(module: str) -> str:
    """``axonbus.gateway._app`` -> ``gateway``; the package root's modules -> ``""``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 2 else ""


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def private_definitions() -> dict[str, set[str]]:
    """Each private name -> the subpackages that define it (``self._x = ...``, a method or
    class attribute ``_x``, a module-level ``_x``)."""
    found: dict[str, set[str]] = {}
    for path in SRC.rglob("*.py"):
        where = _subpackage(module_name(path))
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names: list[str] = []
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                names = [node.name]
            elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
                names = [node.attr]
            elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
                names = [node.id]
            elif isinstance(node, ast.alias):
                names = [node.asname or node.name.rpartition(".")[2]]
            for name in names:
                if _is_private(name):
                    found.setdefault(name, set()).add(where)
    return found


def private_reaches(path: Path, defined: dict[str, set[str]]) -> list[str]:
    """``x._name`` where ``x`` is not ``self``/``cls``/``super()`` and ``_name`` is defined
    only in other subpackages: another subpackage's private state."""
    module = module_name(path)
    here = _subpackage(module)
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.Attribute) or not _is_private(node.attr):
            continue
        owner = node.value
        if isinstance(owner, ast.Name) and owner.id in {"self", "cls"}:
            continue
        if isinstance(owner, ast.Call) and getattr(owner.func, "id", "") == "super":
            continue
        if here in defined.get(node.attr, {here}):
            continue
        found.append(f"{module} line {node.lineno}: {ast.unparse(node)}")
    return found


def test_no_module_reads_another_subpackages_private_attributes() -> None:
    defined = private_definitions()
    bad = [r for path in sorted(SRC.rglob("*.py")) for r in private_reaches(path, defined)]
    assert not bad, "private attributes of another subpackage:\n" + "\n".join(bad)


def test_plugins_never_touch_a_bus_private_attribute() -> None:
    """The narrow form that holds whatever a name collision hides: ``bus._x`` in a plugin."""
    bad = []
    for path in sorted(SRC.rglob("*.py")):
        module = module_name(path)
        if layer_of(module) != PLUGINS:
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        # a class of this module reading its own privates on another instance is fine
        own = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)
               and isinstance(n.ctx, ast.Store)}  # fmt: skip
        own |= {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and _is_private(node.attr) and node.attr not in own:
                owner = ast.unparse(node.value)
                if owner == "bus" or owner.endswith(".bus"):
                    bad.append(f"{module} line {node.lineno}: {ast.unparse(node)}")
    assert not bad, "private attributes of a Bus read from a plugin:\n" + "\n".join(bad)
