"""Comparing predictions with targets as Python values, and what program domains share.

Every program domain renders outputs with ``repr`` and scores a prediction by comparing the two
as Python literals of the same type: ``'ab'`` equals ``"ab"`` and ``[1,2]`` equals ``[1, 2]``,
but ``True`` is not ``1`` and ``1.0`` is not ``1``. Never ``eval``: only ``ast.literal_eval``,
plus the reprs it refuses (``set()``, ``frozenset({...})``, ``inf``, ``nan``).
"""

from __future__ import annotations

import ast

from pbb.domains.base import Behaviour, extract_answer

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


class CallQueries:
    """What domains whose queries are calls (``name(args)``) and answers values share."""

    def extract(self, completion: str) -> str | None:
        return extract_answer(completion)

    def pointer(self, behaviour: Behaviour) -> str:
        return f"`{behaviour.name}`"

    def render_query(self, query: str) -> str:
        return f"`{query}`"

    def score(self, behaviour: Behaviour, query: str, prediction: str | None) -> float:
        """The verifier: the prediction equals the re-executed output as a Python value."""
        return 1.0 if same_literal(prediction, self.execute(behaviour, query).output,
                                   self.max_prediction_chars) else 0.0

    max_prediction_chars = 10_000
