"""The modules of src/pbb import each other without cycles, lazy imports inside functions
included: a cycle means two modules that cannot be read, tested or changed one at a time.

The graph has an edge A -> B for every ``import pbb.B`` / ``from pbb.B import x`` in A (at any
depth). Package ``__init__`` files count as the package's module; importing ``pbb.x.y`` does
not add an edge to ``pbb.x``.
"""

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parent.parent / "src"


def modules() -> dict[str, Path]:
    out = {}
    for path in sorted((SRC / "pbb").rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def import_graph(mods: dict[str, Path] | None = None) -> dict[str, set[str]]:
    mods = mods or modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[:len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([base] if base else []))
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in mods else base
                           for a in node.names]
            for t in targets:
                if t in mods and t != name:
                    graph[name].add(t)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_cycles():
    found = cycles(import_graph())
    assert not found, "import cycles: " + "; ".join(" <-> ".join(c) for c in found)


def test_the_check_finds_a_cycle():
    graph = {"pbb.a": {"pbb.b"}, "pbb.b": {"pbb.c"}, "pbb.c": {"pbb.a"}, "pbb.d": {"pbb.a"}}
    assert cycles(graph) == [["pbb.a", "pbb.b", "pbb.c"]]
    assert cycles({"pbb.a": {"pbb.b"}, "pbb.b": set()}) == []


def test_the_graph_sees_lazy_and_relative_imports(tmp_path):
    (tmp_path / "pbb" / "sub").mkdir(parents=True)
    for f, text in {"pbb/__init__.py": "", "pbb/sub/__init__.py": "from .leaf import x\n",
                    "pbb/sub/leaf.py": "def f():\n    from pbb import top\n",
                    "pbb/top.py": "import pbb.sub.leaf\n"}.items():
        (tmp_path / f).write_text(text)
    mods = {m: tmp_path / "/".join(m.split(".")) / "__init__.py" if m in ("pbb", "pbb.sub")
            else tmp_path / ("/".join(m.split(".")) + ".py") for m in
            ("pbb", "pbb.sub", "pbb.sub.leaf", "pbb.top")}
    graph = import_graph(mods)
    assert graph["pbb.sub"] == {"pbb.sub.leaf"}
    assert graph["pbb.sub.leaf"] == {"pbb.top"}
    assert cycles(graph) == [["pbb.sub.leaf", "pbb.top"]]
