"""Comparing predictions with targets as Python values, and what program domains share.

Every program domain renders outputs with ``repr`` and scores a prediction by comparing the two
as Python literals of the same type: ``'ab'`` equals ``"ab"`` and ``[1,2]`` equals ``[1, 2]``,
but ``True`` is not ``1`` and ``1.0`` is not ``1``. Never ``eval``: only ``ast.literal_eval``,
plus the reprs it refuses (``set()``, ``frozenset({...})``, ``inf``, ``nan``).
"""

from __future__ import annotations

import ast
from typing import ClassVar

from pbb.domains.base import Behaviour, Domain
from pbb.domains.templates import FORMAT_HINTS, PROGRAM_TEMPLATES
from pbb.errors import PbbError

_SPECIAL = {"set()": set(), "frozenset()": frozenset(), "inf": float("inf"),
            "-inf": float("-inf"), "nan": float("nan")}
NOT_A_LITERAL = object()


def literal(text: str) -> object:
    """A Python literal, or :data:`NOT_A_LITERAL` (which equals nothing)."""
    text = text.strip()
    if text in _SPECIAL:
        return _SPECIAL[text]
    try:
        return ast.literal_eval(text)
    except Exception:  # noqa: BLE001 - junk of any kind is simply not a literal
        pass
    if text.startswith("frozenset(") and text.endswith(")"):
        inner = literal(text[len("frozenset("):-1])
        if isinstance(inner, set):
            return frozenset(inner)
    return NOT_A_LITERAL


def same_literal(prediction: str | None, target: str, max_chars: int = 10_000) -> bool:
    """Equal as Python values of the same type; predictions over ``max_chars`` are wrong."""
    if prediction is None or len(prediction) > max_chars:
        return False
    p, t = literal(prediction), literal(target)
    if p is NOT_A_LITERAL or type(p) is not type(t):
        return False
    return p == t or repr(p) == repr(t)  # repr: nan equals nan


class Rename(ast.NodeTransformer):
    """Rename a function in a parsed module: its definition and every use (recursion included)."""

    def __init__(self, old: str, new: str):
        self.old, self.new = old, new

    def visit_FunctionDef(self, node):
        if node.name == self.old:
            node.name = self.new
        return self.generic_visit(node)

    def visit_Name(self, node):
        if node.id == self.old:
            node.id = self.new
        return node


class CallQueries(Domain):
    """What domains whose queries are calls (``name(args)``) and answers values share: writing a
    call, reading one back, and the verifier."""

    #: calls of Python functions: the program templates and answer hints, unless a domain
    #: says otherwise
    templates: ClassVar[dict[str, list[str]]] = PROGRAM_TEMPLATES
    hints: ClassVar[dict[str, str]] = FORMAT_HINTS
    max_prediction_chars = 10_000

    def pointer(self, behaviour: Behaviour) -> str:
        return f"`{behaviour.name}`"

    def render_query(self, query: str) -> str:
        return f"`{query}`"

    def score(self, behaviour: Behaviour, query: str, prediction: str | None) -> float:
        """The verifier: the prediction equals the re-executed output as a Python value."""
        return 1.0 if same_literal(prediction, self.execute(behaviour, query).output,
                                   self.max_prediction_chars) else 0.0

    @staticmethod
    def format_call(name: str, args: tuple) -> str:
        """``zorp_17(3, 'ab')``: the arguments as their reprs."""
        return f"{name}({', '.join(repr(a) for a in args)})"

    @staticmethod
    def parse_call(query: str, name: str) -> tuple:
        """``zorp_17(3, 'ab')`` -> ``(3, 'ab')``: a call of ``name`` with literal arguments, or
        one clear error. Domains check the arguments' types and sizes themselves."""
        try:
            node = ast.parse(query.strip(), mode="eval").body
        except SyntaxError:
            raise PbbError(f"query {query!r}: not a function call") from None
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and not node.keywords):
            raise PbbError(f"query {query!r}: not a function call")
        if node.func.id != name:
            raise PbbError(f"query {query!r}: calls {node.func.id}, expected {name}")
        try:
            return tuple(ast.literal_eval(a) for a in node.args)
        except (ValueError, TypeError, SyntaxError, RecursionError):
            raise PbbError(f"query {query!r}: arguments are not literals") from None
