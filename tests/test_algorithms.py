"""Domain algorithms: a library of 60+ classic functions, each run as plain Python agrees."""

import ast
import collections

import pytest

from pbb import data
from pbb.domains import get_domain
from pbb.domains.algorithms import LIBRARY
from pbb.errors import PbbError

DOMAIN = get_domain("algorithms")


@pytest.fixture(scope="module")
def aset():
    return data.generate("algorithms", behaviours=len(LIBRARY), demos=10, test_inputs=4,
                         eval_fraction=0.5, seed=2, progress=False)


def test_library_has_60_distinct_functions_in_every_category():
    assert len(LIBRARY) >= 60
    assert len({a.key for a in LIBRARY}) == len(LIBRARY)
    assert len({a.source for a in LIBRARY}) == len(LIBRARY)
    counts = collections.Counter(a.category for a in LIBRARY)
    assert set(counts) >= {"sorting", "searching", "strings", "numbers", "lists",
                           "dynamic programming", "graphs"}
    assert all(a.description.endswith(".") for a in LIBRARY)


def test_outputs_are_what_the_renamed_code_computes(aset):
    """Each instruction run as plain Python (a fresh exec) gives the recorded outputs."""
    behaviours = {b.id: b for b in aset.behaviours}
    for d in aset.demonstrations:
        b = behaviours[d.behaviour_id]
        namespace = {}
        exec(b.instruction, namespace)
        args = ast.literal_eval("(" + d.input[len(b.name) + 1:-1] + ",)")
        assert repr(namespace[b.name](*args)) == d.output, (b.meta["algorithm"], d.input)
        assert "def f(" not in b.instruction and b.name in b.description


def test_inputs_vary_and_tests_are_held_out(aset):
    outputs = collections.defaultdict(set)
    for d in aset.demonstrations:
        outputs[d.behaviour_id].add(d.output)
    assert all(len(v) >= 2 for v in outputs.values()), [
        b.meta["algorithm"] for b in aset.behaviours if len(outputs[b.id]) < 2]
    for b in aset.behaviours:
        demo = {d.input for d in aset.demonstrations if d.behaviour_id == b.id and d.use == "train"}
        test = {d.input for d in aset.demonstrations if d.behaviour_id == b.id and d.use == "test"}
        assert len(test) == 4 and not demo & test


def test_validate_gold_and_wrong_answers(aset):
    assert data.validate(aset, progress=False) == []
    behaviours = {b.id: b for b in aset.behaviours}
    for d in aset.demonstrations[::7]:
        b = behaviours[d.behaviour_id]
        assert DOMAIN.score(b, d.input, d.output) == 1.0
        assert DOMAIN.score(b, d.input, repr(d.output)) == 0.0  # a string is not the value
        assert DOMAIN.score(b, d.input, None) == 0.0


def test_determinism_and_clear_errors(aset):
    again = data.generate("algorithms", behaviours=len(LIBRARY), demos=10, test_inputs=4,
                          eval_fraction=0.5, seed=2, progress=False)
    assert [d.to_record() for d in again.demonstrations] == [d.to_record() for d in aset.demonstrations]
    with pytest.raises(PbbError, match="the library has"):
        data.generate("algorithms", behaviours=500, demos=1, test_inputs=1, eval_fraction=0.5,
                      seed=0, progress=False)
    b = aset.behaviours[0]
    tampered = type(b)(**{**b.__dict__, "instruction": b.instruction + "\n# changed"})
    with pytest.raises(PbbError, match="not the library's"):
        DOMAIN.execute(tampered, aset.demonstrations[0].input)


def test_familiar_names_keep_the_functions_and_inputs_and_change_only_the_names(aset):
    """``names: familiar`` gives each function its library name (``gcd``) where the default
    gives a pointer: the same functions, splits and inputs under the other name, so untuned or
    trained models can be compared on the name alone; each instruction still runs to its
    outputs; the default's config dump has no ``names`` key (older data sets keep their bytes)."""
    from pbb.domains.algorithms import AlgorithmsConfig

    familiar = data.generate("algorithms", behaviours=len(LIBRARY), demos=10, test_inputs=4,
                             eval_fraction=0.5, seed=2, progress=False,
                             options={"names": "familiar"})
    assert "names" not in AlgorithmsConfig().model_dump()
    assert AlgorithmsConfig(names="familiar").model_dump()["names"] == "familiar"
    names = {b.id: (b.name, b.meta["algorithm"]) for b in familiar.behaviours}
    assert all(name == key for name, key in names.values())
    pointers = {b.id: b for b in aset.behaviours}
    for b in familiar.behaviours:
        p = pointers[b.id]
        assert (b.meta, b.split) == (p.meta, p.split) and p.name != b.name
        assert b.instruction == p.instruction.replace(p.name, b.name)
    for f, p in zip(familiar.demonstrations, aset.demonstrations, strict=True):
        pname, fname = pointers[p.behaviour_id].name, names[f.behaviour_id][0]
        assert f.input == p.input.replace(pname, fname, 1) and f.output == p.output
        assert f.use == p.use
    with pytest.raises(PbbError, match="names"):
        data.generate("algorithms", behaviours=4, demos=1, test_inputs=1, seed=0, eval_fraction=0.5,
                      progress=False, options={"names": "real"})
