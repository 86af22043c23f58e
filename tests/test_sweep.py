"""Sweeps: shared stages trained once, resume, the crossover estimator, honest numbers."""

import json
import math
import signal
from pathlib import Path

import pytest

from pbb.config import with_smoke
from pbb.errors import PbbError
from pbb.experiments import efficiency
from pbb.experiments import run as run_mod
from pbb.experiments import sweep as sweep_mod
from pbb.jsonio import read_json

TINY = with_smoke({"data.demos": 3, "train.max_steps": 1, "eval.max_new_tokens.cot": 4})


def test_crossover_on_known_curves():
    kind, n = efficiency.crossover([1, 10, 100], [0.1, 0.3, 0.5], 0.4)
    assert kind == "crossing" and n == pytest.approx(math.sqrt(1000))  # halfway in log k
    kind, n = efficiency.crossover([1, 3, 10, 30], [0.0, 0.2, 0.6, 0.9], 0.2)
    assert kind == "crossing" and n == pytest.approx(3)
    assert efficiency.crossover([1, 10], [0.6, 0.7], 0.5) == (efficiency.ABOVE_ALL, 1)
    assert efficiency.crossover([1, 10, 100], [0.1, 0.2, 0.3], 0.5) == (efficiency.BELOW_ALL, 100)
    assert efficiency.crossover([100, 1, 10], [0.5, 0.1, 0.3], 0.4)[1] == pytest.approx(math.sqrt(1000))


def _synthetic(curve_means, line_mean, n_behaviours=40, seeds=(0, 1, 2)):
    """Per-behaviour 0/1 accuracies whose means are exactly the given ones."""
    def column(mean):
        hits = round(mean * n_behaviours)
        return {f"b{i}": float(i < hits) for i in range(n_behaviours)}

    return {s: {"curve": {k: column(m) for k, m in curve_means.items()},
                "instruction": column(line_mean)} for s in seeds}


def test_estimate_finds_a_known_crossing_with_an_interval():
    est = efficiency.estimate(_synthetic({1: 0.1, 10: 0.3, 100: 0.5}, 0.4), resamples=300)
    assert est["crossover"]["kind"] == "crossing"
    assert est["crossover"]["n"] == pytest.approx(math.sqrt(1000))
    assert est["crossover"]["ci_low"] <= est["crossover"]["n"] <= est["crossover"]["ci_high"]
    assert [c["accuracy"] for c in est["curve"]] == pytest.approx([0.1, 0.3, 0.5])
    assert "about 31.6 demonstrations" in efficiency.describe(est["crossover"], est["ks"])


def test_estimate_gives_each_seeds_own_crossing():
    """Seeds whose curves cross the line at different k: each seed's N is its own curve's
    crossing (not the pooled one), a seed whose curve never reaches the line says so, and a seed
    whose curve is not complete yet is left out (not cutting the others' curves to its k)."""
    per_seed = {**_synthetic({1: 0.1, 10: 0.3, 100: 0.5}, 0.4, seeds=(0,)),
                **_synthetic({1: 0.1, 10: 0.5, 100: 0.6}, 0.3, seeds=(1,)),
                **_synthetic({1: 0.05, 10: 0.1, 100: 0.15}, 0.6, seeds=(2,))}
    running = _synthetic({1: 0.9}, 0.1, seeds=(3,))  # a seed with k = 1 only, so far
    est = efficiency.estimate({**per_seed, **running}, resamples=100)
    assert est["ks"] == [1, 10, 100] and est["seeds"] == [0, 1, 2]  # it waits
    got = est["crossover"]["per_seed"]
    assert got[:2] == pytest.approx([math.sqrt(1000), math.sqrt(10)]) and math.isinf(got[2])
    assert [efficiency.format_n(n, est["ks"]) for n in got] == ["31.6", "3.2", "> 100"]


def test_estimate_says_when_curves_do_not_cross():
    below = efficiency.estimate(_synthetic({1: 0.05, 10: 0.1, 100: 0.15}, 0.6), resamples=200)
    assert below["crossover"]["kind"] == efficiency.BELOW_ALL
    assert math.isinf(below["crossover"]["ci_high"])
    assert "more than 100" in efficiency.describe(below["crossover"], below["ks"])
    above = efficiency.estimate(_synthetic({1: 0.7, 10: 0.8}, 0.2), resamples=200)
    assert above["crossover"]["kind"] == efficiency.ABOVE_ALL
    assert "fewer than 1" in efficiency.describe(above["crossover"], above["ks"])


def _fake_generate(counter):
    """A stand-in for HFGenerator.generate that answers right for a share of the queries that changes from call to
    call, so accuracies differ between points and behaviours."""
    import re

    from pbb import data
    cfg = sweep_mod.load_sweep(Path("configs/sample_efficiency_quick.yaml"), TINY)[2][0]["config"]
    behaviours = {}
    for seed in (0, 1):
        ds = data.generate("arithmetic", behaviours=cfg.data.behaviours, demos=cfg.data.demos,
                           test_inputs=cfg.data.test_inputs, eval_fraction=cfg.data.eval_fraction,
                           seed=seed, options=cfg.data.options, progress=False)
        behaviours.update({b.name: (ds.domain, b) for b in ds.behaviours})

    def generate(self, prompts, on_batch=None, **kw):
        counter[0] += 1
        outs = []
        for i, p in enumerate(prompts):
            call = re.search(r"`(\w+\([^`]*\))`", p)
            if call is None:  # a declarative prompt (recall check): no answer to give
                outs.append("no idea")
                continue
            query = call.group(1)
            domain, b = behaviours[query.split("(")[0]]
            right = (counter[0] + i) % (2 + counter[0] % 3) == 0
            out = domain.execute(b, query).output
            outs.append(f"Answer: {out if right else int(out) + 1}")
        if on_batch:
            on_batch(list(enumerate(outs)))
        return outs
    return generate


