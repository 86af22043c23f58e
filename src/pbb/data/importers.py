"""Data sets from users' own material: Python functions (``pbb data import``) and grammars
(``pbb data import-grammars``).

A functions file is JSONL, one function per line::

    {"code": "def f(nums):\\n    return sum(nums)", "inputs": ["[1, 2, 3]", "[]"],
     "outputs": ["6", "0"], "id": "sum-1", "name": "f"}

``inputs`` are argument lists as Python source (the text between the parentheses of a call);
``outputs`` (optional) are Python literals the computed outputs must equal; ``name`` (optional)
picks the function, else the first one ``code`` defines; ``id`` (optional) is kept in ``meta``.
CRUXEval's own records, one input each, are read as they are::

    {"code": "def f(text):\n    return text[::-1]", "input": "'abc'", "output": "'cba'",
     "id": "sample_0"}

A function with more inputs than ``--test-inputs`` holds that many out as test inputs and can
land in either split. One with fewer (CRUXEval: one input) cannot have both: if the split
assignment makes it an eval behaviour, its inputs are its test inputs (it is known from its
code alone, as PBB's eval behaviours are); if a train behaviour, they are its demonstrations
and it has no test input. The split assignment is the same for both kinds, so both exist.
Outputs are computed in :mod:`pbb.domains.sandbox` and rendered with ``repr``. A line whose function
raises, times out, is non-deterministic, returns a non-literal or disagrees with a given output
is skipped, and ``import_report.jsonl`` says why; the import goes on. Where names clash, later
functions get a fresh pointer name and the function is renamed in its code (recursive calls
included) and its queries.

A grammar file holds ``grammar NAME`` blocks of rules (:mod:`pbb.domains.grammars.grammar`);
each grammar is one behaviour of the ``grammars`` domain.

Both split behaviours into train and eval as generated data sets do
(:func:`pbb.data.assign_splits`).
"""

from __future__ import annotations

import ast
import keyword
import random
from pathlib import Path

from tqdm import tqdm

from pbb import data as data_mod
from pbb.domains.base import ANSWER_PREFIX, Behaviour, Demonstration
from pbb.domains.imported import ImportedConfig, ImportedDomain
from pbb.domains.names import pointer_name
from pbb.domains.sandbox import Limits, Sandbox
from pbb.domains.values import NOT_A_LITERAL, Rename, literal, same_literal
from pbb.errors import PbbError
from pbb.jsonio import jsonl_lines, read_text

REPORT = "import_report.jsonl"


def import_grammars(path: Path, *, demos: int, test_inputs: int, eval_fraction: float, seed: int,
                    options: dict | None = None, progress: bool = True) -> data_mod.DataSet:
    """A grammars data set with one behaviour per grammar of the file."""
    from pbb.domains.grammars.grammar import parse_grammars

    path = Path(path)
    count = len(parse_grammars(read_text(path, "grammar file"), source=str(path)))
    return data_mod.generate("grammars", behaviours=count, demos=demos, test_inputs=test_inputs,
                             eval_fraction=eval_fraction, seed=seed,
                             options={**(options or {}), "file": str(path)}, progress=progress)


