"""The Python API (``pbb.__all__``): ``import pbb`` stays light, each call does what its command
does, and ``examples/api.py`` runs as written and prints what the run's summary holds."""

import importlib
import json
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

import pbb
from pbb import api, data
from pbb.config import RunConfig
from pbb.errors import PbbError
from pbb.jsonio import read_json, read_jsonl
from pbb.store import RunStore
from tests.conftest import loaded_in_fresh_process

ROOT = Path(__file__).resolve().parent.parent


def test_import_pbb_loads_neither_torch_nor_transformers():
    assert loaded_in_fresh_process("import pbb") == []
    # nor does making a data set through the API
    assert loaded_in_fresh_process("import pbb\npbb.make_data('arithmetic', behaviours=4)") == []


def test_every_api_name_is_the_api_function_even_after_its_old_module_name_is_imported():
    assert pbb.__all__ == api.__all__
    for name in pbb.__all__:
        assert getattr(pbb, name) is getattr(api, name) and callable(getattr(pbb, name))
        assert name in dir(pbb)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        old = importlib.import_module("pbb.run")  # the flat layout's module name still imports
    assert old.__name__ == "pbb.experiments.run"
    assert pbb.run is api.run
    with pytest.raises(AttributeError):
        pbb.no_such_function  # noqa: B018


def test_make_data_is_data_generate_with_the_domain_knobs_as_keywords(tmp_path):
    ds = pbb.make_data("arithmetic", behaviours=6, demos=2, test_inputs=1, seed=3,
                       max_statements=2, out=tmp_path / "d")
    same = data.generate("arithmetic", behaviours=6, demos=2, test_inputs=1, eval_fraction=0.5,
                         seed=3, options={"max_statements": 2}, progress=False)
    assert [b.to_record() for b in ds.behaviours] == [b.to_record() for b in same.behaviours]
    assert ds.domain_config.max_statements == 2
    loaded = pbb.load_data(tmp_path / "d")
    assert [d.to_record() for d in loaded.demonstrations] == \
        [d.to_record() for d in same.demonstrations]
    with pytest.raises(PbbError, match="holds a data folder already"):
        pbb.make_data("arithmetic", behaviours=6, out=tmp_path / "d")
    with pytest.raises(PbbError, match="max_statements"):
        pbb.make_data("arithmetic", behaviours=6, max_statements=99)


def test_load_config_takes_a_path_a_mapping_or_a_config_with_overrides_and_smoke():
    from_file = pbb.load_config("configs/quickstart.yaml", {"train.epochs": 2})
    assert from_file.name == "quickstart" and from_file.train.epochs == 2
    from_dict = pbb.load_config({"model": "tiny-random", "train": {"epochs": 5}},
                                {"eval.modes": ["cot"]})
    assert (from_dict.model, from_dict.train.epochs, from_dict.eval.modes) == \
        ("tiny-random", 5, ["cot"])
    again = pbb.load_config(from_dict, {"seed": 4})
    assert isinstance(again, RunConfig) and again.train.epochs == 5 and again.seed == 4
    smoke = pbb.load_config({"model": "smollm2-135m-instruct", "train": {"epochs": 5}},
                            smoke=True)
    assert smoke.model == "tiny-random" and smoke.train.max_steps == 2 and smoke.train.epochs == 5
    assert pbb.load_config() == RunConfig()
    with pytest.raises(PbbError, match="trian: unknown key"):
        pbb.load_config({"trian": {}})
    with pytest.raises(PbbError, match=r"a sweep config .* run it with `pbb sweep configs/claims/"):
        pbb.load_config("configs/claims/cot_vs_direct.yaml")


def test_build_stages_gives_the_rows_a_curriculum_trains(tmp_path):
    from pbb.rows.curricula import build

    ds = pbb.make_data("arithmetic", behaviours=6, demos=2, test_inputs=1, out=tmp_path / "d")
    stages = pbb.build_stages("proactive", tmp_path / "d")
    assert [s.name for s in stages] == ["stage1", "stage2"]
    assert [s.rows for s in stages] == [s.rows for s in build("proactive", ds, RunConfig().curriculum)]
    more = pbb.build_stages("proactive", ds, {"curriculum": {"eval_declarative_repeats": 3}})
    assert len(more[1].rows) == 3 * len(ds.split("eval"))
    assert pbb.build_stages("untuned", ds) == []
    with pytest.raises(PbbError, match="unknown curriculum 'nope'"):
        pbb.build_stages("nope", ds)


