"""Random arithmetic programs, built as Python ASTs.

Why an AST and not string templates: the same tree gives the instruction text (``ast.unparse``),
a sound bound check (interval arithmetic over the tree) and the executable plan, so they cannot
drift apart. Termination and safety are structural: loops run over ``range(<constant>)``,
``//`` and ``%`` only ever divide by a positive constant, and every intermediate value is proven
to stay within ``max_abs_value`` for *every* input in the configured range, not just sampled ones.
"""

from __future__ import annotations

import ast
import random
from collections.abc import Callable

from pbb.domains.arithmetic.config import ArithmeticConfig

ARG_NAMES = ("a", "b", "c")
LOCAL_NAMES = ("x", "y", "z", "w", "u", "v", "p", "q", "r")
LOOP_VAR = "i"
_OPS: dict[str, type[ast.operator]] = {"+": ast.Add, "-": ast.Sub, "*": ast.Mult,
                                       "//": ast.FloorDiv, "%": ast.Mod}
_CMPS = (ast.Lt, ast.LtE, ast.Gt, ast.GtE, ast.Eq, ast.NotEq)

Interval = tuple[int, int]


def _load(name: str) -> ast.Name:
    return ast.Name(id=name, ctx=ast.Load())


def _store(name: str) -> ast.Name:
    return ast.Name(id=name, ctx=ast.Store())


def _has_name(node: ast.AST) -> bool:
    return any(isinstance(n, ast.Name) for n in ast.walk(node))


def _trivial(node: ast.expr) -> bool:
    """``min(x, x)``, ``x - x`` and friends: correct but pointless, so never emitted."""
    for n in ast.walk(node):
        pair = None
        if isinstance(n, ast.Call) and len(n.args) == 2:
            pair = n.args
        elif isinstance(n, ast.BinOp) and isinstance(n.op, (ast.Sub, ast.FloorDiv, ast.Mod)):
            pair = [n.left, n.right]
        if pair and ast.dump(pair[0]) == ast.dump(pair[1]):
            return True
        if isinstance(n, ast.BinOp) and all(isinstance(x, ast.Constant) for x in (n.left, n.right)):
            return True
    return False


