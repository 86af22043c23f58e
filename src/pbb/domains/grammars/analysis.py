"""What can be known about a grammar without parsing: productivity, reachability, lengths.

Also the exact-length sampler (a string of length ``n`` drawn by choosing, at every nonterminal,
uniformly among the productions that can still yield exactly the remaining length) and a
bounded enumeration of the language, used for fingerprints and non-triviality checks.
"""

from __future__ import annotations

import functools
import itertools
import random

from pbb.domains.grammars.grammar import Grammar, Production, is_terminal, unquote
from pbb.errors import PbbError

#: derivations deeper than this are cut (only unit-production cycles can get there)
MAX_DEPTH = 200


def productive(g: Grammar) -> set[str]:
    """Nonterminals that derive at least one finite string."""
    table, done = g.table, set()
    changed = True
    while changed:
        changed = False
        for lhs, alts in table.items():
            if lhs not in done and any(all(is_terminal(s) or s in done for s in p) for p in alts):
                done.add(lhs)
                changed = True
    return done


def reachable(g: Grammar) -> set[str]:
    table, seen, todo = g.table, {g.start}, [g.start]
    while todo:
        for p in table[todo.pop()]:
            for s in p:
                if not is_terminal(s) and s not in seen:
                    seen.add(s)
                    todo.append(s)
    return seen


def recursive(g: Grammar) -> bool:
    """True when some reachable nonterminal can derive a form containing itself."""
    table = g.table
    edges = {a: {s for p in alts for s in p if not is_terminal(s)} for a, alts in table.items()}
    for a in reachable(g):
        seen, todo = set(), list(edges[a])
        while todo:
            b = todo.pop()
            if b == a:
                return True
            if b not in seen:
                seen.add(b)
                todo.extend(edges[b])
    return False


class Lengths:
    """Achievable string lengths (up to ``limit``) of every nonterminal and production suffix."""

    def __init__(self, g: Grammar, limit: int):
        self.g, self.limit, self.table = g, limit, g.table
        self.of: dict[str, frozenset[int]] = {a: frozenset() for a in self.table}
        changed = True
        while changed:  # a fixed point (unit productions make one pass insufficient)
            changed = False
            self._suffix.cache_clear()
            for a, alts in self.table.items():
                new = frozenset().union(*(self._suffix(p, 0) for p in alts))
                if new != self.of[a]:
                    self.of[a] = new
                    changed = True
        self._suffix.cache_clear()

    def symbol(self, s: str) -> frozenset[int]:
        return frozenset({1}) if is_terminal(s) else self.of[s]

    @functools.cache  # noqa: B019 - one Lengths per grammar, dropped with it
    def _suffix(self, p: Production, i: int) -> frozenset[int]:
        if i == len(p):
            return frozenset({0})
        rest = self._suffix(p, i + 1)
        return frozenset(a + b for a in self.symbol(p[i]) for b in rest if a + b <= self.limit)

    def suffix(self, p: Production, i: int) -> frozenset[int]:
        return self._suffix(p, i)

    def start(self) -> list[int]:
        return sorted(self.of[self.g.start])


def sample_exact(g: Grammar, lengths: Lengths, n: int, rng: random.Random) -> tuple[list[str], list[str]]:
    """A string of exactly ``n`` terminals and its leftmost derivation (sentential forms)."""
    if n not in lengths.of[g.start]:
        raise PbbError(f"no string of length {n} in this grammar")
    table = g.table
    form: list[tuple[str, int, int]] = [(g.start, n, 0)]  # (symbol, length to yield, depth)
    steps = [_show([g.start])]
    while True:
        k = next((i for i, (s, _, _) in enumerate(form) if not is_terminal(s)), None)
        if k is None:
            break
        sym, want, depth = form[k]
        if depth > MAX_DEPTH:
            raise PbbError(f"grammar sampler: derivation deeper than {MAX_DEPTH} (a unit cycle?)")
        options = [p for p in table[sym] if want in lengths.suffix(p, 0)]
        if depth > 20:  # leave unit productions when anything else works: guarantees progress
            options = [p for p in options if len(p) > 1 or is_terminal(p[0])] or options
        prod = rng.choice(options)
        parts, left = [], want
        for i, s in enumerate(prod):
            rest = lengths.suffix(prod, i + 1)
            choices = [m for m in sorted(lengths.symbol(s)) if left - m in rest]
            m = rng.choice(choices)
            parts.append((s, m, depth + 1))
            left -= m
        form[k:k + 1] = parts
        steps.append(_show([s for s, _, _ in form]))
    return [unquote(s) for s, _, _ in form], steps


def _show(symbols: list[str]) -> str:
    return " ".join(symbols)


def enumerate_language(g: Grammar, limit: int, cap: int = 5000) -> set[tuple[str, ...]] | None:
    """All strings of length <= ``limit``; None when there are more than ``cap`` of them."""
    table = g.table
    strings: dict[str, dict[int, set[tuple[str, ...]]]] = {a: {} for a in table}

    def combos(p: Production, n: int) -> set[tuple[str, ...]]:
        out: set[tuple[str, ...]] = set()
        if len(p) > n:
            return out
        for split in _compositions(n, len(p)):
            pools = []
            for s, m in zip(p, split):
                if is_terminal(s):
                    pools.append({(unquote(s),)} if m == 1 else set())
                else:
                    pools.append(strings[s].get(m, set()))
                if not pools[-1]:
                    break
            else:
                for parts in itertools.product(*pools):
                    out.add(tuple(itertools.chain.from_iterable(parts)))
                    if len(out) > cap:
                        return out
        return out

    total = 0
    for n in range(1, limit + 1):
        changed = True
        while changed:
            changed = False
            for a, alts in table.items():
                cur = strings[a].setdefault(n, set())
                before = len(cur)
                for p in alts:
                    cur |= combos(p, n)
                if len(cur) > cap:
                    return None
                changed |= len(cur) != before
        total += len(strings[g.start][n])
        if total > cap:
            return None
    return set().union(*(strings[g.start][n] for n in range(1, limit + 1)))


def _compositions(n: int, k: int):
    """Ways to write n as an ordered sum of k positive integers."""
    if k == 1:
        yield (n,)
        return
    for first in range(1, n - k + 2):
        for rest in _compositions(n - first, k - 1):
            yield (first, *rest)
