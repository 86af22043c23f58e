"""``pbb plan``: what a run would train and evaluate, told before any of it is done, equals what
``pbb run`` then does; stages trained earlier are reported as reused; times come from the rates
this machine recorded, or the plan says it has none."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pbb.config import load_config
from pbb.evaluation.evaluate import gold_lengths
from pbb.experiments import rates
from pbb.experiments.plan import NO_RATE, make_plan, render
from pbb.experiments.run import check_before_work, open_data
from pbb.folders import mark
from pbb.jsonio import atomic_write_json, read_json, read_jsonl
from pbb.models import load_tokenizer
from pbb.rows.chat import encode_rows
from pbb.rows.curricula import build_for_run
from pbb.store import RunStore, checkpoint_dir, stage_info
from pbb.training import replay
from tests.conftest import script

QUICKSTART = "configs/quickstart.yaml"
ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def rates_file(tmp_path, monkeypatch):
    """The rates file in a temporary folder (the machine's own stays untouched)."""
    path = tmp_path / "cache" / rates.RATES
    monkeypatch.setattr(rates, "rates_path", lambda: path)
    return path


def smoke():
    return load_config(QUICKSTART, smoke=True)


def stage_rows(plan) -> list[tuple]:
    return [(s.curriculum, s.stage, s.rows, s.directory.name) for s in plan.stages]


@pytest.mark.slow
def test_the_plan_is_what_the_run_trains_and_evaluates_and_then_reuses(tmp_path, rates_file):
    from pbb.experiments.run import run

    out = tmp_path / "run"
    plan = make_plan(smoke(), out)
    assert not out.exists()  # a plan writes nothing
    assert [(s.curriculum, s.stage, s.status) for s in plan.stages] == [
        ("proactive", "stage1", "train"), ("proactive", "stage2", "train"),
        ("stage1_only", "stage1", "shared")]
    assert plan.untrained == ["untuned"]
    assert plan.expected_seconds() == (0, len(plan.work()))  # no rate recorded yet
    assert f"expected time: {NO_RATE}" in render(plan)

    run(smoke(), out, progress=False)
    curricula = read_json(RunStore(out).curricula)
    assert stage_rows(plan) == [(c, e["stage"], e["rows"], os.path.basename(e["dir"]))
                                for c, entries in curricula.items() for e in entries]
    for s in plan.stages:
        done = stage_info(s.directory)
        assert abs(done["tokens_per_row"] * done["rows"] - s.tokens_per_epoch) <= 0.05 * s.rows
        assert done["steps"] <= s.steps  # the stopping rule may end stage 2 sooner
        if s.stage == "stage1":
            assert done["steps"] == s.steps
    for e in plan.evals:
        samples = read_jsonl(RunStore(out).samples(e.curriculum, e.mode))
        assert e.queries == {split: sum(x["split"] == split for x in samples)
                             for split in ("eval", "train") if any(x["split"] == split
                                                                   for x in samples)}

    again = make_plan(smoke(), out)
    assert [s.status for s in again.stages] == ["reused", "reused", "shared"]
    assert {e.status for e in again.evals} == {"done"}
    text = render(again)
    assert "trained earlier: reused" in text and "nothing to do" in text

    # another run over the same stage store evaluates no trained model again
    other = make_plan(smoke(), tmp_path / "other-run", stages_root=out / "stages")
    assert {(e.curriculum, e.status) for e in other.evals} == {
        ("proactive", "reused"), ("stage1_only", "reused"), ("untuned", "pending")}
    assert "evaluated earlier by another run: taken" in render(other)

    # the run recorded its rates: a plan into a new directory has an expected time
    recorded = rates.read_rates(rates.machine_key("tiny-random"))
    assert recorded[rates.SFT] > 0  # stage 2's stopping rule ran recall checks: their rate too
    assert set(recorded[rates.EVAL]) == {"recall", "cot", rates.RECALL_CHECK}
    # and under the length of what was trained on and written (the tiny model writes nothing)
    assert recorded[rates.EVAL_BY_LENGTH] == {"recall": {"1": recorded[rates.EVAL]["recall"]},
                                              "cot": {"1": recorded[rates.EVAL]["cot"]}}
    assert {int(b) for b in recorded[rates.SFT_BY_LENGTH]} <= set(range(64, 182))
    fresh = make_plan(smoke(), tmp_path / "other")
    seconds, unknown = fresh.expected_seconds()
    assert unknown == 0 and seconds > 0


def write_rates(path, **values):
    atomic_write_json(path, {rates.machine_key("tiny-random"): values})


def test_expected_times_come_from_the_recorded_rates(tmp_path, rates_file):
    write_rates(rates_file, **{rates.SFT: 100.0, rates.EVAL: {"recall": 2.0, "cot": 4.0}})
    plan = make_plan(smoke(), tmp_path / "run")
    stage1, stage2, shared = plan.stages
    assert stage1.seconds == pytest.approx(stage1.tokens / 100 + stage1.recall_queries / 2)
    assert stage2.seconds == pytest.approx(stage2.tokens / 100 + stage2.recall_queries / 2)
    assert stage2.recall_queries == 2 * 2  # 2 eval instructions after each of its 2 steps' epochs
    for e in plan.evals:
        assert e.seconds == pytest.approx(sum(e.queries.values()) / {"recall": 2, "cot": 4}[e.mode])
    seconds, unknown = plan.expected_seconds()
    assert unknown == 0  # the shared stage is trained once: counted once
    assert seconds == pytest.approx(stage1.seconds + stage2.seconds
                                    + sum(e.seconds for e in plan.evals))
    assert NO_RATE not in render(plan) and "SFT 100 tokens/s" in render(plan)
    # stage 2 is timed at its 4 epochs, which its recall target may cut short: the total says so
    assert [s.sooner for s in plan.stages] == [False, True, False]
    assert render(plan).endswith(" at most (1 stage may stop sooner, at its recall target)")
    fixed = make_plan(load_config(QUICKSTART, {"train.stages": {}}, smoke=True), tmp_path / "r2")
    assert fixed.sooner() == 0 and "may stop sooner" not in render(fixed)


def test_a_machine_that_measured_nothing_plans_at_the_reference_machines_rates(
        tmp_path, rates_file, monkeypatch):
    """A fresh clone has no rates: its plan takes those shipped for the reference machine, says
    so, and never mixes them with rates of its own (one of those and the reference is unread)."""
    from pbb.experiments.plan import (
        APART_WORDS,
        REFERENCE_WORDS,
        PlannedSweep,
        duration,
        plan_sweep,
    )

    shipped = tmp_path / "reference.json"
    atomic_write_json(shipped, {"machine": "2 CPU cores", "measured": "then", "rates": {
        rates.machine_key("tiny-random"): {rates.SFT: 100.0,
                                           rates.EVAL: {"recall": 2.0, "cot": 4.0}}}})
    monkeypatch.setenv("PBB_REFERENCE_RATES", str(shipped))
    plan = make_plan(smoke(), tmp_path / "run")
    assert plan.reference == "2 CPU cores"
    stage1 = plan.stages[0]
    assert stage1.seconds == pytest.approx(stage1.tokens / 100 + stage1.recall_queries / 2)
    seconds, unknown = plan.expected_seconds()
    assert unknown == 0 and seconds > 0
    text = render(plan)
    assert "none measured here yet; the reference machine's (2 CPU cores): SFT 100 tokens/s" \
        in text and text.endswith(f"({REFERENCE_WORDS})")
    sweep = plan_sweep(Path("configs/sample_efficiency_quick.yaml"), tmp_path / "s",
                       {"train.max_steps": 1}, smoke=True)
    assert sweep.splitlines()[-1].endswith(f"({REFERENCE_WORDS})")
    mixed = PlannedSweep(tmp_path, 3, [], seconds=90.0, work=4, reference=1, busy=2)
    assert mixed.total().endswith(f"(1 of its 2 points {REFERENCE_WORDS})")

    write_rates(rates_file, **{rates.SFT: 50.0})  # this machine's own: the reference is unread
    mine = make_plan(smoke(), tmp_path / "run")
    assert mine.reference == "" and stage1.recall_queries
    assert mine.stages[0].seconds is None  # its recall checks' rate: not here, not taken
    assert REFERENCE_WORDS not in render(mine) and "last measured here: SFT 50" in render(mine)
    # ... into the total; that work is timed apart, at the reference machine's rates alone
    assert mine.stages[0].apart_seconds == pytest.approx(stage1.seconds)
    seconds, unknown = mine.expected_seconds()
    apart, timed = mine.apart()
    assert seconds == 0 and unknown == timed == len(mine.work())
    assert apart == pytest.approx(plan.expected_seconds()[0])
    assert f"{NO_RATE}; ~{duration(stage1.seconds)} {APART_WORDS}" in render(mine)
    assert render(mine).endswith(f"expected time: {NO_RATE} (all of them ~{duration(apart)} "
                                 f"{APART_WORDS})")  # no item has a rate here
    sweep = PlannedSweep(tmp_path, 2, [], seconds=60.0, unknown=3, work=5, busy=2,
                         apart_seconds=7200.0, apart_items=2)
    assert sweep.total() == f"~1 min, and 3 item(s) with {NO_RATE} (2 of them ~2 h 00 min " \
                            f"{APART_WORDS})"
    rates_file.unlink()
    for broken in ("{", "[]", '{"rates": {"x": 1}}'):  # a broken file: no rates, no error
        shipped.write_text(broken)
        assert f"expected time: {NO_RATE}" in render(make_plan(smoke(), tmp_path / "run"))


def test_a_machine_without_bf16_plans_at_the_reference_rates_scaled_for_fp32(
        tmp_path, rates_file, monkeypatch):
    """The reference ran in bf16; a CPU without it trains and generates slower: its plan takes
    the reference's rates times the file's factors, throughputs multiplied and seconds a step
    divided, and says so; a machine with bf16, or a reference in fp32, takes them as they are."""
    import pbb.experiments.plan as plan_mod

    key = rates.machine_key("tiny-random")
    measured = {rates.SFT: 100.0, rates.SFT_BY_LENGTH: {"64": 200.0},
                rates.EVAL: {"recall": 2.0, "cot": 4.0}, rates.EVAL_BY_LENGTH: {"cot": {"76": 8.0}},
                rates.RL: 30.0, rates.RL_PER_WRITTEN: 0.05}
    shipped = tmp_path / "reference.json"
    reference = {"machine": "2 CPU cores", "precision": "bf16",
                 rates.WITHOUT_BF16: {"train": 0.5, "generate": 0.25}, "rates": {key: measured}}
    atomic_write_json(shipped, reference)
    monkeypatch.setenv("PBB_REFERENCE_RATES", str(shipped))
    assert rates.reference_rates(key) == ("2 CPU cores", measured)
    words, slower = rates.reference_rates(key, bf16=False)
    assert words.startswith("2 CPU cores; in bf16, so x0.5 for training and x0.25 for generating")
    assert slower == {rates.SFT: 50.0, rates.SFT_BY_LENGTH: {"64": 100.0},
                      rates.EVAL: {"recall": 0.5, "cot": 1.0},
                      rates.EVAL_BY_LENGTH: {"cot": {"76": 2.0}},
                      rates.RL: 60.0, rates.RL_PER_WRITTEN: pytest.approx(0.1)}
    atomic_write_json(shipped, {**reference, "precision": "fp32"})  # measured without bf16
    assert rates.reference_rates(key, bf16=False) == ("2 CPU cores", measured)

    flat = {rates.SFT: 100.0, rates.EVAL: {"recall": 2.0, "cot": 4.0}}  # one rate a kind
    atomic_write_json(shipped, {**reference, "rates": {key: flat}})
    monkeypatch.setattr(plan_mod, "use_bf16", lambda precision: True)
    fast = make_plan(smoke(), tmp_path / "run")
    monkeypatch.setattr(plan_mod, "use_bf16", lambda precision: False)
    slow = make_plan(smoke(), tmp_path / "run")
    assert slow.reference == words and "x0.5 for training" in render(slow)
    for a, b in zip(fast.stages, slow.stages, strict=True):  # tokens at half, checks a quarter
        assert a.seconds == pytest.approx(a.tokens / 100 + a.recall_queries / 2)
        assert b.seconds == pytest.approx(a.tokens / 100 * 2 + a.recall_queries / 2 * 4)
    for a, b in zip(fast.evals, slow.evals, strict=True):
        assert b.seconds == pytest.approx(4 * a.seconds)


def test_grpo_a_machine_never_ran_is_timed_apart_beside_its_own_sft(tmp_path, rates_file,
                                                                   monkeypatch):
    """A machine that trained SFT and evaluated but never ran GRPO: its SFT stages and
    evaluations are timed at its own rates, its GRPO stages apart at the reference machine's,
    what is left after a checkpoint only; the total is its own items', the rest said apart."""
    from pbb.experiments.plan import APART_WORDS, duration

    shipped = tmp_path / "reference.json"
    atomic_write_json(shipped, {"machine": "2 CPU cores", "rates": {
        rates.machine_key("tiny-random"): {rates.SFT: 1.0, rates.RL: 30.0,
                                           rates.EVAL: {"recall": 1.0, "cot": 1.0}}}})
    monkeypatch.setenv("PBB_REFERENCE_RATES", str(shipped))
    write_rates(rates_file, **{rates.SFT: 100.0, rates.EVAL: {"recall": 2.0, "cot": 4.0}})
    cfg = load_config("configs/retroactive_quick.yaml", {"rl.max_steps": 4}, smoke=True)
    plan = make_plan(cfg, tmp_path / "run")
    rl = [s for s in plan.work() if getattr(s, "trainer", None) == "rl"]
    own = [w for w in plan.work() if w not in rl]
    assert rl and own and all(w.seconds is not None and w.apart_seconds is None for w in own)
    assert all(s.seconds is None and s.apart_seconds == pytest.approx(30.0 * s.steps)
               for s in rl)  # the reference's 30 s a step, not its 1 token/s SFT
    seconds, unknown = plan.expected_seconds()
    assert seconds == pytest.approx(sum(w.seconds for w in own)) and unknown == len(rl)
    assert plan.apart() == (pytest.approx(30.0 * sum(s.steps for s in rl)), len(rl))
    assert plan.sooner() == 1  # exposure, until it recalls its instructions
    assert render(plan).endswith(f"~{duration(seconds)} at most (1 stage may stop sooner, at its "
                                 f"recall target), and {len(rl)} item(s) with {NO_RATE} "
                                 f"(all of them ~{duration(plan.apart()[0])} "
                                 f"{APART_WORDS})")  # each figure one machine's
    mark(tmp_path / "run", "run")
    atomic_write_json(checkpoint_dir(rl[0].directory, 1) / "state.json", {})  # 1 step of 4 done
    resumed = next(s for s in make_plan(cfg, tmp_path / "run").stages
                   if s.directory == rl[0].directory)
    assert resumed.status == "resume" and resumed.apart_seconds == pytest.approx(30.0 * 3)
    assert f"~{duration(90.0)} {APART_WORDS}" in render(make_plan(cfg, tmp_path / "run"))


def test_the_shipped_reference_rates_cover_what_the_shipped_configs_do(monkeypatch):
    """The bundled model on a CPU: SFT by row length, GRPO by written and budget token, recall
    checks and CoT evaluations, each a positive number, and the machine and runs they came from."""
    from pbb.models import DEFAULT_MODEL

    monkeypatch.delenv("PBB_REFERENCE_RATES")
    shipped = read_json(rates.REFERENCE)
    assert shipped["machine"] and shipped["measured"]
    machine, found = rates.reference_rates(f"{DEFAULT_MODEL} on cpu")
    assert machine == shipped["machine"]
    assert len(rates.by_length(found[rates.SFT_BY_LENGTH])) >= 2
    # long work too (scripts/reference_rates.py --runs): the cipher stages' 191-token rows and
    # their CoT evaluations' ~330 tokens written, which the nearest short bucket planned 1.6x
    # and ~5x short
    assert max(rates.by_length(found[rates.SFT_BY_LENGTH])) >= 181
    assert max(rates.by_length(found[rates.EVAL_BY_LENGTH]["cot"])) >= 304
    assert rates.positive(found[rates.RL_PER_TOKEN])
    assert rates.positive(found[rates.RL_PER_WRITTEN])
    assert rates.positive(found[rates.EVAL][rates.RECALL_CHECK])
    assert rates.by_length(found[rates.EVAL_BY_LENGTH]["cot"])


def test_writing_the_reference_rates_keeps_the_factors_measured_without_bf16(
        tmp_path, rates_file, monkeypatch):
    """scripts/reference_rates.py rewrites the shipped file from this machine's rates, says
    whether it ran in bf16, and keeps the factors another machine measured for one without."""
    reference_rates = script("reference_rates")
    key = rates.machine_key("tiny-random")
    target = tmp_path / "reference.json"
    monkeypatch.setattr(rates, "REFERENCE", target)
    monkeypatch.setattr(reference_rates, "cpu_has_bf16", lambda: True)
    factors = {"train": 0.5, "generate": 0.25, "measured": "elsewhere"}
    atomic_write_json(target, {"machine": "old", "rates": {}, rates.WITHOUT_BF16: factors})
    assert reference_rates.main(["--machine", "m", "--measured", "now", "--key", key]) == 1
    assert read_json(target)["machine"] == "old"
    write_rates(rates_file, **{rates.SFT: 100.0})
    assert reference_rates.main(["--machine", "m", "--measured", "now", "--key", key]) == 0
    assert read_json(target) == {"machine": "m", "measured": "now", "precision": "bf16",
                                 rates.WITHOUT_BF16: factors, "rates": {key: {rates.SFT: 100.0}}}


def _archive(path, points: dict, jobs: bool = False, torn: dict | None = None) -> None:
    """A claims archive of ``points`` (name: (summary, config, samples by curriculum/mode)),
    ``torn`` replacing the text of some of its files."""
    import io
    import json
    import tarfile

    with tarfile.open(path, "w:gz") as tar:
        files = {"jobs.json": "{}"} if jobs else {}
        files["sweep.json"] = json.dumps({"points": [
            {"name": name, "overrides": {}, "dir": f"runs/{name}"} for name in points]})
        for name, (summary, config, samples) in points.items():
            files[f"runs/{name}/summary.json"] = json.dumps(summary)
            files[f"runs/{name}/config.yaml"] = json.dumps(config)  # (JSON is YAML)
            for which, rows in samples.items():
                files[f"runs/{name}/eval/{which}/samples.jsonl"] = "".join(
                    json.dumps(r) + "\n" for r in rows)
        files.update(torn or {})
        for name, text in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(text.encode())
            tar.addfile(info, io.BytesIO(text.encode()))


def test_the_reference_rates_take_the_length_buckets_they_lack_from_archived_runs(
        tmp_path, monkeypatch, capsys):
    """scripts/reference_rates.py --runs: the median rate of each SFT row-length bucket and
    evaluation length bucket that runs in the reference's precision measured (recall checks'
    time left out, completions cut at the budget), added where the file lacks the bucket; a
    run in the other precision, a resumed stage and a sweep run as jobs add nothing."""
    reference_rates = script("reference_rates")
    target = tmp_path / "reference.json"
    monkeypatch.setattr(rates, "REFERENCE", target)
    key = "tiny-random on cpu"
    atomic_write_json(target, {"machine": "m", "measured": "then", "precision": "bf16",
                               "rates": {key: {rates.SFT_BY_LENGTH: {"108": 5.0}}}})

    def stage(rows_tokens, tokens, seconds, recall=0.0, bf16=True, resumed=False, at="s"):
        return {"dir": f"{at}{rows_tokens}", "tokens": tokens, "tokens_per_row": rows_tokens,
                "seconds": seconds, "time_split": {"recall": recall}, "bf16": bf16,
                "resumed": resumed}

    def point(stages, evals=None, samples=None):
        return ({"model": "tiny-random", "stages": stages, "evals": evals or {}},
                {"eval": {"max_new_tokens": {"cot": 3}}}, samples or {})

    long = "one two three four five six seven eight"  # cut at the budget, 3 tokens
    _archive(tmp_path / "a.tar.gz", {
        "000": point({"a": [stage(100, 1000, 12.0, recall=2.0)]}),  # 108: the file has it
        "001": point({"a": [stage(200, 1000, 110.0, recall=10.0, at="x")],
                      "b": [stage(200, 1000, 110.0, recall=10.0, at="x")]},  # shared: once
                     {"a/cot": {"seconds": 4.0}}, {"a/cot": [{"completion": long}] * 2}),
        "002": point({"a": [stage(200, 3000, 100.0, at="y")]}),
        "003": point({"a": [stage(200, 9000, 1.0, bf16=False, at="z")]},  # fp32: not its
                     {"a/cot": {"seconds": 1.0}}, {"a/cot": [{"completion": long}] * 9}),
        "004": point({"a": [stage(50, 9000, 1.0, resumed=True)]})})  # its lives: not timed
    _archive(tmp_path / "b.tar.gz", {"000": point({"a": [stage(30, 9000, 1.0)]})}, jobs=True)
    assert reference_rates.main(["--runs", str(tmp_path / "a.tar.gz"), str(tmp_path / "b.tar.gz"),
                                 "--measured", "now", "--key", key]) == 0
    shipped = read_json(target)
    assert shipped["measured"] == "then; now"
    assert shipped["rates"][key] == {
        rates.SFT_BY_LENGTH: {"108": 5.0, "215": 20.0},  # the median of 10 and 30
        rates.EVAL_BY_LENGTH: {"cot": {"3": 0.5}}}
    assert reference_rates.main(["--runs", str(tmp_path / "a.tar.gz"), "--measured", "again",
                                 "--key", key]) == 0  # every bucket there: nothing written
    assert read_json(target) == shipped
    (tmp_path / "torn.tar.gz").write_bytes((tmp_path / "a.tar.gz").read_bytes()[:-20])
    assert reference_rates.main(["--runs", str(tmp_path / "torn.tar.gz"), "--measured", "x",
                                 "--key", key]) == 1  # a torn archive: one line, nothing written
    assert "torn.tar.gz: not a readable claims archive" in capsys.readouterr().err
    tar = tmp_path / "c.tar.gz"  # one point's summary torn inside a readable archive: named
    _archive(tar, {"000": point({"a": [stage(200, 3000, 100.0)]})},
             torn={"runs/000/summary.json": '{"model": "tiny-random", "sta'})
    assert reference_rates.main(["--runs", str(tar), "--measured", "x", "--key", key]) == 1
    assert "c.tar.gz: runs/000: a file not readable as written" in capsys.readouterr().err
    assert read_json(target) == shipped


def test_an_item_without_a_rate_is_named_and_left_out_of_the_total(tmp_path, rates_file):
    write_rates(rates_file, **{rates.SFT: 100.0, rates.EVAL: {"recall": 2.0}})  # no cot rate
    plan = make_plan(smoke(), tmp_path / "run")
    cot = [e for e in plan.evals if e.mode == "cot"]
    assert all(e.seconds is None for e in cot)
    seconds, unknown = plan.expected_seconds()
    assert unknown == len(cot)
    assert seconds == pytest.approx(sum(w.seconds for w in plan.work() if w.seconds is not None))
    text = render(plan)
    assert all(e.apart_seconds is None for e in cot)  # no reference rates in the suite
    assert text.endswith(f"and {len(cot)} item(s) with {NO_RATE}")
    assert f"proactive/cot: 4 eval + 12 train queries: to run ({NO_RATE})" in text


def test_finished_and_interrupted_stages_and_evaluations_are_seen(tmp_path, rates_file):
    write_rates(rates_file, **{rates.SFT: 100.0, rates.EVAL: {"recall": 2.0, "cot": 4.0}})
    out = tmp_path / "run"
    first = make_plan(smoke(), out)
    mark(out, "run")  # as `pbb run` marks its folder before any work
    stage1, stage2 = first.stages[:2]
    atomic_write_json(stage1.directory / "done.json", {"steps": 2})  # as a finished stage has it
    state = checkpoint_dir(stage2.directory, 1) / "state.json"  # a checkpoint after step 1 of 2
    atomic_write_json(state, {})
    samples = RunStore(out).samples("untuned", "cot")
    samples.parent.mkdir(parents=True)
    samples.write_text("")
    plan = make_plan(smoke(), out)
    assert [s.status for s in plan.stages] == ["reused", "resume", "shared"]
    assert plan.stages[1].resume_step == 1
    assert plan.stages[1].seconds == pytest.approx(stage2.seconds / 2)  # half of it is left
    assert [e.status for e in plan.evals if e.curriculum == "untuned"] == ["pending", "done"]
    seconds, _ = plan.expected_seconds()
    untuned_cot = next(e for e in first.evals if (e.curriculum, e.mode) == ("untuned", "cot"))
    assert seconds == pytest.approx(first.expected_seconds()[0] - stage1.seconds
                                    - stage2.seconds / 2 - untuned_cot.seconds)
    assert "to resume from step 1" in render(plan)


@pytest.mark.parametrize("folder", ["users", "file", "other_run"])
def test_the_plan_refuses_an_out_that_pbb_run_refuses(tmp_path, folder, monkeypatch, capsys):
    """A plan that says "done earlier" or "to run" for a folder the run would then refuse
    misleads: it refuses what the run refuses, before reading anything there."""
    from pbb.config import dump_config
    from tests.test_reliability import call, snapshot

    out = tmp_path / "out"
    if folder == "users":
        out.mkdir()
        (out / "notes.txt").write_text("mine")
    elif folder == "file":
        out.write_text("mine")
    else:
        mark(out, "run")
        other = load_config(QUICKSTART, {"seed": 9}, smoke=True)
        (out / "config.yaml").write_text(dump_config(other))
        samples = RunStore(out).samples("untuned", "cot")  # work done under that config
        samples.parent.mkdir(parents=True)
        samples.write_text("{}\n")
    before = snapshot(tmp_path)
    code, err = call(monkeypatch, capsys, "plan", QUICKSTART, "--smoke", "--out", out)
    assert code == 1 and err.count("\n") == 1 and err.startswith("error: ") and str(out) in err
    assert snapshot(tmp_path) == before
    code, run_err = call(monkeypatch, capsys, "run", QUICKSTART, "--smoke", "--out", out)
    assert code == 1 and run_err.splitlines()[-1] == err.strip()


def test_rates_are_recorded_for_the_work_timed_here(rates_file):
    key = rates.machine_key("tiny-random")
    rates.record_stage(key, {"steps": 4, "tokens": 1000, "seconds": 12.0,
                             "time_split": {"recall": 2.0}})
    # resumed: the totals span lives not timed here; a last life of under half the steps is
    # mostly loading, and leaves the rate as it was
    rates.record_stage(key, {"steps": 4, "tokens": 10, "seconds": 1.0, "resumed": True})
    rates.record_stage(key, {"steps": 4, "tokens": 10, "seconds": 1.0, "resumed": True,
                             "last_life": {"steps": 1, "tokens": 5, "seconds": 0.5}})
    rates.record_eval(key, "cot", 30, 10.0)
    rates.record_eval(key, "recall", 8, 2.0)
    rates.record_stage(key, {"steps": 5, "seconds": 20.0, "algorithm": "grpo"})
    assert rates.read_rates(key) == {rates.SFT: 100.0, rates.EVAL: {"cot": 3.0, "recall": 4.0},
                                     rates.RL: 4.0}
    assert rates.read_rates("another model on cpu") == {}
    # the last life trained 60 of 80 steps: its own steps and time are the rate, not the totals
    rates.record_stage(key, {"steps": 80, "seconds": 2000.0, "algorithm": "grpo",
                             "resumed": True, "last_life": {"steps": 60, "seconds": 1200.0}})
    assert rates.read_rates(key)[rates.RL] == 20.0
    # a GRPO stage with replayed rows: its steps' time holds the SFT term, which a plan adds at
    # the SFT rate; a GRPO step's rate taken from it would count the term twice
    rates.record_stage(key, {"steps": 10, "seconds": 900.0, "algorithm": "grpo",
                             "replayed_rows": 40, "replayed_per_step": 4})
    assert rates.read_rates(key)[rates.RL] == 20.0
    rates.record_stage(key, {"steps": 8, "tokens": 4000, "seconds": 90.0, "resumed": True,
                             "time_split": {"recall": 10.0},
                             "last_life": {"steps": 6, "tokens": 2400, "seconds": 40.0,
                                           "recall": [{"n": 5}]}})
    assert rates.read_rates(key)[rates.SFT] == 80.0  # 2,400 tokens in 40 - 10 s
    assert rates.read_rates(key)[rates.EVAL][rates.RECALL_CHECK] == 0.5  # its 5 in 10 s
    other = rates.machine_key("another")  # a stopping rule's recall checks give a recall rate
    rates.record_stage(other, {"steps": 4, "tokens": 1000, "seconds": 12.0,
                               "time_split": {"recall": 2.0}, "recall": [{"n": 6}, {"n": 6}]})
    assert rates.read_rates(other) == {rates.SFT: 100.0, rates.EVAL: {rates.RECALL_CHECK: 6.0}}
    rates_file.write_text("{not json")
    assert rates.read_rates(key) == {}  # a broken file is no rate, not an error


def test_a_job_on_its_share_of_the_cores_keeps_rates_of_its_own(monkeypatch):
    """A sweep's job given its share of the cores records under a key of its own, so a plan of
    a run on all the cores never reads its slower rates as its own."""
    from pbb.experiments import executors

    monkeypatch.delenv("PBB_JOB_THREADS", raising=False)
    for name in executors.THREAD_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    assert rates.machine_key("m") == "m on cpu"
    for name, value in executors.job_threads(2).items():  # a job's environment
        monkeypatch.setenv(name, value)
    from pbb.dist import usable_cores

    share = usable_cores() // 2 or 1
    assert rates.machine_key("m") == f"m on cpu, {share} thread" + ("" if share == 1 else "s")


@pytest.mark.slow
def test_a_stage_during_which_the_jobs_share_changed_records_no_rate(tmp_path, rates_file,
                                                                     monkeypatch):
    """A sweep's job that takes a new share of the cores mid-stage (dist.follow_share: the
    sweep's other jobs ended) measured no one share's rate: that stage records none; what it
    trains and evaluates after, on its new share, records under that share's key. Likewise an
    evaluation during which the share changed."""
    import itertools

    import torch

    from pbb import dist
    from pbb.experiments import run as run_mod

    share_file = tmp_path / "job_threads"
    share_file.write_text("2\n")  # the sweep says 2 threads; the job started on 1
    for name in (dist.JOB_THREADS, *dist.THREAD_VARIABLES):  # as a job on one thread
        monkeypatch.setenv(name, "1")
    monkeypatch.setenv(dist.JOB_THREADS_FILE, str(share_file))
    monkeypatch.setitem(dist._share, "read", None)
    monkeypatch.setitem(dist._share, "changes", 0)
    threads = torch.get_num_threads()
    try:
        run_mod.run(smoke(), tmp_path / "run", progress=False)
    finally:
        torch.set_num_threads(threads)
    assert dist.share_changes() == 1 and torch.get_num_threads() == threads
    assert os.environ["OMP_NUM_THREADS"] == "2"  # what a process it starts would take
    one, two = "tiny-random on cpu, 1 thread", "tiny-random on cpu, 2 threads"
    assert rates.read_rates(one) == {}  # stage 1 began on one thread and ended on two
    measured = rates.read_rates(two)
    stage1, stage2 = read_json(RunStore(tmp_path / "run").summary)["stages"]["proactive"]
    seconds = stage2["seconds"] - stage2["time_split"].get("recall", 0.0)
    assert measured[rates.SFT] == pytest.approx(stage2["tokens"] / seconds, rel=0.01)
    buckets = [str(rates.row_bucket(s["tokens_per_row"])) for s in (stage1, stage2)]
    assert buckets[0] != buckets[1] and list(measured[rates.SFT_BY_LENGTH]) == buckets[1:]
    assert set(measured[rates.EVAL]) >= {"cot"}

    real, shares = run_mod.evaluate, itertools.cycle(["1", "2"])

    def evaluate_as_a_job_ends(*args, **kwargs):  # the share changes as each one starts
        share_file.write_text(next(shares) + "\n")
        dist._share["read"] = None
        return real(*args, **kwargs)

    monkeypatch.setattr(run_mod, "evaluate", evaluate_as_a_job_ends)
    rates_file.unlink()
    try:
        run_mod.run(smoke(), tmp_path / "again", progress=False)
    finally:
        torch.set_num_threads(threads)
    assert dist.share_changes() > 2
    every = read_json(rates_file)
    assert every[two][rates.SFT] > 0  # its stages trained on one share
    assert not any(mode in v.get(rates.EVAL, {}) for v in every.values()
                   for mode in ("cot", "recall"))


def test_a_grpo_stage_is_planned_by_its_steps_completion_budget(tmp_path, rates_file):
    """A GRPO stage records its seconds a token of a step's completion budget (completions a
    step x rl.max_completion_length) beside its seconds a step; a plan scales that to its own
    stage's budget (a longer budget, a longer stage), and without it plans at seconds a step."""
    key = rates.machine_key("tiny-random")
    rates.record_stage(key, {"steps": 4, "seconds": 40.0, "algorithm": "grpo",
                             "completion_tokens_per_step": 1000})
    measured = rates.read_rates(key)
    assert measured[rates.RL] == 10.0 and measured[rates.RL_PER_TOKEN] == 0.01
    assert rates.rl_step_seconds(measured, 2000) == pytest.approx(20.0)
    assert rates.rl_step_seconds({rates.RL: 10.0}, 2000) == 10.0  # a rates file from before
    assert rates.rl_step_seconds({}, 2000) is None

    def rl_seconds(length):
        cfg = load_config("configs/retroactive_quick.yaml",
                          {"rl.max_completion_length": length}, smoke=True)
        stage = next(s for s in make_plan(cfg, tmp_path / str(length)).stages
                     if s.trainer == "rl")
        return stage.steps, stage.seconds, cfg.rl.batch_size * cfg.rl.grad_accum

    write_rates(rates_file, **{rates.RL: 5.0, rates.RL_PER_TOKEN: 0.01})
    steps, short, per_step = rl_seconds(64)
    _, long, _ = rl_seconds(128)
    assert short == pytest.approx(steps * per_step * 64 * 0.01) and long == pytest.approx(2 * short)
    assert "RL 5.0 s/step (10.0 ms a token of a step's completion budget)" in render(
        make_plan(load_config("configs/retroactive_quick.yaml", smoke=True), tmp_path / "r"))


def test_a_grpo_stage_is_planned_by_the_tokens_its_completions_write(tmp_path, rates_file):
    """A GRPO stage also records its seconds a token its completions wrote (completions a step x
    their mean length); a plan takes that first, times the completions a step and the mean of
    the stage's gold completions cut at the budget: a budget raised past what the completions
    write no longer lengthens the plan (familiar_retroactive's GRPO stages took ~0.6x the plan
    by budget), one cut below them shortens it."""
    key = rates.machine_key("tiny-random")
    rates.record_stage(key, {"steps": 4, "seconds": 40.0, "algorithm": "grpo",
                             "completion_tokens_per_step": 1000, "completions_per_step": 8,
                             "completion_length": 50.0})
    measured = rates.read_rates(key)
    assert measured[rates.RL_PER_WRITTEN] == pytest.approx(10.0 / 400)
    assert rates.rl_step_seconds(measured, 2000, written=800) == pytest.approx(20.0)
    assert rates.rl_step_seconds(measured, 2000) == pytest.approx(20.0)  # by budget: no length
    rates.record_stage(key, {"steps": 4, "seconds": 40.0, "algorithm": "grpo",
                             "completions_per_step": 8, "completion_length": float("nan")})
    assert rates.read_rates(key)[rates.RL_PER_WRITTEN] == pytest.approx(10.0 / 400)  # kept

    def planned(length, grad_accum=1):
        cfg = load_config("configs/retroactive_quick.yaml",
                          {"rl.max_completion_length": length, "rl.grad_accum": grad_accum},
                          smoke=True)
        plan = make_plan(cfg, tmp_path / f"{length}-{grad_accum}")
        return next(s for s in plan.stages if s.trainer == "rl"), cfg, plan

    write_rates(rates_file, **{rates.RL: 5.0, rates.RL_PER_TOKEN: 0.01,
                               rates.RL_PER_WRITTEN: 0.02})
    stage, cfg, plan = planned(4096)
    _, ds = open_data(cfg, tmp_path / "4096-1", announce=False)
    tok = load_tokenizer(check_before_work(cfg), cfg.model_options())
    rows = next(st.rows for stages in build_for_run(cfg, ds).values() for st in stages
                if st.trainer == "rl")
    gold = [len(tok(r["completion"][0]["content"], add_special_tokens=False)["input_ids"])
            for r in rows]
    per_step = cfg.rl.batch_size * cfg.rl.grad_accum
    assert stage.seconds == pytest.approx(stage.steps * per_step * sum(gold) / len(gold) * 0.02)
    assert planned(8192)[0].seconds == pytest.approx(stage.seconds)  # the budget unused
    cut = max(1, min(gold))
    assert planned(cut)[0].seconds == pytest.approx(stage.steps * per_step * cut * 0.02)
    assert "RL 5.0 s/step (20.0 ms a token its completions wrote)" in render(plan)
    accum, accum_cfg, _ = planned(4096, grad_accum=2)  # a step samples twice the completions
    assert accum_cfg.rl.completions_per_step == 2 * per_step
    assert accum.seconds / accum.steps == pytest.approx(2 * stage.seconds / stage.steps)


@pytest.mark.slow
def test_a_grpo_stage_with_replayed_rows_is_planned_with_their_sft_term(tmp_path, rates_file):
    """Replayed rows beside GRPO (curriculum.activation_replay) are trained by an SFT term every
    step: the step's replayed rows' tokens at the SFT rate are added to each step's time."""
    write_rates(rates_file, **{rates.RL: 5.0, rates.SFT: 200.0})

    def rl_stage(share):
        cfg = load_config("configs/retroactive_quick.yaml",
                          {"curricula": ["retroactive"], "curriculum.activation_replay": share},
                          smoke=True)
        plan = make_plan(cfg, tmp_path / str(share))
        return next(s for s in plan.stages if s.trainer == "rl"), cfg

    plain, _ = rl_stage(0.0)
    replayed, cfg = rl_stage(0.5)
    assert (replayed.rows, replayed.steps) == (plain.rows, plain.steps)  # the prompts alike
    _, ds = open_data(cfg, tmp_path / "0.5", announce=False)
    tok = load_tokenizer(check_before_work(cfg), cfg.model_options())
    st = next(st for st in build_for_run(cfg, ds)["retroactive"] if st.trainer == "rl")
    rows = [r for r in st.rows if r.get("replay")]
    cut = cfg.train.for_stage(st.name, st.train).max_length
    tokens = [min(len(ids), cut) for ids, _ in encode_rows(tok, rows)]
    each = replay.per_step(len(rows), len(st.own_rows), cfg.rl)
    per_row = sum(tokens) / len(tokens)
    assert rows and plain.seconds == pytest.approx(plain.steps * 5.0)
    assert replayed.seconds == pytest.approx(plain.steps * (5.0 + each * per_row / 200.0))


def test_sft_is_planned_at_the_rate_measured_on_rows_of_like_length(tmp_path, rates_file):
    """Each finished stage records its rate under its rows' length (its mean tokens a row to a
    quarter octave); a stage is planned at the nearest length's rate (of two as near, the
    longer's, the slower), not the last stage's; a rates file from before the lengths still
    plans at its one rate, and a hand-edited one plans with what it can read."""
    key = rates.machine_key("tiny-random")
    rates.record_stage(key, {"steps": 4, "tokens": 4000, "seconds": 10.0, "tokens_per_row": 140})
    rates.record_stage(key, {"steps": 4, "tokens": 2900, "seconds": 10.0, "tokens_per_row": 239})
    measured = rates.read_rates(key)
    assert measured[rates.SFT] == 290.0  # the last stage's
    assert measured[rates.SFT_BY_LENGTH] == {"152": 400.0, "256": 290.0}
    assert rates.sft_rate(measured, 140) == rates.sft_rate(measured, 30) == 400.0
    assert rates.sft_rate(measured, 239) == rates.sft_rate(measured, 2000) == 290.0
    both = {rates.SFT_BY_LENGTH: {"64": 400.0, "256": 100.0}}
    assert rates.sft_rate(both, 128) == 100.0  # as near to both: the slower
    assert rates.sft_rate({rates.SFT: 123.0}, 500) == 123.0
    assert rates.sft_rate({}, 500) is None
    odd = {rates.SFT: 0, rates.SFT_BY_LENGTH: {"0": 5.0, "\u00b2": 5.0, "x": 1.0, "64": "fast"}}
    assert rates.sft_rate(odd, 100) is None
    assert rates.eval_rate({rates.EVAL_BY_LENGTH: [1], rates.EVAL: {"cot": -1}}, "cot", 9) is None
    write_rates(rates_file, **{rates.SFT: 200.0, rates.SFT_BY_LENGTH: {"8": 50.0, "128": 400.0},
                               rates.EVAL: {"recall": 2.0, "cot": 4.0}})
    plan = make_plan(smoke(), tmp_path / "run")
    for s in plan.stages[:2]:  # the smoke stages' rows: 77 and 106 tokens, nearer to 128
        assert 64 < s.tokens_per_epoch / s.rows < 181
        assert s.seconds == pytest.approx(s.tokens / 400 + s.recall_queries / 2)
    assert "SFT 50 tokens/s (rows ~8 tokens), 400 tokens/s (rows ~128 tokens)" in render(plan)


def test_an_evaluation_is_planned_at_the_rate_measured_on_completions_of_like_length(
        tmp_path, rates_file):
    """An evaluation records its rate under the mean tokens its completions wrote, a mode's
    lengths kept side by side; a plan expects a trained model to write its gold completions
    (cut at the budget) and an untrained one its whole budget, and takes the nearest length's
    rate, the mode's last rate where it has no length, none where neither."""
    key = rates.machine_key("tiny-random")
    rates.record_eval(key, "cot", 40, 10.0, tokens=50)
    rates.record_eval(key, "cot", 10, 10.0, tokens=240)
    rates.record_eval(key, "recall", 10, 10.0)  # not counted (a served model): no length
    measured = rates.read_rates(key)
    assert measured[rates.EVAL] == {"cot": 1.0, "recall": 1.0}
    assert measured[rates.EVAL_BY_LENGTH] == {"cot": {"54": 4.0, "256": 1.0}}
    assert rates.eval_rate(measured, "cot", 60) == 4.0
    assert rates.eval_rate(measured, "cot", 900) == 1.0
    assert rates.eval_rate(measured, "cot", None) == 1.0  # the last one
    assert rates.eval_rate(measured, "recall", 60) == 1.0
    assert rates.eval_rate(measured, "direct", 60) is None
    # a recall evaluation never run here: the recall checks' rate (what they generate is alike)
    checks = {rates.EVAL: {rates.RECALL_CHECK: 2.5, "cot": 1.0}}
    assert rates.eval_rate(checks, "recall", 60) == 2.5
    assert rates.eval_rate(checks, "direct", 60) is None
    assert rates.eval_rate({rates.EVAL: {rates.RECALL_CHECK: 2.5, "recall": 7.0}},
                           "recall", 60) == 7.0  # its own first
    write_rates(rates_file, **{rates.SFT: 100.0, rates.EVAL: {"recall": 2.0, "cot": 4.0},
                               rates.EVAL_BY_LENGTH: {"cot": {"32": 1000.0, "4096": 0.5}}})
    budget = {"eval.max_new_tokens.cot": 4096}
    plan = make_plan(load_config(QUICKSTART, budget, smoke=True), tmp_path / "run")
    cfg = load_config(QUICKSTART, budget, smoke=True)
    cfg, ds = open_data(cfg, tmp_path / "run", announce=False)
    tok = load_tokenizer(check_before_work(cfg), cfg.model_options())
    gold = gold_lengths(ds, "cot", tok, cfg.eval.max_test_inputs, cfg.eval.max_train_behaviours)
    assert 32 < sum(gold) / len(gold) < 362  # nearer to 32 than to 4096 on a log scale
    for e in plan.evals:
        want = {"recall": 2.0, "cot": 0.5 if e.curriculum == "untuned" else 1000.0}[e.mode]
        assert e.seconds == pytest.approx(sum(e.queries.values()) / want), e
    assert "cot 1000.00 completions/s (completions ~32 tokens), 0.50 completions/s (completions " \
           "~4096 tokens)" in render(plan) and "recall 2.00 completions/s" in render(plan)


def test_the_mean_length_of_completions_is_cut_at_the_budget():
    from pbb.evaluation.evaluate import mean_cut, token_count

    class Words:  # a tokenizer of one token a word
        def __call__(self, text, add_special_tokens):
            return {"input_ids": text.split()}

    assert token_count(Words(), "a b c") == 3
    assert mean_cut([2, 10, 30], 100) == 14
    assert mean_cut([2, 10, 30], 10) == pytest.approx(22 / 3)
    assert mean_cut([], 10) is None


def test_a_claims_config_planned_on_its_own_points_to_pbb_claims(tmp_path, monkeypatch):
    """A claim's config given to ``pbb plan`` (or ``pbb sweep``) without ``--out`` would train
    everything again in a folder of its own: a note on stderr names the ``pbb claims`` command
    that shares the claims' stages; the plan on stdout stays clean; any other config, or an
    explicit ``--out``, gets no note."""
    from pbb.experiments.claims import claims_hint

    monkeypatch.chdir(ROOT)
    hint = claims_hint(Path("configs/claims/scaling.yaml"))
    assert "`pbb claims --only scaling`" in hint and "--stages-root runs/claims/stages" in hint
    hint = claims_hint(Path("configs/gpu/claims/scaling.yaml"))
    assert "`pbb claims --gpu --only scaling`" in hint
    assert "--stages-root runs/claims-gpu/stages" in hint
    assert claims_hint(Path(QUICKSTART)) is None
    copy = tmp_path / "scaling.yaml"  # a claim's name elsewhere is not a claim's config
    copy.write_text((ROOT / "configs/claims/scaling.yaml").read_text())
    assert claims_hint(copy) is None
    claim = "configs/claims/stage2_alone.yaml"
    r = subprocess.run([sys.executable, "-m", "pbb", "plan", claim, "--smoke"],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert "note: " in r.stderr and "`pbb claims --only stage2_alone`" in r.stderr
    assert "note:" not in r.stdout and "sweep of 3 points" in r.stdout
    r = subprocess.run([sys.executable, "-m", "pbb", "plan", claim, "--smoke", "--out",
                        str(tmp_path / "mine")], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0 and "note:" not in r.stderr, r.stderr


def test_a_sweep_is_planned_point_by_point_and_a_shared_stage_counted_once(tmp_path, rates_file,
                                                                          monkeypatch):
    """Two points that differ only in stage 2's replay share stage 1: the second point's plan
    says so and the sweep's time counts it once; `pbb plan` takes the sweep file as it is. The
    points share their data set: generated once for the plan (pbb.memo)."""
    from pbb import data as data_mod
    from pbb.experiments.plan import duration, plan_points, plan_sweep

    atomic_write_json(rates_file, {rates.machine_key("tiny-random"): {
        rates.SFT: 1000.0, rates.EVAL: {"recall": 2.0, "cot": 4.0}}})
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text(f"{(ROOT / QUICKSTART).read_text()}\nsweep:\n  grid:\n"
                     "    curriculum.replay: [0.25, 0.5]\n")
    generated = []
    generate = data_mod.generate
    monkeypatch.setattr(data_mod, "generate", lambda *a, **k: generated.append(1) or
                        generate(*a, **k))
    text = plan_sweep(sweep, tmp_path / "out", smoke=True)
    assert len(generated) == 1
    assert plan_sweep(sweep, tmp_path / "out", smoke=True) == text and len(generated) == 2
    first, second = text.split("\n\nplan of ")[:2]
    assert "proactive/stage1 (sft)" in first and "stage1-" in first
    assert "proactive/stage1: the same stage as 000_replay-0.25: proactive/stage1" in second
    assert text.count(": to train") == 3  # stage 1 once, stage 2 of each point
    # stage 1 alone ends in the shared stage: its evaluation is made once too
    evals = {line.split(":")[0].strip(): line for line in second.splitlines()
             if line.startswith("  ") and " queries: " in line}
    assert evals["stage1_only/cot"].endswith(
        "the same evaluation as 000_replay-0.25: stage1_only/cot: taken from it")
    assert "to run" in evals["proactive/cot"] and "to run" in evals["untuned/cot"]
    assert "sweep of 2 points" in text and not (tmp_path / "out").exists()
    # each point's stage 2 stops at its recall target: the sweep's total is the most it takes
    assert text.splitlines()[-1].endswith(
        "expected time ~{} at most (2 stages may stop sooner, at their recall target)".format(
            duration(plan_points(sweep, tmp_path / "out", smoke=True).seconds)))
    r = subprocess.run([sys.executable, "-m", "pbb", "plan", str(sweep), "--smoke", "--out",
                        str(tmp_path / "out")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "sweep of 2 points" in r.stdout and not (tmp_path / "out").exists()


def test_the_rates_file_is_pbb_rates_where_set(tmp_path, monkeypatch):
    monkeypatch.setenv("PBB_RATES", str(tmp_path / "r.json"))
    assert rates.rates_path() == tmp_path / "r.json"
    monkeypatch.delenv("PBB_RATES")
    monkeypatch.setenv("PBB_CACHE", str(tmp_path / "cache"))
    assert rates.rates_path() == tmp_path / "cache" / rates.RATES


def test_pbb_claims_plan_counts_a_stage_two_claims_share_once_and_writes_nothing(
        tmp_path, rates_file, monkeypatch):
    """stage2_alone shares proactive_vs_control's proactive stages: planned after it, those
    stages are 'the same stage as' its points and leave its work; planned alone, they are its
    own. `pbb claims --plan` prints one line a claim and writes nothing."""
    from pbb.experiments import claims as claims_mod
    from pbb.experiments.plan import plan_points
    from tests.conftest import run_cli

    write_rates(rates_file, **{rates.SFT: 100.0, rates.EVAL: {"recall": 2.0, "cot": 4.0}})
    out, tiny = tmp_path / "claims", {"sweep.grid.seed": [0], "train.max_steps": 1}
    first, second = (claims_mod.config_path(claims_mod.CPU[0], c) for c in
                     claims_mod.select(["proactive_vs_control", "stage2_alone"]))
    trained, evaluated = {}, {}
    plan_points(first, out / "a", tiny, True, out / "stages", trained, evaluated)
    after = plan_points(second, out / "b", tiny, True, out / "stages", trained, evaluated)
    alone = plan_points(second, out / "b", tiny, True, out / "stages")
    assert after.work < alone.work and after.seconds < alone.seconds
    assert "the same stage as 000_seed-0: proactive/stage1, trained once" in after.texts[0]
    monkeypatch.setenv("PBB_RATES", str(rates_file))  # the fresh process reads these rates
    r = run_cli("claims", "--plan", "--smoke", "--only", "proactive_vs_control", "--only",
                "stage2_alone", "--set", "sweep.grid.seed=[0]", "--set", "train.max_steps=1",
                "--out", str(out))
    assert r.returncode == 0, r.stderr
    text = " ".join(r.stdout.split())  # rich folds long lines
    assert f"stage2_alone: 1 points, expected time {after.total()}" in text  # shared: counted once
    lines = [x for x in r.stdout.splitlines() if "points, expected time" in x]
    assert [x.split(":")[0] for x in lines] == ["proactive_vs_control", "stage2_alone"]
    assert f"all 2 claim(s) into {out}: expected time ~" in " ".join(r.stdout.split())
    assert not out.exists()


def test_pbb_claims_gpu_plan_on_a_machine_without_one_says_its_times_are_cpu_rates(
        tmp_path, rates_file, monkeypatch):
    """The GPU twins planned here are timed at this machine's CPU rates: the plan says so, so
    that nobody reads a CPU's hours as a GPU's."""
    import torch

    from tests.conftest import run_cli

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    write_rates(rates_file, **{rates.SFT: 100.0, rates.EVAL: {"recall": 2.0, "cot": 4.0}})
    monkeypatch.setenv("PBB_RATES", str(rates_file))
    args = ("claims", "--plan", "--smoke", "--only", "stage2_alone", "--set",
            "sweep.grid.seed=[0]", "--set", "train.max_steps=1", "--out", str(tmp_path / "c"))
    gpu, cpu = run_cli(*args[:1], "--gpu", *args[1:]), run_cli(*args)
    assert gpu.returncode == cpu.returncode == 0, gpu.stderr + cpu.stderr
    note = "this machine has no GPU: the times below are its CPU rates"
    assert note in " ".join(gpu.stdout.split()) and note not in " ".join(cpu.stdout.split())


def test_a_generation_budget_shorter_than_the_gold_completions_is_warned_of(tmp_path):
    """A mode whose ``eval.max_new_tokens`` is shorter than some of its queries' gold
    completions would cut a model that writes them before its answer: the plan says which mode,
    how many and the longest, and a budget that fits says nothing."""
    from pbb import data as data_mod
    from pbb.evaluation.evaluate import _query_rows, cut_completions
    from pbb.models import load_tokenizer, resolve_model_path

    cfg = smoke()
    tok = load_tokenizer(resolve_model_path(cfg.model))
    plan = make_plan(cfg.model_copy(update={"eval": cfg.eval.model_copy(
        update={"max_new_tokens": {"recall": 4096, "cot": 8}})}), tmp_path / "run")
    cot = [w for w in plan.warnings if w.startswith("eval.max_new_tokens.cot is 8:")]
    assert len(cot) == 1 and len(plan.warnings) == 1  # recall's budget fits
    assert f"  warning: {cot[0]}" in render(plan)
    ds = data_mod.generate(cfg.data.domain, behaviours=cfg.data.behaviours, demos=cfg.data.demos,
                           test_inputs=cfg.data.test_inputs, eval_fraction=cfg.data.eval_fraction,
                           seed=cfg.seed, options=cfg.data.options, progress=False)
    lengths = [len(tok(row["completion"][0]["content"], add_special_tokens=False)["input_ids"])
               for _, _, row in _query_rows(ds, "cot", None, cfg.eval.max_train_behaviours, "code")]
    longest = max(lengths)
    assert f"(the longest {longest} tokens)" in cot[0]
    assert cut_completions(ds, "cot", tok, longest, None, cfg.eval.max_train_behaviours) is None
    one_short = cut_completions(ds, "cot", tok, longest - 1, None, cfg.eval.max_train_behaviours)
    assert one_short is not None and f"{lengths.count(longest)} of {len(lengths)}" in one_short
    assert not make_plan(load_config(QUICKSTART), tmp_path / "run2").warnings  # its budgets fit
