"""The key of a kept evaluation (pbb.evaluation.reuse): it changes with everything a sample
depends on besides the model, and with nothing else, so a run takes another run's samples only
where it would have written the same ones. (That a run takes them, byte for byte, and the
plan says so: tests/test_run.py, tests/test_plan.py.)"""

import dataclasses

import pytest

from pbb import data
from pbb.config import load_config
from pbb.evaluation import reuse


@pytest.fixture(scope="module")
def ds():
    return data.generate("arithmetic", behaviours=6, demos=2, test_inputs=2, eval_fraction=0.5,
                         seed=3, progress=False)


def key(ds, mode="cot", device="cpu", **overrides):
    cfg = load_config("configs/quickstart.yaml", overrides)
    return reuse.eval_key(cfg, ds, mode, cfg.eval.max_train_behaviours, device)


@pytest.mark.parametrize("override", [
    {"eval.max_new_tokens.cot": 7}, {"eval.batch_size": 5}, {"eval.temperature": 0.5},
    {"eval.precision": "bf16"}, {"eval.generator": "static"}, {"eval.max_test_inputs": 1},
    {"eval.max_train_behaviours": 1}, {"data.instruction_format": "nl"},
    {"chat.system_prompt": "Be brief."}, {"model_dtype": "bf16"},
])
def test_every_setting_a_sample_depends_on_changes_the_key(ds, override):
    assert key(ds, **override) != key(ds)


def test_the_mode_device_processes_and_data_change_the_key(ds, monkeypatch):
    assert key(ds, mode="direct") != key(ds)
    assert key(ds, device="cuda") != key(ds)
    other_answer = dataclasses.replace(ds.demonstrations[-1], output="12345")
    assert key(dataclasses.replace(ds, demonstrations=[*ds.demonstrations[:-1],
                                                       other_answer])) != key(ds)
    renamed = dataclasses.replace(ds.behaviours[0], instruction=ds.behaviours[0].instruction + " ")
    assert key(dataclasses.replace(ds, behaviours=[renamed, *ds.behaviours[1:]])) != key(ds)
    before = key(ds)
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert key(ds) != before


def test_a_changed_prompt_template_changes_the_key(ds, monkeypatch):
    before = key(ds)
    real = reuse.build_queries
    monkeypatch.setattr(reuse, "build_queries", lambda *a, **k: [
        {**q, "prompt": q["prompt"] + "\n"} for q in real(*a, **k)])
    assert key(ds) != before


@pytest.mark.parametrize("override", [
    {"name": "another"}, {"eval.modes": ["cot"]}, {"eval.bootstrap": 200},
    {"eval.max_new_tokens.direct": 7}, {"curricula": ["proactive"]},
])
def test_settings_that_change_no_sample_keep_the_key(ds, override):
    assert key(ds, **override) == key(ds)


def test_a_cap_above_what_there_is_asks_the_same_queries_and_keeps_the_key(ds):
    # 3 train behaviours: a cap of 3 or of 40 evaluates the same ones
    assert len(ds.split("train")) == 3
    assert key(ds, **{"eval.max_train_behaviours": 3}) == \
        key(ds, **{"eval.max_train_behaviours": 40}) != key(ds, **{"eval.max_train_behaviours": 2})
