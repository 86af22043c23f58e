"""The record types: they accept what pbb writes, refuse what it must not, and the shipped JSON
Schema of summary.json is the one generated from them."""

import copy
import importlib.util
from pathlib import Path

import pytest

from pbb.errors import PbbError
from pbb.records import Sample, StageRecord, Summary, check, summary_schema

ROOT = Path(__file__).resolve().parent.parent

SUMMARY = {
    "name": "q", "model": "tiny-random", "domain": "arithmetic", "seed": 0,
    "data": {"path": "/d", "domain": "arithmetic", "counts": {"behaviours": 4}, "seed": 0,
             "sha256": {"behaviours.jsonl": "ab"}},
    "results": [{"curriculum": "proactive", "mode": "cot", "split": "eval", "accuracy": 0.5,
                 "ci_low": 0.1, "ci_high": 0.9, "n_behaviours": 2, "n_samples": 4,
                 "recall_exact": 0.5}],
    "comparisons": [{"curriculum": "proactive", "control": "stage1_only", "meaning": "m",
                     "mode": "cot", "split": "eval", "difference": 0.25, "ci_low": 0.0,
                     "ci_high": 0.5, "n_behaviours": 2}],
    "stages": {"proactive": [{"stage": "stage1", "dir": "stages/stage1-x", "rows": 8,
                              "seconds": 1.0, "resumed": False, "processes": 1}]},
    "timing": {"data": 0.1},
}


def test_a_summary_as_pbb_writes_it_passes():
    assert check(Summary, SUMMARY, "summary.json") is SUMMARY


@pytest.mark.parametrize("change, field", [
    (lambda s: s.pop("results"), "results"),
    (lambda s: s.update(seed=None), "seed"),
    (lambda s: s["results"][0].update(split="test"), "results.0.split"),
    (lambda s: s["comparisons"][0].pop("control"), "comparisons.0.control"),
    (lambda s: s["stages"]["proactive"][0].pop("dir"), "stages.proactive.0.dir"),
    (lambda s: s["data"].update(sha="x"), "data.sha"),
])
def test_a_summary_that_drifted_is_one_line_naming_the_field(change, field):
    bad = copy.deepcopy(SUMMARY)
    change(bad)
    with pytest.raises(PbbError, match=rf"^run/summary.json: Summary record, field {field}: "):
        check(Summary, bad, "run/summary.json")


def test_samples_and_stage_records_keep_their_extra_keys_but_need_theirs():
    sample = {"behaviour_id": "b", "split": "eval", "mode": "cot", "input": "f(1)", "prompt": "p",
              "target": "2", "curriculum": "proactive", "completion": "Answer: 2",
              "prediction": "2", "score": 1.0, "recall_exact": 1.0, "derivation_ok": 1.0}
    assert check(Sample, sample, "s") is sample
    with pytest.raises(PbbError, match="field score"):
        check(Sample, {k: v for k, v in sample.items() if k != "score"}, "s")
    rl = {"seconds": 2.0, "resumed": True, "processes": 2, "algorithm": "grpo"}
    assert check(StageRecord, rl, "done.json") is rl
    with pytest.raises(PbbError, match="field processes"):
        check(StageRecord, {"seconds": 2.0, "resumed": True}, "done.json")


def test_the_shipped_schema_is_the_generated_one():
    spec = importlib.util.spec_from_file_location("summary_schema",
                                                  ROOT / "scripts" / "summary_schema.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.OUT.read_text() == mod.render(), (
        "docs/summary.schema.json is stale: run python scripts/summary_schema.py")
    schema = summary_schema()
    assert schema["additionalProperties"] is True  # older summaries rebuild
    assert schema["$defs"]["DataIdentity"]["additionalProperties"] is False
    assert set(schema["required"]) == {"name", "model", "domain", "seed", "results",
                                       "comparisons"}
