"""`pbb run` end to end on tiny-random: files, honest numbers, stage sharing, resume, report."""

import ast
import json
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # every test here runs the pipeline end to end

from pbb.config import load_config, with_smoke
from pbb.domains.arithmetic import same_value
from pbb.errors import PbbError
from pbb.evaluation import evaluate as evaluate_mod
from pbb.evaluation.metrics import per_behaviour
from pbb.evaluation.recall import cot_recall_exact, recall_score
from pbb.experiments import run as run_mod
from pbb.jsonio import read_jsonl
from tests.conftest import Canned, run_cli

# the smoke overlay (`pbb run --smoke`), with 4 eval behaviours and direct rows to score
SMOKE = with_smoke({"data.eval_fraction": 0.5, "data.demos": 2,
                    "eval.modes": ["recall", "direct", "cot"], "eval.max_new_tokens.cot": 16,
                    "curriculum.demo_modes": ["direct", "cot"]})


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
    # the untuned model saw neither split: it is evaluated on eval behaviours only
    assert {(r["curriculum"], r["mode"], r["split"]) for r in summary["results"]} == {
        (c, m, s) for c in cfg.curricula for m in cfg.eval.modes for s in ("eval", "train")
        if not (c == "untuned" and s == "train")}
    for r in summary["results"]:
        assert {"accuracy", "ci_low", "ci_high", "n_behaviours", "n_samples"} <= set(r)
        assert r["n_behaviours"] == 4 and r["n_samples"] == (4 if r["mode"] == "recall" else 8)
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
            if s["mode"] == "recall":
                assert s["target"] == b["instruction"] and s["input"] == ""
                assert s["score"] == recall_score(s["completion"], b["instruction"])
                continue
            if s["mode"] == "cot":
                assert s["recall_exact"] == cot_recall_exact(s["completion"], b["instruction"])
            ns = {}
            exec(b["instruction"], ns)
            args = [ast.literal_eval(a) for a in ast.parse(s["input"], mode="eval").body.args]
            assert repr(ns[b["name"]](*args)) == s["target"]
            assert s["score"] == float(same_value(s["prediction"], s["target"]))
        acc = per_behaviour(part)
        assert r["accuracy"] == pytest.approx(sum(acc.values()) / len(acc))
        if r["mode"] == "recall":
            assert r["n_samples"] == r["n_behaviours"]  # one recall query per behaviour
        if r["mode"] == "cot":
            rec = per_behaviour([{"behaviour_id": s["behaviour_id"], "score": s["recall_exact"]}
                                 for s in part])
            assert r["recall_exact"]["mean"] == pytest.approx(sum(rec.values()) / len(rec))


def test_scoring_pipeline_with_known_answers(smoke_run, tmp_path):
    """Feed gold completions for half the queries: scores and accuracy must follow exactly."""
    cfg, out = smoke_run
    from pbb import data

    ds = data.load(out / "data")
    gold = {}
    for q in evaluate_mod.build_queries(ds, "cot"):
        d = next(x for x in ds.demonstrations if x.behaviour_id == q["behaviour_id"] and x.input == q["input"])
        gold[q["prompt"]] = "junk first\n" + d.trace
    answers = dict(zip(gold, _gold_half(list(gold), gold)))  # gold for every other query
    samples = evaluate_mod.evaluate(Canned(answers.__getitem__), ds, curriculum="x", mode="cot",
                                    out_dir=tmp_path, max_new_tokens=8)
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
    real = run_mod.train_sft
    calls = []

    def crash_on_second(rows, **kw):
        calls.append(kw["stage_dir"].name)
        if len(calls) == 2:
            raise KeyboardInterrupt  # killed during the later stage
        return real(rows, **kw)

    monkeypatch.setattr(run_mod, "train_sft", crash_on_second)
    with pytest.raises(KeyboardInterrupt):
        run_mod.run(cfg, out, progress=False)
    assert not (out / "summary.json").exists()
    first, second = calls
    assert (out / "stages" / first / "done.json").is_file()
    done_before = (out / "stages" / first / "done.json").read_bytes()

    calls.clear()
    monkeypatch.setattr(run_mod, "train_sft", lambda rows, **kw: calls.append(kw["stage_dir"].name) or real(rows, **kw))
    run_mod.run(cfg, out, progress=False)
    assert calls == [second]
    assert (out / "stages" / first / "done.json").read_bytes() == done_before
    assert (out / "summary.json").is_file()


