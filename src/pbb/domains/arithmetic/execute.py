"""Run an arithmetic instruction and write its chain-of-thought trace.

The trace comes from real execution, so it cannot disagree with the output. Each instruction is
parsed once, checked against the small language the generator emits (so a data file cannot smuggle
in arbitrary code), and turned into a *plan*: per statement, a compiled expression and a format
string that substitutes the current values. Tracing one call is then a handful of ``eval`` and
``str.format`` calls.

Trace format (one reduction per line, then the fixed answer line)::

    a = 3, b = 5
    x = a * 2 + b = 3 * 2 + 5 = 11
    if x > 7: 11 > 7 is True
      y = x - a = 11 - 3 = 8
    for i in range(2):
      i = 0: y = y + i = 8 + 0 = 8
      i = 1: y = y + i = 8 + 1 = 9
    return y = 9
    Answer: 9
"""

from __future__ import annotations

import ast
import re
from dataclasses import dataclass
from functools import lru_cache

from pbb.domains.base import ANSWER_PREFIX
from pbb.errors import PbbError

_SAFE_BUILTINS = {"__builtins__": {}, "min": min, "max": max, "abs": abs}
_ALLOWED = (ast.Module, ast.FunctionDef, ast.arguments, ast.arg, ast.Assign, ast.If, ast.For,
            ast.Return, ast.BinOp, ast.Compare, ast.Call, ast.Name, ast.Constant, ast.Load,
            ast.Store, ast.UnaryOp, ast.USub, ast.Add, ast.Sub, ast.Mult, ast.FloorDiv, ast.Mod,
            ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.Eq, ast.NotEq)
_CALLS = {"min", "max", "abs", "range"}
_IDENT = re.compile(r"\b([A-Za-z_]\w*)\b")


@dataclass(frozen=True)
class _Expr:
    src: str
    code: object
    fmt: str  # src with every variable replaced by "{name}"

    def value(self, env: dict) -> int:
        return eval(self.code, _SAFE_BUILTINS, env)

    def substituted(self, env: dict) -> str:
        return self.fmt.format_map(env)


def _expr(node: ast.expr, variables: set[str]) -> _Expr:
    src = ast.unparse(node)
    fmt = _IDENT.sub(lambda m: "{" + m.group(1) + "}" if m.group(1) in variables else m.group(1),
                     src.replace("{", "{{").replace("}", "}}"))
    return _Expr(src, compile(ast.Expression(node), "<expr>", "eval"), fmt)


@dataclass(frozen=True)
class Plan:
    name: str
    args: tuple[str, ...]
    steps: tuple
    limit: int


def _check_subset(tree: ast.AST, name: str) -> None:
    for node in ast.walk(tree):
        if not isinstance(node, _ALLOWED):
            raise PbbError(f"instruction of {name}: unsupported syntax {type(node).__name__}")
        if isinstance(node, ast.Call) and not (isinstance(node.func, ast.Name)
                                               and node.func.id in _CALLS):
            raise PbbError(f"instruction of {name}: only min/max/abs/range may be called")
        if isinstance(node, ast.Constant) and type(node.value) is not int:
            raise PbbError(f"instruction of {name}: only integer constants are allowed")
        if isinstance(node, ast.BinOp) and isinstance(node.op, (ast.FloorDiv, ast.Mod)) and not (
                isinstance(node.right, ast.Constant) and node.right.value > 0):
            raise PbbError(f"instruction of {name}: // and % need a positive constant divisor")
        if isinstance(node, ast.For) and not (
                isinstance(node.iter, ast.Call) and node.iter.func.id == "range"  # type: ignore
                and len(node.iter.args) == 1 and isinstance(node.iter.args[0], ast.Constant)):
            raise PbbError(f"instruction of {name}: loops must be over range(<constant>)")


