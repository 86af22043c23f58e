"""Composite behaviours: ``def h(a): return f(g(a))`` over two one-argument behaviours of the set.

A composite's instruction names its parts only by their pointers, so executing it from memory
needs both parts' instructions (or behaviours) learned elsewhere. Evaluation groups composites by
how their parts were learned (:func:`part_groups`): under ``proactive``, a train part was learned
from its instruction *and* demonstrations, an eval part from its instruction only; under
``demos_only``, an eval part from demonstrations only.

Inputs of a composite are restricted to those for which ``g(a)`` lies in the input range, where
the bound proof of ``f`` holds. The parts' sources travel in ``meta`` so that execution needs no
other record; ``execute`` checks the instruction against them.
"""

from __future__ import annotations

import random

from pbb.domains.arithmetic.execute import Plan, plan_for, trace_call
from pbb.domains.base import ANSWER_PREFIX, Behaviour
from pbb.domains.names import pointer_name
from pbb.errors import PbbError

#: composites need at least this many inputs whose inner value stays in range
MIN_VALID_INPUTS = 6
#: what a ``nested`` trace writes before a part's name and its recalled code
#: (:mod:`pbb.evaluation.steps` reads it back)
PART_RECALL = "Recall the definition of "


def composite_source(name: str, outer: str, inner: str) -> str:
    return f"def {name}(a):\n    return {outer}({inner}(a))"


def describe_composite(name: str, outer: str, inner: str) -> str:
    return f"Function {name} takes a.\nReturn {outer} applied to ({inner} applied to a)."


def _plan(meta: dict, which: str) -> Plan:
    part = meta["parts"][which]
    return plan_for(part["source"], part["name"], meta["max_abs_value"])


def valid_inputs(meta: dict) -> list[int]:
    lo, hi = meta["input_range"]
    inner = _plan(meta, "inner")
    return [a for a in range(lo, hi + 1) if lo <= trace_call(inner, (a,))[0] <= hi]


def make_composites(base: list[Behaviour], count: int, rng: random.Random, names: set[str],
                    input_range: tuple[int, int], limit: int, start: int,
                    trace: str = "calls") -> list[Behaviour]:
    """``count`` composites of distinct (outer, inner) pairs of one-argument base behaviours
    (``trace``: their CoT, :func:`trace_composite`)."""
    singles = [b for b in base if b.meta.get("arity") == 1]
    pairs = [(f, g) for f in singles for g in singles if f.id != g.id]
    rng.shuffle(pairs)
    out = []
    for f, g in pairs:
        if len(out) == count:
            break
        name = pointer_name(rng, names)
        meta = {"composite": True, "arity": 1, "max_abs_value": limit,
                "input_range": list(input_range),
                "parts": {"outer": {"id": f.id, "name": f.name, "source": f.instruction},
                          "inner": {"id": g.id, "name": g.name, "source": g.instruction}}}
        if trace != "calls":  # absent = calls: data sets made before stay the same
            meta["trace"] = trace
        if len(valid_inputs(meta)) < MIN_VALID_INPUTS:
            names.discard(name)
            continue
        out.append(Behaviour(id=f"arithmetic-{start + len(out):05d}", domain="arithmetic",
                             name=name, instruction=composite_source(name, f.name, g.name),
                             description=describe_composite(name, f.name, g.name), meta=meta))
    if len(out) < count:
        raise PbbError(f"arithmetic: only {len(out)} of {count} compositions found; allow "
                       "one-argument functions (min_args: 1) or ask for fewer compositions")
    return out


def trace_composite(b: Behaviour, a: int) -> tuple[int, str]:
    meta = b.meta
    outer, inner = meta["parts"]["outer"], meta["parts"]["inner"]
    if b.instruction != composite_source(b.name, outer["name"], inner["name"]):
        raise PbbError(f"{b.id}: instruction differs from its composition")
    lo, hi = meta["input_range"]
    mid, inner_trace = trace_call(_plan(meta, "inner"), (a,))
    if not lo <= mid <= hi:
        raise PbbError(f"{b.name}({a}): {inner['name']}({a}) = {mid} leaves the input range")
    value, outer_trace = trace_call(_plan(meta, "outer"), (mid,))
    lines = [f"a = {a}"]
    if meta.get("trace") == "nested":
        lines += _nested(inner, a, mid, inner_trace)
        lines += _nested(outer, mid, value, outer_trace)
    else:
        lines += [f"{inner['name']}({a}) = {mid}", f"{outer['name']}({mid}) = {value}"]
    lines += [f"return {value}", f"{ANSWER_PREFIX} {value}"]
    return value, "\n".join(lines)


def _nested(part: dict, arg: int, value: int, trace: str) -> list[str]:
    """One part of a ``nested`` composite trace: its definition recalled (under a header other
    than the CoT's own ``Recall the definition:``, which the recall score reads), its own trace
    without the answer line, then the call's value.

    Why: with ``calls`` every part is evaluated in one line, ``g(7) = 2``, which no
    demonstration trains (a function is always executed by recalling its code and tracing it);
    measured at 3 seeds, that line was right in about a third of the eval composites, even for
    parts that were demonstrated (docs/results/LOG.md, the claims table)."""
    steps = [x for x in trace.splitlines() if not x.startswith(ANSWER_PREFIX)]
    return [f"{PART_RECALL}{part['name']}:", *part["source"].splitlines(), *steps,
            f"{part['name']}({arg}) = {value}"]


def part_groups(b: Behaviour, splits: dict[str, str]) -> str:
    """``train+train``, ``eval+eval`` or ``train+eval``: the splits of a composite's parts."""
    parts = sorted(splits[p["id"]] for p in b.meta["parts"].values())
    return "+".join(reversed(parts)) if parts[0] != parts[1] else f"{parts[0]}+{parts[1]}"