def test_interrupted_evaluation_resumes_from_partial_samples(smoke_run, tmp_path):
    _, out = smoke_run
    from pbb import data

    ds = data.load(out / "data")
    seen = []

    class Killed:
        """Answers three prompts, then is killed (the first time only)."""

        def generate(self, prompts, *, on_batch, **k):
            seen.append(len(prompts))
            on_batch([(i, "Answer: 0") for i in range(min(3, len(prompts)))])
            if len(seen) == 1:
                raise KeyboardInterrupt
            on_batch([(i, "Answer: 0") for i in range(3, len(prompts))])

    with pytest.raises(KeyboardInterrupt):
        evaluate_mod.evaluate(Killed(), ds, curriculum="x", mode="direct", out_dir=tmp_path,
                              max_new_tokens=8)
    samples = evaluate_mod.evaluate(Killed(), ds, curriculum="x", mode="direct",
                                    out_dir=tmp_path, max_new_tokens=8)
    assert seen == [16, 13] and len(samples) == 16
    assert not (tmp_path / "samples.partial.jsonl").exists()


def test_changed_config_in_same_run_dir_is_refused(smoke_run):
    cfg, out = smoke_run
    r = run_cli("run", "configs/quickstart.yaml", "--out", str(out),
                *[f"--set={k}={json.dumps(v)}" for k, v in SMOKE.items()], "--set", "seed=5")
    assert r.returncode == 1 and "holds a run with a different config" in r.stderr


def test_per_stage_settings_reach_the_trainer(tmp_path):
    cfg = smoke_config(curricula=["proactive"], **{
        "train.max_steps": -1, "train.epochs": 1, "train.learning_rate": 1e-4,
        "train.warmup_ratio": 0.0, "train.schedule": "constant",
        "train.stages": {"stage2": {"learning_rate": 3e-3, "epochs": 2}},
        "eval.modes": ["recall"]})
    run_mod.run(cfg, tmp_path / "r", progress=False)
    plan = json.loads((tmp_path / "r" / "curricula.json").read_text())
    (s1, s2) = (tmp_path / "r" / e["dir"] for e in plan["proactive"])
    d1, d2 = (json.loads((d / "done.json").read_text()) for d in (s1, s2))
    assert (d1["learning_rate"], d1["epochs"]) == (1e-4, 1)
    assert (d2["learning_rate"], d2["epochs"]) == (3e-3, 2)
    lrs2 = {m["learning_rate"] for m in read_jsonl(s2 / "metrics.jsonl") if "learning_rate" in m}
    assert lrs2 and all(lr == pytest.approx(3e-3) for lr in lrs2)
    # recall of the instructions each stage taught is measured after it
    assert d1["recall"][0]["n"] == 4 and d2["recall"][0]["n"] == 4  # train / eval behaviours


def test_stage_settings_for_an_unknown_stage_are_refused(tmp_path):
    from pbb.errors import PbbError

    cfg = smoke_config(curricula=["proactive"], **{"train.stages": {"stage3": {"epochs": 2}}})
    with pytest.raises(PbbError, match="train.stages.stage3: no stage of that name"):
        run_mod.run(cfg, tmp_path / "r", progress=False)


def test_stopping_rule_in_a_config_needs_both_keys():
    from pbb.errors import PbbError

    with pytest.raises(PbbError, match="recall_target and max_epochs go together"):
        smoke_config(**{"train.stages": {"stage2": {"recall_target": 0.9}}})


def test_smoke_flag_shrinks_a_config_and_keeps_its_plan(tmp_path):
    """`pbb run CONFIG --smoke`: tiny-random, 8 behaviours, 2 steps a stage, into runs/<name>-smoke
    (never over the real run's directory); curricula and modes as the config says."""
    import yaml

    config = Path("configs/quickstart.yaml").resolve()
    r = run_cli("run", str(config), "--smoke", "--no-progress", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-2000:]
    out = tmp_path / "runs" / "quickstart-smoke"
    written = yaml.safe_load((out / "config.yaml").read_text())
    shipped = yaml.safe_load(config.read_text())
    assert (written["model"], written["data"]["behaviours"], written["train"]["max_steps"]) == (
        "tiny-random", 8, 2)
    assert written["curricula"] == shipped["curricula"]
    assert written["eval"]["modes"] == shipped["eval"]["modes"]
    summary = json.loads((out / "summary.json").read_text())
    assert {r["curriculum"] for r in summary["results"]} == set(shipped["curricula"])
    assert not (tmp_path / "runs" / "quickstart").exists()