@pytest.fixture(scope="module")
def swept(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    from pbb.evaluation.generators import HFGenerator

    mp.setattr(HFGenerator, "generate", _fake_generate([0]))
    trained = []
    real = run_mod.train_sft
    mp.setattr(run_mod, "train_sft", lambda rows, **kw: trained.append(kw["stage_dir"].name) or real(rows, **kw))
    out = tmp_path_factory.mktemp("sweep") / "s"
    summary = sweep_mod.run_sweep(Path("configs/sample_efficiency_quick.yaml"), out, TINY, progress=False)
    mp.undo()
    return out, summary, trained


@pytest.mark.slow
def test_shared_stage_one_is_trained_once_per_seed(swept):
    out, _, trained = swept
    stage1 = [t for t in trained if t.startswith("stage1-")]
    assert len(stage1) == 2 == len(set(stage1))  # two seeds, each stage 1 once, for 4 points each
    assert len(trained) == len(set(trained))  # nothing trained twice
    record = read_json(out / "sweep.json")
    assert len(record["points"]) == 8
    for p in record["points"]:
        plan = json.loads((out / p["dir"] / "curricula.json").read_text())
        (entries,) = plan.values()
        assert entries[0]["stage"] == "stage1" and (out / p["dir"] / entries[0]["dir"] / "done.json").is_file()


@pytest.mark.slow
def test_numbers_in_the_report_are_the_runs_numbers(swept):
    out, summary, _ = swept
    runs = {}
    for p in read_json(out / "sweep.json")["points"]:
        s = read_json(out / p["dir"] / "summary.json")
        cfg = (out / p["dir"] / "config.yaml").read_text()
        k = int(cfg.split("demos_only_k: ")[1].split()[0])
        for r in s["results"]:
            if r["split"] == "eval" and r["mode"] == "cot":  # the analysis mode
                runs.setdefault((r["curriculum"], k if r["curriculum"] == "demos_only" else None), []).append(r["accuracy"])
    eff = summary["efficiency"]
    for c in eff["curve"]:
        values = runs[("demos_only", c["k"])]
        assert c["accuracy"] == pytest.approx(sum(values) / len(values))
    line = runs[("proactive", None)]
    assert eff["instruction"]["accuracy"] == pytest.approx(sum(line) / len(line))
    assert len({round(c["accuracy"], 6) for c in eff["curve"]} | {round(eff["instruction"]["accuracy"], 6)}) > 1
    assert {b["split"] for b in summary["curricula"]} == {"eval", "train"}
    for b in (b for b in summary["curricula"] if b["split"] == "eval" and b["mode"] == "cot"):
        key = ("demos_only", int(b["label"].split("k=")[1])) if "k=" in b["label"] else (b["label"], None)
        assert b["accuracy"] == pytest.approx(sum(runs[key]) / len(runs[key]))
    report = (out / "report.md").read_text()
    for c in eff["curve"]:
        assert f"| {c['k']} | {100 * c['accuracy']:.1f} [" in report
    assert (out / "efficiency.png").stat().st_size > 1000 and (out / "curricula.png").stat().st_size > 1000
    assert json.loads((out / "sweep_summary.json").read_text()) == json.loads(json.dumps(summary))


@pytest.mark.slow
def test_report_rerenders_from_files(swept):
    out, summary, _ = swept
    from tests.conftest import run_cli

    before = (out / "sweep_summary.json").read_text()
    (out / "report.md").unlink()
    r = run_cli("report", str(out))
    assert r.returncode == 0, r.stderr
    assert (out / "sweep_summary.json").read_text() == before and (out / "report.md").is_file()


@pytest.mark.slow
def test_killed_sweep_finishes_the_remaining_points_only(tmp_path, monkeypatch):
    from pbb.evaluation.generators import HFGenerator

    monkeypatch.setattr(HFGenerator, "generate", _fake_generate([0]))
    real = run_mod.run
    ran = []

    def crash_third(cfg, out, **kw):
        ran.append(Path(out).name)
        if len(ran) == 3:
            raise KeyboardInterrupt
        return real(cfg, out, **kw)

    monkeypatch.setattr(run_mod, "run", crash_third)
    small = {**TINY, "sweep.grid": {"seed": [0]}}
    with pytest.raises(KeyboardInterrupt):
        sweep_mod.run_sweep(Path("configs/sample_efficiency_quick.yaml"), tmp_path / "s", small,
                            progress=False)
    first = list(ran)
    ran.clear()
    monkeypatch.setattr(run_mod, "run", lambda cfg, out, **kw: ran.append(Path(out).name) or real(cfg, out, **kw))
    sweep_mod.run_sweep(Path("configs/sample_efficiency_quick.yaml"), tmp_path / "s", small, progress=False)
    assert ran == first[2:] + ["003_seed-0_curricula-demos_only_k-10"]
    assert len(ran) == 2


def test_bad_sweep_files_are_one_clear_error(tmp_path):
    f = tmp_path / "s.yaml"
    f.write_text("name: x\n")
    with pytest.raises(PbbError, match="`sweep:` section"):
        sweep_mod.load_sweep(f)
    f.write_text("name: x\nsweep:\n  points:\n    - {train.methd: full}\n")
    with pytest.raises(PbbError, match="point 000_methd-full: train.methd: unknown key"):
        sweep_mod.load_sweep(f)
    f.write_text("name: x\nsweep:\n  gird: {seed: [1]}\n")
    with pytest.raises(PbbError, match="gird"):
        sweep_mod.load_sweep(f)


def test_smoke_overlay_reaches_every_point_and_keeps_the_grid():
    _, _, points = sweep_mod.load_sweep(Path("configs/arithmetic_effect.yaml"), with_smoke({}))
    assert [p["config"].seed for p in points] == [0, 1, 2]
    for p in points:
        cfg = p["config"]
        assert (cfg.model, cfg.data.behaviours, cfg.train.max_steps) == ("tiny-random", 8, 2)
        assert cfg.curricula == ["proactive", "mixture", "stage1_only", "untuned"]


@pytest.mark.parametrize(("order", "expected"), [
    ("grid", [(0, "stage1_only"), (0, "proactive"), (1, "stage1_only"), (1, "proactive")]),
    ("points", [(0, "stage1_only"), (1, "stage1_only"), (0, "proactive"), (1, "proactive")]),
])
def test_the_sweep_order_runs_a_point_at_every_seed_before_the_next(tmp_path, order, expected):
    f = tmp_path / "s.yaml"
    f.write_text("name: x\nmodel: tiny-random\nsweep:\n  grid: {seed: [0, 1]}\n"
                 f"  order: {order}\n"
                 "  points: [{curricula: [stage1_only]}, {curricula: [proactive]}]\n")
    _, _, points = sweep_mod.load_sweep(f)
    assert [(p["config"].seed, *p["config"].curricula) for p in points] == expected
    assert len({p["name"] for p in points}) == 4


@pytest.mark.slow
def test_points_run_at_once_share_stage_one_through_the_lock(tmp_path):
    """--jobs 2: four points of one seed in separate processes, stage 1 trained by one of them
    while the others wait; the same numbers as one point after another. The store is another
    one (--stages-root, as `pbb claims --jobs` gives its claims' sweeps): every point's process
    trains and reads there, none in the sweep's own stages/."""
    import yaml

    from tests.conftest import run_cli

    raw = yaml.safe_load(Path("configs/sample_efficiency_quick.yaml").read_text())
    raw["sweep"]["grid"] = {"seed": [0]}
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(raw))
    sets = [a for k, v in TINY.items() for a in ("--set", f"{k}={json.dumps(v)}")]
    shared = ("--stages-root", str(tmp_path / "shared"))
    r = run_cli("sweep", str(path), "--out", str(tmp_path / "par"), "--jobs", "2", *shared, *sets)
    assert r.returncode == 0, r.stderr[-3000:]
    jobs = read_json(tmp_path / "par" / "jobs.json")
    assert len(jobs) == 4 and {j["exit_code"] for j in jobs.values()} == {0}
    assert len({j["slot"] for j in jobs.values()}) == 2  # two at a time
    logs = [(tmp_path / "par" / j["log"]).read_text() for j in jobs.values()]
    assert sum("stage1: training on" in log for log in logs) == 1  # trained once...
    assert sum("stage1: done earlier" in log for log in logs) == 3  # ...and reused by the rest
    assert not (tmp_path / "par" / "stages").exists()
    (stage1,) = (tmp_path / "shared").glob("stage1-*")
    steps = [json.loads(x)["step"] for x in (stage1 / "metrics.jsonl").read_text().splitlines()
             if "loss" in json.loads(x)]
    assert steps == sorted(set(steps))  # every step logged once: no second trainer

    sweep_mod.run_sweep(path, tmp_path / "seq", {k: v for k, v in TINY.items()}, progress=False)
    for p in read_json(tmp_path / "seq" / "sweep.json")["points"]:
        seq = read_json(tmp_path / "seq" / p["dir"] / "summary.json")["results"]
        par = read_json(tmp_path / "par" / p["dir"] / "summary.json")["results"]
        assert par == seq
    # run again: every point is done, nothing starts
    r = run_cli("sweep", str(path), "--out", str(tmp_path / "par"), "--jobs", "2", *shared, *sets)
    said = r.stdout + r.stderr
    assert r.returncode == 0 and "started" not in said and said.count("done earlier") == 4


