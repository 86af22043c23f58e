"""Domain ``ciphers``: parameterised text ciphers, with demonstrations skewed toward common keys.

A behaviour is a Python function ``name(text, *key)`` of one family — ``shift`` (Caesar),
``affine``, ``keyword`` (keyword substitution) or ``vigenere`` — in one direction (encrypt or
decrypt) over its own alphabet (a shuffled one by default, so the exact function is new to any
model while the family is familiar; ``alphabet: standard`` gives the textbook ciphers).

Keys. Test inputs always draw keys uniformly. Demonstrations draw a *common* key (``shift 13``,
``affine 5, 8``, keyword ``'secret'``, key ``'key'``...) with probability ``key_skew`` and a
uniform key otherwise: the paper's robustness experiment asks whether a model that learned the
instruction executes the cipher for any key, where one that learned skewed demonstrations only
handles the common ones (``configs/ciphers_robustness.yaml``; the claim:
``configs/claims/ciphers_robustness.yaml``).

Execution never runs the instruction text of a data file: the function is rebuilt from its
``meta`` (family, direction, alphabet), and ``pbb data validate`` checks that the instruction is
exactly that rebuilt source.
"""

from __future__ import annotations

import random
import string
from typing import ClassVar, Literal

from pydantic import ConfigDict, Field, model_validator

from pbb.domains.base import ANSWER_PREFIX, Behaviour, Execution, LaterOptions
from pbb.domains.cipher_traces import TRACES, WALKABLE, WALKS, out_line
from pbb.domains.names import pointer_name
from pbb.domains.values import CallQueries
from pbb.errors import PbbError

FAMILIES = ("shift", "affine", "keyword", "vigenere")
UNITS = (1, 3, 5, 7, 9, 11, 15, 17, 19, 21, 23, 25)  # a with gcd(a, 26) = 1
COMMON_KEYS = {"shift": [(13,), (3,)], "affine": [(5, 8), (7, 3)],
               "keyword": [("secret",), ("zebra",)], "vigenere": [("key",), ("lemon",)]}
_PARAMS = {"shift": "k", "affine": "a, b", "keyword": "keyword", "vigenere": "key"}
_WORD_LETTERS = string.ascii_lowercase


class CiphersConfig(LaterOptions):
    model_config = ConfigDict(extra="forbid")
    LATER: ClassVar[dict] = {"train_key_skew": None, "running_output": False,
                             "alphabet_code": "string"}

    families: list[Literal["shift", "affine", "keyword", "vigenere"]] = Field(
        default_factory=lambda: list(FAMILIES), min_length=1)
    directions: list[Literal["encrypt", "decrypt"]] = Field(
        default_factory=lambda: ["encrypt", "decrypt"], min_length=1)
    alphabet: Literal["shuffled", "standard"] = Field(
        "shuffled", description="shuffled: each behaviour has its own letter order (novel "
        "functions); standard: a..z (the textbook ciphers, few distinct behaviours)")
    min_text: int = Field(3, ge=1, le=40, description="shortest plaintext (characters)")
    max_text: int = Field(10, ge=1, le=80, description="longest plaintext (characters)")
    key_skew: float = Field(0.0, ge=0, le=1, description="share of demonstrations on a common "
                            "key (test inputs are always uniform)")
    common_keys: int = Field(1, ge=1, le=2, description="how many common keys per family")
    train_key_skew: float | None = Field(
        None, ge=0, le=1, description="key_skew for the demonstrations of *train* ciphers "
        "(default: key_skew). The skew is what the robustness claim tests on eval ciphers; "
        "train ciphers teach execution, and skewed ones taught a key instead (docs/domains.md)")
    trace: Literal["compact", "indexed", "lookup", "walk", "countdown"] = Field(
        "compact", description="CoT trace: compact (one line per letter, lookups and the "
        "reduction done silently), indexed (the alphabet spelled out with positions, each "
        "lookup and reduction written), lookup (indexed, with a positions-to-letters list so "
        "that both lookups are forward copies) or walk (shift and vigenere only: each shift "
        "walked letter by letter along the alphabet, no lookup by number) or countdown (the "
        "walk, each hop written with the hops left, so every walk stops at 0): "
        "pbb.domains.cipher_traces")
    alphabet_code: Literal["string", "spaced"] = Field(
        "string", description="how the code writes its alphabet: string "
        "(`alphabet = \"kwo...\"`) or spaced (`alphabet = \"k w o ...\".split()`, one letter a "
        "token; not for keyword ciphers). Why: a walk trace spells the alphabet as its ring, and "
        "a model that recalled the string has to spell its BPE pieces (`bon`, `uh`) first; "
        "spaced, the ring copies the code's tokens (docs/domains.md)")
    running_output: bool | Literal["quoted"] = Field(
        False, description="after each step line, the output so far: true (spaced) writes "
        "it one letter a token (`out: o r`), quoted as the code's string (`out = 'or'`); "
        "false: none. Why: the `return` line then copies the line above it rather than "
        "gathering the steps' letters from every line (docs/domains.md)")

    @model_validator(mode="after")
    def _ranges(self) -> CiphersConfig:
        if self.min_text > self.max_text:
            raise ValueError("min_text is larger than max_text")
        other = sorted(set(self.families) - set(WALKABLE))
        if self.trace in WALKS and other:
            raise ValueError(f"trace {self.trace} writes the families {', '.join(WALKABLE)} "
                             f"only, not {', '.join(other)} (set families)")
        if self.alphabet_code == "spaced" and "keyword" in self.families:
            raise ValueError("alphabet_code spaced writes the alphabet as a list, which a "
                             "keyword cipher's `keyword + alphabet` cannot join (set families)")
        return self


