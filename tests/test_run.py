"""`pbb run` end to end on tiny-random: files, honest numbers, stage sharing, resume, report."""

import ast
import json
from pathlib import Path

import pytest

from pbb import evaluate as evaluate_mod
from pbb import run as run_mod
from pbb.config import load_config
from pbb.domains.arithmetic import same_value
from pbb.jsonio import read_jsonl
from pbb.metrics import per_behaviour
from tests.conftest import run_cli

SMOKE = {"model": "tiny-random", "data.behaviours": 8, "data.demos": 2, "data.test_inputs": 2,
         "train.max_steps": 2, "train.batch_size": 4, "eval.modes": ["direct", "cot"],
         "eval.max_new_tokens": {"direct": 8, "cot": 16}, "curriculum.declarative_repeats": 1}


def smoke_config(**extra):
    return load_config(Path("configs/quickstart.yaml"), {**SMOKE, **extra})


def _gold_half(prompts, completions_by_prompt):
    """A stand-in model: the gold completion for every other prompt, junk for the rest."""
    return [completions_by_prompt[p] if k % 2 == 0 else "no idea" for k, p in enumerate(prompts)]


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run") / "smoke"
    cfg = smoke_config(curricula=["proactive", "mixture", "stage1_only", "stage2_only",
                                  "demos_only", "untuned"])
    run_mod.run(cfg, out, progress=False)
    return cfg, out


def test_run_directory_contract(smoke_run):
    cfg, out = smoke_run
    for f in ("config.yaml", "summary.json", "report.md", "accuracy.png", "curricula.json",
              "data/manifest.json"):
        assert (out / f).is_file(), f
    summary = json.loads((out / "summary.json").read_text())
    assert {(r["curriculum"], r["mode"], r["split"]) for r in summary["results"]} == {
        (c, m, s) for c in cfg.curricula for m in cfg.eval.modes for s in ("eval", "train")}
    for r in summary["results"]:
        assert {"accuracy", "ci_low", "ci_high", "n_behaviours", "n_samples"} <= set(r)
        assert r["n_behaviours"] == 4 and r["n_samples"] == 8
    sample = read_jsonl(out / "eval" / "proactive" / "cot" / "samples.jsonl")[0]
    assert {"behaviour_id", "split", "curriculum", "mode", "input", "prompt", "completion",
            "prediction", "target", "score"} <= set(sample)
    for stage in (out / "stages").iterdir():
        assert (stage / "metrics.jsonl").is_file() and (stage / "model").is_dir()


def test_shared_stage_one_is_trained_once(smoke_run):
    _, out = smoke_run
    plan = json.loads((out / "curricula.json").read_text())
    firsts = {plan[c][0]["dir"] for c in ("proactive", "stage1_only", "demos_only")}
    assert len(firsts) == 1
    assert plan["untuned"] == []
    # proactive: 2 stages, mixture 1, stage1_only shares, stage2_only 1, demos_only 1 new
    assert len(list((out / "stages").iterdir())) == 5


def test_numbers_are_honest(smoke_run):
    cfg, out = smoke_run
    behaviours = {b["id"]: b for b in read_jsonl(out / "data" / "behaviours.jsonl")}
    summary = json.loads((out / "summary.json").read_text())
    for r in summary["results"]:
        samples = read_jsonl(out / "eval" / r["curriculum"] / r["mode"] / "samples.jsonl")
        part = [s for s in samples if s["split"] == r["split"]]
        for s in part:
            b = behaviours[s["behaviour_id"]]
            ns = {}
            exec(b["instruction"], ns)
            args = [ast.literal_eval(a) for a in ast.parse(s["input"], mode="eval").body.args]
            assert repr(ns[b["name"]](*args)) == s["target"]
            assert s["score"] == float(same_value(s["prediction"], s["target"]))
        acc = per_behaviour(part)
        assert r["accuracy"] == pytest.approx(sum(acc.values()) / len(acc))


