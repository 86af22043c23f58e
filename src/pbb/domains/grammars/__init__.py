"""Domain ``grammars``: generate strings of context-free languages known only from their rules.

A behaviour is a grammar; its instruction is the rules in the text format of
:mod:`~pbb.domains.grammars.grammar`; a demonstration is a string of its language with its
leftmost derivation as the chain of thought; the verifier is membership by lark's Earley parser
(:mod:`~pbb.domains.grammars.verify`). There is no single right answer: any member scores 1.0.

Queries. With ``constraint: none`` every query asks for *some* string; its input
(``blorp_3 #4``) carries a sample index that prompts do not show, so each demonstration and each
test query is a separate draw (and test draws are never demonstration inputs). With
``constraint: length`` the input also fixes the length (``blorp_3 length=6 #4``, shown as
"`blorp_3` with exactly 6 tokens"), test lengths are held out from demonstration lengths where the
grammar has enough lengths, and a member of the wrong length scores 0.0.

Sampling is exact-length: draw a length (uniformly among those the grammar can produce in
``min_length..max_length``, or the one asked for), then expand leftmost nonterminals choosing
uniformly among the alternatives that can still yield the remaining length. Every derivation is
bounded by the string length (no empty or unit alternatives in generated grammars), and every
alternative that can appear in a string of those lengths gets drawn.

Grammars can also come from a file (``file`` knob, or ``pbb data import-grammars FILE``).
"""

from __future__ import annotations

import functools
import random
import re
from pathlib import Path
from typing import ClassVar

from pbb.domains.base import ANSWER_PREFIX, Behaviour, Domain, Execution, draw_distinct
from pbb.domains.grammars.analysis import (
    Lengths,
    productive,
    reachable,
    recursive,
    sample_exact,
)
from pbb.domains.grammars.config import GrammarsConfig
from pbb.domains.grammars.generate import acceptable, fingerprint, random_grammar
from pbb.domains.grammars.grammar import (
    Grammar,
    is_terminal,
    parse_grammar,
    parse_grammars,
    render,
    rule_line,
    tokenize,
)
from pbb.domains.grammars.verify import verifier_for
from pbb.domains.names import pointer_name
from pbb.domains.templates import GRAMMAR_HINTS, GRAMMAR_TEMPLATES
from pbb.errors import PbbError
from pbb.jsonio import read_text

_MAX_TRIES_PER_BEHAVIOUR = 2000
_QUERY = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?: length=(?P<length>\d+))? #(?P<index>\d+)$")
#: random strings per behaviour for the chance baseline
CHANCE_SAMPLES = 200


@functools.lru_cache(maxsize=4096)
def grammar_of(instruction: str) -> tuple[str, Grammar]:
    return parse_grammar(instruction, source="instruction")


@functools.lru_cache(maxsize=4096)
def lengths_of(instruction: str, limit: int) -> Lengths:
    return Lengths(grammar_of(instruction)[1], limit)


