"""Which step of a cipher execution fails: each written step of a completion checked on its own.

Why. :mod:`pbb.evaluation.steps` classes a completion by its *first* wrong line, but a cipher
trace (``trace: indexed`` or ``lookup``, :mod:`pbb.domains.cipher_traces`) repeats one step per
letter, and each step is a chain of small operations. To change a recipe we need how often each
operation is right *given what the model wrote before it*, over all step lines:

* ``input``: the step's letter is the query's next letter;
* ``position``: the position written for it is its position in the list it is read from;
* ``arithmetic``: the value the arithmetic ends on is the family's formula of that position
  (shift, affine, Vigenère; a keyword step has none); it breaks into ``operands`` (the first
  expression is the right one for that position: the key copied, the right operation),
  ``evaluation`` (every written equation holds as written) and ``reduction`` (each step back into
  0..25 adds or subtracts a multiple of 26, and the value ends there);
* ``result``: the result's position is that value (a keyword step: the letter's position);
* ``letter``: the letter written for the result is the one at that position of the list it is
  copied from;
* ``step``: the letter is the cipher's true output for that letter of the query.

The ``walk`` and ``countdown`` traces have no positions to look up, and their own checks
(:data:`WALK_CHECKS`): ``input``; ``key`` (Vigenère: the key letter and its position; a countdown
shift step: the shift copied to its head, ``k=13``); ``hops`` (of all hops: the letter is the
ring's next one after the letter before it, and the count goes up by one, or with countdown
down by one from the shift its head wrote); ``first hop`` (of the steps that walk: the first
hop right, where the walk starts from the step's letter, and a countdown from ``k - 1``);
``count`` (the walk stops after the shift's number of hops); ``result`` (the letter after
``->`` is the last hop's); ``step``.

Beside them, per completion: the share whose spelled-out lists (``positions``, ``letters``...)
are the gold trace's, no more and no fewer; ``return joins`` (the ``return`` line is the step
lines' letters joined, whether those are right or not); with ``running_output``, ``out`` (of the
``out: o r`` or ``out = 'or'`` lines: each is the letters of the step lines above it); and the
share correct. The ``n``-th step line is taken for the query's ``n``-th letter, so a skipped or
repeated step shifts the ``input`` and ``step`` checks of the lines after it (as it shifts the
answer). Every check uses the behaviour's parameters (alphabet, family, direction) and the
query's key, never the instruction text.
``python -m pbb.evaluation.cipher_steps RUN [RUN ...] [--split train|eval]`` prints one line per
curriculum and mode.
"""

from __future__ import annotations

import collections
import re
from pathlib import Path

from pbb import data as data_mod
from pbb.domains.base import Behaviour
from pbb.domains.cipher_traces import (
    OUT_PREFIX,
    QUOTED_PREFIX,
    TRACES,
    WALKS,
    keyword_lists,
    out_line,
    walk_order,
)
from pbb.domains.ciphers import CiphersDomain, run
from pbb.evaluation.steps import main_of
from pbb.jsonio import read_jsonl
from pbb.store import RunStore

CHECKS = ("input", "position", "arithmetic", "operands", "evaluation", "reduction", "result",
          "letter", "step")
_ARITHMETIC = {"arithmetic", "operands", "evaluation", "reduction"}  # shares of arithmetic steps

_STEP = re.compile(r"^step (?P<ch>[a-z])=(?P<i>\d+)(?:: (?P<arith>.*?))? -> "
                   r"(?:(?P<c1>[a-z])=(?P<j1>\d+)|(?P<j2>\d+)=(?P<c2>[a-z]))$")
_LIST = re.compile(r"^(?:table )?(?:positions|letters|ring|ring back): ")
_EQUATION = re.compile(r"(-?\d+(?: [-+*] -?\d+)+) = (-?\d+)")