def render(name: str, family: str, direction: str, alphabet: str, code: str = "string") -> str:
    """The instruction: the function's source (``code``: the alphabet as a string, or
    ``spaced``, a string of letters and spaces split into a list)."""
    enc = direction == "encrypt"
    written = f'"{alphabet}"' if code == "string" else f'"{" ".join(alphabet)}".split()'
    head = [f"def {name}(text, {_PARAMS[family]}):", f"    alphabet = {written}"]
    loop_open = ["    out = \"\"", "    for ch in text:", "        if ch in alphabet:"]
    loop_close = ["        else:", "            out += ch", "    return out"]
    if family == "shift":
        body = [f"            out += alphabet[(alphabet.index(ch) {'+' if enc else '-'} k) % 26]"]
        return "\n".join(head + loop_open + body + loop_close)
    if family == "affine":
        if enc:
            body = ["            out += alphabet[(a * alphabet.index(ch) + b) % 26]"]
            return "\n".join(head + loop_open + body + loop_close)
        body = ["            out += alphabet[(inverse * (alphabet.index(ch) - b)) % 26]"]
        return "\n".join(head + ["    inverse = pow(a, -1, 26)"] + loop_open + body + loop_close)
    if family == "keyword":
        table = ['    table = ""', "    for ch in keyword + alphabet:", "        if ch not in table:",
                 "            table += ch"]
        body = ["            out += table[alphabet.index(ch)]" if enc else
                "            out += alphabet[table.index(ch)]"]
        return "\n".join(head + table + loop_open + body + loop_close)
    body = ["            shift = alphabet.index(key[j % len(key)])",
            f"            out += alphabet[(alphabet.index(ch) {'+' if enc else '-'} shift) % 26]",
            "            j += 1"]
    return "\n".join(head + ["    out = \"\"", "    j = 0", "    for ch in text:",
                             "        if ch in alphabet:"] + body + loop_close)


def run(meta: dict, text: str, key: tuple) -> tuple[str, list[str]]:
    """(output, trace lines) of one call, computed from the behaviour's parameters: the key's
    lines, one line per character (a letter of the alphabet through the family's step, any other
    character kept) and the result. ``meta["trace"]`` (``indexed``, ``lookup``) picks the traces of
    :mod:`pbb.domains.cipher_traces` that write each lookup out; ``meta["running_output"]`` adds
    the output so far after each step, spaced (``True``) or ``"quoted"``
    (:func:`~pbb.domains.cipher_traces.out_line`)."""
    alphabet = meta["alphabet"]
    cipher = TRACES[meta.get("trace", "compact")][meta["family"]]
    lines, step = cipher(alphabet, meta["direction"] == "encrypt", text, key)
    out, n = "", 0  # n: letters of the alphabet enciphered so far (Vigenère's key position)
    for ch in text:
        if ch in alphabet:
            c, line = step(ch, n)
            n += 1
        else:
            c, line = ch, f"{ch!r}: kept"
        out += c
        lines.append(line)
        if running := meta.get("running_output"):
            lines.append(out_line(out, alphabet, quoted=running == "quoted"))
    lines.append(f"return {out!r}")
    return out, lines


def _source(name: str, meta: dict) -> str:
    """A behaviour's instruction rebuilt from its ``meta``."""
    return render(name, meta["family"], meta["direction"], meta["alphabet"],
                  meta.get("alphabet_code", "string"))


def _word(rng: random.Random, lo: int, hi: int) -> str:
    return "".join(rng.choice(_WORD_LETTERS) for _ in range(rng.randint(lo, hi)))


