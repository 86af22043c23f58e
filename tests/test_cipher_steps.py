"""pbb.evaluation.cipher_steps: each operation of a cipher step judged on what the model wrote."""

import re

import pytest

from pbb import data
from pbb.evaluation.cipher_steps import _ARITHMETIC, CHECKS, check


@pytest.fixture(scope="module", params=["indexed", "lookup"])
def ds(request):
    return data.generate("ciphers", behaviours=16, demos=4, test_inputs=1, eval_fraction=0.5,
                         seed=3, progress=False, options={"trace": request.param})


def _by_id(ds):
    return {b.id: b for b in ds.behaviours}


def test_a_gold_trace_passes_every_check(ds):
    behaviours = _by_id(ds)
    for d in ds.demonstrations:
        b = behaviours[d.behaviour_id]
        c = check(b, d.input, d.trace)
        text = d.input.split("('", 1)[1].split("'")[0]
        assert c["steps"] == sum(ch in b.meta["alphabet"] for ch in text)
        for k in CHECKS:
            want = c["arithmetic steps"] if k in _ARITHMETIC else c["steps"]
            assert c[k] == want, (k, d.trace)


def _first_step(trace: str) -> str:
    return next(line for line in trace.splitlines() if line.startswith("step "))


def test_a_wrong_sum_fails_the_arithmetic_and_what_follows_from_it_only(ds):
    """The arithmetic's last value changed by one: the arithmetic, its evaluation and the result
    position are wrong; the operands, the letter's position and the copy of the written result
    still count as right."""
    behaviours = _by_id(ds)
    d = next(d for d in ds.demonstrations
             if behaviours[d.behaviour_id].meta["family"] in ("shift", "vigenere"))
    b, line = behaviours[d.behaviour_id], _first_step(d.trace)
    value = re.findall(r"= (-?\d+)", line)[-1]
    bad = re.sub(rf"= {value}( ->)", lambda m: f"= {(int(value) + 1) % 26}{m.group(1)}", line)
    c = check(b, d.input, d.trace.replace(line, bad, 1))
    arithmetic = c["arithmetic steps"]
    assert (arithmetic - c["arithmetic"], arithmetic - c["evaluation"]) == (1, 1)
    assert c["steps"] - c["result"] == 1
    assert c["position"] == c["letter"] == c["input"] == c["steps"]
    assert c["operands"] == arithmetic


def test_a_wrong_key_fails_the_operands_and_a_reduction_by_other_than_26_fails_the_reduction(ds):
    behaviours = _by_id(ds)
    d = next(d for d in ds.demonstrations if behaviours[d.behaviour_id].meta["family"] == "shift"
             and ", " in _first_step(d.trace))  # a step with a reduction
    b, line = behaviours[d.behaviour_id], _first_step(d.trace)
    sign, k = re.search(r": \d+ ([-+]) (\d+) = ", line).groups()
    wrong_key = line.replace(f" {sign} {k} = ", f" {sign} {int(k) + 1} = ", 1)
    c = check(b, d.input, d.trace.replace(line, wrong_key, 1))
    assert c["arithmetic steps"] - c["operands"] == 1
    wrong_reduction = re.sub(r", (-?\d+) ([-+]) (\d+) = (\d+)",
                             lambda m: f", {m[1]} {m[2]} {int(m[3]) + 1} = "
                                       f"{eval(f'{m[1]} {m[2]} {int(m[3]) + 1}')}", line)  # noqa: S307
    c = check(b, d.input, d.trace.replace(line, wrong_reduction, 1))
    assert c["arithmetic steps"] - c["reduction"] == 1
    assert c["evaluation"] == c["arithmetic steps"]


def test_a_letter_copied_from_the_wrong_entry_fails_the_letter_and_the_step(ds):
    behaviours = _by_id(ds)
    d = ds.demonstrations[0]
    b, line = behaviours[d.behaviour_id], _first_step(d.trace)
    indexed = re.search(r"-> ([a-z])=\d+$", line)  # indexed: "-> x=10"; lookup: "-> 10=x"
    old = indexed.group(1) if indexed else line[-1]
    new = "a" if old != "a" else "b"
    bad = line.replace(f"-> {old}=", f"-> {new}=") if indexed else line[:-1] + new
    c = check(b, d.input, d.trace.replace(line, bad, 1))
    assert c["steps"] - c["letter"] == 1 and c["steps"] - c["step"] == 1
    assert c["position"] == c["result"] == c["steps"]