def _steps(body: list[ast.stmt], variables: set[str]) -> tuple:
    out = []
    for stmt in body:
        if isinstance(stmt, ast.Assign):
            out.append(("assign", stmt.targets[0].id, _expr(stmt.value, variables)))  # type: ignore
        elif isinstance(stmt, ast.If):
            out.append(("if", _expr(stmt.test, variables), _steps(stmt.body, variables),
                        _steps(stmt.orelse, variables)))
        elif isinstance(stmt, ast.For):
            out.append(("for", stmt.target.id, stmt.iter.args[0].value,  # type: ignore
                        _steps(stmt.body, variables)))
        elif isinstance(stmt, ast.Return):
            out.append(("return", _expr(stmt.value, variables)))  # type: ignore[arg-type]
    return tuple(out)


@lru_cache(maxsize=4096)
def plan_for(instruction: str, name: str, limit: int) -> Plan:
    """Parse and check an instruction once; cached because every demonstration reuses it."""
    try:
        tree = ast.parse(instruction)
    except SyntaxError as e:
        raise PbbError(f"instruction of {name}: syntax error at line {e.lineno}: {e.msg}") from None
    _check_subset(tree, name)
    fns = [n for n in tree.body if isinstance(n, ast.FunctionDef)]
    if len(tree.body) != 1 or not fns or fns[0].name != name:
        raise PbbError(f"instruction of {name}: expected exactly one function named {name}")
    fn = fns[0]
    variables = {n.id for n in ast.walk(fn) if isinstance(n, ast.Name)} - _CALLS
    variables |= {a.arg for a in fn.args.args}
    return Plan(name, tuple(a.arg for a in fn.args.args), _steps(fn.body, variables), limit)


class _Return(Exception):
    def __init__(self, value: int):
        self.value = value


def _fmt_call(plan: Plan, args: tuple[int, ...]) -> str:
    return f"{plan.name}({', '.join(map(str, args))})"


def _check(value: int, plan: Plan, args: tuple[int, ...]) -> int:
    if type(value) is not int or abs(value) > plan.limit:
        raise PbbError(f"{_fmt_call(plan, args)}: intermediate value {value} exceeds the bound "
                       f"{plan.limit}")
    return value


def _run(steps: tuple, env: dict, lines: list[str], indent: str, plan: Plan,
         args: tuple[int, ...]) -> None:
    for step in steps:
        kind = step[0]
        if kind == "assign":
            _, target, ex = step
            value = _check(ex.value(env), plan, args)
            lines.append(f"{indent}{target} = {ex.src} = {ex.substituted(env)} = {value}")
            env[target] = value
        elif kind == "if":
            _, test, then, other = step
            taken = bool(test.value(env))
            lines.append(f"{indent}if {test.src}: {test.substituted(env)} is {taken}"
                         + ("" if taken else ", so else"))
            _run(then if taken else other, env, lines, indent + "  ", plan, args)
        elif kind == "for":
            _, var, count, body = step
            lines.append(f"{indent}for {var} in range({count}):")
            for k in range(count):
                env[var] = k
                inner: list[str] = []
                _run(body, env, inner, "", plan, args)
                lines.append(f"{indent}  {var} = {k}: " + f"\n{indent}  ".join(inner))
        else:  # return
            ex = step[1]
            value = _check(ex.value(env), plan, args)
            lines.append(f"{indent}return {ex.src} = {value}")
            raise _Return(value)


def trace_call(plan: Plan, args: tuple[int, ...]) -> tuple[int, str]:
    """Execute ``plan`` on ``args``; return the output and the full trace text."""
    if len(args) != len(plan.args):
        raise PbbError(f"{_fmt_call(plan, args)}: {plan.name} takes {len(plan.args)} argument(s)")
    env = dict(zip(plan.args, args))
    lines = [", ".join(f"{a} = {v}" for a, v in env.items())]
    try:
        _run(plan.steps, env, lines, "", plan, args)
    except _Return as r:
        lines.append(f"{ANSWER_PREFIX} {r.value}")
        return r.value, "\n".join(lines)
    raise PbbError(f"{_fmt_call(plan, args)}: function ended without a return")