def test_a_killed_job_releases_its_stage_lock_and_its_stage_is_not_taken_as_done(tmp_path):
    import signal
    import subprocess
    import sys
    import time

    from pbb.store import is_done, stage_lock

    stage = tmp_path / "stages" / "stage1-abc"
    holder = subprocess.Popen([sys.executable, "-c", (
        "import sys, time; from pbb.store import stage_lock; from pathlib import Path\n"
        f"s = Path({str(stage)!r}); lock = stage_lock(s); lock.acquire()\n"
        "s.mkdir(exist_ok=True); (s / 'metrics.jsonl').write_text('{}'); print('held', flush=True)\n"
        "time.sleep(60)")], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    lock = stage_lock(stage)
    from filelock import Timeout

    with pytest.raises(Timeout):  # held: a second job waits
        lock.acquire(timeout=0.5)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    t = time.time()
    lock.acquire(timeout=10)  # the kill released it
    assert time.time() - t < 10 and not is_done(stage)  # half-written: trained again, not reused
    lock.release()


@pytest.mark.slow
def test_slurm_executor_submits_one_job_per_point_through_submitit(tmp_path, monkeypatch):
    """The --executor slurm path end to end, with submitit's local executor standing in for a
    cluster (executors.SUBMITIT_CLUSTER): job ids and logs in the sweep, every point done, its
    stages in the store given (--stages-root), none in the sweep's own."""
    import yaml

    from pbb.experiments import executors

    pytest.importorskip("submitit")
    raw = yaml.safe_load(Path("configs/sample_efficiency_quick.yaml").read_text())
    raw["sweep"]["grid"] = {"seed": [0]}
    raw["sweep"]["points"] = raw["sweep"]["points"][:2]
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(raw))
    monkeypatch.setattr(executors, "SUBMITIT_CLUSTER", "local")
    sweep_mod.run_sweep(path, tmp_path / "s", {**TINY, "sweep.slurm.gpus_per_job": 0,
                                               "sweep.slurm.cpus_per_job": 1},
                        progress=False, executor="slurm", stages_root=tmp_path / "shared")
    jobs = read_json(tmp_path / "s" / "jobs.json")
    assert len(jobs) == 2 and {j["exit_code"] for j in jobs.values()} == {0}
    assert len({j["job_id"] for j in jobs.values()}) == 2 and {j["cluster"] for j in jobs.values()} == {"local"}
    for name, j in jobs.items():
        assert (tmp_path / "s" / j["log"]).is_file()
        assert (tmp_path / "s" / "runs" / name / "summary.json").is_file()
    assert (tmp_path / "s" / "sweep_summary.json").is_file()
    assert not (tmp_path / "s" / "stages").exists() and any((tmp_path / "shared").glob("stage1-*"))


# --- several points on one GPU: --jobs-per-device ---------------------------------------------


