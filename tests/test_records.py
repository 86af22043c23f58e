"""The record types: they accept what pbb writes, refuse what it must not, and the shipped JSON
Schema of summary.json is the one generated from them."""

import copy

import pytest

from pbb.errors import PbbError
from pbb.records import (
    Sample,
    StageRecord,
    Summary,
    check,
    read_samples,
    summary_schema,
)
from tests.conftest import script

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


SAMPLE = {"behaviour_id": "b", "split": "eval", "mode": "cot", "input": "f(1)", "prompt": "?",
          "target": "2", "curriculum": "proactive", "completion": "Answer: 2", "prediction": "2",
          "score": 1.0}


@pytest.mark.parametrize("lines, message", [
    ([SAMPLE, {**SAMPLE, "score": "high"}], ":2: Sample record, field score: "),
    ([{k: v for k, v in SAMPLE.items() if k != "split"}], ":1: Sample record, field split: "),
])
def test_every_reader_of_samples_refuses_a_bad_or_empty_file_naming_it(tmp_path, lines, message):
    """The report, the sweep's analyses and the claims table all read samples here: a bad line
    is one error naming it (not a traceback from the metrics); an empty file is an evaluation
    with no query, as the untuned model's on a data set without eval behaviours."""
    import json

    from pbb.evaluation.report import evaluated
    from pbb.store import RunStore

    path = RunStore(tmp_path).samples("proactive", "cot")
    path.parent.mkdir(parents=True)
    path.write_text("".join(json.dumps(s) + "\n" for s in lines))
    with pytest.raises(PbbError) as e:
        list(evaluated(tmp_path, ["proactive"], ["cot"]))
    assert str(e.value).startswith(str(path)) and message in str(e.value)
    path.write_text(json.dumps(SAMPLE) + "\n")
    assert read_samples(path) == [SAMPLE]
    path.write_text("")
    assert read_samples(path) == []


def test_a_broken_summary_or_sweep_record_is_one_line_naming_it(tmp_path):
    from pbb.evaluation.report import rebuild
    from pbb.experiments.claims import points
    from pbb.experiments.sweep import report

    (tmp_path / "config.yaml").write_text("name: x\nmodel: tiny-random\n")
    (tmp_path / "summary.json").write_text("[1, 2]")
    with pytest.raises(PbbError, match=f"^{tmp_path / 'summary.json'}: not a JSON object"):
        rebuild(tmp_path)
    (tmp_path / "sweep.json").write_text("[]")
    with pytest.raises(PbbError, match=f"^{tmp_path / 'sweep.json'}: SweepRecord record"):
        report(tmp_path)
    (tmp_path / "sweep.json").write_text('{"points": [{"name": "a", "overrides": {}}]}')
    with pytest.raises(PbbError, match=r"SweepRecord record, field points\.0\.dir: "):
        report(tmp_path)
    # a name as YAML gave it (a number) is the sweep's own: it reads; a point's broken summary
    # is one line naming it, in the sweep's analysis and the claims' alike
    point = tmp_path / "runs" / "a"
    point.mkdir(parents=True)
    (point / "config.yaml").write_text("name: x\nmodel: tiny-random\n")
    (point / "summary.json").write_text("[]")
    (tmp_path / "sweep.json").write_text(
        '{"name": 2024, "points": [{"name": "a", "overrides": {}, "dir": "runs/a"}]}')
    for read in (report, points):
        with pytest.raises(PbbError, match=f"^{point / 'summary.json'}: not a run summary"):
            read(tmp_path)


def test_the_shipped_schema_is_the_generated_one():
    mod = script("summary_schema")
    assert mod.OUT.read_text() == mod.render(), (
        "docs/summary.schema.json is stale: run python scripts/summary_schema.py")
    schema = summary_schema()
    assert schema["additionalProperties"] is True  # older summaries rebuild
    assert schema["$defs"]["DataIdentity"]["additionalProperties"] is False
    assert set(schema["required"]) == {"name", "model", "domain", "seed", "results",
                                       "comparisons"}
