"""Membership: lark's Earley parser (the verifier) and an independent recognizer (its check).

The verifier maps each terminal to one private-use character and parses the mapped string with
an Earley parser built from the grammar, so lark's lexer can never split or merge tokens
differently from :func:`~pbb.domains.grammars.grammar.tokenize`. A string over unknown tokens
is rejected before parsing; a string longer than ``max_tokens`` scores 0.0 without parsing, and
a parse that runs past ``time_limit`` seconds of CPU time is treated as a non-member (Earley is
cubic in the worst case; neither limit is reached by the strings this domain samples).

:func:`reference_member` is a memoised span recognizer written separately from the verifier
(no lark, no shared code beyond the grammar structure); the tests check that both agree.
"""

from __future__ import annotations

import contextlib
import functools
import signal
import threading

from pbb.domains.grammars.grammar import Grammar, is_terminal, unquote

_PRIVATE_USE = 0xE000


class _TimeUp(Exception):
    pass


@contextlib.contextmanager
def time_limit(seconds: float):
    """Raise :class:`_TimeUp` after ``seconds`` of this process's CPU time (main thread only;
    elsewhere no limit). Why CPU time, not wall time: a parse cut short counts as a non-member,
    so a wall-clock limit made the verdict depend on the machine's load: on a stalled machine a
    valid 14-token string was once rejected (the verifier test's one disagreement in 10,080),
    and the grammars' chance rate, written into the data, could change between two runs."""
    if seconds <= 0 or threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_alarm(signum, frame):
        raise _TimeUp

    old = signal.signal(signal.SIGPROF, on_alarm)
    signal.setitimer(signal.ITIMER_PROF, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.signal(signal.SIGPROF, old)


class Verifier:
    """Membership in one grammar's language."""

    def __init__(self, g: Grammar):
        from lark import Lark

        self.grammar = g
        self.code = {t: chr(_PRIVATE_USE + i) for i, t in enumerate(g.terminals)}
        names = {a: f"r{i}" for i, a in enumerate(g.nonterminals)}
        lines = []
        for lhs, alts in g.rules:
            body = " | ".join(" ".join(f"T{g.terminals.index(unquote(s))}" if is_terminal(s)
                                       else names[s] for s in p) for p in alts)
            lines.append(f"{names[lhs]}: {body}")
        for t, c in self.code.items():
            lines.append(f'T{g.terminals.index(t)}: "\\u{ord(c):04x}"')
        self.parser = Lark("\n".join(lines), start=names[g.start], parser="earley",
                           lexer="basic", ambiguity="forest")

    def member(self, tokens: list[str], max_tokens: int = 256, time_limit_s: float = 1.0) -> bool:
        from lark.exceptions import LarkError

        if not tokens or len(tokens) > max_tokens or any(t not in self.code for t in tokens):
            return False
        try:
            with time_limit(time_limit_s):
                self.parser.parse("".join(self.code[t] for t in tokens))
            return True
        except (LarkError, _TimeUp):
            return False


@functools.lru_cache(maxsize=4096)
def verifier_for(g: Grammar) -> Verifier:
    return Verifier(g)


def reference_member(g: Grammar, tokens: list[str]) -> bool:
    """Independent check: can the start symbol derive exactly ``tokens``? (span recursion)

    Every symbol yields at least one token (the format has no empty alternatives), so a
    production of k symbols splits a span into k non-empty parts. Unit productions (A -> B) keep
    the span; a per-span ``active`` set cuts their cycles.
    """
    table = g.table
    n = len(tokens)
    if n == 0:
        return False

    @functools.cache
    def derives(sym: str, i: int, j: int, active: frozenset) -> bool:
        if is_terminal(sym):
            return j == i + 1 and tokens[i] == unquote(sym)
        if (sym, i, j) in active:
            return False
        inner = active | {(sym, i, j)}
        return any(seq(p, 0, i, j, inner) for p in table[sym])

    def seq(p: tuple[str, ...], k: int, i: int, j: int, active: frozenset) -> bool:
        left = len(p) - k
        if left == 1:
            return derives(p[k], i, j, active if len(p) == 1 else frozenset())
        return any(derives(p[k], i, m, frozenset()) and seq(p, k + 1, m, j, frozenset())
                   for m in range(i + 1, j - left + 2))

    return derives(g.start, 0, n, frozenset())
