"""Domain grammars: well-formed random grammars, a verifier that agrees with an independent
recognizer, sampled strings that verify, constraints, user grammar files, generation metrics."""

import random
import time

import pytest

from pbb import data
from pbb.domains import get_domain
from pbb.domains.grammars import grammar_of
from pbb.domains.grammars.analysis import (
    Lengths,
    enumerate_language,
    productive,
    reachable,
    sample_exact,
)
from pbb.domains.grammars.config import GrammarsConfig
from pbb.domains.grammars.generate import fingerprint
from pbb.domains.grammars.grammar import parse_grammar, parse_grammars, render, tokenize
from pbb.domains.grammars.verify import reference_member, verifier_for
from pbb.errors import PbbError
from tests.conftest import Canned, run_cli

DOMAIN = get_domain("grammars")


@pytest.fixture(scope="module")
def gset():
    return data.generate("grammars", behaviours=120, demos=12, test_inputs=4, eval_fraction=0.5,
                         seed=11, progress=False)


@pytest.fixture(scope="module")
def chars_set():
    return data.generate("grammars", behaviours=40, demos=6, test_inputs=2, eval_fraction=0.5,
                         seed=5, progress=False,
                         options={"terminal_style": "chars", "terminals": 3, "max_nonterminals": 4})


def _grammars(ds):
    return [grammar_of(b.instruction)[1] for b in ds.behaviours]


def _mutate(tokens, terminals, rng):
    t = list(tokens)
    op = rng.randrange(4)
    if op == 0 and len(t) > 1:
        del t[rng.randrange(len(t))]
    elif op == 1:
        t.insert(rng.randrange(len(t) + 1), rng.choice(terminals))
    elif op == 2:
        t[rng.randrange(len(t))] = rng.choice(terminals)
    elif len(t) > 1:
        i = rng.randrange(len(t) - 1)
        t[i], t[i + 1] = t[i + 1], t[i]
    return t


def test_verifier_agrees_with_an_independent_recognizer_on_10000_strings(gset, chars_set):
    """Positives from the sampler, negatives by mutation; each labelled by the span recognizer."""
    rng = random.Random(0)
    checked = positives = 0
    disagreements = []
    grammars = _grammars(gset) + _grammars(chars_set)
    while checked < 10_000:
        for g in grammars:
            lengths = Lengths(g, 14)
            n = rng.choice(lengths.start())
            tokens, _ = sample_exact(g, lengths, n, rng)
            for cand in (tokens, _mutate(tokens, g.terminals, rng), _mutate(tokens, g.terminals, rng)):
                expected = reference_member(g, cand)
                positives += expected
                if verifier_for(g).member(cand) != expected:
                    disagreements.append((render(g, "g"), cand))
                checked += 1
    assert checked >= 10_000 and not disagreements, disagreements[:3]
    assert 0.3 < positives / checked < 0.9  # both classes well represented


def test_verifier_matches_exhaustive_derivation_on_all_short_strings(gset):
    """Every string of length <= 4 over a grammar's terminals, labelled by enumeration."""
    import itertools

    checked = 0
    for g in _grammars(gset)[:30]:
        language = enumerate_language(g, 4, cap=10**6)
        for n in range(1, 5):
            for cand in itertools.product(g.terminals, repeat=n):
                assert verifier_for(g).member(list(cand)) == (cand in language), (render(g, "g"), cand)
                checked += 1
    assert checked > 1000


def test_generated_grammars_are_well_formed_nontrivial_and_distinct(gset):
    cfg = GrammarsConfig()
    prints = set()
    for b, g in zip(gset.behaviours, _grammars(gset)):
        names = set(g.nonterminals)
        assert productive(g) == names and reachable(g) == names
        assert all(len(p) > 1 or p[0].startswith('"') for _, p in g.productions())  # no unit rules
        strings = enumerate_language(g, cfg.max_length, cap=10**5)
        assert strings is None or len(strings) >= cfg.min_language  # not tiny
        short = enumerate_language(g, 4, cap=10**6)
        universe = sum(len(g.terminals) ** k for k in range(1, 5))
        assert len(short) <= cfg.max_universal_share * universe  # not everything
        prints.add(fingerprint(g))
        assert parse_grammar(b.instruction) == (b.name, g)  # the instruction is the grammar
    assert len(prints) == len(gset.behaviours)
    assert len({b.name for b in gset.behaviours}) == len(gset.behaviours)
    assert sum(b.meta["recursive"] for b in gset.behaviours) > len(gset.behaviours) / 3


