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


# The layers, lowest first: what each part of pbb may import. A part never imports one that
# builds on it: the domains know nothing of data sets, evaluation nothing of training, the
# exports nothing of the orchestrator. ``front`` (the CLI, the Python API) may import anything.
CORE = {"pbb.errors", "pbb.jsonio", "pbb.folders", "pbb.dist", "pbb.interrupts", "pbb.clock",
        "pbb.memo", "pbb.models", "pbb.config", "pbb.store", "pbb.records", "pbb._moved",
        "pbb._version"}
MAY_IMPORT = {
    "core": {"core"},
    "domains": {"domains"},
    "data": {"core", "domains", "data"},
    "rows": {"core", "domains", "data", "rows"},
    "evaluation": {"core", "domains", "data", "rows", "evaluation"},
    "training": {"core", "domains", "data", "rows", "evaluation", "training"},
    "experiments": {"core", "domains", "data", "rows", "evaluation", "training", "experiments"},
    "interop": {"core", "domains", "data", "rows", "evaluation", "interop"},
    "front": {"core", "domains", "data", "rows", "evaluation", "training", "experiments",
              "interop", "front"},
}
#: the domains' only imports outside their package
DOMAIN_MAY_USE = {"pbb.errors", "pbb.jsonio"}


def part_of(module: str) -> str:
    if module in CORE:
        return "core"
    parts = module.split(".")
    if len(parts) > 1 and parts[1] in MAY_IMPORT and parts[1] not in ("core", "front"):
        return parts[1]
    return "front"


def layer_violations(graph: dict[str, set[str]]) -> list[str]:
    out = []
    for mod, targets in sorted(graph.items()):
        here = part_of(mod)
        for t in sorted(targets):
            if here == "domains" and t in DOMAIN_MAY_USE:
                continue
            if part_of(t) not in MAY_IMPORT[here]:
                out.append(f"{mod} ({here}) imports {t} ({part_of(t)})")
    return out


def test_every_module_keeps_to_its_layer():
    found = layer_violations(import_graph())
    assert not found, "layer rules broken:\n" + "\n".join(found)


def test_the_layer_check_finds_a_violating_import():
    graph = {"pbb.evaluation.report": {"pbb.training.stages", "pbb.evaluation.metrics"},
             "pbb.interop.export": {"pbb.experiments.run"},
             "pbb.domains.ciphers": {"pbb.errors", "pbb.data"},
             "pbb.rows.render": {"pbb.domains.base"}, "pbb.cli": {"pbb.experiments.run"}}
    assert layer_violations(graph) == [
        "pbb.domains.ciphers (domains) imports pbb.data (data)",
        "pbb.evaluation.report (evaluation) imports pbb.training.stages (training)",
        "pbb.interop.export (interop) imports pbb.experiments.run (experiments)"]


def test_the_domains_and_data_generation_load_neither_torch_nor_transformers():
    """Making and importing data sets runs on a machine with no deep-learning stack (and fast):
    every domain module, the data sets and the importers are imported, a data set of every
    built-in domain generated, and then torch and transformers must not be in sys.modules."""
    import subprocess
    import sys

    mods = [m for m in modules() if m.startswith(("pbb.domains", "pbb.data"))
            and not m.endswith("sandbox_worker")]
    code = ("import importlib, sys\n"
            f"for m in {mods!r}: importlib.import_module(m)\n"
            "from pbb import data\n"
            "for d in ('arithmetic', 'algorithms', 'ciphers', 'grammars'):\n"
            "    data.generate(d, behaviours=4, demos=1, test_inputs=1, eval_fraction=0.5,\n"
            "                  seed=0)\n"
            "print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip().splitlines()[-1] == "[]"