def _function_name(tree: ast.Module, wanted: str | None) -> str:
    names = [n.name for n in tree.body if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    if wanted is not None:
        if wanted not in names:
            raise ValueError(f"the code defines no top-level function {wanted!r}")
        return wanted
    if not names:
        raise ValueError("the code defines no top-level function")
    return names[0]



def _read_lines(path: Path, limits: Limits) -> list[tuple[int, dict | None, str | None]]:
    """(line number, record or None, problem or None) for every non-empty line."""
    out = []
    for lineno, rec, problem in jsonl_lines(path):
        if problem is None and not isinstance(rec, dict):
            problem = "not a JSON object"
        if problem is None:
            rec = _from_cruxeval(rec)
            problem = _function_problem(rec, limits)
        out.append((lineno, rec if problem is None else None, problem))
    return out


def _from_cruxeval(rec: dict) -> dict:
    """A CRUXEval record (``input``/``output``: one call) as a functions-file record."""
    if "inputs" in rec or "input" not in rec:
        return rec
    out = {k: v for k, v in rec.items() if k not in ("input", "output")}
    out["inputs"] = [rec["input"]]
    if "output" in rec:
        out["outputs"] = [rec["output"]]
    return out


def _argument_list_problem(inputs: list[str]) -> str | None:
    """The first input that is not an argument list (the text between a call's parentheses)."""
    for k, args in enumerate(inputs):
        try:
            call = ast.parse(f"f({args})", mode="eval").body
        except SyntaxError:
            call = None
        if not isinstance(call, ast.Call) or ast.unparse(call.func) != "f":
            return f"input {k + 1} is not an argument list: {args[:60]!r}"
    return None


def _function_problem(rec: dict, limits: Limits) -> str | None:
    """What is wrong with the fields of one functions-file record, or None. Sizes are checked
    before anything is parsed: a 50 MB function is not parsed, run or stored."""
    if not isinstance(rec.get("code"), str):
        return "missing string field 'code'"
    if not (isinstance(rec.get("inputs"), list) and rec["inputs"]
            and all(isinstance(i, str) for i in rec["inputs"])):
        return "'inputs' must be a non-empty list of strings"
    if "outputs" in rec and not (isinstance(rec["outputs"], list)
                                 and len(rec["outputs"]) == len(rec["inputs"])
                                 and all(isinstance(o, str) for o in rec["outputs"])):
        return "'outputs' must be a list of strings, one per input"
    if "name" in rec and not isinstance(rec["name"], str):
        return "'name' must be a string"
    return limits.size_problem(rec["code"], rec["inputs"]) or _argument_list_problem(rec["inputs"])


def import_functions(path: Path, *, test_inputs: int, eval_fraction: float, seed: int,
                     cfg: ImportedConfig, progress: bool = True):
    """Read, run and check every function of a JSONL file; returns (DataSet, report records)."""
    path = Path(path)
    if test_inputs < 1:
        raise PbbError(f"--test-inputs must be at least 1, got {test_inputs}")
    if not 0 <= eval_fraction <= 1:
        raise PbbError(f"--eval-fraction must be in [0, 1], got {eval_fraction}")
    report: list[dict] = []  # one record per line of the file, appended as each is settled
    sandbox_limits = cfg.limits()
    candidates = _parsed_functions(path, sandbox_limits, report)
    outcomes = _run_functions(candidates, cfg.workers, sandbox_limits, progress)
    behaviours, calls = _checked_behaviours(candidates, outcomes, cfg.recorded_limits(), seed,
                                            report)
    if not behaviours:
        raise PbbError(f"{path}: every function was skipped (reasons in {REPORT})")
    data_mod.assign_splits(behaviours, eval_fraction, seed)
    demos = _demonstrations(behaviours, calls, test_inputs, seed, report)
    report.sort(key=lambda r: r["line"])
    return data_mod.DataSet(None, ImportedDomain(), cfg, seed, behaviours, demos), report


def _parsed_functions(path: Path, limits: Limits, report: list[dict]) -> list[tuple]:
    """(line number, record, parsed code, function name) of every line whose record is well
    formed and whose code parses and defines the function; the others are reported skipped."""
    candidates = []
    for lineno, rec, problem in _read_lines(path, limits):
        where = {"line": lineno, "id": rec.get("id") if rec else None}
        if problem:
            report.append({**where, "status": "skipped", "reason": problem})
            continue
        try:
            tree = ast.parse(rec["code"])
            fname = _function_name(tree, rec.get("name"))
        except SyntaxError as e:
            report.append({**where, "status": "skipped", "reason": f"SyntaxError: {e.msg} (code line {e.lineno})"})
            continue
        except ValueError as e:
            report.append({**where, "status": "skipped", "reason": str(e)})
            continue
        candidates.append((lineno, rec, tree, fname))
    if not candidates:
        reasons = "; ".join(f"line {r['line']}: {r['reason']}" for r in report[:3])
        raise PbbError(f"{path}: no usable function ({reasons})")
    return candidates


def _run_functions(candidates: list[tuple], workers: int, limits: Limits, progress: bool) -> list:
    """Every candidate function called on its inputs in the sandbox: one outcome each."""
    bar = tqdm(total=len(candidates), desc="sandbox", unit="function", disable=not progress or None,
               leave=False)
    with Sandbox(workers, limits) as sb:
        outcomes = sb.run_many([(rec["code"], fname, rec["inputs"]) for _, rec, _, fname in candidates],
                               progress=bar.update)
    bar.close()
    return outcomes


def _output_problem(rec: dict, outputs: list[str]) -> str | None:
    """The first output that is not a Python literal or differs from the record's own, or None."""
    for k, out in enumerate(outputs):
        if literal(out) is NOT_A_LITERAL:
            return f"output for input {k + 1} is not a Python literal: {out[:80]}"
        if "outputs" in rec and not same_literal(rec["outputs"][k], out):
            return f"input {k + 1} ({rec['inputs'][k][:60]}) gives {out[:60]}, expected {rec['outputs'][k][:60]}"
    return None


def _checked_behaviours(candidates: list[tuple], outcomes: list, limits: dict, seed: int,
                        report: list[dict]) -> tuple[list[Behaviour], list[list[tuple[str, str]]]]:
    """The behaviours of the functions that ran and gave the outputs expected, each renamed
    where its name is taken or a keyword, and per behaviour its calls (query, output) for
    every input; every function reported imported or skipped."""
    rng = random.Random(f"{seed}|import")
    taken: set[str] = set()
    behaviours: list[Behaviour] = []
    calls: list[list[tuple[str, str]]] = []
    for (lineno, rec, tree, fname), outcome in zip(candidates, outcomes):
        where = {"line": lineno, "id": rec.get("id")}
        reason = outcome.error
        if reason is None:
            reason = _output_problem(rec, outcome.outputs)
        if reason is not None:
            report.append({**where, "status": "skipped", "reason": reason})
            continue
        name, renamed = fname, None
        if name in taken or keyword.iskeyword(name):
            name, renamed = pointer_name(rng, taken), fname
            tree = Rename(fname, name).visit(tree)
        taken.add(name)
        code = ast.unparse(tree)
        b = Behaviour(id=f"imported-{len(behaviours):05d}", domain="imported", name=name,
                      instruction=code, meta={"source_line": lineno, "source_id": rec.get("id"),
                                              "renamed_from": renamed, "limits": limits})
        behaviours.append(b)
        calls.append([(f"{name}({args})", out) for args, out in zip(rec["inputs"], outcome.outputs)])
        report.append({**where, "status": "imported", "behaviour_id": b.id, "name": name,
                       "renamed_from": renamed})
    return behaviours, calls


def _demonstrations(behaviours: list[Behaviour], calls: list[list[tuple[str, str]]],
                    test_inputs: int, seed: int, report: list[dict]) -> list[Demonstration]:
    """Every call of every (split) behaviour as a demonstration, train or test input; each
    behaviour's report record told its split and counts."""
    entry = {r["behaviour_id"]: r for r in report if r["status"] == "imported"}
    demos: list[Demonstration] = []
    for b, its_calls in zip(behaviours, calls):
        held = _held_out(b, len(its_calls), test_inputs, seed)
        demos += [Demonstration(b.id, query, out, f"{ANSWER_PREFIX} {out}",
                                "test" if k in held else "train")
                  for k, (query, out) in enumerate(its_calls)]
        entry[b.id].update(split=b.split, inputs=len(its_calls), test_inputs=len(held))
    return demos


def _held_out(b: Behaviour, n: int, test_inputs: int, seed: int) -> set[int]:
    """Which of a function's ``n`` inputs are test inputs.

    With more than ``test_inputs`` inputs: ``test_inputs`` of them, drawn from the seed. With
    fewer or as many (too few to keep demonstrations *and* test inputs): all of them for an eval
    behaviour (its code is all it is known by), none for a train behaviour (they are its
    demonstrations; it is not evaluated).
    """
    if n <= test_inputs:
        return set(range(n)) if b.split == "eval" else set()
    order = list(range(n))
    random.Random(f"{seed}|tests|{b.id}").shuffle(order)
    return set(order[:test_inputs])