def test_plan_takes_the_data_set_run_takes(tmp_path):
    """``pbb.plan(..., data=ds)`` plans what ``pbb.run(..., data=ds)`` trains: that data
    set's rows, not data generated from the config; the docstring's example, at toy size."""
    ds = pbb.make_data("arithmetic", behaviours=6, demos=2, test_inputs=1, out=tmp_path / "d")
    config = {"model": "tiny-random", "curricula": ["proactive", "stage1_only"]}
    planned = pbb.plan(config, tmp_path / "run", data=ds)
    built = pbb.build_stages("proactive", ds)
    assert [(s.stage, s.rows) for s in planned.stages if s.curriculum == "proactive"] == \
        [(s.name, len(s.rows)) for s in built]
    assert not (tmp_path / "run").exists()  # a plan writes nothing
    with pytest.raises(PbbError, match="never saved"):
        pbb.plan(config, tmp_path / "run", data=pbb.make_data("arithmetic", behaviours=4))


def test_run_refuses_a_data_set_that_was_never_saved_before_any_work(tmp_path):
    ds = pbb.make_data("arithmetic", behaviours=4, demos=1, test_inputs=1)
    with pytest.raises(PbbError, match="never saved"):
        pbb.run({"model": "tiny-random"}, tmp_path / "run", data=ds)
    assert not (tmp_path / "run").exists()


# --- the example, and what evaluate and score make of its run -------------------------------
EXAMPLE_LINE = re.compile(r"^\s*(\S+)\s+(\S+)\s+(eval|train)\s+([\d.]+)%$")


@pytest.fixture(scope="module")
def example(tmp_path_factory):
    """examples/api.py run as a user runs it, into a folder of the test's, with the pbb cache
    of a folder of its own (the models linked in) so that the rates it records are seen."""
    from pbb.models import cache_dir

    tmp = tmp_path_factory.mktemp("example")
    cache = tmp / "cache"
    cache.mkdir()
    (cache / "models").symlink_to(cache_dir() / "models")
    r = subprocess.run([sys.executable, str(ROOT / "examples" / "api.py"), str(tmp / "out")],
                       capture_output=True, text=True, cwd=tmp, timeout=900,
                       env={**os.environ, "PBB_CACHE": str(cache),
                            "PBB_RATES": str(cache / "rates.json")})
    assert r.returncode == 0, r.stderr[-3000:]
    return tmp / "out", r.stdout, cache


@pytest.mark.slow
def test_the_example_is_short_and_prints_the_summarys_accuracies(example):
    out, stdout, cache = example
    assert len((ROOT / "examples" / "api.py").read_text().splitlines()) <= 15
    printed = [m.groups() for m in map(EXAMPLE_LINE.match, stdout.splitlines()) if m]
    summary = read_json(RunStore(out / "run").summary)
    assert printed == [(r["curriculum"], r["mode"], r["split"], f"{100 * r['accuracy']:.1f}")
                       for r in summary["results"]]
    assert {(c, s) for c, _, s, _ in printed} == {("proactive", "eval"), ("proactive", "train"),
                                                 ("untuned", "eval")}
    recorded = json.loads((cache / "rates.json").read_text())
    assert set(recorded["tiny-random on cpu"]) >= {"sft_tokens_per_second",
                                                   "completions_per_second"}


@pytest.mark.slow
def test_evaluate_a_stage_model_gives_the_runs_own_samples(example, tmp_path):
    out, _, _ = example
    run = RunStore(out / "run")
    final = out / "run" / read_json(run.curricula)["proactive"][-1]["dir"] / "model"
    summary = pbb.evaluate(final, out / "data", tmp_path / "eval", curriculum="proactive",
                           config=run.config, progress=False)
    mine = RunStore(tmp_path / "eval")
    assert read_jsonl(mine.samples("proactive", "direct")) == \
        read_jsonl(run.samples("proactive", "direct"))
    ran = read_json(run.summary)
    assert summary["results"] == [r for r in ran["results"] if r["curriculum"] == "proactive"]
    assert summary["evaluated_model"] == str(final) and summary["model"] == str(final.resolve())


@pytest.mark.slow
def test_score_the_runs_own_completions_gives_its_accuracies(example, tmp_path):
    from pbb.interop.export import eval_queries, open_source

    out, _, _ = example
    run = RunStore(out / "run")
    cfg, ds = open_source(run.root)
    answered = {(s["behaviour_id"], s["input"]): s["completion"]
                for s in read_jsonl(run.samples("untuned", "direct"))}
    lines = [{"custom_id": qid, "completion": answered[q["behaviour_id"], q["input"]]}
             for qid, q in eval_queries(cfg, ds, "direct", trained=False).items()]
    completions = tmp_path / "completions.jsonl"
    completions.write_text("".join(json.dumps(x) + "\n" for x in lines))
    summary = pbb.score(run.root, completions, tmp_path / "scored", curriculum="untuned")
    ran = read_json(run.summary)
    assert summary["results"] == [r for r in ran["results"] if r["curriculum"] == "untuned"]
    assert summary["scored_from"] == str(completions)