def _fake_points(n: int) -> list[dict]:
    from pbb.config import load_config

    cfg = load_config(Path("configs/quickstart.yaml"))
    return [{"name": f"p{i}/seed0", "config": cfg} for i in range(n)]


def _placed(monkeypatch, tmp_path, gpus: list[str], n_points: int, jobs: int, per_device,
            seconds: float = 1.0) -> dict:
    """run_local with a stand-in GPU list and points that print the CUDA_VISIBLE_DEVICES they
    were given, then sleep: jobs.json, each record with the GPU its log says it saw."""
    import sys

    from pbb.experiments import executors

    monkeypatch.setattr(executors, "_gpus", lambda: list(gpus))
    said = ("import os, time; print('saw', os.environ.get('CUDA_VISIBLE_DEVICES'), flush=True); "
            f"time.sleep({seconds})")
    monkeypatch.setattr(executors, "point_command",
                        lambda cfg_file, run_dir, stages: [sys.executable, "-c", said])
    executors.run_local(_fake_points(n_points), tmp_path, jobs, per_device)
    jobs_file = read_json(tmp_path / "jobs.json")
    for j in jobs_file.values():
        j["saw"] = (tmp_path / j["log"]).read_text().split()[1]
    return jobs_file


def test_points_run_at_once_get_the_sweeps_stage_store_or_the_one_given(monkeypatch, tmp_path):
    """Each point's process is told its stage store: the sweep's own `stages/`, or the store
    given (`--stages-root`, the claims' store under `pbb claims --jobs`)."""
    import sys

    from pbb.experiments import executors

    given = []
    monkeypatch.setattr(executors, "_gpus", lambda: [])
    monkeypatch.setattr(executors, "point_command", lambda cfg_file, run_dir, stages:
                        given.append(Path(stages)) or [sys.executable, "-c", "pass"])
    executors.run_local(_fake_points(2), tmp_path / "own", 2)
    executors.run_local(_fake_points(2), tmp_path / "other", 2, 1, tmp_path / "shared")
    assert given == [tmp_path / "own" / "stages"] * 2 + [tmp_path / "shared"] * 2


def _most_at_once(records, key=None) -> int:
    """The most records whose [started, ended) intervals overlap (of one key value, if given)."""
    spans = [(r["started"], r["ended"]) for r in records if key is None or key(r)]
    return max((sum(1 for s, e in spans if s <= t < e) for t, _ in spans), default=0)


@pytest.mark.parametrize("gpus,jobs,per_device,at_once", [
    (["3", "5"], 6, 2, 4),  # 2 GPUs x 2: four at once, two wait
    (["0", "1"], 3, 1, 2),  # the default: one job a GPU, the third point waits
    (["0", "1", "2", "3"], 2, 2, 2),  # fewer jobs than places: one GPU each, not two on one
])
def test_jobs_per_device_places_at_most_k_jobs_on_each_gpu(monkeypatch, tmp_path, capsys, gpus,
                                                           jobs, per_device, at_once):
    records = _placed(monkeypatch, tmp_path, gpus, 6 if jobs > 2 else 2, jobs, per_device)
    assert {r["exit_code"] for r in records.values()} == {0}
    for r in records.values():
        assert r["gpu"] in gpus and r["saw"] == r["gpu"]  # the job was given the GPU recorded
    for g in gpus:
        assert _most_at_once(records.values(), lambda r, g=g: r["gpu"] == g) <= per_device
    assert _most_at_once(records.values()) == at_once
    if jobs == 2:
        assert len({r["gpu"] for r in records.values()}) == 2  # spread over GPUs, one each
    said = " ".join(capsys.readouterr().out.split())
    if jobs > len(gpus) * per_device:
        assert (f"--jobs {jobs}: {len(gpus)} GPU(s) x {per_device} job(s) per GPU "
                f"(--jobs-per-device {per_device}) = {at_once} run at once") in said
    else:
        assert "wait for a place" not in said


def test_jobs_per_device_auto_fits_runs_to_each_gpus_free_memory(monkeypatch, tmp_path, capsys):
    from pbb.experiments import executors

    gib = executors.GIB
    monkeypatch.setattr(executors, "_free_memory", lambda: [(40 * gib, 80 * gib), (10 * gib, 80 * gib)])
    monkeypatch.setattr(executors, "run_memory_estimate", lambda cfg: (8 * gib, 0.0))
    assert executors.device_places(["0", "1"], "auto", _fake_points(2)) == [4, 1]  # 0.9 x free // 8
    records = _placed(monkeypatch, tmp_path, ["0", "1"], 7, 7, "auto", seconds=1.5)
    assert _most_at_once(records.values(), lambda r: r["gpu"] == "0") == 4
    assert _most_at_once(records.values(), lambda r: r["gpu"] == "1") == 1
    assert _most_at_once(records.values()) == 5
    said = " ".join(capsys.readouterr().out.split())
    assert "gpu 0: 40.0 of 80.0 GiB free, a run needs about 8.0 GiB: 4 job(s)" in said
    # vLLM's share of the whole GPU counts on top; a run that does not fit still gets one place
    monkeypatch.setattr(executors, "run_memory_estimate", lambda cfg: (8 * gib, 0.3))
    assert executors.device_places(["0", "1"], "auto", _fake_points(1)) == [1, 1]
    assert "(it may not fit)" in capsys.readouterr().out


def test_the_memory_estimate_follows_the_settings_that_change_it():
    from pbb.config import load_config
    from pbb.experiments import executors

    shape = {"params": 134_515_008, "hidden": 576, "layers": 30, "intermediate": 1536,
             "vocab": 49152, "kv": 192}  # the bundled model's

    def estimate(**sets):
        sets = {"train.max_batch_tokens": 1024, **sets}
        need, vllm = executors.run_memory_estimate(load_config(Path("configs/quickstart.yaml"), sets), shape)
        return need / executors.GIB, vllm

    full, vllm = estimate()
    assert 3 < full < 10 and vllm == 0  # 16 bytes a parameter (2 GiB) + activations + overhead
    assert estimate(**{"train.method": "lora"})[0] < full
    assert estimate(model_dtype="bf16")[0] < full
    assert estimate(**{"train.max_batch_tokens": 8192})[0] > full + 3
    from pbb.config import TrainConfig

    if "auto" in str(TrainConfig.model_fields["max_batch_tokens"].annotation):
        # auto: what a stage resolves it to on a GPU (a job there)
        from pbb.training.sft import max_batch_tokens

        resolved = max_batch_tokens("auto", "cuda")
        assert estimate(**{"train.max_batch_tokens": "auto"}) == estimate(**{"train.max_batch_tokens": resolved})
    assert estimate(**{"eval.backend": "vllm"})[1] == 0.85