def _lists(b: Behaviour, enc: bool, key: tuple) -> tuple[str, str]:
    """(the list a step reads its letter's position from, the list it copies the result from)."""
    alphabet = b.meta["alphabet"]
    if b.meta["family"] != "keyword":
        return alphabet, alphabet
    return keyword_lists(key[0], alphabet, enc)


def _expected(b: Behaviour, enc: bool, key: tuple, i: int, n: int) -> tuple[int, str] | None:
    """(the result position, the first expression ``4 + 13 = ``) of the behaviour's own indexed
    step for the letter at position ``i`` (the ``n``-th letter enciphered), so the formulas live
    in one place, :mod:`pbb.domains.cipher_traces`; None for a keyword step, which has no
    arithmetic. A position past the list is taken modulo 26 (a wrong position fails its own
    check)."""
    family, alphabet = b.meta["family"], b.meta["alphabet"]
    if family == "keyword":
        return None
    _, step = TRACES["indexed"][family](alphabet, enc, "", key)
    out, line = step(alphabet[i % 26], n)
    arith = line.split(": ", 1)[1]
    return alphabet.index(out), arith[:arith.index(" = ") + len(" = ")]


def _value(expr: str) -> int:
    """``a op b [op c ...]`` with + - * at the usual precedence, from the integers written (a
    model may write ``04``, which Python's own parser refuses)."""
    tokens = expr.split(" ")
    terms, sign, product = [], 1, int(tokens[0])
    for op, number in zip(tokens[1::2], tokens[2::2]):
        if op == "*":
            product *= int(number)
        else:
            terms.append(sign * product)
            sign, product = (1 if op == "+" else -1), int(number)
    return sum(terms) + sign * product


def _arithmetic(arith: str) -> tuple[bool, bool]:
    """(every equation holds as written, every reduction is by a multiple of 26 and the last
    value is in 0..25). A reduction: an equation whose left operand is the value before it."""
    equations = _EQUATION.findall(arith)
    holds = bool(equations) and all(_value(e) == int(v) for e, v in equations)
    reduced, before = True, None
    for expr, value in equations:
        m = re.fullmatch(r"(-?\d+) ([-+]) (\d+)", expr)
        if m and before is not None and int(m[1]) == before:
            reduced &= int(m[3]) % 26 == 0
        before = int(value)
    return holds, reduced and before is not None and 0 <= before < 26


def check(b: Behaviour, query: str, completion: str) -> collections.Counter:
    """Counts of step lines (``steps``) and of each :data:`CHECKS` right in one completion."""
    text, key = CiphersDomain().parse(b, query)
    enc = b.meta["direction"] == "encrypt"
    source, target = _lists(b, enc, key)
    out, _ = run(b.meta, text, key)
    letters_in = [ch for ch in text if ch in b.meta["alphabet"]]
    letters_out = [o for ch, o in zip(text, out) if ch in b.meta["alphabet"]]
    counts: collections.Counter = collections.Counter()
    n = 0  # the n-th step line is taken for the query's n-th letter (a skipped or repeated
    #        step shifts the input and step checks of the lines after it, as it shifts the answer)
    for line in completion.splitlines():
        m = _STEP.match(line.strip())
        if not m:
            continue
        ch, i = m["ch"], int(m["i"])
        c, j = (m["c1"], int(m["j1"])) if m["c1"] else (m["c2"], int(m["j2"]))
        counts["steps"] += 1
        counts["input"] += n < len(letters_in) and ch == letters_in[n]
        counts["position"] += i < 26 and source[i] == ch
        expected = _expected(b, enc, key, i, n)
        values = re.findall(r"= (-?\d+)", m["arith"] or "")
        if expected is None:
            counts["result"] += j == i
        else:
            want, operands = expected
            holds, reduced = _arithmetic(m["arith"] or "")
            counts["arithmetic"] += bool(values) and int(values[-1]) == want
            counts["operands"] += (m["arith"] or "").startswith(operands)
            counts["evaluation"] += holds
            counts["reduction"] += reduced
            counts["result"] += bool(values) and j == int(values[-1])
            counts["arithmetic steps"] += 1
        counts["letter"] += j < 26 and target[j] == c
        counts["step"] += n < len(letters_out) and c == letters_out[n]
        n += 1
    return counts