def _stage_dirs(out: Path) -> set[str]:
    plan = json.loads((out / "curricula.json").read_text())
    return {Path(e["dir"]).name for entries in plan.values() for e in entries}


def test_hf_export_holds_exactly_the_rows_the_run_trained(smoke_run, tmp_path):
    from datasets import load_dataset, load_from_disk

    from pbb import data
    from pbb.rows import curricula

    cfg, out = smoke_run
    r = run_cli("export", "hf", str(out), "--out", str(tmp_path / "x"))
    assert r.returncode == 0, r.stderr
    exported = json.loads((tmp_path / "x" / "stages.json").read_text())
    # each stage is the one the run trained: its key is the one in the run's stage directory
    assert {f"{s['stage']}-{s['key']}" for s in exported} == _stage_dirs(out)
    ds = data.load(out / "data")
    hf = load_from_disk(str(tmp_path / "x" / "hf"))
    assert len(hf["behaviours"]) == len(ds.behaviours)
    assert len(hf["demonstrations"]) == len(ds.demonstrations)
    for s in exported:
        rows = next(st.rows for st in curricula.build(s["curriculum"], ds, cfg.curriculum)
                    if st.name == s["stage"])
        want = [(r["prompt"], r["completion"], r["kind"], r["behaviour_id"]) for r in rows]
        parquet = load_dataset("parquet", data_files=str(
            tmp_path / "x" / "parquet" / s["curriculum"] / s["stage"] / "train.parquet"))["train"]
        for table in (hf[s["split"]], parquet):
            assert [(r["prompt"], r["completion"], r["kind"], r["behaviour_id"])
                    for r in table] == want


TRL_CLI = "import sys; from trl.cli import main; sys.argv[0] = 'trl'; sys.exit(main())"


def test_trl_sft_trains_on_an_exported_stage_unchanged(smoke_run, tmp_path):
    import subprocess
    import sys

    from pbb.models import resolve_model_path

    _, out = smoke_run
    assert run_cli("export", "hf", str(out), "--out", str(tmp_path / "x")).returncode == 0
    r = subprocess.run([sys.executable, "-c", TRL_CLI, "sft",
                        "--model_name_or_path", str(resolve_model_path("tiny-random")),
                        "--dataset_name", str(tmp_path / "x" / "parquet" / "proactive" / "stage1"),
                        "--max_steps", "2", "--per_device_train_batch_size", "2",
                        "--logging_steps", "1", "--save_strategy", "no", "--report_to", "none",
                        "--use_cpu", "--bf16", "false", "--output_dir", str(tmp_path / "trl")],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-2000:]
    losses = [float(x) for x in __import__("re").findall(r"'loss': '([0-9.]+)'", r.stdout + r.stderr)]
    assert len(losses) == 2 and all(0 < x < 100 for x in losses)


def _chat_finetuning_row_problem(line: str) -> str | None:
    """OpenAI's chat finetuning format: one object with a `messages` list of role/content
    strings, system first if any, user and assistant turns, ending with the assistant."""
    rec = json.loads(line)
    if set(rec) != {"messages"} or not isinstance(rec["messages"], list):
        return "not {messages: [...]}"
    msgs = rec["messages"]
    if any(set(m) != {"role", "content"} or not isinstance(m["content"], str) or not m["content"]
           for m in msgs):
        return "a message is not {role, content}"
    roles = [m["role"] for m in msgs]
    if roles[0] == "system":
        roles = roles[1:]
    if not roles or roles[-1] != "assistant" or any(
            r != ("user" if k % 2 == 0 else "assistant") for k, r in enumerate(roles)):
        return f"roles {roles}"
    return None