def test_a_resumed_sweep_keeps_the_jobs_an_earlier_run_recorded(tmp_path):
    # the points a resumed sweep skips keep their records (their logs, the spans pbb claims
    # reads its wall clock from); a record that is not one is dropped, a broken file is none
    from pbb.experiments import executors
    from pbb.store import SweepStore

    sweep = SweepStore(tmp_path)
    earlier = {"000_seed-0": {"pid": 7, "started": 1.0, "ended": 2.0, "exit_code": 0}}
    (tmp_path / "jobs.json").write_text(json.dumps({**earlier, "junk": 3}))
    assert executors._LocalJobs(sweep, [], [], tmp_path / "stages").record == earlier
    (tmp_path / "jobs.json").write_text('{"000_seed-0": ')
    assert executors._LocalJobs(sweep, [], [], tmp_path / "stages").record == {}


STOPPED_SWEEP = """
import sys
from pathlib import Path
from pbb import clock
from pbb.config import load_config
from pbb.experiments import executors
clock.TICK, clock.PAUSE = 0.1, 1.0
executors._gpus = lambda: []
work = "import time\\nfor _ in range(20): time.sleep(0.1)"  # 2 s of work in short sleeps
executors.point_command = lambda cfg_file, run_dir, stages: [sys.executable, "-c", work]
cfg = load_config(Path("configs/quickstart.yaml"))
print("ready", flush=True)
executors.run_local([{"name": f"p{i}", "config": cfg} for i in range(2)], Path(sys.argv[1]), 2)
"""


@pytest.mark.skipif(not hasattr(signal, "SIGSTOP"), reason="no SIGSTOP on this platform")
def test_a_stopped_sweep_records_its_jobs_work_apart_from_the_stop(tmp_path):
    """A sweep stopped (kill -STOP of its process group) while its jobs run: jobs.json keeps the
    jobs' start and end, and their spans on the sweep's working timeline, which leave the stop
    out; the claims' wall clock adds those up, not the stop."""
    import os
    import subprocess
    import sys
    import time

    from pbb.experiments import claims as claims_mod
    from pbb.store import RunStore

    proc = subprocess.Popen([sys.executable, "-c", STOPPED_SWEEP, str(tmp_path)],
                            stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(1.0)  # the jobs are under way
        os.killpg(proc.pid, signal.SIGSTOP)
        time.sleep(3.0)
        os.killpg(proc.pid, signal.SIGCONT)
        assert proc.wait(timeout=60) == 0
    finally:  # nothing left stopped or running, whatever failed
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGCONT)
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    jobs = read_json(tmp_path / "jobs.json")
    assert set(jobs) == {"p0", "p1"}
    for j in jobs.values():
        assert j["ended"] - j["started"] >= 4.5  # the stop fell inside each job's span
        assert 1.5 <= j["end_work"] - j["start_work"] <= 3.5  # ~2 s of work, the stop left out
    pts = [claims_mod.Point(None, {}, RunStore(tmp_path / "runs" / n)) for n in jobs]
    seconds, most, counted = claims_mod.wall(tmp_path, pts)
    assert (most, counted) == (2, 2) and seconds <= 3.5


def test_jobs_per_device_without_gpus_runs_jobs_on_the_cpu(monkeypatch, tmp_path, capsys):
    records = _placed(monkeypatch, tmp_path, [], 2, 2, 3, seconds=0.2)
    assert [r["gpu"] for r in records.values()] == [None, None]
    assert "no GPU here: --jobs-per-device 3 does nothing" in " ".join(capsys.readouterr().out.split())


def test_jobs_at_once_share_the_cores_as_threads_unless_the_user_set_them(monkeypatch,
                                                                          tmp_path):
    """Each local job's torch gets its share of the cores (not a thread per core each, N jobs
    fighting over them); a user's OMP_NUM_THREADS stands."""
    import os
    import sys

    from pbb.experiments import executors

    for name in executors.THREAD_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    assert executors.job_threads(2) == {**{v: "4" for v in executors.THREAD_VARIABLES},
                                        "PBB_JOB_THREADS": "4"}
    assert executors.job_threads(3)["OMP_NUM_THREADS"] == "2"
    assert executors.job_threads(20)["OMP_NUM_THREADS"] == "1"  # never 0
    monkeypatch.setattr(executors, "_gpus", lambda: [])
    said = "import os; print('saw', os.environ.get('OMP_NUM_THREADS'), flush=True)"
    monkeypatch.setattr(executors, "point_command",
                        lambda cfg_file, run_dir, stages: [sys.executable, "-c", said])

    def seen(out):
        executors.run_local(_fake_points(2), out, 2)
        return {(out / j["log"]).read_text().split()[1]
                for j in read_json(out / "jobs.json").values()}

    assert seen(tmp_path / "a") == {"4"}  # 8 cores, 2 jobs at once
    executors.run_local(_fake_points(2), tmp_path / "c", 6)  # --jobs 6, but 2 points: 2 at once
    assert {(tmp_path / "c" / j["log"]).read_text().split()[1]
            for j in read_json(tmp_path / "c" / "jobs.json").values()} == {"4"}
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert executors.job_threads(2) == {} and seen(tmp_path / "b") == {"3"}
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.setenv("MKL_NUM_THREADS", "1")  # any of them set: the user's stands
    assert executors.job_threads(2) == {}


