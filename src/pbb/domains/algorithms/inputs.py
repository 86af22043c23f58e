"""Small random inputs for the algorithm library, by kind (argument tuples)."""

from __future__ import annotations

import random
from collections.abc import Callable

LETTERS = "abcde"  # few letters: repeats, runs and anagrams happen often


def _list(rng, lo=0, hi=7, vlo=-9, vhi=20):
    return [rng.randint(vlo, vhi) for _ in range(rng.randint(lo, hi))]


def _word(rng, lo=1, hi=8, letters=LETTERS):
    return "".join(rng.choice(letters) for _ in range(rng.randint(lo, hi)))


def _graph(rng, directed_acyclic=False):
    n = rng.randint(2, 6)
    pairs = [(a, b) for a in range(n) for b in range(a + 1, n)]
    edges = sorted(rng.sample(pairs, rng.randint(0, min(len(pairs), n + 1))))
    if not directed_acyclic:
        edges = [(b, a) if rng.random() < 0.5 else (a, b) for a, b in edges]
    return n, edges


def _runs(rng):
    out = ""
    for _ in range(rng.randint(1, 4)):
        out += rng.choice(LETTERS) * rng.randint(1, 3)
    return out


def _target(rng, xs, hi):
    """A list and a value that is in it or (sometimes) not."""
    return xs, rng.choice(xs + [rng.randint(0, hi)])


def _list_k(rng):
    xs = _list(rng, lo=1)
    return xs, rng.randint(1, len(xs))


def _palindromish(rng):
    half = _word(rng, 0, 4)
    s = half + rng.choice(["", rng.choice(LETTERS)]) + half[::-1]
    if rng.random() < 0.4 and s:
        i = rng.randrange(len(s))
        s = s[:i] + rng.choice(LETTERS) + s[i + 1:]
    return (s,)


def _anagramish(rng):
    a = _word(rng, 1, 6)
    b = list(a)
    rng.shuffle(b)
    if rng.random() < 0.4:
        b[rng.randrange(len(b))] = rng.choice(LETTERS)
    return a, "".join(b)


def _forest(rng):
    n = rng.randint(2, 6)
    edges = [(v, rng.randrange(v)) for v in range(1, n) if rng.random() < 0.8]
    if rng.random() < 0.5:
        extra = [(a, b) for a in range(n) for b in range(a + 1, n)
                 if (a, b) not in edges and (b, a) not in edges]
        if extra:
            edges.append(rng.choice(extra))
    rng.shuffle(edges)
    return n, edges


def _equal_strings(rng):
    a = _word(rng, 1, 8)
    return a, "".join(c if rng.random() < 0.6 else rng.choice(LETTERS) for c in a)


def _prefixed_pair(rng):
    head = _word(rng, 0, 4)
    return head + _word(rng, 0, 3), head + _word(rng, 0, 3)


def _knapsack(rng):
    k = rng.randint(1, 4)
    return ([rng.randint(1, 6) for _ in range(k)], [rng.randint(1, 9) for _ in range(k)],
            rng.randint(0, 10))


def _graph_nodes(rng, k):
    """A graph and ``k`` of its nodes."""
    n, edges = _graph(rng)
    return (n, edges, *(rng.randrange(n) for _ in range(k)))


def _matrix(rng, square):
    r = rng.randint(1, 3)
    c = r if square else rng.randint(1, 3)
    return ([[rng.randint(0, 9) for _ in range(c)] for _ in range(r)],)


AZ = "abcdefghijklmnopqrstuvwxyz"

#: input kind -> a drawer of one argument tuple; every draw comes from the ``rng`` passed in, in
#: a fixed order (the data set's bytes depend on it: tests/test_golden_data.py)
DRAWERS: dict[str, Callable[[random.Random], tuple]] = {
    # lists
    "list": lambda rng: (_list(rng),),
    "list_nonneg": lambda rng: (_list(rng, vlo=0, vhi=9),),
    "list_nonempty": lambda rng: (_list(rng, lo=1),),
    "list_target": lambda rng: _target(rng, _list(rng, vlo=0, vhi=9), 12),
    "sorted_list_target": lambda rng: _target(rng, sorted(set(_list(rng, vlo=0, vhi=30))), 30),
    "list_k": _list_k,
    "list_k0": lambda rng: (_list(rng), rng.randint(0, 9)),
    "list_runs": lambda rng: ([x for x in _list(rng, vlo=0, vhi=3)
                               for _ in range(rng.randint(1, 2))],),
    "list_zeros": lambda rng: ([x if rng.random() < 0.6 else 0
                                for x in _list(rng, vlo=1, vhi=9)],),
    "two_sorted": lambda rng: (sorted(_list(rng, hi=5)), sorted(_list(rng, hi=5))),
    # strings
    "string": lambda rng: (_word(rng, 0, 8, AZ),),
    "palindromish": _palindromish,
    "runs": lambda rng: (_runs(rng),),
    "two_strings": lambda rng: (_word(rng, 0, 6), _word(rng, 0, 6)),
    "anagramish": _anagramish,
    "equal_strings": _equal_strings,
    "sentence": lambda rng: (" ".join(_word(rng, 1, 5, AZ)
                                      for _ in range(rng.randint(1, 4))),),
    "text_and_pattern": lambda rng: (_word(rng, 3, 10, "ab"), _word(rng, 1, 2, "ab")),
    "prefixed_pair": _prefixed_pair,
    # numbers
    "int": lambda rng: (rng.randint(0, 20),),
    "small_int": lambda rng: (rng.randint(0, 10),),
    "pos_int": lambda rng: (rng.randint(1, 60),),
    "big_int": lambda rng: (rng.randint(0, 99999),),
    "two_pos": lambda rng: (rng.randint(1, 60), rng.randint(1, 60)),
    "power_mod": lambda rng: (rng.randint(0, 20), rng.randint(0, 12), rng.randint(2, 50)),
    "perfectish": lambda rng: (rng.choice([6, 28, 496]) if rng.random() < 0.4
                               else rng.randint(1, 60),),
    "knapsack": _knapsack,
    "grid_size": lambda rng: (rng.randint(1, 5), rng.randint(1, 5)),
    # graphs and matrices
    "forest": _forest,
    "graph": _graph,
    "graph_start": lambda rng: _graph_nodes(rng, 1),
    "graph_two_nodes": lambda rng: _graph_nodes(rng, 2),
    "dag": lambda rng: _graph(rng, directed_acyclic=True),
    "matrix": lambda rng: _matrix(rng, square=False),
    "square": lambda rng: _matrix(rng, square=True),
}


def draw(kind: str, rng: random.Random) -> tuple:
    try:
        drawer = DRAWERS[kind]
    except KeyError:
        raise ValueError(f"unknown input kind {kind!r}") from None
    return drawer(rng)