def test_openai_export_is_chat_finetuning_jsonl_and_score_reads_its_answers_back(smoke_run, tmp_path):
    from pbb import data
    from pbb.interop.export import eval_queries

    cfg, out = smoke_run
    assert run_cli("export", "openai", str(out), "--out", str(tmp_path / "x")).returncode == 0
    exported = json.loads((tmp_path / "x" / "stages.json").read_text())
    for s in exported:
        lines = (tmp_path / "x" / "openai" / s["curriculum"] / f"{s['stage']}.jsonl").read_text().splitlines()
        # (an RL stage's replayed rows are a file of their own: tests/test_export.py)
        assert len(lines) == s["rows"] - (s["replayed"] if s["trainer"] == "rl" else 0)
        assert [p for p in map(_chat_finetuning_row_problem, lines) if p] == []
    ds = data.load(out / "data")
    answers = []
    for mode in cfg.eval.modes:
        requests = [json.loads(x) for x in
                    (tmp_path / "x" / "openai" / "eval" / f"{mode}.jsonl").read_text().splitlines()]
        queries = eval_queries(cfg, ds, mode)
        assert [q["custom_id"] for q in requests] == list(queries)
        assert all(q["body"]["messages"][-1]["content"] == queries[q["custom_id"]]["prompt"]
                   for q in requests)
        # answer with what the run's proactive model wrote: a Batch API output line for half
        wrote = {(s["behaviour_id"], s["input"]): s["completion"] for s in
                 read_jsonl(out / "eval" / "proactive" / mode / "samples.jsonl")}
        for k, (qid, q) in enumerate(queries.items()):
            text = wrote[(q["behaviour_id"], q["input"])]
            answers.append({"custom_id": qid, "completion": text} if k % 2 else
                           {"custom_id": qid, "response": {"body": {"choices": [
                               {"message": {"role": "assistant", "content": text}}]}}})
    comp = tmp_path / "answers.jsonl"
    comp.write_text("".join(json.dumps(a) + "\n" for a in answers))
    r = run_cli("score", str(out), str(comp), "--out", str(tmp_path / "s"), "--curriculum", "proactive")
    assert r.returncode == 0, r.stderr
    for mode in cfg.eval.modes:  # scored outside the run, the samples are the run's own
        assert (tmp_path / "s" / "eval" / "proactive" / mode / "samples.jsonl").read_bytes() == \
            (out / "eval" / "proactive" / mode / "samples.jsonl").read_bytes()
    mine = [x for x in json.loads((tmp_path / "s" / "summary.json").read_text())["results"]]
    theirs = [x for x in json.loads((out / "summary.json").read_text())["results"]
              if x["curriculum"] == "proactive"]
    assert mine == theirs
    # a missing answer is refused, not scored as wrong or left out of the rate
    comp.write_text("".join(json.dumps(a) + "\n" for a in answers[1:]))
    r = run_cli("score", str(out), str(comp), "--out", str(tmp_path / "t"), "--curriculum", "proactive")
    assert r.returncode == 1 and "have no completion" in r.stderr and not (tmp_path / "t").exists()
    r = run_cli("score", str(out), str(comp), "--out", str(tmp_path / "t"), "--curriculum", "gpt")
    assert r.returncode == 1 and "--curriculum 'gpt': not a curriculum" in r.stderr


def test_score_gives_back_the_untuned_runs_own_samples_from_every_exported_answer(smoke_run,
                                                                                   tmp_path):
    """`untuned` is asked eval behaviours only: answers to the export's train queries (an
    untuned model answering every exported request) are left out, and what is scored is exactly
    the run's own samples, byte for byte."""
    from pbb import data
    from pbb.interop.export import eval_queries

    cfg, out = smoke_run
    ds = data.load(out / "data")
    answers, asked = [], 0
    for mode in cfg.eval.modes:
        wrote = {(s["behaviour_id"], s["input"]): s["completion"] for s in
                 read_jsonl(out / "eval" / "untuned" / mode / "samples.jsonl")}
        asked += len(wrote)
        for qid, q in eval_queries(cfg, ds, mode).items():  # every exported query, train too
            answers.append({"custom_id": qid,
                            "completion": wrote.get((q["behaviour_id"], q["input"]), "junk")})
    assert len(answers) > asked  # the export asks train behaviours the run did not ask untuned
    comp = tmp_path / "answers.jsonl"
    comp.write_text("".join(json.dumps(a) + "\n" for a in answers))
    r = run_cli("score", str(out), str(comp), "--out", str(tmp_path / "s"), "--curriculum", "untuned")
    assert r.returncode == 0, r.stderr
    for mode in cfg.eval.modes:
        assert (tmp_path / "s" / "eval" / "untuned" / mode / "samples.jsonl").read_bytes() == \
            (out / "eval" / "untuned" / mode / "samples.jsonl").read_bytes()
    summary = json.loads((tmp_path / "s" / "summary.json").read_text())
    assert summary["ignored_completions"] == len(answers) - asked
    assert summary["results"] == [x for x in json.loads((out / "summary.json").read_text())["results"]
                                  if x["curriculum"] == "untuned"]