@pytest.mark.slow
def test_the_last_jobs_of_a_sweep_take_the_cores_of_those_that_ended(monkeypatch, tmp_path):
    """Two jobs at once on 2 cores start on a thread each; once the queue is empty and one
    has ended, the one still running follows its share up to both (the sweep writes it, the
    job reads it between steps). A share file a killed sweep left is not obeyed; the file is
    gone when the sweep ends; GPU jobs and a user's thread setting follow nothing."""
    import os
    import sys

    from pbb.experiments import executors

    for name in executors.THREAD_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)
    monkeypatch.setattr(executors, "_gpus", lambda: [])
    # each job: note its threads until its time is up, or (p1) until its share changed
    job = ("import sys, time, torch; from pbb import dist; dist.FOLLOW_EVERY = 0.05; seen = []\n"
           "end = time.time() + float(sys.argv[1])\n"
           "while time.time() < end and dist.share_changes() < int(sys.argv[2]):\n"
           "    dist.follow_share(); seen.append(torch.get_num_threads()); time.sleep(0.05)\n"
           "print('saw', *sorted(set(seen)), 'changes', dist.share_changes(), flush=True)")
    until = {"p0": ("1", "9"), "p1": ("120", "1"), "p2": ("1", "9")}  # p1 outlives the others
    monkeypatch.setattr(executors, "point_command", lambda cfg_file, run_dir, stages: [
        sys.executable, "-c", job, *until[Path(run_dir).parent.name]])

    def saw(out: Path) -> dict[str, list[str]]:
        return {name.split("/")[0]: (out / j["log"]).read_text().split()
                for name, j in read_json(out / "jobs.json").items()}

    tmp_path.mkdir(exist_ok=True)
    (tmp_path / executors.SHARE_FILE).write_text("2\n")  # left by a killed sweep
    executors.run_local(_fake_points(3), tmp_path, 2)
    jobs = saw(tmp_path)
    assert jobs["p0"] == jobs["p2"] == ["saw", "1", "changes", "0"]  # 2 running all along
    assert jobs["p1"] == ["saw", "1", "2", "changes", "1"]  # alone at the end: every core
    assert not (tmp_path / executors.SHARE_FILE).exists()
    until["p1"] = ("10", "1")  # from here on no share changes: p1 outlives the others anyway
    monkeypatch.setattr(executors, "_gpus", lambda: ["0", "1"])  # GPU jobs: no share to follow
    executors.run_local(_fake_points(3), tmp_path / "gpu", 2)
    assert all(words[-2:] == ["changes", "0"] for words in saw(tmp_path / "gpu").values())
    monkeypatch.setattr(executors, "_gpus", lambda: [])
    monkeypatch.setenv("OMP_NUM_THREADS", "3")  # the user's threads stand: no share to follow
    executors.run_local(_fake_points(3), tmp_path / "b", 2)
    assert all(words[-2:] == ["changes", "0"] for words in saw(tmp_path / "b").values())


def test_each_job_that_finishes_is_handed_on_once_its_end_is_recorded(monkeypatch, tmp_path):
    """``after_point`` (``pbb claims`` packs the claim's archive there) is called for each point
    that exited 0, when it ends (not once the sweep ends), with its span already in jobs.json;
    a failed point is not handed on."""
    import os
    import sys

    from pbb.experiments import executors

    monkeypatch.setattr(executors, "_gpus", lambda: [])
    codes = {"p0": "0", "p1": "3", "p2": "0"}
    monkeypatch.setattr(executors, "point_command", lambda cfg_file, run_dir, stages: [
        sys.executable, "-c", "import sys; sys.exit(int(sys.argv[1]))",
        codes[Path(run_dir).parent.name]])
    seen = []

    def after(name):
        jobs = read_json(tmp_path / "jobs.json")
        seen.append((name, jobs[name]["exit_code"], "ended" in jobs[name],
                     sorted(n for n, j in jobs.items() if j["exit_code"] is None)))

    with pytest.raises(PbbError, match="1 sweep point"):
        executors.run_local(_fake_points(3), tmp_path, 1, after_point=after)
    assert seen == [("p0/seed0", 0, True, []), ("p2/seed0", 0, True, [])]
    seen.clear()
    # two at once: the one that ends first is handed on while the other runs
    monkeypatch.setattr(executors, "point_command", lambda cfg_file, run_dir, stages: [
        sys.executable, "-c", "import sys, time; time.sleep(float(sys.argv[1]))",
        {"p0": "0", "p1": "3"}[Path(run_dir).parent.name]])
    executors.run_local(_fake_points(2), tmp_path / "b", 2, after_point=lambda name: seen.append(
        (name, [n for n, j in read_json(tmp_path / "b" / "jobs.json").items()
                if j["exit_code"] is None])))
    assert seen == [("p0/seed0", ["p1/seed0"]), ("p1/seed0", [])]

    def broken(name):  # an error there stops the sweep, and no point is left running
        raise RuntimeError("no room for the archive")

    monkeypatch.setattr(executors, "point_command", lambda cfg_file, run_dir, stages: [
        sys.executable, "-c", "import sys, time; time.sleep(float(sys.argv[1]))",
        {"p0": "0", "p1": "300"}[Path(run_dir).parent.name]])
    with pytest.raises(RuntimeError, match="no room"):
        executors.run_local(_fake_points(2), tmp_path / "c", 2, after_point=broken)
    left = read_json(tmp_path / "c" / "jobs.json")["p1/seed0"]["pid"]
    with pytest.raises(ProcessLookupError):
        os.kill(left, 0)


def test_jobs_per_device_is_checked_before_any_work(tmp_path):
    from pbb.experiments.executors import parse_jobs_per_device
    from tests.conftest import run_cli

    assert parse_jobs_per_device("auto") == "auto" and parse_jobs_per_device(" 3 ") == 3
    for bad in ("0", "-1", "two", "1.5"):
        with pytest.raises(PbbError, match="--jobs-per-device"):
            parse_jobs_per_device(bad)
    r = run_cli("sweep", "configs/sample_efficiency_quick.yaml", "--smoke", "--out",
                str(tmp_path / "s"), "--jobs", "2", "--jobs-per-device", "0")
    assert r.returncode != 0 and "--jobs-per-device '0': expected a whole number >= 1, or auto" in r.stderr + r.stdout
    r = run_cli("sweep", "configs/sample_efficiency_quick.yaml", "--smoke", "--out",
                str(tmp_path / "s"), "--executor", "slurm", "--jobs-per-device", "2")
    assert r.returncode != 0 and "--jobs-per-device is for --executor local" in r.stderr + r.stdout
    assert not (tmp_path / "s").exists()


