"""Recall scoring: exact up to whitespace, nothing more; the recalled part of CoT completions."""

import pytest

from pbb import data
from pbb.evaluation import evaluate as evaluate_mod
from pbb.evaluation.metrics import summarize
from pbb.evaluation.recall import (
    cot_recall_exact,
    normalize,
    recall_score,
    recalled_text,
)
from pbb.rows.render import RECALL_HEADER, TRACE_HEADER
from tests.conftest import Canned

CODE = "def zorp_1(a, b):\n    x = a + b\n    return x * 2"


def test_exact_text_is_recalled():
    assert recall_score(CODE, CODE) == 1.0


@pytest.mark.parametrize("variant", [
    CODE + "\n\n",                                        # trailing blank lines
    "\n" + CODE.replace("x = a + b", "x  =  a +   b"),    # runs of spaces inside a line
    CODE.replace("\n", "   \n"),                          # trailing spaces
    "```python\n" + CODE + "\n```",                       # a Markdown fence
    CODE.replace("    return", "\n    return"),           # a blank line inside
])
def test_whitespace_is_forgiven(variant):
    assert recall_score(variant, CODE) == 1.0


@pytest.mark.parametrize("variant", [
    CODE.replace("x * 2", "x * 3"),                        # a wrong line
    CODE.replace("    x = a + b\n", ""),                   # a missing line
    CODE.replace("    return", "  return"),                # indentation is meaning in Python
    CODE + "\nprint(zorp_1(1, 2))",                        # an extra line
    CODE.replace("zorp_1", "zorp_2"),                      # another name
    "",
])
def test_anything_else_is_not_recalled(variant):
    assert recall_score(variant, CODE) == 0.0


def test_normalize_keeps_indentation_and_tokens():
    assert normalize("  a  =  1 \n\n\tb") == "  a = 1\n    b"


def test_recalled_part_of_a_cot_completion():
    good = f"{RECALL_HEADER}\n{CODE}\n{TRACE_HEADER}\na = 1, b = 2\nAnswer: 6"
    assert recalled_text(good).strip() == CODE
    assert cot_recall_exact(good, CODE) == 1.0
    wrong = good.replace("x * 2", "x + 2")
    assert cot_recall_exact(wrong, CODE) == 0.0
    assert cot_recall_exact("Answer: 6", CODE) == 0.0          # no recall at all
    cut = f"{RECALL_HEADER}\n{CODE}"                           # stopped after the code
    assert cot_recall_exact(cut, CODE) == 1.0


@pytest.fixture(scope="module")
def ds():
    return data.generate("arithmetic", behaviours=6, demos=2, test_inputs=2, eval_fraction=0.5,
                         seed=3, progress=False, options={"max_args": 2, "max_statements": 2})


def test_recall_mode_scores_each_behaviour_once(ds, tmp_path):
    queries = evaluate_mod.build_queries(ds, "recall")
    assert [q["behaviour_id"] for q in queries] == [b.id for b in ds.behaviours]
    by_prompt = {q["prompt"]: q for q in queries}
    # the model recalls every other behaviour (with harmless spacing), garbles the rest
    good = {b.id for b in ds.behaviours[::2]}
    canned = Canned(
        lambda p: by_prompt[p]["target"] + "\n\n" if by_prompt[p]["behaviour_id"] in good
        else by_prompt[p]["target"].replace("return", "retrun"))
    samples = evaluate_mod.evaluate(canned, ds, curriculum="c", mode="recall", out_dir=tmp_path,
                                    max_new_tokens=8)
    assert {s["behaviour_id"] for s in samples if s["score"] == 1.0} == good
    assert summarize(samples)["accuracy"] == pytest.approx(len(good) / len(ds.behaviours))


def test_cot_samples_carry_recall_exact(ds, tmp_path):
    behaviours = {b.id: b for b in ds.behaviours}
    queries = {q["prompt"]: q for q in evaluate_mod.build_queries(ds, "cot")}
    demos = {(d.behaviour_id, d.input): d for d in ds.demonstrations}

    def answer(p):
        q = queries[p]
        code = behaviours[q["behaviour_id"]].instruction
        if q["split"] == "eval":
            code = code.replace("return", "retrun")  # the recall is wrong, the trace right
        return f"{RECALL_HEADER}\n{code}\n{TRACE_HEADER}\n{demos[(q['behaviour_id'], q['input'])].trace}"

    samples = evaluate_mod.evaluate(Canned(answer), ds, curriculum="c", mode="cot",
                                    out_dir=tmp_path, max_new_tokens=8)
    assert all(s["score"] == 1.0 for s in samples)
    assert all(s["recall_exact"] == (1.0 if s["split"] == "train" else 0.0) for s in samples)
    train = summarize([s for s in samples if s["split"] == "train"])
    assert train["recall_exact"]["mean"] == 1.0


def test_train_behaviours_can_be_capped_in_evaluation(ds):
    all_q = evaluate_mod.build_queries(ds, "cot")
    capped = evaluate_mod.build_queries(ds, "cot", max_train_behaviours=1)
    train_ids = sorted(b.id for b in ds.split("train"))
    assert {q["behaviour_id"] for q in capped if q["split"] == "train"} == {train_ids[0]}
    assert [q for q in capped if q["split"] == "eval"] == [q for q in all_q if q["split"] == "eval"]