def test_tensorboard_gets_every_stage_sft_and_rl_and_the_final_accuracies(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = smoke_config(curricula=["proactive", "rl_only"], **{"train.report_to": ["tensorboard"],
                                                               "eval.modes": ["recall", "cot"]})
    summary = run_mod.run(cfg, tmp_path / "r", progress=False)
    events = EventAccumulator(str(tmp_path / "r" / "tensorboard" / cfg.name))
    events.Reload()
    scalars = {tag: [e.value for e in events.Scalars(tag)] for tag in events.Tags()["scalars"]}
    for entries in summary["stages"].values():
        for e in entries:  # each stage's metrics.jsonl, line for line
            stage = Path(e["dir"]).name
            lines = read_jsonl(tmp_path / "r" / e["dir"] / "metrics.jsonl")
            key = "loss" if "activation_rl" not in stage else "reward"
            logged = [x[key] for x in lines if key in x]
            assert logged and scalars[f"{stage}/{key}"] == pytest.approx(logged, rel=1e-5)
    for r in summary["results"]:
        tag = f"eval/{r['curriculum']}/{r['mode']}/{r['split']}/accuracy"
        assert scalars[tag] == pytest.approx([r["accuracy"]], abs=1e-6)


def test_a_tracker_that_is_not_installed_is_one_error_before_work(tmp_path, monkeypatch):
    import importlib.util

    from pbb.errors import PbbError

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "wandb" else real(name, *a))
    cfg = smoke_config(**{"train.report_to": ["wandb"]})
    with pytest.raises(PbbError, match=r"train.report_to: wandb needs the wandb package"):
        run_mod.run(cfg, tmp_path / "r", progress=False)
    assert not (tmp_path / "r").exists()
    with pytest.raises(PbbError, match="report_to"):
        smoke_config(**{"train.report_to": ["neptune"]})


def test_lm_eval_runs_the_exported_tasks_and_scores_with_pbbs_verifier(smoke_run, tmp_path):
    import importlib.util

    import lm_eval
    from lm_eval.tasks import TaskManager

    from pbb import data
    from pbb.evaluation.scoring import Scorer
    from pbb.interop.export import eval_queries
    from pbb.models import resolve_model_path

    cfg, out = smoke_run
    assert run_cli("export", "lm-eval", str(out), "--out", str(tmp_path / "x")).returncode == 0
    folder = tmp_path / "x" / "lm-eval"
    ds = data.load(out / "data")
    # the folder's own scoring module: gold answers score 1, junk 0 (pbb's verifier decides)
    spec = importlib.util.spec_from_file_location("pbb_task_utils", folder / "utils.py")
    utils = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(utils)
    docs = [d for d in utils.load_docs(mode="cot", split="eval")["test"]]
    traces = {(d.behaviour_id, d.input): d.trace for d in ds.demonstrations}
    assert docs and all(utils.process_results(d, [traces[(d["behaviour_id"], d["input"])]]) ==
                        {"acc": 1.0} for d in docs)
    assert all(utils.process_results(d, ["Answer: junk"]) == {"acc": 0.0} for d in docs)

    result = lm_eval.simple_evaluate(
        model="hf", model_args=f"pretrained={resolve_model_path('tiny-random')},device=cpu,dtype=float32",
        tasks=[f"pbb_{cfg.name}"], task_manager=TaskManager(include_path=str(folder)),
        apply_chat_template=True, log_samples=True, batch_size=8)
    for mode in cfg.eval.modes:
        queries = eval_queries(cfg, ds, mode)
        scorer = Scorer(ds, "x", mode)
        for split in ("eval", "train"):
            task = f"pbb_{cfg.name}_{mode}_{split}"
            logged = result["samples"][task]
            assert len(logged) == sum(q["split"] == split for q in queries.values())
            ours = [scorer(s["doc"], s["filtered_resps"][0].strip())["score"] for s in logged]
            assert result["results"][task]["acc,none"] == pytest.approx(sum(ours) / len(ours))
    # lm-eval's logged samples, scored back by pbb score: the same numbers as lm-eval's acc
    logged = tmp_path / "lm_eval_samples.jsonl"
    logged.write_text("".join(json.dumps(s, default=str) + "\n" for task in result["samples"]
                              for s in result["samples"][task]))
    r = run_cli("score", str(out), str(logged), "--out", str(tmp_path / "s"), "--curriculum", "untuned")
    assert r.returncode == 0, r.stderr
    for row in json.loads((tmp_path / "s" / "summary.json").read_text())["results"]:
        task = f"pbb_{cfg.name}_{row['mode']}_{row['split']}"
        assert row["accuracy"] == pytest.approx(result["results"][task]["acc,none"])