@pytest.mark.slow
def test_a_sweep_puts_two_points_on_each_of_two_gpus(monkeypatch, tmp_path):
    """The whole path: `run_sweep(jobs=4, jobs_per_device=2)` with two stand-in GPUs; four
    points of one seed, each told its GPU, stage 1 still trained once."""
    import yaml

    from pbb.experiments import executors

    monkeypatch.setattr(executors, "_gpus", lambda: ["0", "1"])
    raw = yaml.safe_load(Path("configs/sample_efficiency_quick.yaml").read_text())
    raw["sweep"]["grid"] = {"seed": [0]}
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(raw))
    sweep_mod.run_sweep(path, tmp_path / "s", dict(TINY), progress=False, jobs=4, jobs_per_device=2)
    jobs = read_json(tmp_path / "s" / "jobs.json")
    assert len(jobs) == 4 and {j["exit_code"] for j in jobs.values()} == {0}
    assert sorted(j["gpu"] for j in jobs.values()) == ["0", "0", "1", "1"]
    logs = [(tmp_path / "s" / j["log"]).read_text() for j in jobs.values()]
    assert sum("stage1: training on" in log for log in logs) == 1
    assert (tmp_path / "s" / "sweep_summary.json").is_file()


def test_a_different_sweep_in_the_folder_is_named_by_its_first_difference():
    from pbb.experiments.sweep import _first_difference

    old = {"base": {"eval": {"max_new_tokens": {"cot": 64}}}, "points": [{"name": "a"}]}
    new = {"base": {"eval": {"max_new_tokens": {"cot": 8}}}, "points": [{"name": "a"}]}
    assert _first_difference(old, new) == "base.eval.max_new_tokens.cot: 64 here, 8 now"
    assert _first_difference({"points": [1, 2]}, {"points": [1, 3]}) == "points[1]: 2 here, 3 now"
    assert _first_difference({"points": [1]}, {"points": [1, 3]}) == "points: [1] here, [1, 3] now"


def test_a_sweeps_points_not_started_may_be_planned_anew(tmp_path):
    """A sweep's points that no run has started may be split or replaced (a claim's curricula
    in points one sitting can finish); a point started or finished must stay in the plan."""
    from pbb.store import SweepStore

    config, out = Path("configs/claims/ciphers_robustness.yaml"), tmp_path / "s"
    sweep = SweepStore(out)

    def plan(points: list) -> tuple[dict, list]:
        raw, spec, pts = sweep_mod.load_sweep(config, {"sweep.grid.seed": [0],
                                                       "sweep.points": points})
        return sweep_mod.sweep_record(raw, spec, pts), pts

    def record(points: list) -> None:
        sweep_mod._record_sweep(sweep, *plan(points), "use another --out")

    stage1, rest = {"curricula": ["stage1"]}, {"curricula": ["instruction", "skewed_demos"]}
    record([stage1, {"curricula": ["instruction", "skewed_demos", "both"]}])
    (out / "runs" / "000_seed-0_curricula-stage1").mkdir(parents=True)  # started
    old = read_json(out / "sweep.json")
    assert sweep_mod.started(out, old) == {"runs/000_seed-0_curricula-stage1"}
    assert not sweep_mod.of_plan(old, plan([stage1, rest, {"curricula": ["both"]}])[0])
    record([stage1, rest, {"curricula": ["both"]}])  # the unstarted point split in two
    assert [p["name"] for p in read_json(out / "sweep.json")["points"]] == [
        "000_seed-0_curricula-stage1", "001_seed-0_curricula-instruction+skewed_demos",
        "002_seed-0_curricula-both"]
    (out / "runs" / "001_seed-0_curricula-instruction+skewed_demos").mkdir()
    with pytest.raises(PbbError, match="holds a different sweep"):  # a started point dropped
        record([stage1, {"curricula": ["instruction", "skewed_demos", "both"]}])
    assert len(read_json(out / "sweep.json")["points"]) == 3


@pytest.mark.slow
def test_a_sweep_grows_by_more_seeds_and_runs_only_the_new_points(tmp_path, monkeypatch, capfd):
    """More seeds in the grid of a sweep already run: the new points run, the old ones are kept
    as they were (their samples untouched); a change elsewhere is still refused."""
    real = run_mod.run
    ran = []
    monkeypatch.setattr(run_mod, "run",
                        lambda cfg, out, **kw: ran.append(Path(out).name) or real(cfg, out, **kw))
    config = Path("configs/claims/stage2_alone.yaml")
    out = tmp_path / "s"
    sweep_mod.run_sweep(config, out, {**TINY, "sweep.grid": {"seed": [0]}}, progress=False)
    samples = sorted((out / "runs").rglob("samples.jsonl"))
    before = {p: p.read_bytes() for p in samples}
    ran.clear()
    sweep_mod.run_sweep(config, out, {**TINY, "sweep.grid": {"seed": [0, 1]}}, progress=False)
    assert ran == ["001_seed-1"]
    assert all(p.read_bytes() == b for p, b in before.items())
    assert [p["name"] for p in read_json(out / "sweep.json")["points"]] == ["000_seed-0",
                                                                           "001_seed-1"]
    assert read_json(out / "sweep_summary.json")["points"] == 2
    capfd.readouterr()  # a selected pass (pbb claims' prerequisite first) says its points only
    sweep_mod.run_sweep(config, out, {**TINY, "sweep.grid": {"seed": [0, 1]}}, progress=False,
                        select=lambda cfg: cfg.seed == 1)
    said = capfd.readouterr().err
    assert ran == ["001_seed-1"] and "point 2/2 001_seed-1: done earlier" in " ".join(said.split())
    assert "000_seed-0" not in said
    with pytest.raises(PbbError, match="holds a different sweep.*train.learning_rate"):
        sweep_mod.run_sweep(config, out, {**TINY, "sweep.grid": {"seed": [0, 1, 2]},
                                          "train.learning_rate": 0.5}, progress=False)
    with pytest.raises(PbbError, match="holds a different sweep"):  # an old point dropped
        sweep_mod.run_sweep(config, out, {**TINY, "sweep.grid": {"seed": [1]}}, progress=False)
    # a point more at each seed moves seed 1's place (grid order): its name and runs stay
    ran.clear()
    more = {**TINY, "sweep.grid": {"seed": [0, 1]},
            "sweep.points": [{}, {"curricula": ["stage2_only"]}]}
    sweep_mod.run_sweep(config, out, more, progress=False)
    assert ran == ["001_seed-0_curricula-stage2_only", "003_seed-1_curricula-stage2_only"]
    assert [p["name"] for p in read_json(out / "sweep.json")["points"]] == [
        "000_seed-0", "001_seed-0_curricula-stage2_only", "001_seed-1",
        "003_seed-1_curricula-stage2_only"]
    assert all(p.read_bytes() == b for p, b in before.items())


