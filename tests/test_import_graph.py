"""The shape of cisfix's code (the core, the CIS plugin, the older runner's `cis_k8s_unified`): its modules
import one another without a circle, and none reaches into another's private (`_`-prefixed) names.

The graph is read from the source with `ast`, not by importing it: every import statement counts, at
module level or inside a function (a function-level import is still a dependency, only a later one),
except those under `if TYPE_CHECKING:`, which never run. Relative imports are resolved; `from . import x`
is an import of the submodule `x` when there is one, else of the package. Importing `a.b` also runs
`a/__init__.py`, but that implicit edge is left out: a package's `__init__` re-exporting its own modules
is not a circle anyone has to untangle."""
from __future__ import annotations

import ast
import functools
import sys
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Set, Tuple

import pytest

REPO = Path(__file__).resolve().parent.parent
PACKAGES = (REPO / "cisfix", REPO / "plugins" / "cis" / "cisfix_cis", REPO / "cis_k8s_unified")


def module_files() -> Dict[str, Path]:
    """Module name -> source file, for every importable module of the packages (data folders such as
    checks.d, whose names are no identifiers, hold no modules of the package)."""
    modules = {}
    for package in PACKAGES:
        for path in sorted(package.rglob("*.py")):
            parts = path.relative_to(package.parent).with_suffix("").parts
            if not all(part.isidentifier() for part in parts):
                continue
            if not all((package.parent.joinpath(*parts[:i]) / "__init__.py").is_file() for i in range(1, len(parts))):
                continue
            modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


MODULES = module_files()


@functools.lru_cache(maxsize=None)
def _parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), str(path))


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def import_nodes(tree: ast.AST) -> Iterator[ast.stmt]:
    """Every import statement that can run: anywhere in the module, except the body of `if TYPE_CHECKING:`."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            yield from import_nodes(ast.Module(body=node.orelse, type_ignores=[]))
            continue
        yield from import_nodes(node)


def _known(name: str) -> Optional[str]:
    """The module an import of `name` loads last: `name` itself, or its nearest enclosing module we know."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


def _base(module: str, node: ast.ImportFrom) -> str:
    """The absolute module name a `from ... import` names."""
    if not node.level:
        return node.module or ""
    is_package = MODULES[module].name == "__init__.py"
    parts = module.split(".") if is_package else module.split(".")[:-1]
    parts = parts[:len(parts) - (node.level - 1)]
    return ".".join([*parts, node.module] if node.module else parts)


def imports(module: str) -> Iterator[Tuple[str, str, int]]:
    """(imported module, name imported from it or "", line) for each import of a known module."""
    for node in import_nodes(_parse(MODULES[module])):
        if isinstance(node, ast.Import):
            for alias in node.names:
                target = _known(alias.name)
                if target:
                    yield target, "", node.lineno
            continue
        base = _base(module, node)
        for alias in node.names:
            submodule = f"{base}.{alias.name}"
            if submodule in MODULES:
                yield submodule, "", node.lineno
            else:
                target = _known(base)
                if target:
                    yield target, "" if alias.name == "*" else alias.name, node.lineno


def graph() -> Dict[str, Set[str]]:
    return {module: {target for target, _, _ in imports(module) if target != module} for module in MODULES}


def find_cycle(edges: Dict[str, Set[str]]) -> Optional[List[str]]:
    """One circle of the graph as [a, b, ..., a], or None (depth-first search, iterative: no recursion limit)."""
    WHITE, GREY, BLACK = 0, 1, 2
    colour = {node: WHITE for node in edges}
    for start in sorted(edges):
        if colour[start] != WHITE:
            continue
        path, stack = [start], [iter(sorted(edges[start]))]
        colour[start] = GREY
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                colour[path.pop()] = BLACK
                stack.pop()
            elif colour.get(nxt, BLACK) == GREY:
                return [*path[path.index(nxt):], nxt]
            elif colour.get(nxt) == WHITE:
                colour[nxt] = GREY
                path.append(nxt)
                stack.append(iter(sorted(edges[nxt])))
    return None


def _private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _package(module: str) -> str:
    return module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]


def _defines(package: str) -> Set[str]:
    """The names a package's `__init__` binds at its top level."""
    names = set()
    for node in _parse(MODULES[package]).body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            names.update((a.asname or a.name).partition(".")[0] for a in node.names)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            for target in node.targets if isinstance(node, ast.Assign) else [node.target]:
                names.update(n.id for n in ast.walk(target) if isinstance(n, ast.Name))
    return names