def test_every_record_a_run_writes_matches_its_type(smoke_run):
    """summary.json, every samples line and every done.json of a run with six curricula are the
    records pbb.records describes (the JSON Schema in docs is generated from those types)."""
    from pbb.records import Sample, StageRecord, Summary, check

    _, out = smoke_run
    check(Summary, json.loads((out / "summary.json").read_text()), "summary.json")
    samples = list(out.rglob("samples.jsonl"))
    dones = list(out.rglob("done.json"))
    assert samples and dones
    for path in samples:
        for line in path.read_text().splitlines():
            check(Sample, json.loads(line), str(path))
    for path in dones:
        check(StageRecord, json.loads(path.read_text()), str(path))


def test_an_evaluation_of_the_same_model_the_same_way_is_taken_from_the_run_that_made_it(
        tmp_path, monkeypatch):
    # two runs share a stage store (as a sweep's points and the claims do): the second one takes
    # the first one's evaluation of their common final stage instead of generating again, byte
    # for byte what it would have written; another setting of the evaluation evaluates again
    from pbb.experiments.claims import timing
    from pbb.store import RunStore

    stages = tmp_path / "stages"
    calls = []
    real = run_mod.evaluate
    monkeypatch.setattr(run_mod, "evaluate", lambda gen, ds, **kw: calls.append(
        kw["curriculum"]) or real(gen, ds, **kw))
    base = {"eval.modes": ["direct", "cot"]}
    run_mod.run(smoke_config(**base, curricula=["proactive"]), tmp_path / "a", progress=False,
                stages_root=stages)
    assert calls == ["proactive", "proactive"]

    calls.clear()
    renamed = smoke_config(**base, name="other", curricula=["proactive", "stage1_only"])
    second = run_mod.run(renamed, tmp_path / "b", progress=False, stages_root=stages)
    assert calls == ["stage1_only", "stage1_only"]  # proactive: taken, both modes
    for mode in ("direct", "cot"):
        assert (tmp_path / "b/eval/proactive" / mode / "samples.jsonl").read_bytes() == \
            (tmp_path / "a/eval/proactive" / mode / "samples.jsonl").read_bytes()
    kept = second["evals"]["proactive/cot"]
    assert (tmp_path / "b" / kept["dir"] / "samples.jsonl").is_file() and kept["seconds"] > 0

    # what a claim made of run b alone would cost: its own time plus the evaluations it took
    class Point:
        def __init__(self, root):
            self.store = RunStore(root, stages)
            self.summary = json.loads((root / "summary.json").read_text())

    spent, alone = timing([Point(tmp_path / "b")])
    taken = sum(second["evals"][f"proactive/{m}"]["seconds"] for m in ("direct", "cot"))
    trained_elsewhere = sum(e["seconds"] for e in second["stages"]["proactive"]
                            if f"train proactive/{e['stage']}" not in second["timing"])
    assert alone == pytest.approx(spent + taken + trained_elsewhere, abs=0.2)

    calls.clear()
    longer = smoke_config(**{**base, "eval.max_new_tokens.cot": 12}, curricula=["proactive"])
    run_mod.run(longer, tmp_path / "c", progress=False, stages_root=stages)
    assert calls == ["proactive"]  # cot under another token budget: evaluated again