class _Builder:
    """Draws one function body; all randomness comes from ``rng``."""

    def __init__(self, cfg: ArithmeticConfig, rng: random.Random, arity: int):
        self.cfg, self.rng = cfg, rng
        self.args = list(ARG_NAMES[:arity])
        self.locals: list[str] = []
        self.unused_args = set(self.args)

    # --- expressions -------------------------------------------------------------------------
    def _var(self, extra: tuple[str, ...] = ()) -> str:
        names = self.args + self.locals + list(extra)
        # Prefer arguments not used yet and recent locals: fewer dead arguments, longer chains.
        weights = [3.0 if n in self.unused_args else 1.0 for n in self.args]
        weights += [1.0 + k for k in range(len(self.locals))] + [2.0] * len(extra)
        name = self.rng.choices(names, weights)[0]
        self.unused_args.discard(name)
        return name

    def _atom(self, extra: tuple[str, ...] = ()) -> ast.expr:
        if self.rng.random() < 0.65:
            return _load(self._var(extra))
        return ast.Constant(self.rng.randint(1, self.cfg.max_const))

    def _operand(self, depth: int, extra: tuple[str, ...]) -> ast.expr:
        if depth > 1 and self.rng.random() < 0.5:
            return self.expr(depth - 1, extra)
        return self._atom(extra)

    def expr(self, depth: int, extra: tuple[str, ...] = ()) -> ast.expr:
        """An operation over atoms; ``depth`` bounds nesting. Always mentions a variable."""
        for _ in range(100):
            node = self._expr_once(depth, extra)
            if _has_name(node) and not _trivial(node):
                return node
        return ast.BinOp(_load(self._var(extra)), ast.Add(), ast.Constant(1))

    def _expr_once(self, depth: int, extra: tuple[str, ...]) -> ast.expr:
        rng = self.rng
        if rng.random() < 0.75:
            op = rng.choices(list(_OPS), weights=[3, 3, 2, 1, 1])[0]
            if op in ("//", "%"):
                right: ast.expr = ast.Constant(rng.randint(2, max(2, min(self.cfg.max_const, 9))))
                return ast.BinOp(self._operand(depth, extra), _OPS[op](), right)
            return ast.BinOp(self._operand(depth, extra), _OPS[op](), self._operand(depth, extra))
        fn = rng.choice(("min", "max", "abs"))
        if fn == "abs":
            inner = ast.BinOp(_load(self._var(extra)), ast.Sub(), self._atom(extra))
            return ast.Call(_load("abs"), [inner], [])
        return ast.Call(_load(fn), [self._operand(depth, extra), self._operand(depth, extra)], [])

    # --- statements --------------------------------------------------------------------------
    def _target(self) -> str:
        free = [n for n in LOCAL_NAMES if n not in self.locals]
        if free and (not self.locals or self.rng.random() < 0.6):
            return free[0]
        return self.rng.choice(self.locals)

    def _define(self, name: str) -> None:
        if name in self.locals:
            self.locals.remove(name)
        self.locals.append(name)  # most recent last: _var weights recency

    def statement(self) -> ast.stmt:
        r = self.rng.random()
        depth = self.cfg.expr_depth
        if r < self.cfg.loop_prob and self.locals:
            target = self.rng.choice(self.locals)
            op = self.rng.choice(("+", "-", "*", "+", "-"))
            rhs = self._operand(depth, (LOOP_VAR,))
            body = ast.Assign([_store(target)], ast.BinOp(_load(target), _OPS[op](), rhs))
            count = self.rng.randint(2, self.cfg.max_loop_iters)
            loop = ast.For(_store(LOOP_VAR), ast.Call(_load("range"), [ast.Constant(count)], []),
                           [body], [])
            self._define(target)
            return loop
        if r < self.cfg.loop_prob + self.cfg.branch_prob:
            left = _load(self._var())
            right = self._atom() if self.rng.random() < 0.5 else ast.Constant(
                self.rng.randint(self.cfg.input_min, self.cfg.input_max))
            cond = ast.Compare(left, [self.rng.choice(_CMPS)()], [right])
            target = self._target()
            then = ast.Assign([_store(target)], self.expr(depth))
            other = ast.Assign([_store(target)], self.expr(depth))
            self._define(target)
            return ast.If(cond, [then], [other])
        value = self.expr(depth)
        target = self._target()
        self._define(target)
        return ast.Assign([_store(target)], value)


def build_function(cfg: ArithmeticConfig, rng: random.Random, name: str) -> ast.FunctionDef:
    """One random candidate function (not yet checked for bounds or argument use)."""
    arity = rng.randint(cfg.min_args, cfg.max_args)
    b = _Builder(cfg, rng, arity)
    body = [b.statement() for _ in range(rng.randint(cfg.min_statements, cfg.max_statements))]
    body.append(ast.Return(_load(b.locals[-1])))
    fn = ast.FunctionDef(name=name, args=ast.arguments(
        posonlyargs=[], args=[ast.arg(a) for a in b.args], kwonlyargs=[], kw_defaults=[],
        defaults=[]), body=body, decorator_list=[], returns=None)
    return ast.fix_missing_locations(fn)


# --- interval analysis ----------------------------------------------------------------------
class _OutOfBounds(Exception):
    pass