# --- the walk traces: ``step z[, key e=9]: b1 c2 ... m13 -> m``, ``step z, k=13: b12 ... m0 -> m`` --

#: the checks of a walk step: the letter, the key letter and its position (Vigenère), each hop
#: the ring's next letter after the one before it, the number of hops the shift, the letter after
#: ``->`` the last hop, and the step's letter the cipher's own
WALK_CHECKS = ("input", "key", "hops", "first hop", "count", "result", "step")
_WALK = re.compile(r"^step (?P<ch>[a-z])(?:, key (?P<kc>[a-z])=(?P<s>\d+)|, k=(?P<k>\d+))?: "
                   r"(?P<hops>(?:[a-z]\d+ ?)*)-> (?P<out>[a-z])$")
_HOP = re.compile(r"([a-z])(\d+)")


def check_walk(b: Behaviour, query: str, completion: str) -> collections.Counter:
    """Counts of step lines (``steps``), hops (``hop steps``, of which ``hops`` right) and
    Vigenère steps (``key steps``) and of each :data:`WALK_CHECKS` in one completion."""
    text, key = CiphersDomain().parse(b, query)
    alphabet = b.meta["alphabet"]
    order = walk_order(alphabet, b.meta["direction"] == "encrypt")
    out, _ = run(b.meta, text, key)
    letters_in = [ch for ch in text if ch in alphabet]
    letters_out = [o for ch, o in zip(text, out) if ch in alphabet]
    vigenere = b.meta["family"] == "vigenere"
    down = b.meta.get("trace") == "countdown"
    counts: collections.Counter = collections.Counter()
    n = 0
    for line in completion.splitlines():
        m = _WALK.match(line.strip())
        if not m:
            continue
        counts["steps"] += 1
        counts["input"] += n < len(letters_in) and m["ch"] == letters_in[n]
        if vigenere:
            kc = key[0][n % len(key[0])]
            counts["key steps"] += 1
            counts["key"] += m["kc"] == kc and m["s"] is not None and int(m["s"]) == alphabet.index(kc)
            shift = alphabet.index(kc)
        else:
            shift = key[0]
            if down:
                counts["key steps"] += 1
                counts["key"] += m["k"] is not None and int(m["k"]) == shift
        walked = [(c, int(h)) for c, h in _HOP.findall(m["hops"])]  # "b1 c2", or run together
        last, left = m["ch"], int(m["k"] or m["s"] or shift)  # left: as the head wrote it
        for count, (letter, h) in enumerate(walked, 1):
            right = (letter == order[(order.index(last) + 1) % 26]
                     and h == (left - 1 if down else count))
            counts["hop steps"] += 1
            counts["hops"] += right
            if count == 1:  # where the walk starts: the step's letter on the ring, and k - 1
                counts["first hop steps"] += 1
                counts["first hop"] += right
            last, left = letter, h
        counts["count"] += len(walked) == shift
        counts["result"] += m["out"] == last
        counts["step"] += n < len(letters_out) and m["out"] == letters_out[n]
        n += 1
    return counts


_KEPT = re.compile(r"^(?P<ch>'.'): kept$")
_RETURN = re.compile(r"^return (?P<out>'[^']*')$")
#: a compact step, ``z: (25 + 3) % 26 = 2 -> c`` (a keyword step ends ``table[4] = c``)
_COMPACT = re.compile(r"^[a-z]: .*(?:->|=) (?P<out>[a-z])$")


def _step_letter(line: str) -> str | None:
    """The letter a step line of any trace writes for its character, None for other lines."""
    if m := _WALK.match(line) or _COMPACT.match(line):
        return m["out"]
    if m := _STEP.match(line):
        return m["c1"] or m["c2"]
    return None


