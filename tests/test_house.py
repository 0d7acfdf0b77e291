"""The house rules of the package, checked on its source (no imports run).

The rules are written in ``cnnlearn/__init__.py`` and the README: no import
circle and no module importing its own package's ``__init__``; no private name
(``_x``) imported from another module; one ``__all__`` per module; no function
over 60 lines of code without a comment saying why it is long; paths to the book
and results found from the working directory, not from the install location.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from conftest import REPO

PACKAGE = REPO / "cnnlearn"
MAX_LINES = 60
# Modules that may locate files relative to themselves, and why.
FILE_RELATIVE = {
    # The commit of the code that ran is the git state of the code's own
    # checkout, wherever the working directory is.
    "cnnlearn.report.provenance",
}


def _name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}
TREES = {name: ast.parse(path.read_text(), str(path)) for name, path in MODULES.items()}


def _package(name: str) -> str:
    is_package = MODULES[name].name == "__init__.py"
    return name if is_package else name.rpartition(".")[0]


def _imports(name: str) -> list[tuple[str, list[str], int]]:
    """(module imported, names taken from it, line) for every import in ``name``,
    function-local ones included; relative imports resolved."""
    found = []
    for node in ast.walk(TREES[name]):
        if isinstance(node, ast.Import):
            found += [(a.name, [], node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = _package(name).split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.append((base, [a.name for a in node.names], node.lineno))
    return [f for f in found if f[0] == "cnnlearn" or f[0].startswith("cnnlearn.")]


def _edges(name: str) -> set[str]:
    targets = set()
    for module, names, _ in _imports(name):
        subs = {f"{module}.{n}" for n in names} & MODULES.keys()
        if subs:
            targets |= subs
        if not names or set(names) - {s.rpartition(".")[2] for s in subs}:
            targets.add(module)
    return targets & MODULES.keys()


def test_no_import_circle():
    graph = {name: _edges(name) for name in MODULES}
    # A package's __init__ re-exporting its own modules is the package's face,
    # not a dependency of the modules: only those edges are left out.
    for name in graph:
        graph[name] = {t for t in graph[name] if not t.startswith(f"{name}.")}
    state: dict[str, int] = {}
    circles = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                circles.append(" -> ".join(path[path.index(target) :] + [target]))
            elif target not in state:
                visit(target, [*path, target])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])
    assert not circles, "import circles:\n" + "\n".join(circles)


def test_no_module_imports_its_own_package():
    upward = []
    for name in MODULES:
        package = _package(name)
        if package == "cnnlearn" or MODULES[name].stem in ("__init__", "__main__"):
            continue  # a package's face and its ``python -m`` entry point
        for module, names, line in _imports(name):
            subs = {f"{module}.{n}" for n in names}
            if module == package and not subs <= MODULES.keys():
                upward.append(f"{name}:{line} imports from {package}")
    assert not upward, "\n".join(upward)


def test_no_private_name_imported_across_modules():
    private = [
        f"{name}:{line} imports {n} from {module}"
        for name in MODULES
        for module, names, line in _imports(name)
        for n in names
        if n.startswith("_")
        and not n.endswith("__")  # __version__ and friends are public
        and f"{module}.{n}" not in MODULES
    ]
    assert not private, "\n".join(private)


def test_one_all_list_per_module():
    fragments = [
        f"{name}:{node.lineno}"
        for name, tree in TREES.items()
        for node in ast.walk(tree)
        if isinstance(node, ast.AugAssign)
        and isinstance(node.target, ast.Name)
        and node.target.id == "__all__"
    ]
    assert not fragments, "__all__ += fragments: " + ", ".join(fragments)


def _code_lines(path: Path, node: ast.AST) -> tuple[int, list[str]]:
    lines = path.read_text().splitlines()
    body = node.body
    start = body[0].lineno
    first = body[0]
    if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
        start = first.end_lineno + 1
    text = lines[start - 1 : node.end_lineno]
    code = [t for t in text if t.strip() and not t.strip().startswith("#")]
    return start, code


def test_functions_a_reader_can_hold():
    long = []
    for name, tree in TREES.items():
        path = MODULES[name]
        for node in ast.walk(tree):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            start, code = _code_lines(path, node)
            if len(code) <= MAX_LINES:
                continue
            head = path.read_text().splitlines()[start - 1 : start + 2]
            if any(t.strip().startswith("#") and "long" in t.lower() for t in head):
                continue  # the function says why it is long
            long.append(f"{name}.{node.name} ({len(code)} lines, line {node.lineno})")
    assert not long, "functions over 60 lines with no reason given:\n" + "\n".join(long)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_paths_are_not_found_from_the_install_location(name):
    if name in FILE_RELATIVE:
        return
    uses = [
        node.lineno
        for node in ast.walk(TREES[name])
        if isinstance(node, ast.Name) and node.id == "__file__"
    ]
    assert not uses, f"{name} uses __file__ at lines {uses}: find paths from the cwd"
