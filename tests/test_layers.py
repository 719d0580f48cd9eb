"""Layering: no import cycles among edgechat's modules (lazy imports inside functions included), and
layers look down only: app -> models -> runtime -> _native (the C++ extension: only runtime imports it)."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = {"app": "app", "models": "models", "runtime": "runtime"}   # folder -> edgechat.<name>
LAYER = {"runtime": 0, "models": 1, "app": 2}
NATIVE = "edgechat._native"          # the extension module: no source file here, the layer under runtime


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(["edgechat", *parts])


def imports_of(path: Path, name: str, modules) -> set[str]:
    """edgechat modules ``path`` imports anywhere in it: ``from pkg import x`` is an import of the
    module pkg.x when there is one, else of pkg."""
    pkg = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.startswith("edgechat")}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = pkg.split(".")[:len(pkg.split(".")) - node.level + 1]
                base = ".".join(up + ([base] if base else []))
            if base.startswith("edgechat"):
                found |= {f"{base}.{a.name}" if f"{base}.{a.name}" in modules or f"{base}.{a.name}" == NATIVE
                          else base for a in node.names}
    return found


def graph() -> dict[str, set[str]]:
    files = {module_name(p): p for d in PACKAGES for p in (ROOT / d).rglob("*.py")}
    return {m: {i for i in imports_of(p, m, files) if i in files and i != m} for m, p in files.items()}


def find_cycle(g: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}          # 1: on the path, 2: done
    path: list[str] = []

    def visit(m):
        state[m] = 1
        path.append(m)
        for n in sorted(g[m]):
            if state.get(n) == 1:
                return path[path.index(n):] + [n]
            if n not in state:
                found = visit(n)
                if found:
                    return found
        state[m] = 2
        path.pop()
        return None

    for m in sorted(g):
        if m not in state:
            found = visit(m)
            if found:
                return found
    return None


def test_the_checker_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycles():
    g = graph()
    assert len(g) > 30, "the modules were not found"
    assert find_cycle(g) is None, find_cycle(g)


def native_importers() -> set[str]:
    files = {module_name(p): p for d in PACKAGES for p in (ROOT / d).rglob("*.py")}
    return {m for m, p in files.items() if NATIVE in imports_of(p, m, files)}


def test_only_runtime_imports_the_extension():
    importers = native_importers()
    assert importers, "no module imports edgechat._native: the checker is not finding it"
    assert all(m.startswith("edgechat.runtime.") for m in importers), sorted(importers)


def test_the_extension_checker_sees_relative_imports(tmp_path):
    mod = tmp_path / "x.py"
    mod.write_text("def f():\n    from .. import _native\n")
    assert NATIVE in imports_of(mod, "edgechat.app.x", {})


def test_layers_look_down_only():
    wrong = [(m, i) for m, deps in graph().items() for i in deps
             if LAYER[i.split(".")[1]] > LAYER[m.split(".")[1]]]
    assert not wrong, wrong
