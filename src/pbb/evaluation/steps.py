"""Where executions go wrong: each completion's trace lined up against the gold trace of its query.

Why. An accuracy says how often a model executes a behaviour, not what it gets wrong, and the
questions that follow a low figure are about the step: does the model recall the code and then
slip on arithmetic, or never bind the input, or stop before the answer? This reads a run's
samples and its data set's gold traces (every test query has one, ``data/demonstrations.jsonl``)
and puts each completion in one class by the first trace line that differs from the gold trace:

* ``exact``: every gold line is there, in order;
* ``arguments``: the first line (the input bound to the parameters) differs;
* ``step: expression`` / ``substitution`` / ``arithmetic`` / ``variable``: a step line of the
  form ``x = 7 + a = 7 + 8 = 15`` (the arithmetic domain) differs first in that part; ``step``
  for a step line of another form (cipher or grammar steps);
* ``return`` / ``answer``: the return or answer line differs (every step was right);
* ``part recall``: a nested composite's trace (``composite_trace: nested``) recalls a part's
  definition wrong: its ``Recall the definition of NAME:`` header or a line of the part's code
  (a part's own ``return`` line is a step);
* ``stopped early``: the completion's trace ends before the gold one does, all lines right.

Trace lines are those after ``Trace:`` (CoT and in-context completions), or all lines where a
completion has no such header. Alongside: the share that recalled code (a ``Recall the
definition:`` header), that wrote an answer line, and the mean completion length in characters.
``python -m pbb.evaluation.steps RUN [RUN ...] [--split eval|train]`` prints one line per
curriculum and mode.
"""

from __future__ import annotations

import argparse
import collections
from collections.abc import Callable
from pathlib import Path

from pbb import data as data_mod
from pbb.domains.arithmetic.compose import PART_RECALL
from pbb.domains.base import ANSWER_PREFIX
from pbb.jsonio import read_jsonl
from pbb.rows.render import RECALL_HEADER, TRACE_HEADER
from pbb.store import EVAL, SAMPLES, RunStore

_STEP_PARTS = ("variable", "expression", "substitution", "arithmetic")


def trace_lines(text: str) -> list[str]:
    """The trace of a completion or gold trace: its non-blank lines after ``Trace:``."""
    lines = [line.rstrip() for line in text.splitlines() if line.strip()]
    if TRACE_HEADER in lines:
        lines = lines[lines.index(TRACE_HEADER) + 1:]
    return lines


def first_error(completion: str, gold: str) -> str:
    """The class of a completion by the first trace line that differs from ``gold``."""
    want, got = trace_lines(gold), trace_lines(completion)
    last_return = max((i for i, w in enumerate(want) if w.startswith("return")), default=None)
    recalled = _part_recall_lines(want)
    for i, (w, g) in enumerate(zip(want, got)):
        if w == g:
            continue
        if w.startswith(ANSWER_PREFIX):
            return "answer"
        if i in recalled:
            return "part recall"
        if i == last_return:
            return "return"
        if i == 0:
            return "arguments"
        return _step_kind(w, g)
    return "exact" if len(got) >= len(want) else "stopped early"


def _part_recall_lines(lines: list[str]) -> set[int]:
    """Indices of a nested composite trace's recalled parts: each ``Recall the definition of
    NAME:`` header and the code lines after it (``def`` and the indented body)."""
    out: set[int] = set()
    inside = False
    for i, line in enumerate(lines):
        if line.startswith(PART_RECALL):
            inside = True
        elif not (inside and (line.startswith("def ") or line[:1].isspace())):
            inside = False
        if inside:
            out.add(i)
    return out


def _step_kind(want: str, got: str) -> str:
    parts_w, parts_g = want.split(" = "), got.split(" = ")
    if len(parts_w) != len(_STEP_PARTS):
        return "step"
    for name, w, g in zip(_STEP_PARTS, parts_w, parts_g):
        if w != g:
            return f"step: {name}"
    return "step: arithmetic"  # the completion's line ends early or has more parts


def gold_traces(run: Path) -> dict[tuple[str, str], str]:
    """The gold trace of every (behaviour id, input) of a run's data set."""
    return {(d.behaviour_id, d.input): d.trace
            for d in data_mod.load(RunStore(Path(run)).data).demonstrations}


def summarise(run: Path, curriculum: str, mode: str, split: str = "eval",
              gold: dict[tuple[str, str], str] | None = None) -> dict:
    """Shares of each class (and the figures beside them) over one mode's samples of ``split``;
    ``gold``: the run's :func:`gold_traces`, when the caller has read them already."""
    store = RunStore(Path(run))
    gold = gold if gold is not None else gold_traces(run)
    counts: collections.Counter = collections.Counter()
    n = chars = 0
    for s in read_jsonl(store.samples(curriculum, mode), ("behaviour_id", "split", "input",
                                                         "completion", "score")):
        if s["split"] != split:
            continue
        n += 1
        chars += len(s["completion"])
        counts["correct"] += s["score"]
        counts["recalled code"] += RECALL_HEADER in s["completion"]
        counts["answer line"] += ANSWER_PREFIX in s["completion"]
        counts[first_error(s["completion"], gold[(s["behaviour_id"], s["input"])])] += 1
    shares = {k: round(v / n, 3) for k, v in sorted(counts.items())} if n else {}
    return {"n": n, "mean_chars": round(chars / n, 1) if n else 0.0, **shares}


def execution_modes(run: Path) -> list[tuple[str, str]]:
    """(curriculum, mode) of each finished execution evaluation of a run: its samples written,
    the recall checks left out (their samples have no query)."""
    return [(cur.name, mode.name) for cur in sorted(p for p in (run / EVAL).iterdir() if p.is_dir())
            for mode in sorted(cur.iterdir())
            if mode.is_dir() and mode.name != "recall" and (mode / SAMPLES).is_file()]


def main_of(prog: str, doc: str, split: str, load: Callable[[Path], object],
            summarise: Callable[..., dict], argv: list[str] | None = None) -> None:
    """The command line of a step checker (this module, ``cipher_steps``, ``grammar_steps``):
    ``RUN [RUN ...] [--split eval|train]``, one line per run, curriculum and mode of
    ``summarise(run, curriculum, mode, split, load(run))``; ``load`` reads what a run's
    summaries share once a run, not once a curriculum and mode."""
    ap = argparse.ArgumentParser(prog=prog, description=doc.split("\n\n")[0])
    ap.add_argument("runs", nargs="+", type=Path, help="run directories")
    ap.add_argument("--split", default=split, choices=("eval", "train"))
    args = ap.parse_args(argv)
    for run in args.runs:
        loaded = load(run)
        for cur, mode in execution_modes(run):
            print(run.name, cur, mode, summarise(run, cur, mode, args.split, loaded))


def main(argv: list[str] | None = None) -> None:
    main_of("python -m pbb.evaluation.steps", __doc__, "eval", gold_traces, summarise, argv)


if __name__ == "__main__":
    main()
