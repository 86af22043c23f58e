"""No function or method in ``src/pbb`` is longer than :data:`MAX_LINES` lines, counted from its
``def`` to its last line (decorators not counted; docstring, comments and blank lines counted):
a longer one does several jobs that a reader has to hold apart, and wants splitting into named
steps. Tables of data are the one exception; they are named in :data:`TABLES`, each with why."""

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "pbb"
MAX_LINES = 60
#: "path relative to src/pbb::qualified name" -> why the function is a table of data, not logic
TABLES: dict[str, str] = {}


def long_functions(source: str, max_lines: int = MAX_LINES) -> dict[str, int]:
    """Qualified name -> length of every function, method and nested function of ``source``
    longer than ``max_lines``."""
    found = {}

    def visit(node: ast.AST, prefix: str) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef):
                name = prefix + child.name
                length = child.end_lineno - child.lineno + 1  # lineno is the def, not a decorator
                if length > max_lines:
                    found[name] = length
                visit(child, name + ".")
            elif isinstance(child, ast.ClassDef):
                visit(child, prefix + child.name + ".")
            else:  # functions defined under if / try / with at any depth
                visit(child, prefix)

    visit(ast.parse(source), "")
    return found


def test_no_function_in_src_is_longer_than_the_limit():
    files = sorted(SRC.rglob("*.py"))
    assert len(files) > 30  # the package was found
    found = {f"{p.relative_to(SRC).as_posix()}::{name}": n
             for p in files for name, n in long_functions(p.read_text(encoding="utf-8")).items()}
    too_long = {k: n for k, n in found.items() if k not in TABLES}
    assert not too_long, (f"longer than {MAX_LINES} lines (split into named steps): "
                          + ", ".join(f"{k} ({n})" for k, n in sorted(too_long.items())))
    stale = set(TABLES) - set(found)
    assert not stale, f"TABLES names functions that are gone or no longer long: {sorted(stale)}"


def _function(name: str, body_lines: int, indent: str = "") -> str:
    """Source of a function ``body_lines + 1`` lines long (its def and ``body_lines`` lines)."""
    body = "".join(f"{indent}    x{k} = {k}\n" for k in range(body_lines))
    return f"{indent}def {name}():\n{body}"


def test_the_scan_finds_long_functions_methods_and_nested_functions():
    source = "\n".join([
        _function("fits", MAX_LINES - 1),  # exactly MAX_LINES lines: allowed
        _function("too_long", MAX_LINES),  # one line more
        "@decorator\n@another(1)\n" + _function("decorated", MAX_LINES - 1),  # decorators free
        "class Box:\n    '''A class.'''\n" + _function("method", MAX_LINES, "    "),
        "if True:\n" + _function("conditional", MAX_LINES + 5, "    "),
        "def outer():\n" + _function("inner", MAX_LINES, "    ") + "    return inner\n",
        "async def waits():\n" + "".join(f"    await x{k}\n" for k in range(MAX_LINES)),
    ])
    assert long_functions(source) == {
        "too_long": MAX_LINES + 1, "Box.method": MAX_LINES + 1, "conditional": MAX_LINES + 6,
        "outer": MAX_LINES + 3, "outer.inner": MAX_LINES + 1, "waits": MAX_LINES + 1}
    assert long_functions(_function("fits", MAX_LINES - 1)) == {}
