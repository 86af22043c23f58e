"""pbb.evaluation.steps: each completion classed by the first trace line that differs from gold."""

import json

import pbb
from pbb.evaluation.steps import first_error, main, summarise
from pbb.store import RunStore


def _bump(line: str) -> str:
    """The same line with its final value off by one."""
    head, _, value = line.rpartition(" = ")
    return f"{head} = {int(value) + 1}"


def test_each_completion_is_classed_by_its_first_wrong_line(tmp_path, capsys):
    ds = pbb.make_data("arithmetic", behaviours=6, demos=1, test_inputs=2, seed=1,
                       out=tmp_path / "run" / "data", min_statements=2, max_statements=2,
                       min_args=1, max_args=1, branch_prob=0.0, loop_prob=0.0, max_const=9,
                       input_min=0, input_max=10, max_abs_value=99)
    store = RunStore(tmp_path / "run")
    tests = [d for d in ds.demonstrations if d.use == "test"]
    split = {b.id: b.split for b in ds.behaviours}
    rows, expected = [], {}

    def add(d, completion, kind):
        rows.append({"behaviour_id": d.behaviour_id, "split": split[d.behaviour_id],
                     "input": d.input, "completion": completion, "score": 0.0})
        if split[d.behaviour_id] == "eval":
            expected[kind] = expected.get(kind, 0) + 1

    for k, d in enumerate(tests):
        lines = d.trace.splitlines()  # arguments, two steps, return, answer
        assert len(lines) == 5 and lines[1].count(" = ") == 3, d.trace
        variant = k % 6
        if variant == 0:
            add(d, "Recall the definition:\ndef f(a): ...\nTrace:\n" + d.trace, "exact")
        elif variant == 1:
            add(d, "\n".join([lines[0], _bump(lines[1]), *lines[2:]]), "step: arithmetic")
        elif variant == 2:
            add(d, "\n".join([lines[0], "x = 99 + a = 99 + 1 = 100", *lines[2:]]), "step: expression")
        elif variant == 3:
            add(d, "\n".join(lines[:3]), "stopped early")
        elif variant == 4:
            add(d, "\n".join([*lines[:4], "Answer: -1"]), "answer")
        else:
            add(d, "\n".join(["a = 1000", *lines[1:]]), "arguments")
    path = store.samples("proactive", "cot")
    path.parent.mkdir(parents=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))

    got = summarise(store.root, "proactive", "cot", "eval")
    n = sum(expected.values())
    assert got["n"] == n > 0
    for kind, count in expected.items():
        assert got[kind] == round(count / n, 3), (kind, got)
    assert got["recalled code"] == round(expected.get("exact", 0) / n, 3)
    main([str(store.root)])
    assert "proactive cot {'n': %d" % n in capsys.readouterr().out


def test_a_step_of_another_form_and_a_longer_completion():
    gold = "text = 'ab', k = 1\nstep a=0: 0 + 1 = 1 -> b=1\nreturn 'b'\nAnswer: 'b'"
    assert first_error(gold.replace("-> b=1", "-> c=1"), gold) == "step"
    assert first_error(gold + "\nmore text", gold) == "exact"
    assert first_error("", gold) == "stopped early"


def test_a_nested_composite_trace_is_classed_by_the_part_that_goes_wrong():
    """``composite_trace: nested``: a wrong line of a part's recalled code is ``part recall``;
    a part's own ``return`` line is a step, and only the composite's last one is ``return``."""
    from pbb import data

    ds = data.generate("arithmetic", behaviours=16, demos=2, test_inputs=1, eval_fraction=0.5,
                       seed=0, progress=False,
                       options={"min_args": 1, "max_args": 1, "compositions": 4,
                                "composite_trace": "nested", "input_max": 10,
                                "max_abs_value": 99})
    gold = next(d.trace for d in ds.demonstrations
                if ds.behaviour(d.behaviour_id).meta.get("composite"))
    lines = gold.splitlines()
    header = next(i for i, x in enumerate(lines) if x.startswith("Recall the definition of "))
    code = header + 2  # the part's first body line, under its def
    assert lines[code].startswith("    ")
    broken = "\n".join(lines[:code] + ["    x = 0"] + lines[code + 1:])
    assert first_error(broken, gold) == "part recall"
    renamed = "\n".join(lines[:header] + ["Recall the definition of zzz:"] + lines[header + 1:])
    assert first_error(renamed, gold) == "part recall"
    part_return = next(i for i, x in enumerate(lines) if x.startswith("return "))
    assert part_return < len(lines) - 2  # a part's, not the composite's
    wrong = "\n".join(lines[:part_return] + ["return x = 1234"] + lines[part_return + 1:])
    assert first_error(wrong, gold).startswith("step")
    last = "\n".join(lines[:-2] + ["return 1234", lines[-1]])
    assert first_error(last, gold) == "return"