def test_every_demonstration_verifies_and_traces_derive_it(gset, chars_set):
    for ds in (gset, chars_set):
        assert data.validate(ds, progress=False) == []
        behaviours = {b.id: b for b in ds.behaviours}
        for d in ds.demonstrations:
            b = behaviours[d.behaviour_id]
            assert DOMAIN.score(b, d.input, d.output) == 1.0
            lines = d.trace.splitlines()
            assert lines[0] == grammar_of(b.instruction)[1].start
            assert lines[-1] == f"Answer: {d.output}"
            last = lines[-2].removeprefix("=> ").replace('"', "").split()
            assert grammar_of(b.instruction)[1].join(last) == d.output


def test_sampler_covers_the_rules(gset):
    rng = random.Random(3)
    used = total = 0
    for g in _grammars(gset)[:40]:
        lengths = Lengths(g, 10)
        seen = set()
        for _ in range(300):
            _, forms = sample_exact(g, lengths, rng.choice(lengths.start()), rng)
            seen.update(zip(forms, forms[1:]))
        applied = {(lhs, p) for lhs, p in g.productions()
                   if any(" ".join(p) in after for _, after in seen)}
        used += len(applied)
        total += len(g.productions())
    assert used / total > 0.95, used / total


def test_chars_style_writes_strings_without_spaces(chars_set):
    for d in chars_set.demonstrations[:50]:
        assert " " not in d.output and d.output.isalpha()
    b = chars_set.behaviours[0]
    d = next(x for x in chars_set.demonstrations if x.behaviour_id == b.id)
    assert DOMAIN.score(b, d.input, " ".join(d.output)) == 1.0  # spaces between letters are fine


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    outs = []
    for name, seed in (("a", 3), ("b", 3), ("c", 4)):
        r = run_cli("data", "generate", "grammars", "--behaviours", "12", "--demos", "3",
                    "--test-inputs", "2", "--seed", str(seed), "--out", str(tmp_path / name),
                    "--set", "constraint=length")
        assert r.returncode == 0, r.stderr
        outs.append([(tmp_path / name / f).read_bytes() for f in
                     ("behaviours.jsonl", "demonstrations.jsonl", "manifest.json")])
    assert outs[0] == outs[1] and outs[0][0] != outs[2][0]


def test_gold_scores_one_and_non_members_zero(gset):
    rng = random.Random(1)
    behaviours = {b.id: b for b in gset.behaviours}
    for d in [d for d in gset.demonstrations if d.use == "test"][:200]:
        b = behaviours[d.behaviour_id]
        g = grammar_of(b.instruction)[1]
        assert DOMAIN.score(b, d.input, d.output) == 1.0
        for _ in range(3):
            bad = _mutate(tokenize(g, d.output), g.terminals, rng)
            assert DOMAIN.score(b, d.input, g.join(bad)) == float(reference_member(g, bad))
        assert DOMAIN.score(b, d.input, None) == 0.0
        assert DOMAIN.score(b, d.input, d.output + " zzz") == 0.0  # unknown token


def test_too_long_and_junk_predictions_score_zero_quickly(gset):
    b = gset.behaviours[0]
    query = next(d.input for d in gset.demonstrations if d.behaviour_id == b.id)
    g = grammar_of(b.instruction)[1]
    huge = " ".join(g.terminals[0] for _ in range(100_000))
    t = time.perf_counter()
    assert DOMAIN.score(b, query, huge) == 0.0
    assert DOMAIN.score(b, query, "") == 0.0 and DOMAIN.score(b, query, "Answer: ???") == 0.0
    assert time.perf_counter() - t < 1.0


def test_time_limit_turns_a_slow_parse_into_a_rejection():
    _, g = parse_grammar('grammar amb\nS -> S S | S S S | "a"')
    tokens = ["a"] * 60
    assert reference_member(g, tokens)
    assert verifier_for(g).member(tokens, max_tokens=256, time_limit_s=1e-4) is False
    assert verifier_for(g).member(tokens, max_tokens=256, time_limit_s=30) is True


def test_time_limit_counts_cpu_time_not_a_stalled_machines_wall_time():
    """A parse cut short is a rejection, so the limit must not depend on the machine's load:
    time spent not running (here a sleep, standing in for a stalled machine) does not count."""
    from pbb.domains.grammars.verify import time_limit

    with time_limit(0.2):
        time.sleep(0.5)  # wall time past the limit, almost no CPU time: no _TimeUp