def check_output(b: Behaviour, completion: str) -> collections.Counter:
    """How the output is put together from the step lines (of any trace), whatever they got
    right: ``out`` lines (``running_output``) that are the letters of the step and kept lines
    above them, and a first ``return`` line that joins them all (``return joins``). Out lines
    are counted from the first step line on: the recalled code above the trace has its own
    ``out = ""`` (with ``running_output: quoted`` it was counted as a wrong out line)."""
    letters: list[str] = []
    counts: collections.Counter = collections.Counter()
    stepped = False
    for line in (x.strip() for x in completion.splitlines()):
        if (c := _step_letter(line)) is not None:
            letters.append(c)
            stepped = True
        elif m := _KEPT.match(line):
            letters.append(m["ch"][1])
            stepped = True
        elif stepped and line.startswith((OUT_PREFIX, QUOTED_PREFIX)):  # other style's: wrong
            counts["out lines"] += 1
            counts["out"] += line == out_line("".join(letters), b.meta["alphabet"],
                                              quoted=b.meta.get("running_output") == "quoted")
        elif m := _RETURN.match(line):
            counts["return joins"] = int(m["out"] == repr("".join(letters)))
            break
    return counts


def _shares(total: collections.Counter, walk: bool) -> dict:
    """Each check's share of what it is counted over: step lines, or its own steps (hops,
    Vigenère steps; arithmetic steps)."""
    checks, over = ((WALK_CHECKS, {"hops": "hop steps", "first hop": "first hop steps",
                                   "key": "key steps"}) if walk
                    else (CHECKS, dict.fromkeys(_ARITHMETIC, "arithmetic steps")))
    return {k: round(total[k] / total[over.get(k, "steps")], 3) for k in checks
            if total[over.get(k, "steps")]}


def summarise(run_dir: Path, curriculum: str, mode: str, split: str = "train",
              dataset: data_mod.DataSet | None = None) -> dict:
    """Each check's share of the step lines (arithmetic: of those with arithmetic), the share of
    completions whose spelled-out lists equal the gold trace's, the output checks of
    :func:`check_output` (``out``: of the out lines, where there are any; ``return joins``: of
    the completions) and the share correct, over one mode's samples of ``split``."""
    store = RunStore(Path(run_dir))
    ds = dataset if dataset is not None else data_mod.load(store.data)
    behaviours = {b.id: b for b in ds.behaviours}
    gold = {(d.behaviour_id, d.input): d.trace for d in ds.demonstrations}
    walk = any(b.meta.get("trace") in WALKS for b in behaviours.values())  # one trace a data set
    checker = check_walk if walk else check
    total: collections.Counter = collections.Counter()
    n = lists = correct = 0
    output: collections.Counter = collections.Counter()
    for s in read_jsonl(store.samples(curriculum, mode), ("behaviour_id", "split", "input",
                                                         "completion", "score")):
        if s["split"] != split or not s["input"]:  # recall samples have no query
            continue
        n += 1
        correct += s["score"]
        total += checker(behaviours[s["behaviour_id"]], s["input"], s["completion"])
        output += check_output(behaviours[s["behaviour_id"]], s["completion"])
        want = [x for x in gold[(s["behaviour_id"], s["input"])].splitlines() if _LIST.match(x)]
        got = [x.strip() for x in s["completion"].splitlines() if _LIST.match(x.strip())]
        lists += bool(want) and got == want
    steps = total["steps"]
    shares = _shares(total, walk)
    out = {"out": round(output["out"] / output["out lines"], 3)} if output["out lines"] else {}
    return {"completions": n, "correct": round(correct / n, 3) if n else 0.0,
            "lists exact": round(lists / n, 3) if n else 0.0, "step lines": steps, **shares,
            **out, "return joins": round(output["return joins"] / n, 3) if n else 0.0}


def main(argv: list[str] | None = None) -> None:
    main_of("python -m pbb.evaluation.cipher_steps", __doc__, "train",
            lambda r: data_mod.load(RunStore(r).data), summarise, argv)


if __name__ == "__main__":
    main()
