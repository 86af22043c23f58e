"""Small random inputs for the algorithm library, by kind (argument tuples)."""

from __future__ import annotations

import random

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


def draw(kind: str, rng: random.Random) -> tuple:
    if kind == "list":
        return (_list(rng),)
    if kind == "list_nonneg":
        return (_list(rng, vlo=0, vhi=9),)
    if kind == "list_nonempty":
        return (_list(rng, lo=1),)
    if kind == "list_target":
        xs = _list(rng, vlo=0, vhi=9)
        return xs, rng.choice(xs + [rng.randint(0, 12)])
    if kind == "sorted_list_target":
        xs = sorted(set(_list(rng, vlo=0, vhi=30)))
        return xs, rng.choice(xs + [rng.randint(0, 30)])
    if kind == "list_k":
        xs = _list(rng, lo=1)
        return xs, rng.randint(1, len(xs))
    if kind == "list_k0":
        return _list(rng), rng.randint(0, 9)
    if kind == "list_runs":
        return ([x for x in _list(rng, vlo=0, vhi=3) for _ in range(rng.randint(1, 2))],)
    if kind == "list_zeros":
        return ([x if rng.random() < 0.6 else 0 for x in _list(rng, vlo=1, vhi=9)],)
    if kind == "two_sorted":
        return sorted(_list(rng, hi=5)), sorted(_list(rng, hi=5))
    if kind == "string":
        return (_word(rng, 0, 8, "abcdefghijklmnopqrstuvwxyz"),)
    if kind == "palindromish":
        half = _word(rng, 0, 4)
        s = half + rng.choice(["", rng.choice(LETTERS)]) + half[::-1]
        if rng.random() < 0.4 and s:
            i = rng.randrange(len(s))
            s = s[:i] + rng.choice(LETTERS) + s[i + 1:]
        return (s,)
    if kind == "runs":
        return (_runs(rng),)
    if kind == "two_strings":
        return _word(rng, 0, 6), _word(rng, 0, 6)
    if kind == "anagramish":
        a = _word(rng, 1, 6)
        b = list(a)
        rng.shuffle(b)
        if rng.random() < 0.4:
            b[rng.randrange(len(b))] = rng.choice(LETTERS)
        return a, "".join(b)
    if kind == "forest":
        n = rng.randint(2, 6)
        edges = [(v, rng.randrange(v)) for v in range(1, n) if rng.random() < 0.8]
        if rng.random() < 0.5:
            extra = [(a, b) for a in range(n) for b in range(a + 1, n)
                     if (a, b) not in edges and (b, a) not in edges]
            if extra:
                edges.append(rng.choice(extra))
        rng.shuffle(edges)
        return n, edges
    if kind == "equal_strings":
        a = _word(rng, 1, 8)
        return a, "".join(c if rng.random() < 0.6 else rng.choice(LETTERS) for c in a)
    if kind == "sentence":
        return (" ".join(_word(rng, 1, 5, "abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(1, 4))),)
    if kind == "text_and_pattern":
        return _word(rng, 3, 10, "ab"), _word(rng, 1, 2, "ab")
    if kind == "int":
        return (rng.randint(0, 20),)
    if kind == "small_int":
        return (rng.randint(0, 10),)
    if kind == "pos_int":
        return (rng.randint(1, 60),)
    if kind == "big_int":
        return (rng.randint(0, 99999),)
    if kind == "two_pos":
        return rng.randint(1, 60), rng.randint(1, 60)
    if kind == "power_mod":
        return rng.randint(0, 20), rng.randint(0, 12), rng.randint(2, 50)
    if kind == "perfectish":
        return (rng.choice([6, 28, 496]) if rng.random() < 0.4 else rng.randint(1, 60),)
    if kind == "prefixed_pair":
        head = _word(rng, 0, 4)
        return head + _word(rng, 0, 3), head + _word(rng, 0, 3)
    if kind == "knapsack":
        k = rng.randint(1, 4)
        return ([rng.randint(1, 6) for _ in range(k)], [rng.randint(1, 9) for _ in range(k)],
                rng.randint(0, 10))
    if kind == "grid_size":
        return rng.randint(1, 5), rng.randint(1, 5)
    if kind == "graph":
        return _graph(rng)
    if kind == "graph_start":
        n, edges = _graph(rng)
        return n, edges, rng.randrange(n)
    if kind == "graph_two_nodes":
        n, edges = _graph(rng)
        return n, edges, rng.randrange(n), rng.randrange(n)
    if kind == "dag":
        return _graph(rng, directed_acyclic=True)
    if kind == "matrix":
        r, c = rng.randint(1, 3), rng.randint(1, 3)
        return ([[rng.randint(0, 9) for _ in range(c)] for _ in range(r)],)
    if kind == "square":
        n = rng.randint(1, 3)
        return ([[rng.randint(0, 9) for _ in range(n)] for _ in range(n)],)
    raise ValueError(f"unknown input kind {kind!r}")