class GrammarsDomain(Domain):
    name: ClassVar[str] = "grammars"
    Config: ClassVar[type[GrammarsConfig]] = GrammarsConfig
    templates: ClassVar[dict[str, list[str]]] = GRAMMAR_TEMPLATES
    hints: ClassVar[dict[str, str]] = GRAMMAR_HINTS
    #: generation metrics (:meth:`sample_fields`) and their names in summaries
    sample_metrics: ClassVar[dict[str, str]] = {"valid": "validity", "novel": "novelty",
                                                "chance": "chance"}

    # --- behaviours -------------------------------------------------------------------------
    def generate(self, cfg: GrammarsConfig, n: int, rng: random.Random) -> list[Behaviour]:
        if cfg.file:
            return self.from_file(cfg, Path(cfg.file), n)
        names: set[str] = set()
        seen: set[tuple] = set()

        def draw(k: int) -> Behaviour | None:
            g = random_grammar(cfg, rng)
            fp = fingerprint(g) if acceptable(g, cfg) else None
            if fp is None or fp in seen:
                return None
            seen.add(fp)
            return self._behaviour(g, pointer_name(rng, names), k, cfg)

        return draw_distinct(n, draw, tries_per_item=_MAX_TRIES_PER_BEHAVIOUR, too_tight=(
            "grammars: found only {found} of {n} distinct grammars; the knobs are too tight "
            "(more nonterminals, terminals or max_length help)"))

    def from_file(self, cfg: GrammarsConfig, path: Path, n: int | None = None) -> list[Behaviour]:
        """Behaviours from a grammar file; every problem is one ``file:line`` error."""
        path = Path(path)
        grammars = parse_grammars(read_text(path, "grammar file"), source=str(path))
        n = len(grammars) if n is None else n
        if n > len(grammars):
            raise PbbError(f"{path}: holds {len(grammars)} grammars, {n} behaviours requested")
        out = []
        for name, g in grammars[:n]:
            bad = set(g.nonterminals) - productive(g)
            if bad:
                raise PbbError(f"{path}: grammar {name}: {sorted(bad)[0]} derives no finite string")
            unused = set(g.nonterminals) - reachable(g)
            if unused:
                raise PbbError(f"{path}: grammar {name}: {sorted(unused)[0]} is unreachable from {g.start}")
            if not self._window(g, cfg.min_length, cfg.max_length):
                raise PbbError(f"{path}: grammar {name}: no string of length {cfg.min_length}.."
                               f"{cfg.max_length} (set min_length/max_length)")
            out.append(self._behaviour(g, name, len(out), cfg))
        return out

    def _behaviour(self, g: Grammar, name: str, k: int, cfg: GrammarsConfig) -> Behaviour:
        meta = {"nonterminals": len(g.nonterminals), "productions": len(g.productions()),
                "terminals": len(g.terminals), "recursive": recursive(g), "char_level": g.char_level,
                "min_length": cfg.min_length, "max_length": cfg.max_length,
                "max_tokens": cfg.max_tokens, "time_limit": cfg.time_limit}
        if cfg.trace != "forms":  # absent = forms: data sets made before stay the same
            meta["trace"] = cfg.trace
        return Behaviour(id=f"{self.name}-{k:05d}", domain=self.name, name=name,
                         instruction=render(g, name), meta=meta)

    @staticmethod
    def _window(g: Grammar, lo: int, hi: int) -> list[int]:
        return [n for n in Lengths(g, hi).start() if n >= lo]

    def window(self, behaviour: Behaviour) -> list[int]:
        """Lengths the sampler draws from for this behaviour."""
        lo, hi = behaviour.meta["min_length"], behaviour.meta["max_length"]
        return [n for n in lengths_of(behaviour.instruction, hi).start() if n >= lo]

    # --- inputs -----------------------------------------------------------------------------
    def sample_inputs(self, cfg: GrammarsConfig, behaviour: Behaviour, demos: int,
                      test_inputs: int, rng: random.Random) -> tuple[list[str], list[str]]:
        name = behaviour.name
        if cfg.constraint == "none":
            return ([f"{name} #{test_inputs + k}" for k in range(demos)],
                    [f"{name} #{k}" for k in range(test_inputs)])
        window = self.window(behaviour)
        rng.shuffle(window)
        held = max(1, min(test_inputs, len(window) - 1))
        test_lengths, demo_lengths = window[:held], window[held:] or window[:held]
        return ([f"{name} length={demo_lengths[k % len(demo_lengths)]} #{test_inputs + k}"
                 for k in range(demos)],
                [f"{name} length={test_lengths[k % held]} #{k}" for k in range(test_inputs)])

    def _parse_query(self, behaviour: Behaviour, query: str) -> int | None:
        m = _QUERY.match(query.strip())
        if not m or m["name"] != behaviour.name:
            raise PbbError(f"query {query!r}: expected `{behaviour.name} [length=N] #K`")
        return int(m["length"]) if m["length"] else None

    def render_query(self, query: str) -> str:
        m = _QUERY.match(query.strip())
        if not m:
            return f"`{query}`"
        return f"`{m['name']}`" + (f" with exactly {m['length']} symbols" if m["length"] else "")

    # --- execution and scoring --------------------------------------------------------------
    def execute(self, behaviour: Behaviour, query: str) -> Execution:
        """A string for the query (a seeded draw: the same query always gives the same string)."""
        length = self._parse_query(behaviour, query)
        _, g = grammar_of(behaviour.instruction)
        limit = max(behaviour.meta["max_length"], length or 0)
        lengths = lengths_of(behaviour.instruction, limit)
        rng = random.Random(f"{behaviour.instruction}|{query}")
        n = length if length is not None else rng.choice(self.window(behaviour))
        if n not in lengths.of[g.start]:
            raise PbbError(f"query {query!r}: the grammar has no string of length {n}")
        tokens, forms = sample_exact(g, lengths, n, rng)
        output = g.join(tokens)
        trace = behaviour.meta.get("trace")
        if trace == "named":
            steps = [f"{rule}: {f}" for rule, f in zip(applied_rules(forms), forms[1:])]
        elif trace == "pick":
            table = g.table
            rules = (r.split(" -> ", 1) for r in applied_rules(forms))
            steps = [f"{rule_line(lhs, table[lhs])} pick {rhs}: {f}"
                     for (lhs, rhs), f in zip(rules, forms[1:])]
        else:
            steps = [f"=> {f}" for f in forms[1:]]
        return Execution(output=output, trace="\n".join([forms[0], *steps,
                                                         f"{ANSWER_PREFIX} {output}"]))

    def valid(self, behaviour: Behaviour, prediction: str | None) -> bool:
        """Membership in the language, whatever the query asked for."""
        if prediction is None:
            return False
        _, g = grammar_of(behaviour.instruction)
        meta = behaviour.meta
        return verifier_for(g).member(tokenize(g, prediction), meta.get("max_tokens", 64),
                                      meta.get("time_limit", 1.0))

    def score(self, behaviour: Behaviour, query: str, prediction: str | None) -> float:
        length = self._parse_query(behaviour, query)
        if prediction is None:
            return 0.0
        if length is not None:
            _, g = grammar_of(behaviour.instruction)
            if len(tokenize(g, prediction)) != length:
                return 0.0
        return 1.0 if self.valid(behaviour, prediction) else 0.0

    def pointer(self, behaviour: Behaviour) -> str:
        return f"`{behaviour.name}`"

    # --- generation metrics (added to evaluation samples and summaries) ---------------------
    def sample_fields(self, behaviour: Behaviour, query: str, prediction: str | None,
                      train_outputs: list[str], test_outputs: list[str]) -> dict:
        """Per sample: ``valid`` (a member, whatever the constraint asked), ``novel`` (valid and
        not one of the behaviour's training demonstrations) and ``chance`` (the behaviour's
        chance baseline: validity of random strings over its terminals with the lengths of its
        reference test strings)."""
        valid = self.valid(behaviour, prediction)
        _, g = grammar_of(behaviour.instruction)
        normal = g.join(tokenize(g, prediction)) if prediction is not None else None
        lengths = tuple(sorted(len(tokenize(g, o)) for o in test_outputs))
        return {"valid": float(valid), "novel": float(valid and normal not in set(train_outputs)),
                "chance": _chance(behaviour.instruction, lengths, behaviour.meta.get("max_tokens", 64),
                                  behaviour.meta.get("time_limit", 1.0))}


@functools.lru_cache(maxsize=4096)
def _chance(instruction: str, lengths: tuple[int, ...], max_tokens: int, time_limit: float) -> float:
    if not lengths:
        return float("nan")
    _, g = grammar_of(instruction)
    v = verifier_for(g)
    rng = random.Random(f"chance|{instruction}")
    hits = 0
    for k in range(CHANCE_SAMPLES):
        n = lengths[k % len(lengths)]
        hits += v.member([rng.choice(g.terminals) for _ in range(n)], max_tokens, time_limit)
    return hits / CHANCE_SAMPLES


def applied_rules(forms: list[str]) -> list[str]:
    """The rule of each step of a leftmost derivation, ``A -> "bo" B``, read off two consecutive
    sentential forms: the leftmost nonterminal of the first is replaced by the rule's right side
    (the trace ``named`` writes it before each form: why, in the ``trace`` knob)."""
    rules = []
    for before, after in zip(forms, forms[1:]):
        a, b = before.split(" "), after.split(" ")
        k = next(i for i, s in enumerate(a) if not is_terminal(s))
        rules.append(f"{a[k]} -> {' '.join(b[k:k + len(b) - len(a) + 1])}")
    return rules