def _own_private_module(module: str, target: str, name: str) -> bool:
    """A private module of the importer's own package is the package's to use: a submodule we know, or a
    name its `__init__` does not bind (cisfix._build, which only the release build writes)."""
    if not name:
        return target.rpartition(".")[0] == _package(module)
    return target == _package(module) and name not in _defines(target)


def private_uses(module: str) -> Iterator[str]:
    """Where `module` takes another module's private name: `from .x import _name`, or `x._name` on a
    module it imported. A package's private modules are its own modules' to import."""
    for target, name, line in imports(module):
        private = _private(name or target.rpartition(".")[2])
        if target != module and private and not _own_private_module(module, target, name):
            yield f"{MODULES[module].relative_to(REPO)}:{line} imports {target}.{name}".rstrip(".")
    tree = _parse(MODULES[module])
    bound = {}  # local name -> the module it is bound to
    for node in import_nodes(tree):
        if isinstance(node, ast.ImportFrom):
            base = _base(module, node)
            bound.update({alias.asname or alias.name: f"{base}.{alias.name}" for alias in node.names
                          if f"{base}.{alias.name}" in MODULES})
        else:
            for alias in node.names:  # `import a.b as m` binds m to a.b; `import a.b` binds a
                name = alias.name if alias.asname else alias.name.partition(".")[0]
                if name in MODULES:
                    bound[alias.asname or name] = name
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and _private(node.attr):
            owner = bound.get(node.value.id) if isinstance(node.value, ast.Name) else None
            if owner is None and isinstance(node.value, ast.Attribute):  # cisfix.cli._gate
                owner = ast.unparse(node.value)
            if owner in MODULES and owner != module:
                yield f"{MODULES[module].relative_to(REPO)}:{node.lineno} uses {owner}.{node.attr}"


# ---- the reader itself, on small known graphs (a test that finds nothing must be able to find) ----

def test_find_cycle_names_the_circle() -> None:
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None
    assert find_cycle({"a": {"a"}}) == ["a", "a"]


def test_imports_are_resolved_at_every_level(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    files = {
        "__init__.py": "from .a import thing\n",
        "a.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from . import b\nelse:\n    pass\n"
                "def f():\n    from .sub import c, helper\n    return c, helper\n",
        "b.py": "import pkg.sub.c as c\nfrom . import a\nprint(c._hidden, a._secret)\n",
        "sub/__init__.py": "helper = 1\n_shared = 2\n",
        "sub/c.py": "from .. import b\nfrom ..a import _private\nfrom . import _generated, _shared\n",
    }
    for name, text in files.items():
        (package / name).write_text(text)
    found = {name: package / name for name in ("__init__.py", "a.py", "b.py", "sub/__init__.py", "sub/c.py")}
    here = sys.modules[__name__]
    monkeypatch.setattr(here, "MODULES", {
        "pkg": found["__init__.py"], "pkg.a": found["a.py"], "pkg.b": found["b.py"],
        "pkg.sub": found["sub/__init__.py"], "pkg.sub.c": found["sub/c.py"]})
    monkeypatch.setattr(here, "REPO", tmp_path)
    edges = graph()
    assert edges == {"pkg": {"pkg.a"}, "pkg.a": {"pkg.sub", "pkg.sub.c"}, "pkg.b": {"pkg.sub.c", "pkg.a"},
                     "pkg.sub": set(), "pkg.sub.c": {"pkg.b", "pkg.a", "pkg.sub"}}
    assert find_cycle(edges) == ["pkg.a", "pkg.sub.c", "pkg.a"]
    assert sorted(private_uses("pkg.sub.c")) == ["pkg/sub/c.py:2 imports pkg.a._private",
                                                 "pkg/sub/c.py:3 imports pkg.sub._shared"]
    assert sorted(private_uses("pkg.b")) == ["pkg/b.py:3 uses pkg.a._secret", "pkg/b.py:3 uses pkg.sub.c._hidden"]


# ---- cisfix ----

def test_the_reader_sees_cisfix() -> None:
    assert {"cisfix.cli", "cisfix.types", "cisfix_cis.checks"} <= set(MODULES)
    assert "cisfix.types" in graph()["cisfix.api"]


def test_no_module_imports_itself_in_a_circle() -> None:
    cycle = find_cycle(graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_no_module_takes_another_modules_private_names() -> None:
    uses = [use for module in sorted(MODULES) for use in private_uses(module)]
    assert not uses, "private names used across modules:\n" + "\n".join(uses)