def test_length_constraint_is_asked_checked_and_held_out(tmp_path):
    ds = data.generate("grammars", behaviours=20, demos=6, test_inputs=2, eval_fraction=0.5,
                       seed=2, progress=False, options={"constraint": "length"})
    behaviours = {b.id: b for b in ds.behaviours}
    for b in ds.behaviours:
        demo_lengths = {int(d.input.split("length=")[1].split()[0])
                        for d in ds.demonstrations if d.behaviour_id == b.id and d.use == "train"}
        test = [d for d in ds.demonstrations if d.behaviour_id == b.id and d.use == "test"]
        if len(DOMAIN.window(b)) > 2:
            assert not demo_lengths & {int(d.input.split("length=")[1].split()[0]) for d in test}
    for d in ds.demonstrations:
        b = behaviours[d.behaviour_id]
        g = grammar_of(b.instruction)[1]
        n = int(d.input.split("length=")[1].split()[0])
        assert len(tokenize(g, d.output)) == n
        other = next((x for x in ds.demonstrations if x.behaviour_id == b.id
                      and len(tokenize(g, x.output)) != n), None)
        if other is not None:  # a member of the wrong length is wrong here
            assert DOMAIN.score(b, d.input, other.output) == 0.0
            assert DOMAIN.valid(b, other.output)
    assert "with exactly" in DOMAIN.render_query(ds.demonstrations[0].input)
    assert "#" not in DOMAIN.render_query(ds.demonstrations[0].input)  # the index is not shown


BAD_FILES = [
    ('S -> "a"\n', "rule before any `grammar NAME` line", 1),
    ('grammar g\nS "a"\n', "expected `Nonterminal -> alternatives`", 2),
    ('grammar g\nS -> "a" B\n', "nonterminal 'B' has no rule", 2),
    ('grammar g\ns -> "a"\n', "must be a nonterminal", 2),
    ('grammar g\nS -> "a" | \n', "empty alternative", 2),
    ('grammar g\nS -> "a\n', "unexpected", 2),
    ('grammar g\nS -> "a"\ngrammar g\nS -> "b"\n', "defined twice", 3),
    ('grammar g h\nS -> "a"\n', "expected `grammar NAME`", 1),
    ('grammar g\n| "a"\n', "continues a rule", 2),
    ('grammar g\nS -> "a" | "a"\n', "lists an alternative twice", 1),
    ("# nothing\n", "no `grammar NAME` block", None),
]


@pytest.mark.parametrize("text,message,line", BAD_FILES)
def test_malformed_grammar_files_are_one_clear_error(tmp_path, text, message, line):
    f = tmp_path / "g.txt"
    f.write_text(text)
    with pytest.raises(PbbError, match=message) as e:
        parse_grammars(text, source=str(f))
    if line is not None:
        assert str(e.value).startswith(f"{f}:{line}:")
    r = run_cli("data", "import-grammars", str(f), "--out", str(tmp_path / "out"))
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and message.split("'")[0] in r.stderr
    assert not (tmp_path / "out").exists()


def test_unproductive_or_unreachable_user_grammars_are_refused(tmp_path):
    for text, message in (('grammar g\nS -> "a" S\n', "derives no finite string"),
                          ('grammar g\nS -> "a"\nB -> "b"\n', "unreachable")):
        f = tmp_path / "g.txt"
        f.write_text(text)
        r = run_cli("data", "import-grammars", str(f), "--out", str(tmp_path / "o"))
        assert r.returncode == 1 and message in r.stderr, r.stderr


