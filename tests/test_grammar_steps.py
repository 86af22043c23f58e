"""``python -m pbb.evaluation.grammar_steps``: every gold derivation passes every check, and each
broken part of a step line fails its own check (and the completion's derivation) only."""

import json

import pytest

from pbb import data
from pbb.evaluation import grammar_steps
from pbb.store import RunStore


def _generate(trace):
    return data.generate("grammars", behaviours=8, demos=3, test_inputs=1, eval_fraction=0.5,
                         seed=2, progress=False,
                         options={"trace": trace, "min_nonterminals": 2, "max_nonterminals": 3,
                                  "max_alternatives": 2, "max_rule_length": 3, "terminals": 4,
                                  "max_length": 6})


@pytest.fixture(scope="module")
def named():
    return _generate("named")


@pytest.fixture(scope="module")
def picked():
    return _generate("pick")


def _a_step(ds):
    """A behaviour, a gold trace with at least two step lines, its last step line and the form
    before that line."""
    behaviours = {b.id: b for b in ds.behaviours}
    for d in ds.demonstrations:
        lines = d.trace.splitlines()
        steps = [i for i, x in enumerate(lines) if " -> " in x]
        if len(steps) >= 2:
            before = lines[steps[-1] - 1].split(": ", 1)[-1]
            return behaviours[d.behaviour_id], d.trace, lines[steps[-1]], before
    raise AssertionError("no trace with two steps")


def test_gold_derivations_pass_and_each_broken_part_fails_its_own_check(named):
    behaviours = {b.id: b for b in named.behaviours}
    for d in named.demonstrations:
        c = grammar_steps.check(behaviours[d.behaviour_id], d.trace)
        assert c["steps"] and all(c[k] == c["steps"] for k in grammar_steps.STEP_CHECKS), d.trace
        assert c["derivation"] == c["answer"] == 1
    b, trace, line, before = _a_step(named)
    rule, form = line.split(": ", 1)
    lhs, rhs = rule.split(" -> ")
    # a rule the grammar does not have, applied faithfully: the rule check fails, not the others
    k = before.split().index(lhs)  # the leftmost nonterminal: the last step's only one
    after = " ".join(before.split()[:k] + rhs.split() + ['"zz"'] + before.split()[k + 1:])
    wrong = f'{lhs} -> {rhs} "zz": {after}'
    c = grammar_steps.check(b, trace.replace(line, wrong, 1))
    assert c["steps"] - c["rule"] == 1 and c["form"] == c["leftmost"] == c["steps"]
    assert c["derivation"] == 0
    # the rule's terminals written without their quotes: the line is still read, the rule
    # check fails and the leftmost one holds
    bare = f"{lhs} -> {rhs.replace(chr(34), '')}: {form}"
    c = grammar_steps.check(b, trace.replace(line, bare, 1))
    assert c["steps"] - c["rule"] == 1 and c["leftmost"] == c["steps"] and c["derivation"] == 0
    # the grammar's rule, but the form after it copied wrong: the form check fails
    c = grammar_steps.check(b, trace.replace(line, f'{rule}: "zz" {form}', 1))
    assert c["steps"] - c["form"] == 1 and c["rule"] == c["steps"] and c["derivation"] == 0
    # the derivation stopped before its last step, a nonterminal left: no derivation, no answer
    c = grammar_steps.check(b, trace.split(line)[0] + "Answer: x")
    assert c["derivation"] == c["answer"] == 0 and c["rule"] == c["steps"] > 0
    # the right derivation, another answer: the answer check fails only
    answer = trace.splitlines()[-1]
    c = grammar_steps.check(b, trace.replace(answer, answer + " zz"))
    assert c["derivation"] == 1 and c["answer"] == 0