@pytest.mark.slow
def test_a_sweep_given_another_stage_store_trains_nothing_that_store_holds(swept, tmp_path,
                                                                             monkeypatch):
    # `pbb sweep --stages-root`: a variant of a sweep (here the same points, into another folder)
    # takes the stages and evaluations the other store holds, trains and evaluates none again,
    # and keeps no stages of its own
    out, summary, _ = swept
    trained, generated = [], []
    monkeypatch.setattr(run_mod, "train_sft", lambda rows, **kw: trained.append(kw))
    monkeypatch.setattr(run_mod, "evaluate", lambda *a, **kw: generated.append(kw))
    second = sweep_mod.run_sweep(Path("configs/sample_efficiency_quick.yaml"), tmp_path / "v",
                                 TINY, progress=False, stages_root=out / "stages")
    assert trained == [] and generated == []
    assert not (tmp_path / "v" / "stages").exists()
    assert second == summary  # the same numbers, from the same samples


@pytest.mark.slow
def test_a_second_process_in_a_working_sweep_folder_stops_before_its_points(swept, monkeypatch):
    from filelock import FileLock

    out, summary, _ = swept
    started = []
    monkeypatch.setattr(run_mod, "run", lambda *a, **k: started.append(a))
    written = {f: (out / f).stat().st_mtime_ns for f in ("sweep_summary.json", "report.md")}
    with FileLock(str(out / ".lock")), \
            pytest.raises(PbbError, match=r"another pbb process is working in this sweep folder"):
        sweep_mod.run_sweep(Path("configs/sample_efficiency_quick.yaml"), out, TINY,
                            progress=False)
    assert not started  # no point run, no report rewritten
    assert written == {f: (out / f).stat().st_mtime_ns for f in written}


def test_a_sweep_grown_by_a_seed_keeps_its_points_names_and_runs(tmp_path):
    """``order: points`` runs each point at every seed in turn, so a third seed moves the
    second point's places: the points the folder has keep their names (their finished runs
    stay theirs, done), the new ones are named by their place, and the grown plan is accepted."""
    from pbb.config import dump_config
    from pbb.experiments.plan import plan_points
    from pbb.store import RunStore, SweepStore

    config, out = Path("configs/claims/ciphers_robustness.yaml"), tmp_path / "s"
    sweep = SweepStore(out)

    def plan(seeds: list, earlier: dict | None = None) -> tuple[dict, list]:
        raw, spec, pts = sweep_mod.load_sweep(config, {"sweep.grid.seed": seeds}, earlier=earlier)
        return sweep_mod.sweep_record(raw, spec, pts), pts

    sweep_mod._record_sweep(sweep, *plan([0, 1]), "use another --out")
    old = read_json(sweep.record)
    for p in plan([0, 1])[1]:  # every point finished
        run = RunStore(sweep.run_dir(p["name"]))
        run.root.mkdir(parents=True)
        run.config.write_text(dump_config(p["config"]))
        run.summary.write_text("{}")
    fresh = plan([0, 1, 2])[1]
    moved = [p for p in fresh if p["overrides"] in [q["overrides"] for q in old["points"]]
             and p["name"] not in [q["name"] for q in old["points"]]]
    assert moved and not any(sweep_mod.done(sweep, p) for p in moved)  # what naming by place did

    record, grown = plan([0, 1, 2], earlier=old)
    by_overrides = {json.dumps(p["overrides"], sort_keys=True): p for p in grown}
    for p in old["points"]:
        kept = by_overrides[json.dumps(p["overrides"], sort_keys=True)]
        assert kept["name"] == p["name"] and kept["config"].name == f"{old['name']}/{p['name']}"
        assert sweep_mod.done(sweep, kept)
    new = [p for p in grown if p["overrides"]["seed"] == 2]
    assert [p["name"][:3] for p in new] == ["002", "005", "008"]  # their places in the plan
    assert not any(sweep_mod.done(sweep, p) for p in new)
    assert len({p["name"] for p in grown}) == 9
    assert sweep_mod.of_plan(old, plan([0, 1, 2])[0], sweep_mod.started(out, old))
    sweep_mod._record_sweep(sweep, record, grown, "use another --out")
    assert read_json(sweep.record) == record
    planned = plan_points(config, out, {"sweep.grid.seed": [0, 1, 2]})
    assert sum("done earlier" in t for t in planned.texts) == 6 and planned.points == 9


def test_two_points_of_the_same_overrides_are_refused(tmp_path):
    import yaml

    raw = yaml.safe_load(Path("configs/sample_efficiency_quick.yaml").read_text())
    raw["sweep"]["points"] = [{"curricula": ["proactive"]}, {"curricula": ["proactive"]}]
    raw["sweep"]["grid"] = {}
    path = tmp_path / "twins.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(PbbError, match="twins.yaml: two points have the same overrides"):
        sweep_mod.load_sweep(path)
