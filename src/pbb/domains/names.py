"""Pointer names: pronounceable nonsense that says nothing about the behaviour it names.

A pointer must let training text refer to a behaviour without leaking what it does, so names are
drawn from the random stream independently of the behaviour's content (``zorp_17``, ``blimo_42``).
"""

from __future__ import annotations

import keyword
import random

_ONSETS = ["b", "d", "f", "g", "k", "l", "m", "n", "p", "r", "s", "t", "v", "z",
           "bl", "br", "dr", "fl", "gr", "kl", "pl", "pr", "sk", "sn", "st", "tr", "zw"]
_VOWELS = ["a", "e", "i", "o", "u", "oo", "ai", "ee"]
_CODAS = ["", "", "", "b", "d", "k", "l", "m", "n", "p", "rp", "sh", "t", "x", "z"]


def _syllable(rng: random.Random) -> str:
    return rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_CODAS)


def pointer_name(rng: random.Random, taken: set[str]) -> str:
    """Draw a fresh name like ``zorp_17`` that is not in ``taken`` (and add it there)."""
    while True:
        stem = "".join(_syllable(rng) for _ in range(rng.choice((1, 2, 2))))
        name = f"{stem}_{rng.randint(10, 99)}"
        if name not in taken and not keyword.iskeyword(stem):
            taken.add(name)
            return name
