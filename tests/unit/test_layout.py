"""The package reads as its layers: each subpackage says what it owns, and no import runs up.

A newcomer should be able to trust the folder: X-Road knowledge never reaches for the daemon,
the local side never for the remote one, the engine never for the daemon that drives it.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "syncagent"

# lowest first; a module may import its own layer and any below it, never one above
LAYERS: list[set[str]] = [
    {"errors", "logs", "testhooks", "command", "fswatch", "excludes", "names", "report", "tree"},
    {"xroad"},
    {"settings"},
    {"local"},
    {"publishdir"},
    {"remote"},
    {"engine"},
    {"daemon"},
    {"publish"},
    {"demo"},
    {"cli", "__main__"},
]


def layer_of(module: str) -> int:
    top = module.split(".")[1] if module.startswith("syncagent.") else module
    for i, names in enumerate(LAYERS):
        if top in names:
            return i
    raise AssertionError(f"syncagent.{top} is in no layer: add it to LAYERS")


def runtime_imports(tree: ast.Module) -> list[str]:
    """syncagent modules imported when the module runs (``if TYPE_CHECKING:`` excluded)."""
    found: list[str] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING":
            return
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("syncagent"):
            module = node.module or ""
            if module == "syncagent":
                found.extend(f"syncagent.{a.name}" for a in node.names if a.name != "__version__")
            else:
                found.append(module)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def modules() -> list[Path]:
    top_init = PACKAGE / "__init__.py"
    return sorted(p for p in PACKAGE.rglob("*.py") if p != top_init)


def test_no_import_runs_up_a_layer() -> None:
    wrong = []
    for path in modules():
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        name = ".".join(rel.parts).removesuffix(".__init__")
        own = layer_of(name)
        for imported in runtime_imports(ast.parse(path.read_text())):
            if layer_of(imported) > own:
                wrong.append(f"{name} -> {imported}")
    assert wrong == []


def test_every_subpackage_says_in_one_line_what_it_owns() -> None:
    for init in sorted(PACKAGE.glob("*/__init__.py")):
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc, f"{init.parent.name}/ has no docstring"
        assert "\n" not in doc.strip().split("\n\n")[0], f"{init.parent.name}/: one line first"
