"""Composite behaviours h(a) = f(g(a)): correct outputs, valid inputs, grouped evaluation."""

import ast

import pytest

from pbb import data
from pbb.domains.arithmetic.compose import part_groups
from pbb.errors import PbbError
from pbb.evaluation.report import composition
from pbb.jsonio import write_jsonl

OPTIONS = {"compositions": 12, "min_args": 1, "max_args": 2}


@pytest.fixture(scope="module")
def cds():
    return data.generate("arithmetic", behaviours=40, demos=4, test_inputs=2, eval_fraction=0.5,
                         seed=1, progress=False, options=OPTIONS)


def test_composites_compute_f_of_g_as_plain_python(cds):
    by_name = {b.name: b for b in cds.behaviours}
    composites = [b for b in cds.behaviours if b.meta.get("composite")]
    assert len(composites) == 12 and len(cds.behaviours) == 40
    for b in composites:
        call = ast.parse(b.instruction).body[0].body[0].value  # return outer(inner(a))
        outer, inner = by_name[call.func.id], by_name[call.args[0].func.id]
        assert outer.meta["arity"] == inner.meta["arity"] == 1 and not outer.meta.get("composite")
        namespace = {}
        for part in (outer, inner, b):
            exec(part.instruction, namespace)
        for d in [d for d in cds.demonstrations if d.behaviour_id == b.id]:
            a = int(d.input[len(b.name) + 1:-1])
            assert 0 <= namespace[inner.name](a) <= 20  # inner value stays in the input range
            assert repr(namespace[b.name](a)) == d.output
            assert d.trace.splitlines()[-1] == f"Answer: {d.output}"
    assert data.validate(cds, progress=False) == []
    assert len({b.name for b in cds.behaviours}) == len(cds.behaviours)


def test_too_many_compositions_is_a_clear_error():
    with pytest.raises(PbbError, match="compositions need at least"):
        data.generate("arithmetic", behaviours=5, demos=1, test_inputs=1, eval_fraction=0.5,
                      seed=0, progress=False, options={"compositions": 4})


def test_composition_report_groups_by_how_the_parts_were_learned(cds, tmp_path):
    splits = {b.id: b.split for b in cds.behaviours}
    composites = [b for b in cds.behaviours if b.meta.get("composite") and b.split == "eval"]
    # a stand-in model that gets exactly the composites whose parts are both train behaviours
    samples = []
    for d in [d for d in cds.demonstrations if d.use == "test"]:
        b = cds.behaviour(d.behaviour_id)
        right = b.meta.get("composite") and part_groups(b, splits) == "train+train"
        samples.append({"behaviour_id": b.id, "split": b.split, "mode": "cot", "input": d.input,
                        "prompt": "", "target": d.output, "curriculum": "proactive",
                        "completion": "", "prediction": None, "score": float(bool(right))})
    write_jsonl(tmp_path / "eval" / "proactive" / "cot" / "samples.jsonl", samples)
    rows = composition(tmp_path, cds, ["proactive"], ["cot"], 200, 0)
    expected = {}
    for b in composites:
        expected.setdefault(part_groups(b, splits), []).append(b.id)
    assert {r["parts"]: r["n_behaviours"] for r in rows} == {g: len(v) for g, v in expected.items()}
    for r in rows:
        assert r["accuracy"] == (1.0 if r["parts"] == "train+train" else 0.0)


def test_a_nested_composite_trace_recalls_and_traces_each_part_as_its_own_cot_does():
    """``composite_trace: nested``: the same behaviours and outputs as ``calls``; each part's
    block is its definition, then its own demonstration trace on the inner value (without its
    answer line), then the call's value. The CoT's recall score still reads the composite's own
    definition only; the default writes the same data bytes as before the option."""
    from pbb.domains.arithmetic.config import ArithmeticConfig
    from pbb.evaluation.recall import cot_recall_exact
    from pbb.rows.render import RECALL_HEADER

    opts = {**OPTIONS, "max_args": 1}
    kw = dict(behaviours=30, demos=3, test_inputs=2, eval_fraction=0.5, seed=3, progress=False)
    calls = data.generate("arithmetic", options=opts, **kw)
    nested = data.generate("arithmetic", options={**opts, "composite_trace": "nested"}, **kw)
    assert [b.instruction for b in nested.behaviours] == [b.instruction for b in calls.behaviours]
    assert [(d.input, d.output) for d in nested.demonstrations] == \
        [(d.input, d.output) for d in calls.demonstrations]
    domain = nested.domain
    checked = 0
    for d in nested.demonstrations:
        b = nested.behaviour(d.behaviour_id)
        if not b.meta.get("composite"):
            continue
        lines = d.trace.splitlines()
        value = None
        for which in ("inner", "outer"):
            part = b.meta["parts"][which]
            arg = int(d.input[len(b.name) + 1:-1]) if which == "inner" else value
            own = domain.execute(nested.behaviour(part["id"]), f"{part['name']}({arg})")
            value = int(own.output)
            block = [f"Recall the definition of {part['name']}:", *part["source"].splitlines(),
                     *own.trace.splitlines()[:-1], f"{part['name']}({arg}) = {value}"]
            k = lines.index(block[0])
            assert lines[k:k + len(block)] == block
        assert lines[-2:] == [f"return {value}", f"Answer: {d.output}"] and repr(value) == d.output
        cot = f"{RECALL_HEADER}\n{b.instruction}\nTrace:\n{d.trace}"
        assert cot_recall_exact(cot, b.instruction) == 1.0
        checked += 1
    assert checked >= 10 and data.validate(nested, progress=False) == []
    assert "composite_trace" not in ArithmeticConfig().model_dump(mode="json")
    assert ArithmeticConfig(composite_trace="nested").model_dump(mode="json")["composite_trace"] \
        == "nested"
