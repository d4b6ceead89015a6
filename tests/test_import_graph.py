"""The import direction of the house, read from the source (every `import`, function-local ones included):

- `contracts` (batch formats, registries, atomic writes, protocols) imports none of the four packages;
- the ground floors, `lightning_modules` and `datamodules`, import neither `benchmarks` nor `sweeps`, and not each
  other: what a model needs from the data reaches it through `contracts` and its constructor arguments;
- `benchmarks` does not import `sweeps` (the sweep calls the runner with its callbacks), except the command line,
  `benchmarks.cli`, which sits on top of both;
- no module-level import cycle, however deep.
"""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("contracts", "lightning_modules", "datamodules", "benchmarks", "sweeps")
CLI = "benchmarks.cli"

# (importer package, imported package) pairs that must not occur
FORBIDDEN = {
    ("contracts", "lightning_modules"), ("contracts", "datamodules"), ("contracts", "benchmarks"),
    ("contracts", "sweeps"),
    ("lightning_modules", "datamodules"), ("lightning_modules", "benchmarks"), ("lightning_modules", "sweeps"),
    ("datamodules", "lightning_modules"), ("datamodules", "benchmarks"), ("datamodules", "sweeps"),
    ("benchmarks", "sweeps"),
}


# Cycles still to be broken; the test fails as soon as one is gone, so that it leaves this list too.
KNOWN_CYCLES: list[list[str]] = []


def modules() -> dict[str, Path]:
    """Dotted name -> file for every module of the five packages."""
    found = {}
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def import_graph() -> dict[str, dict[str, int]]:
    """module -> {imported first-party module: line of the first such import}. `from a.b import c` points at a.b.c
    when c is a module, else at a.b; `import a.b` at a.b."""
    known = modules()

    def resolve(name: str) -> str | None:
        while name and name not in known:
            name = name.rpartition(".")[0]
        return name or None

    graph: dict[str, dict[str, int]] = {}
    for name, path in known.items():
        edges: dict[str, int] = {}
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from the package, up level - 1
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
            for target in targets:
                resolved = resolve(target)
                if resolved and resolved != name:
                    edges.setdefault(resolved, node.lineno)
        graph[name] = edges
    return graph


def cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(graph[root]))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(graph[child])))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def where(module: str, target: str, graph) -> str:
    path = modules()[module].relative_to(ROOT)
    return f"{path}:{graph[module][target]} imports {target}"


def test_layers():
    graph = import_graph()
    wrong = []
    for module, edges in graph.items():
        for target in edges:
            pair = (module.split(".")[0], target.split(".")[0])
            if pair in FORBIDDEN and not (module == CLI and pair == ("benchmarks", "sweeps")):
                wrong.append(where(module, target, graph))
    assert not wrong, "imports against the layering:\n" + "\n".join(sorted(wrong))


def test_no_import_cycles():
    found = cycles(import_graph())
    new = [c for c in found if c not in KNOWN_CYCLES]
    assert not new, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in new)
    gone = [c for c in KNOWN_CYCLES if c not in found]
    assert not gone, f"no longer a cycle, take it off KNOWN_CYCLES: {gone}"


def test_the_graph_sees_function_local_imports():
    """The reader must not miss an import hidden in a function (how cycles used to hide)."""
    graph = import_graph()
    assert "benchmarks.runner" in graph["benchmarks.cli"]  # cli imports the runner only inside its commands
    assert graph["lightning_modules"], "package __init__ imports are read too"


def test_a_planted_cycle_is_found():
    graph = {"a": {"b": 1}, "b": {"c": 1}, "c": {"a": 1}, "d": {"a": 1}, "e": {}}
    assert cycles(graph) == [["a", "b", "c"]]
