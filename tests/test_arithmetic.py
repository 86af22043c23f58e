"""The arithmetic domain: correctness against plain Python, traces, uniqueness, splits."""

import ast
import random
import re

import pytest

from pbb.domains import get_domain
from pbb.domains.arithmetic.generate import ARG_NAMES, probe_inputs
from pbb.errors import PbbError

_REDUCTION = re.compile(r"^\s*(?:i = \d+: )?(\w+) = (.+) = (.+) = (-?\d+)$")


def python_function(behaviour):
    """The instruction run by the real interpreter, independently of pbb's tracer."""
    namespace = {}
    exec(behaviour.instruction, namespace)  # noqa: S102 - generated test data
    return namespace[behaviour.name]


def call_args(query):
    return tuple(ast.literal_eval(a) for a in ast.parse(query, mode="eval").body.args)


def test_outputs_match_plain_python(arith_set):
    by_id = {b.id: python_function(b) for b in arith_set.behaviours}
    for d in arith_set.demonstrations:
        assert repr(by_id[d.behaviour_id](*call_args(d.input))) == d.output, d.input


def test_trace_reductions_are_correct_and_end_in_the_answer(arith_set):
    checked = 0
    for d in arith_set.demonstrations[:3000]:
        lines = d.trace.splitlines()
        assert lines[-1] == f"Answer: {d.output}"
        assert lines[-2].startswith("return ") and lines[-2].endswith(f"= {d.output}")
        assert lines[0] == ", ".join(f"{a} = {v}" for a, v in zip(ARG_NAMES, call_args(d.input)))
        for line in lines[1:]:
            m = _REDUCTION.match(line)
            if m:  # "x = <source> = <substituted> = <value>": the substitution evaluates to value
                assert eval(m.group(3), {"min": min, "max": max, "abs": abs}) == int(m.group(4))
                checked += 1
    assert checked > 3000


def test_values_stay_bounded(arith_set):
    for d in arith_set.demonstrations:
        for number in re.findall(r"-?\d+", d.trace):
            assert abs(int(number)) <= 999_999


def test_names_unique_and_functions_distinct_on_probes(arith_set):
    names = [b.name for b in arith_set.behaviours]
    assert len(set(names)) == len(names)
    cfg = arith_set.domain_config
    seen = set()
    for b in arith_set.behaviours:
        f = python_function(b)
        arity = b.meta["arity"]
        probes = probe_inputs(arity, cfg.input_min, cfg.input_max)
        key = (arity, tuple(f(*p) for p in probes))
        assert key not in seen
        seen.add(key)


def test_every_argument_is_used_and_no_function_is_constant(arith_set):
    cfg = arith_set.domain_config
    rng = random.Random(0)
    for b in arith_set.behaviours:
        f = python_function(b)
        arity = b.meta["arity"]
        assert [a.arg for a in ast.parse(b.instruction).body[0].args.args] == list(ARG_NAMES[:arity])
        for j in range(arity):
            differs = False
            for _ in range(400):
                x = [rng.randint(cfg.input_min, cfg.input_max) for _ in range(arity)]
                y = list(x)
                y[j] = rng.randint(cfg.input_min, cfg.input_max)
                if f(*x) != f(*y):
                    differs = True
                    break
            assert differs, f"{b.name}: argument {j} never changes the output"


def test_statement_counts_and_syntax_within_knobs(arith_set):
    for b in arith_set.behaviours:
        fn = ast.parse(b.instruction).body[0]
        assert 1 <= len(fn.body) - 1 <= 6
        assert isinstance(fn.body[-1], ast.Return)
        assert 1 <= b.meta["arity"] <= 3


def test_splits_and_disjoint_inputs(arith_set):
    assert len(arith_set.split("eval")) == 120 and len(arith_set.split("train")) == 180
    demos, tests = arith_set.by_behaviour("train"), arith_set.by_behaviour("test")
    for b in arith_set.behaviours:
        assert len(demos[b.id]) == 20 and len(tests[b.id]) == 8
        assert len({d.input for d in tests[b.id]}) == 8
        assert not {d.input for d in tests[b.id]} & {d.input for d in demos[b.id]}
        assert all(d.input.startswith(b.name + "(") for d in demos[b.id])


def test_verifier_gold_is_one_and_wrong_is_zero(arith_set):
    dom = arith_set.domain
    by_id = {b.id: b for b in arith_set.behaviours}
    for d in arith_set.demonstrations[:500]:
        b = by_id[d.behaviour_id]
        gold = int(d.output)
        assert dom.score(b, d.input, d.output) == 1.0
        assert dom.score(b, d.input, f" {gold} ") == 1.0
        assert dom.score(b, d.input, str(gold + 1)) == 0.0
        assert dom.score(b, d.input, None) == 0.0
        assert dom.score(b, d.input, "banana") == 0.0
        assert dom.score(b, d.input, "9" * 5000) == 0.0


def test_values_compare_as_python_literals_of_the_same_type():
    from pbb.domains.arithmetic import same_value

    assert same_value("-3", "-3") and same_value(" 7", "7") and same_value("0x10", "16")
    assert not same_value("True", "1")  # True == 1 in Python, but it is not the integer answer
    assert not same_value("1.0", "1")
    assert not same_value("[1]", "1")
    assert not same_value("__import__('os')", "1")


def test_answer_extraction_survives_junk():
    dom = get_domain("arithmetic")
    assert dom.extract("x = 1\nAnswer: 42") == "42"
    assert dom.extract("Answer: 3\nsome more\n**Answer:** -7  ") == "-7"
    assert dom.extract("The result.\n## Answer: `12`") == "12"
    assert dom.extract("answer = 5") == "5"
    assert dom.extract("I think it is 12") is None
    assert dom.extract("") is None


def test_execute_rejects_code_outside_the_language(arith_set):
    b = arith_set.behaviours[0]
    dom = arith_set.domain
    evil = type(b)(id="x", domain="arithmetic", name="f",
                   instruction="def f(a):\n    import os\n    return a")
    with pytest.raises(PbbError, match="unsupported syntax Import"):
        dom.execute(evil, "f(1)")
    call = type(b)(id="y", domain="arithmetic", name="g",
                   instruction="def g(a):\n    return open(a)")
    with pytest.raises(PbbError, match="only min/max/abs/range"):
        dom.execute(call, "g(1)")
    with pytest.raises(PbbError, match="not a function call"):
        dom.execute(b, "import os")
    with pytest.raises(PbbError, match="expected " + b.name):
        dom.execute(b, "other(1)")