def test_scoring_pipeline_with_known_answers(smoke_run, tmp_path, monkeypatch):
    """Feed gold completions for half the queries: scores and accuracy must follow exactly."""
    cfg, out = smoke_run
    from pbb import data

    ds = data.load(out / "data")
    gold = {}
    for q in evaluate_mod.build_queries(ds, "cot"):
        d = next(x for x in ds.demonstrations if x.behaviour_id == q["behaviour_id"] and x.input == q["input"])
        gold[q["prompt"]] = "junk first\n" + d.trace
    monkeypatch.setattr(evaluate_mod, "generate", lambda model, tok, prompts, on_batch, **k:
                        on_batch(list(enumerate(_gold_half(prompts, gold)))))
    samples = evaluate_mod.evaluate(None, None, ds, curriculum="x", mode="cot", out_dir=tmp_path,
                                    batch_size=4, max_new_tokens=8)
    assert sum(s["score"] for s in samples) == len(samples) // 2
    assert all(s["score"] == (1.0 if s["prediction"] == s["target"] else 0.0) for s in samples)


def test_report_rerenders_the_same_numbers(smoke_run):
    _, out = smoke_run
    before = json.loads((out / "summary.json").read_text())["results"]
    (out / "summary.json").unlink()
    (out / "accuracy.png").unlink()
    r = run_cli("report", str(out))
    assert r.returncode == 0, r.stderr
    assert json.loads((out / "summary.json").read_text())["results"] == before
    assert (out / "accuracy.png").stat().st_size > 1000
    assert "| proactive | cot |" in (out / "report.md").read_text()


def test_resume_does_not_retrain_finished_stages(tmp_path, monkeypatch):
    cfg = smoke_config(curricula=["proactive", "untuned"])
    out = tmp_path / "r"
    real = run_mod.train_stage
    calls = []

    def crash_on_second(rows, **kw):
        calls.append(kw["stage_dir"].name)
        if len(calls) == 2:
            raise KeyboardInterrupt  # killed during the later stage
        return real(rows, **kw)

    monkeypatch.setattr(run_mod, "train_stage", crash_on_second)
    with pytest.raises(KeyboardInterrupt):
        run_mod.run(cfg, out, progress=False)
    assert not (out / "summary.json").exists()
    first, second = calls
    assert (out / "stages" / first / "done.json").is_file()
    done_before = (out / "stages" / first / "done.json").read_bytes()

    calls.clear()
    monkeypatch.setattr(run_mod, "train_stage", lambda rows, **kw: calls.append(kw["stage_dir"].name) or real(rows, **kw))
    run_mod.run(cfg, out, progress=False)
    assert calls == [second]
    assert (out / "stages" / first / "done.json").read_bytes() == done_before
    assert (out / "summary.json").is_file()


def test_interrupted_evaluation_resumes_from_partial_samples(smoke_run, tmp_path, monkeypatch):
    _, out = smoke_run
    from pbb import data

    ds = data.load(out / "data")
    seen = []

    def fake(model, tok, prompts, on_batch, **k):
        seen.append(len(prompts))
        on_batch([(i, "Answer: 0") for i in range(min(3, len(prompts)))])
        if len(seen) == 1:
            raise KeyboardInterrupt
        on_batch([(i, "Answer: 0") for i in range(3, len(prompts))])

    monkeypatch.setattr(evaluate_mod, "generate", fake)
    with pytest.raises(KeyboardInterrupt):
        evaluate_mod.evaluate(None, None, ds, curriculum="x", mode="direct", out_dir=tmp_path,
                              batch_size=4, max_new_tokens=8)
    samples = evaluate_mod.evaluate(None, None, ds, curriculum="x", mode="direct",
                                    out_dir=tmp_path, batch_size=4, max_new_tokens=8)
    assert seen == [16, 13] and len(samples) == 16
    assert not (tmp_path / "samples.partial.jsonl").exists()


def test_changed_config_in_same_run_dir_is_refused(smoke_run):
    cfg, out = smoke_run
    r = run_cli("run", "configs/quickstart.yaml", "--out", str(out),
                *[f"--set={k}={json.dumps(v)}" for k, v in SMOKE.items()], "--set", "seed=5")
    assert r.returncode == 1 and "holds a run with a different config" in r.stderr
