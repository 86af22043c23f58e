"""Random context-free grammars that are well-formed, non-trivial and pairwise different.

Accepted grammars satisfy, checked here: every nonterminal is productive (derives a finite
string) and reachable from the start symbol; no alternative is listed twice; no empty or unit
alternatives (a one-symbol alternative is a terminal), so every derivation step makes progress;
the language holds at least ``min_language`` strings up to ``max_length`` (not tiny) and at most
``max_universal_share`` of all strings of length <= 4 over its terminals (not everything); its
``min_length``..``max_length`` window holds at least two lengths. Distinctness against the rest
of a set is the caller's job, by :func:`fingerprint`.
"""

from __future__ import annotations

import random
import string

from pbb.domains.grammars.analysis import (
    Lengths,
    enumerate_language,
    productive,
    reachable,
)
from pbb.domains.grammars.config import GrammarsConfig
from pbb.domains.grammars.grammar import Grammar, Production

_ONSETS = ["b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z"]
_VOWELS = ["a", "e", "i", "o", "u"]
#: nonsense syllables that are neither English words nor pointer-name stems of their own
TOKEN_POOL = sorted({o + v for o in _ONSETS for v in _VOWELS} - {"be", "do", "go", "no", "so", "to", "me"})
_NONTERMINAL_NAMES = ["S", "A", "B", "C", "D", "E", "F", "G"]
#: strings of length <= this identify a language in fingerprints
PROBE_LENGTH = 6


def random_grammar(cfg: GrammarsConfig, rng: random.Random) -> Grammar:
    """One candidate (possibly ill-formed: :func:`acceptable` decides)."""
    n = rng.randint(cfg.min_nonterminals, cfg.max_nonterminals)
    names = _NONTERMINAL_NAMES[:n]
    pool = list(string.ascii_lowercase) if cfg.terminal_style == "chars" else TOKEN_POOL
    terminals = rng.sample(pool, cfg.terminals)
    rules = []
    for i, lhs in enumerate(names):
        later, anywhere = names[i + 1:], names
        alts: list[Production] = []
        for k in range(rng.randint(1 if later else 2, cfg.max_alternatives)):
            length = rng.randint(1, cfg.max_rule_length)
            if length == 1:
                prod: Production = (f'"{rng.choice(terminals)}"',)
            else:
                symbols = []
                for _ in range(length):
                    if rng.random() < 0.5 and (later or k > 0):
                        back = rng.random() < cfg.recursion_prob or not later
                        symbols.append(rng.choice(anywhere if back else later))
                    else:
                        symbols.append(f'"{rng.choice(terminals)}"')
                prod = tuple(symbols)
            if prod not in alts:
                alts.append(prod)
        rules.append((lhs, tuple(alts)))
    return Grammar(tuple(rules))


def acceptable(g: Grammar, cfg: GrammarsConfig) -> bool:
    names = set(g.nonterminals)
    if productive(g) != names or reachable(g) != names:
        return False
    if any(len(p) == 1 and not p[0].startswith('"') for _, p in g.productions()):
        return False
    window = [n for n in Lengths(g, cfg.max_length).start() if n >= cfg.min_length]
    if len(window) < 2:
        return False
    strings = enumerate_language(g, cfg.max_length, cap=cfg.min_language * 50)
    if strings is not None and len(strings) < cfg.min_language:
        return False
    short = enumerate_language(g, 4, cap=10**6)
    sigma = len(g.terminals)
    universe = sum(sigma ** k for k in range(1, 5))
    return short is not None and len(short) <= cfg.max_universal_share * universe


def fingerprint(g: Grammar) -> tuple:
    """The language on a probe: its terminals and its strings up to :data:`PROBE_LENGTH`
    (or up to the longest length whose strings number at most 20,000)."""
    for limit in range(PROBE_LENGTH, 0, -1):
        strings = enumerate_language(g, limit, cap=20000)
        if strings is not None:
            return (frozenset(g.terminals), limit, frozenset(strings))
    return (frozenset(g.terminals), 0, frozenset())
