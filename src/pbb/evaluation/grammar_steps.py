"""Which derivation step fails: each step line of a grammars run's CoT completions checked against
the behaviour's own grammar.

Why. A grammar's CoT has no single gold trace to line up against (any derivation of any string
of the language is right), so :mod:`pbb.evaluation.steps` can only say that a completion recalled
a grammar and wrote an answer. This reads the ``named`` trace (``A -> "bo" B: "bo" "bo" B``:
the rule applied, then the sentential form after it) and checks, for every step line, given the
form the model wrote before it:

* ``rule``: the rule is one of the grammar's productions (the true grammar, from the behaviour's
  instruction, not the one the completion recalled);
* ``leftmost``: its left side is the leftmost nonterminal of the form before;
* ``form``: the form after is the form before with that nonterminal replaced by the rule's right
  side, as written;
* ``alternatives`` (the ``pick`` trace, ``A -> "bo" | S "ze" pick "bo": ...``): the rule line
  copied before the pick is the grammar's line for that nonterminal, all its alternatives in
  order (a share of the pick steps).

Per completion: ``recalled`` (the grammar recalled exactly: the sample's ``recall_exact``),
``derivation`` (a trace that starts at the start symbol, every step line passes all three
checks, and the last form has no nonterminal left), ``answer`` (the answer line is the last
form's terminals), ``valid`` (the answer is in the language: the sample's score), and ``valid
where the derivation is right``. The checks of the step lines are shares of the step lines.
``python -m pbb.evaluation.grammar_steps RUN [RUN ...] [--split eval|train]`` prints one line
per run, curriculum and mode.
"""

from __future__ import annotations

import collections
import re
from pathlib import Path

from pbb import data as data_mod
from pbb.domains.base import ANSWER_PREFIX, Behaviour
from pbb.domains.grammars import grammar_of
from pbb.domains.grammars.grammar import is_terminal, rule_line, unquote
from pbb.evaluation.steps import main_of, trace_lines
from pbb.jsonio import read_jsonl
from pbb.store import RunStore

#: the checks of a step line, each a share of the step lines
STEP_CHECKS = ("rule", "leftmost", "form")
#: the checks of a completion, each a share of the completions
COMPLETION_CHECKS = ("recalled", "derivation", "answer", "valid")
# A step line read symbol by symbol, never by the first colon: a terminal may hold one (`":"`),
# and `A -> ":" B: ":" B` must still split after `B`. A symbol is a quoted terminal, or any
# unquoted word without a colon or `|` (a nonterminal, or a terminal the model wrote unquoted,
# which then fails the rule check rather than the whole line).
_SYMBOL = r'(?:"[^"\s]+"|[^\s":|]+)'
_SEQ = rf"(?:{_SYMBOL}(?: {_SYMBOL})*)?"
_STEP = re.compile(rf"^(?P<lhs>[A-Z][A-Za-z0-9_]*) -> (?:(?P<alts>{_SEQ}(?: \| {_SEQ})*) pick )?"
                   rf"(?P<rhs>{_SEQ}): (?P<form>.*)$")


def check(b: Behaviour, completion: str) -> collections.Counter:
    """Counts of step lines (``steps``; of them ``pick steps``) and of each :data:`STEP_CHECKS`
    (and ``alternatives``), and whether the derivation and the answer of one completion are
    right (``derivation``, ``answer``: 0 or 1)."""
    _, g = grammar_of(b.instruction)
    productions = set(g.productions())
    table = g.table
    counts: collections.Counter = collections.Counter()
    lines = [x.strip() for x in trace_lines(completion)]
    answer = next((x[len(ANSWER_PREFIX):].strip() for x in lines if x.startswith(ANSWER_PREFIX)),
                  None)
    lines = [x for x in lines if not x.startswith(ANSWER_PREFIX)]
    if not lines:
        return counts
    form = lines[0].split()
    right = form == [g.start]
    for line in lines[1:]:
        counts["steps"] += 1
        m = _STEP.match(line)
        if not m:
            right = False
            continue
        lhs, rhs, after = m["lhs"], tuple(m["rhs"].split()), m["form"].split()
        k = next((i for i, s in enumerate(form) if not is_terminal(s)), None)
        ok = {"rule": (lhs, rhs) in productions,
              "leftmost": k is not None and form[k] == lhs,
              "form": k is not None and after == form[:k] + list(rhs) + form[k + 1:]}
        if m["alts"] is not None:
            counts["pick steps"] += 1
            ok["alternatives"] = (lhs in table
                                  and f"{lhs} -> {m['alts']}" == rule_line(lhs, table[lhs]))
        counts.update(name for name, passed in ok.items() if passed)
        right &= all(ok.values())
        form = after
    finished = all(is_terminal(s) for s in form)
    counts["derivation"] = int(right and finished)
    counts["answer"] = int(finished and answer == g.join([unquote(s) for s in form]))
    return counts


def summarise(run_dir: Path, curriculum: str, mode: str, split: str = "eval",
              dataset: data_mod.DataSet | None = None) -> dict:
    """Each step check's share of the step lines, and each completion check's share of the
    completions, over one mode's samples of ``split``."""
    store = RunStore(Path(run_dir))
    ds = dataset if dataset is not None else data_mod.load(store.data)
    behaviours = {b.id: b for b in ds.behaviours}
    total: collections.Counter = collections.Counter()
    n = both = 0
    for s in read_jsonl(store.samples(curriculum, mode), ("behaviour_id", "split", "input",
                                                         "completion", "score")):
        if s["split"] != split or not s["input"]:  # recall samples have no query
            continue
        n += 1
        counts = check(behaviours[s["behaviour_id"]], s["completion"])
        total += counts
        total["recalled"] += s.get("recall_exact") or 0
        total["valid"] += s["score"]
        both += counts["derivation"] * s["score"]
    steps = total["steps"]
    out = {"completions": n, "step lines": steps}
    out.update({k: round(total[k] / steps, 3) for k in STEP_CHECKS if steps})
    if total["pick steps"]:
        out["alternatives"] = round(total["alternatives"] / total["pick steps"], 3)
    out.update({k: round(total[k] / n, 3) for k in COMPLETION_CHECKS if n})
    if total["derivation"]:
        out["valid where the derivation is right"] = round(both / total["derivation"], 3)
    return out


def main(argv: list[str] | None = None) -> None:
    main_of("python -m pbb.evaluation.grammar_steps", __doc__, "eval",
            lambda r: data_mod.load(RunStore(r).data), summarise, argv)


if __name__ == "__main__":
    main()
