"""The tree is the architecture: every import (at module level or inside a function) points down
the layers below, and no two modules import each other, directly or through others."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("vidclip", "pipelines", "temporal", "benchmarks")

# Top first.  A module may import modules of its own layer and of any layer below it.
LAYERS = [
    ("benchmarks",),                           # performance and quality benchmarks
    ("vidclip.cli", "vidclip.__main__"),       # the command line
    ("vidclip.server",),                       # `vidclip serve`: the JSON API and the web page
    ("vidclip.samples",),                      # sample videos: for the CLI's demo, tests and benchmarks only
    ("vidclip", "vidclip.library"),            # the public API (vidclip/__init__.py re-exports it)
    ("pipelines",),                            # the Ray job, started by the API
    ("vidclip.learn",),
    ("vidclip.query",),
    ("vidclip.ingest",),
    ("vidclip.model",),
    ("vidclip.store",),
    ("vidclip.config", "vidclip.errors", "vidclip.container", "vidclip.objectstore", "vidclip.deferral"),
    ("temporal",),
]


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for f in sorted((ROOT / pkg).rglob("*.py")):
            parts = f.relative_to(ROOT).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = f
    return out


def _imports(name: str, path: Path, modules: dict) -> set[str]:
    """The project modules `name` imports anywhere in its body (lazy imports included)."""
    is_pkg = path.name == "__init__.py"
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")[: len(name.split(".")) - node.level + (1 if is_pkg else 0)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            targets = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in modules else mod for a in node.names]
        for t in targets:
            if t.split(".")[0] in PACKAGES:
                while t not in modules and "." in t:
                    t = t.rsplit(".", 1)[0]
                if t != name:
                    found.add(t)
    return found


def _layer(module: str) -> tuple[int, str]:
    """(rank, owner) of the most specific layer entry that owns `module` (rank 0 is the top)."""
    best = None
    for rank, owners in enumerate(LAYERS):
        for owner in owners:
            if module == owner or module.startswith(owner + "."):
                if best is None or len(owner) > len(best[1]):
                    best = (rank, owner)
    assert best is not None, f"{module} belongs to no layer: add it to LAYERS"
    return best


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _imports(name, path, modules) for name, path in modules.items()}


def test_every_import_points_down_the_layers():
    wrong = []
    for module, imported in _graph().items():
        rank, owner = _layer(module)
        for target in sorted(imported):
            t_rank, t_owner = _layer(target)
            if t_rank < rank:
                wrong.append(f"{module} ({owner}) imports {target} ({t_owner})")
    assert not wrong, "imports against the layers:\n" + "\n".join(wrong)


def test_no_import_cycles():
    graph = _graph()
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(v):  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    # a package's __init__ re-exporting its own modules is not a cycle of design
    cycles = [c for c in cycles if not all(m == c[0] or m.startswith(c[0] + ".") for m in c)]
    assert not cycles, f"import cycles: {cycles}"


def test_the_layers_cover_the_tree_and_the_checker_sees_lazy_imports():
    graph = _graph()
    for module in graph:
        _layer(module)
    # the check is only worth something if it sees imports inside functions too
    assert "pipelines.ingest_job" in graph["vidclip.library"]
    assert "vidclip.store.lease" in graph["vidclip.store.store"]
    assert len(graph) > 60