def test_import_grammars_makes_a_valid_data_set(tmp_path):
    f = tmp_path / "mine.txt"
    f.write_text('# users write their own\ngrammar dyck\nS -> "(" ")" | "(" S ")" | S S\n\n'
                 'grammar anbn\nS -> "a" "b"\n  | "a" S "b"\n\ngrammar words\n'
                 'S -> NP "runs" | NP "sees" NP\nNP -> "the" N\nN -> "cat" | "dog" | "big" N\n')
    r = run_cli("data", "import-grammars", str(f), "--out", str(tmp_path / "d"), "--demos", "5",
                "--test-inputs", "2")
    assert r.returncode == 0, r.stderr
    ds = data.load(tmp_path / "d")
    assert [b.name for b in ds.behaviours] == ["dyck", "anbn", "words"]
    assert data.validate(ds, progress=False) == []
    outs = {d.output for d in ds.demonstrations if d.behaviour_id == ds.behaviours[1].id}
    assert all(o == "a" * (len(o) // 2) + "b" * (len(o) // 2) for o in outs)
    assert all(o.startswith("the ") for o in (d.output for d in ds.demonstrations
                                              if d.behaviour_id == ds.behaviours[2].id))
    # the same file through the config key gives the same data
    same = data.generate("grammars", behaviours=3, demos=5, test_inputs=2, eval_fraction=0.5,
                         seed=0, progress=False, options={"file": str(f)})
    assert [d.output for d in same.demonstrations] == [d.output for d in ds.demonstrations]


def test_generation_metrics_in_evaluation(gset, tmp_path):
    """validity / novelty / distinct / chance computed from what the model wrote."""
    from pbb.evaluation import evaluate as ev
    from pbb.evaluation.metrics import summarize

    small = data.DataSet(None, gset.domain, gset.domain_config, gset.seed, gset.behaviours[:6],
                         [d for d in gset.demonstrations
                          if d.behaviour_id in {b.id for b in gset.behaviours[:6]}])
    train_first = {b.id: next(d.output for d in small.demonstrations
                              if d.behaviour_id == b.id and d.use == "train") for b in small.behaviours}
    queries = ev.build_queries(small, "direct")
    # the model repeats a training demonstration for every query: valid, not novel, not distinct
    answers = {q["prompt"]: f"Answer: {train_first[q['behaviour_id']]}" for q in queries}
    samples = ev.evaluate(Canned(answers.__getitem__), small, curriculum="c", mode="direct",
                          out_dir=tmp_path, max_new_tokens=8, progress=False)
    gen = summarize(samples, sample_metrics=small.domain.sample_metrics)["generation"]
    assert gen["validity"]["mean"] == 1.0 and gen["novelty"]["mean"] == 0.0
    assert gen["distinct"]["mean"] == pytest.approx(1 / 4)  # 4 test queries, one answer
    for s in samples:
        b = small.behaviour(s["behaviour_id"])
        g = grammar_of(b.instruction)[1]
        lengths = [len(tokenize(g, d.output)) for d in small.demonstrations
                   if d.behaviour_id == b.id and d.use == "test"]
        rng = random.Random(f"chance|{b.instruction}")
        hits = sum(verifier_for(g).member([rng.choice(g.terminals) for _ in range(sorted(lengths)[k % 4])])
                   for k in range(200))
        assert s["chance"] == hits / 200
    assert 0 <= gen["chance"]["mean"] < 0.5


@pytest.mark.slow
def test_pbb_run_on_grammars_in_every_curriculum_kind(tmp_path):
    """SFT and RL curricula, every eval mode, generation metrics in summary and report."""
    import json
    from pathlib import Path

    from pbb.config import load_config, with_smoke
    from pbb.experiments import run as run_mod

    cfg = load_config(Path("configs/grammars_quick.yaml"), with_smoke({
        "data.behaviours": 6, "data.demos": 2,
        "curricula": ["proactive", "demos_only", "retroactive", "untuned"]}))
    summary = run_mod.run(cfg, tmp_path / "r", progress=False)
    assert {(r["curriculum"], r["mode"]) for r in summary["results"]} == {
        (c, m) for c in cfg.curricula for m in cfg.eval.modes}
    for r in summary["results"]:
        if r["mode"] == "recall":  # the rules recalled, not a string generated: no such metrics
            assert "generation" not in r
            continue
        gen = r["generation"]
        assert set(gen) == {"validity", "novelty", "chance", "distinct"}
        assert 0 <= gen["chance"]["mean"] <= 1
    assert "## Generation metrics" in (tmp_path / "r" / "report.md").read_text()
    rollouts = [json.loads(x) for x in next((tmp_path / "r" / "stages").glob("activation_rl-*"))
                .joinpath("rollouts.jsonl").read_text().splitlines()]
    assert rollouts and all(r["correct"] in (0.0, 1.0) for r in rollouts)


def test_a_named_derivation_applies_a_rule_of_the_grammar_at_each_step():
    """trace: named writes `A -> rhs: form` per step: the rule is one of the grammar's, it
    rewrites the leftmost nonterminal of the form before, and the data is otherwise the forms
    trace's (same strings); the default leaves data sets made before unchanged."""
    opts = {"max_length": 8}
    forms = data.generate("grammars", behaviours=12, demos=4, test_inputs=2, eval_fraction=0.5,
                          seed=3, progress=False, options=opts)
    named = data.generate("grammars", behaviours=12, demos=4, test_inputs=2, eval_fraction=0.5,
                          seed=3, progress=False, options={**opts, "trace": "named"})
    assert "trace" not in forms.behaviours[0].meta
    assert [(d.input, d.output) for d in forms.demonstrations] == \
        [(d.input, d.output) for d in named.demonstrations]
    behaviours = {b.id: b for b in named.behaviours}
    steps = 0
    for d in named.demonstrations:
        _, g = grammar_of(behaviours[d.behaviour_id].instruction)
        lines = d.trace.splitlines()
        form = lines[0].split(" ")
        assert form == [g.start]
        for line in lines[1:-1]:
            rule, after = line.split(": ", 1)
            lhs, rhs = rule.split(" -> ")
            k = next(i for i, s in enumerate(form) if not s.startswith('"'))
            assert form[k] == lhs and tuple(rhs.split(" ")) in g.table[lhs], line
            form = form[:k] + rhs.split(" ") + form[k + 1:]
            assert " ".join(form) == after, line
            steps += 1
        assert all(s.startswith('"') for s in form) and lines[-1] == f"Answer: {d.output}"
    assert steps > 100