def test_the_pick_trace_copies_the_rule_line_and_derives_the_same_strings(named, picked):
    """Each ``pick`` step copies its nonterminal's line of the instruction verbatim, then picks
    the alternative the ``named`` trace applies: the same derivations, the same outputs; an
    alternative dropped from the copy fails the alternatives check only."""
    behaviours = {b.id: b for b in picked.behaviours}
    for d, n in zip(picked.demonstrations, named.demonstrations, strict=True):
        assert (d.input, d.output) == (n.input, n.output)
        b = behaviours[d.behaviour_id]
        lines = [x for x in d.trace.splitlines() if " pick " in x]
        assert len(lines) == n.trace.count(" -> ") > 0
        for x, y in zip(lines, [x for x in n.trace.splitlines() if " -> " in x]):
            copied, rest = x.split(" pick ")
            assert copied in b.instruction.splitlines()
            assert f"{copied.split(' -> ')[0]} -> {rest}" == y  # the named step, picked
        c = grammar_steps.check(b, d.trace)
        assert c["pick steps"] == c["alternatives"] == c["steps"] == len(lines)
        assert all(c[k] == c["steps"] for k in grammar_steps.STEP_CHECKS) and c["derivation"]
    d = next(d for d in picked.demonstrations if " | " in d.trace)
    line = next(x for x in d.trace.splitlines() if " | " in x.split(" pick ")[0])
    copied, rest = line.split(" pick ")
    short = f"{copied.rsplit(' | ', 1)[0]} pick {rest}"
    c = grammar_steps.check(behaviours[d.behaviour_id], d.trace.replace(line, short, 1))
    assert c["pick steps"] - c["alternatives"] == 1 and c["derivation"] == 0
    assert all(c[k] == c["steps"] for k in grammar_steps.STEP_CHECKS)


def test_summarise_reads_a_runs_samples(named, tmp_path, capsys):
    """A run directory with two completions of one train query: the gold one and one with a
    wrong rule; the shares are of the step lines and of the completions."""
    run = tmp_path / "run"
    data.save(named, RunStore(run).data)
    b, trace, line, _ = _a_step(named)
    query = next(d.input for d in named.demonstrations if d.trace == trace)
    rule, form = line.split(": ", 1)
    wrong = trace.replace(line, f'{rule.split(" -> ")[0]} -> "zz": {form}', 1)
    path = RunStore(run).samples("stage1", "cot")
    path.parent.mkdir(parents=True)
    rows = [{"behaviour_id": b.id, "split": b.split, "input": query, "completion": c, "score": s,
             "recall_exact": 1.0} for c, s in ((trace, 1.0), (wrong, 0.0))]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    got = grammar_steps.summarise(run, "stage1", "cot", b.split)
    steps = 2 * trace.count(" -> ")
    assert got["completions"] == 2 and got["step lines"] == steps
    # the wrong rule's line: neither the rule nor the form after it (the gold one) is right
    assert got["rule"] == got["form"] == round((steps - 1) / steps, 3) and got["leftmost"] == 1.0
    assert got["derivation"] == 0.5 and got["valid"] == 0.5 and got["recalled"] == 1.0
    assert got["valid where the derivation is right"] == 1.0
    grammar_steps.main([str(run), "--split", b.split])
    assert [x.split(" {")[0] for x in capsys.readouterr().out.splitlines()] == ["run stage1 cot"]


@pytest.mark.parametrize("trace", ["named", "pick"])
def test_a_terminal_holding_a_colon_is_read_as_a_symbol(trace, tmp_path):
    """Terminals may hold any character but whitespace and quotes: a step line of a grammar with
    the terminal `":"` splits after its right side, not at the first colon."""
    from pbb.domains.grammars import GrammarsDomain
    from pbb.domains.grammars.config import GrammarsConfig

    path = tmp_path / "g.txt"
    path.write_text('grammar colon\nS -> ":" A | "a:" S\nA -> "b" | ":" A\n')
    domain = GrammarsDomain()
    b = domain.from_file(GrammarsConfig(trace=trace, min_length=2, max_length=5), path)[0]
    traces = [domain.execute(b, f"colon #{k}").trace for k in range(6)]
    assert any('":"' in t.splitlines()[1] for t in traces)
    for t in traces:
        c = grammar_steps.check(b, t)
        assert c["steps"] and all(c[k] == c["steps"] for k in grammar_steps.STEP_CHECKS), t
        assert c["derivation"] == c["answer"] == 1
        if trace == "pick":
            assert c["alternatives"] == c["pick steps"] == c["steps"]