def test_a_run_killed_between_its_samples_and_their_shared_copy_shares_them_on_resume(
        tmp_path, monkeypatch):
    # an evaluation writes the run's samples, then the stage's shared copy: killed between the
    # two, the resumed run evaluates nothing (it is done) and still keeps them for other runs,
    # so a second run over the same stage store takes them instead of evaluating again
    from pbb.evaluation import reuse

    stages = tmp_path / "stages"
    cfg = smoke_config(**{"eval.modes": ["direct", "cot"]}, curricula=["proactive"])
    real_keep = reuse.keep

    def killed(*a, **k):
        raise KeyboardInterrupt  # the moment after the run's own samples.jsonl

    monkeypatch.setattr(reuse, "keep", killed)
    with pytest.raises(KeyboardInterrupt):
        run_mod.run(cfg, tmp_path / "a", progress=False, stages_root=stages)
    run_dir = tmp_path / "a/eval/proactive"
    assert (run_dir / "direct/samples.jsonl").is_file()
    assert not list(stages.rglob("evals/*/samples.jsonl"))

    monkeypatch.setattr(reuse, "keep", real_keep)
    calls = []
    real = run_mod.evaluate
    monkeypatch.setattr(run_mod, "evaluate", lambda gen, ds, **kw: calls.append(
        kw["mode"]) or real(gen, ds, **kw))
    run_mod.run(cfg, tmp_path / "a", progress=False, stages_root=stages)
    assert calls == ["cot"]  # direct was done before the kill: not evaluated again
    shared = {p.parent.name.split("-")[0]: p for p in stages.rglob("evals/*/samples.jsonl")}
    assert set(shared) == {"direct", "cot"}
    for mode, path in shared.items():
        assert path.read_bytes() == (run_dir / mode / "samples.jsonl").read_bytes()

    calls.clear()
    run_mod.run(smoke_config(**{"eval.modes": ["direct", "cot"]}, name="other",
                             curricula=["proactive"]), tmp_path / "b", progress=False,
                stages_root=stages)
    assert calls == []  # both taken from the shared copies


def test_a_cut_curriculum_shares_its_stages_and_evaluation_and_is_a_row_of_its_own(
        tmp_path, monkeypatch):
    # proactive@stage1 is proactive's model before stage 2: the stage stage1_only trains, so
    # nothing trains twice and its evaluation is taken, byte for byte, from stage1_only's
    calls = []
    real = run_mod.evaluate
    monkeypatch.setattr(run_mod, "evaluate", lambda gen, ds, **kw: calls.append(
        kw["curriculum"]) or real(gen, ds, **kw))
    cfg = smoke_config(**{"eval.modes": ["cot"]},
                       curricula=["stage1_only", "proactive@stage1", "proactive"])
    summary = run_mod.run(cfg, tmp_path / "r", progress=False)
    plan = json.loads((tmp_path / "r" / "curricula.json").read_text())
    assert plan["proactive@stage1"] == plan["stage1_only"] == plan["proactive"][:1]
    assert len(list((tmp_path / "r" / "stages").iterdir())) == 2
    assert calls == ["stage1_only", "proactive"]
    samples = {c: read_jsonl(tmp_path / "r" / "eval" / c / "cot" / "samples.jsonl")
               for c in ("stage1_only", "proactive@stage1")}
    assert [dict(s, curriculum=None) for s in samples["stage1_only"]] == \
        [dict(s, curriculum=None) for s in samples["proactive@stage1"]]
    assert {s["curriculum"] for s in samples["proactive@stage1"]} == {"proactive@stage1"}
    assert {r["curriculum"] for r in summary["results"]} == set(cfg.curricula)


def test_a_second_process_in_a_working_run_folder_stops_with_one_line(smoke_run):
    # the same command started twice would append to the same partial samples and rewrite the
    # same summary: while one process holds the folder's lock, the other changes nothing
    from filelock import FileLock

    cfg, out = smoke_run
    before = (out / "summary.json").read_bytes()
    with FileLock(str(out / ".lock")), \
            pytest.raises(PbbError, match=r"another pbb process is working in this run folder"):
        run_mod.run(cfg, out, progress=False)
    assert (out / "summary.json").read_bytes() == before
    assert run_mod.run(cfg, out, progress=False)["results"] == json.loads(before)["results"]
    with FileLock(str(out / ".lock"), timeout=0):  # and a run that returned let the folder go
        pass