def _text(cfg: CiphersConfig, rng: random.Random) -> str:
    n = rng.randint(cfg.min_text, cfg.max_text)
    if n >= 5 and rng.random() < 0.5:  # sometimes two words: spaces are kept as they are
        cut = rng.randint(2, n - 3)
        return _word(rng, cut, cut) + " " + _word(rng, n - cut - 1, n - cut - 1)
    return _word(rng, n, n)


def uniform_key(family: str, rng: random.Random) -> tuple:
    if family == "shift":
        return (rng.randint(1, 25),)
    if family == "affine":
        return (rng.choice(UNITS), rng.randint(0, 25))
    if family == "keyword":
        return (_word(rng, 3, 6),)
    return (_word(rng, 2, 4),)


class CiphersDomain(CallQueries):
    name: ClassVar[str] = "ciphers"
    Config: ClassVar[type[CiphersConfig]] = CiphersConfig

    def generate(self, cfg: CiphersConfig, n: int, rng: random.Random) -> list[Behaviour]:
        kinds = [(f, d) for f in cfg.families for d in cfg.directions]
        if cfg.alphabet == "standard" and n > len(kinds):
            raise PbbError(f"ciphers: alphabet standard gives only {len(kinds)} distinct "
                           f"behaviours for these families and directions, {n} requested")
        names: set[str] = set()
        out = []
        for k in range(n):
            family, direction = kinds[k % len(kinds)]  # families balanced across the set
            letters = list(string.ascii_lowercase)
            if cfg.alphabet == "shuffled":
                rng.shuffle(letters)
            meta = {"family": family, "direction": direction, "alphabet": "".join(letters)}
            if cfg.trace != "compact":  # absent = compact: data sets made before stay the same
                meta["trace"] = cfg.trace
            if cfg.running_output:  # absent = no out lines, likewise
                meta["running_output"] = cfg.running_output  # True (spaced) or "quoted"
            if cfg.alphabet_code != "string":  # absent = the string, likewise
                meta["alphabet_code"] = cfg.alphabet_code
            name = pointer_name(rng, names)
            out.append(Behaviour(id=f"{self.name}-{k:05d}", domain=self.name, name=name,
                                 instruction=_source(name, meta), meta=meta))
        return out

    def sample_inputs(self, cfg: CiphersConfig, behaviour: Behaviour, demos: int,
                      test_inputs: int, rng: random.Random) -> tuple[list[str], list[str]]:
        family = behaviour.meta["family"]
        common = COMMON_KEYS[family][:cfg.common_keys]
        seen: set[str] = set()

        def draw(skew: float) -> str:
            while True:
                key = rng.choice(common) if rng.random() < skew else uniform_key(family, rng)
                q = self.format_call(behaviour.name, (_text(cfg, rng), *key))
                if q not in seen:
                    seen.add(q)
                    return q

        skew = cfg.key_skew
        if behaviour.split == "train" and cfg.train_key_skew is not None:
            skew = cfg.train_key_skew
        tests = [draw(0.0) for _ in range(test_inputs)]
        return [draw(skew) for _ in range(demos)], tests

    def parse(self, behaviour: Behaviour, query: str) -> tuple[str, tuple]:
        args = self.parse_call(query, behaviour.name)
        family = behaviour.meta["family"]
        ok = bool(args) and isinstance(args[0], str) and (
            (family == "shift" and len(args) == 2 and type(args[1]) is int)
            or (family == "affine" and len(args) == 3 and args[1] in UNITS and type(args[2]) is int)
            or (family in ("keyword", "vigenere") and len(args) == 2 and isinstance(args[1], str)
                and args[1] and set(args[1]) <= set(string.ascii_lowercase)))
        if not ok:
            raise PbbError(f"query {query!r}: bad arguments for a {family} cipher")
        return args[0], tuple(args[1:])

    def execute(self, behaviour: Behaviour, query: str) -> Execution:
        meta = behaviour.meta
        if behaviour.instruction != _source(behaviour.name, meta):
            raise PbbError(f"{behaviour.id}: instruction differs from its cipher parameters")
        text, key = self.parse(behaviour, query)
        out, lines = run(meta, text, key)
        return Execution(output=repr(out), trace="\n".join(lines + [f"{ANSWER_PREFIX} {out!r}"]))

    @staticmethod
    def is_common_key(behaviour: Behaviour, query: str) -> bool:
        """Whether a query uses one of its family's common keys (for robustness breakdowns)."""
        _, key = CiphersDomain().parse(behaviour, query)
        return key in COMMON_KEYS[behaviour.meta["family"]]