def _interval(node: ast.expr, env: dict[str, Interval], limit: int) -> Interval:
    if isinstance(node, ast.Constant):
        out = (node.value, node.value)
    elif isinstance(node, ast.Name):
        out = env[node.id]
    elif isinstance(node, ast.BinOp):
        a0, a1 = _interval(node.left, env, limit)
        b0, b1 = _interval(node.right, env, limit)
        if isinstance(node.op, ast.Add):
            out = (a0 + b0, a1 + b1)
        elif isinstance(node.op, ast.Sub):
            out = (a0 - b1, a1 - b0)
        elif isinstance(node.op, ast.Mult):
            p = (a0 * b0, a0 * b1, a1 * b0, a1 * b1)
            out = (min(p), max(p))
        elif isinstance(node.op, ast.FloorDiv):  # divisor is a positive constant by construction
            out = (a0 // b0, a1 // b0)
        else:  # Mod by a positive constant
            out = (0, b0 - 1)
    elif isinstance(node, ast.Call):
        parts = [_interval(x, env, limit) for x in node.args]
        fn = node.func.id  # type: ignore[attr-defined]
        if fn == "min":
            out = (min(p[0] for p in parts), min(p[1] for p in parts))
        elif fn == "max":
            out = (max(p[0] for p in parts), max(p[1] for p in parts))
        else:
            lo, hi = parts[0]
            out = (lo, hi) if lo >= 0 else (-hi, -lo) if hi <= 0 else (0, max(-lo, hi))
    else:  # pragma: no cover - the builder emits nothing else
        raise TypeError(type(node).__name__)
    if max(abs(out[0]), abs(out[1])) > limit:
        raise _OutOfBounds
    return out


def _assign_intervals(body: list[ast.stmt], env: dict[str, Interval], limit: int) -> None:
    for stmt in body:
        if isinstance(stmt, ast.Assign):
            env[stmt.targets[0].id] = _interval(stmt.value, env, limit)  # type: ignore[attr-defined]
        elif isinstance(stmt, ast.If):
            then, other = dict(env), dict(env)
            _assign_intervals(stmt.body, then, limit)
            _assign_intervals(stmt.orelse, other, limit)
            for k in then.keys() & other.keys():
                env[k] = (min(then[k][0], other[k][0]), max(then[k][1], other[k][1]))
        elif isinstance(stmt, ast.For):
            count = stmt.iter.args[0].value  # type: ignore[attr-defined]
            env[LOOP_VAR] = (0, count - 1)
            for _ in range(count):
                _assign_intervals(stmt.body, env, limit)


def bounded(fn: ast.FunctionDef, lo: int, hi: int, limit: int) -> bool:
    """True if every value the function computes stays within ``limit`` for all inputs in range."""
    env = {a.arg: (lo, hi) for a in fn.args.args}
    try:
        _assign_intervals(fn.body[:-1], env, limit)
    except _OutOfBounds:
        return False
    return True


# --- semantic checks --------------------------------------------------------------------------
def compile_function(source: str, name: str) -> Callable[..., int]:
    """Compile generated source (trusted: we built it) for fast probing."""
    namespace: dict = {"__builtins__": {"min": min, "max": max, "abs": abs, "range": range}}
    exec(compile(source, f"<{name}>", "exec"), namespace)
    return namespace[name]


def probe_inputs(arity: int, lo: int, hi: int, n: int = 24) -> list[tuple[int, ...]]:
    """A fixed probe set per (arity, range): the same for every seed, so fingerprints compare."""
    rng = random.Random(f"pbb-probe:{arity}:{lo}:{hi}")
    corners = [tuple([lo] * arity), tuple([hi] * arity)]
    return corners + [tuple(rng.randint(lo, hi) for _ in range(arity)) for _ in range(n)]


def uses_every_argument(f: Callable[..., int], probes: list[tuple[int, ...]], lo: int,
                        hi: int) -> bool:
    """Each argument changes the output for some probe (so none is dead and f is not constant)."""
    arity = len(probes[0])
    rng = random.Random(f"pbb-argcheck:{arity}:{lo}:{hi}")
    for j in range(arity):
        changed = False
        for p in probes:
            q = list(p)
            for _ in range(3):
                q[j] = rng.randint(lo, hi)
                if q[j] != p[j] and f(*q) != f(*p):
                    changed = True
                    break
            if changed:
                break
        if not changed:
            return False
    return True


def _outputs(fn: ast.FunctionDef, probes: list[tuple[int, ...]]) -> tuple | None:
    """Outputs of ``fn`` on the probes, or None when it cannot run (e.g. an undefined name)."""
    try:
        f = compile_function(ast.unparse(fn), fn.name)
        return tuple(f(*p) for p in probes)
    except (NameError, UnboundLocalError):
        return None


def every_statement_matters(fn: ast.FunctionDef, probes: list[tuple[int, ...]]) -> bool:
    """No dead code: dropping any statement, or either side of a branch, changes some output.

    Checked semantically on the probe inputs, so it also catches no-op updates and conditions
    that never (or always) hold over the input range.
    """
    reference = _outputs(fn, probes)
    body = fn.body[:-1]
    for k, stmt in enumerate(body):
        variants = [[]]
        if isinstance(stmt, ast.If):
            variants += [stmt.body, stmt.orelse]
        for replacement in variants:
            trial = ast.FunctionDef(name=fn.name, args=fn.args,
                                    body=body[:k] + replacement + fn.body[k + 1:],
                                    decorator_list=[], returns=None)
            if _outputs(ast.fix_missing_locations(trial), probes) == reference:
                return False
    return True
