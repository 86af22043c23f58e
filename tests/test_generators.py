"""The Generator protocol: evaluation and the recall check run on whatever generator they are
given (a test's canned text here), score what it wrote with the domain's verifier, and the
in-process HFGenerator writes what the model generates greedily."""

import re
from pathlib import Path

import pytest

from pbb import data
from pbb.config import load_config, with_smoke
from pbb.evaluation import evaluate as evaluate_mod
from pbb.evaluation.generators import HFGenerator
from pbb.evaluation.metrics import summarize
from pbb.experiments import run as run_mod
from tests.conftest import Canned

CALL = re.compile(r"`(\w+)(\([^`]*\))?`")  # a prompt's pointer, and the call of a query


@pytest.fixture(scope="module")
def ds():
    return data.generate("arithmetic", behaviours=6, demos=2, test_inputs=3, eval_fraction=0.5,
                         seed=4, progress=False, options={"max_args": 2, "max_statements": 2})


def _by_name(ds):
    return {b.name: b for b in ds.behaviours}


def test_a_canned_generator_drives_evaluation_and_gets_the_scores_it_deserves(ds, tmp_path):
    """Every third query answered right (the behaviour executed), every third off by one,
    every third junk: each sample's score and the accuracy are what the verifier gives them."""
    named = _by_name(ds)

    def answer(prompt: str) -> str:
        name, call = CALL.search(prompt).groups()
        right = ds.domain.execute(named[name], name + call).output
        return [f"Answer: {right}", f"Answer: {int(right) + 1}", "no idea"][len(prompt) % 3]

    canned = Canned(answer)
    samples = evaluate_mod.evaluate(canned, ds, curriculum="c", mode="direct", out_dir=tmp_path,
                                    max_new_tokens=7, progress=False)
    queries = evaluate_mod.build_queries(ds, "direct")
    assert canned.asked == [[q["prompt"] for q in queries]]  # each query once, in order
    assert [(s["behaviour_id"], s["input"]) for s in samples] == \
        [(q["behaviour_id"], q["input"]) for q in queries]
    for s in samples:
        b, kind = named[CALL.search(s["prompt"]).group(1)], len(s["prompt"]) % 3
        assert s["completion"] == answer(s["prompt"])
        assert s["score"] == (1.0 if kind == 0 else 0.0)
        assert s["score"] == float(ds.domain.score(b, s["input"], ds.domain.extract(s["completion"])))
    per = {}
    for s in samples:
        per.setdefault(s["behaviour_id"], []).append(float(len(s["prompt"]) % 3 == 0))
    expected = sum(sum(v) / len(v) for v in per.values()) / len(per)
    assert 0 < expected < 1  # the data set gives each kind of answer
    assert summarize(samples)["accuracy"] == pytest.approx(expected)


def _config(**extra):
    return load_config(Path("configs/quickstart.yaml"), with_smoke(extra))


def test_the_recall_check_runs_on_the_generator_it_is_given(ds):
    """Half the behaviours recalled (with a code fence), the rest garbled: the recall rate is
    that half, of exactly the behaviours asked for; the generator is made for the model checked."""
    named = _by_name(ds)
    ids = [b.id for b in ds.behaviours[:4]]
    good = {b.name for b in ds.behaviours[:2]}

    def answer(prompt: str) -> str:
        name = CALL.search(prompt).group(1)
        code = named[name].instruction
        return f"```python\n{code}\n```" if name in good else code.replace("return", "retrun")

    canned, models = Canned(answer), []
    check = run_mod.recall_checker(_config(), ds, None, ids,
                                   generator_for=lambda m: models.append(m) or canned)
    assert check("the model") == {"recall": 0.5, "n": 4}
    assert models == ["the model"]
    (asked,) = canned.asked
    assert sorted(named[CALL.search(p).group(1)].id for p in asked) == sorted(ids)


@pytest.fixture(scope="module")
def redrawn():
    from tests.test_generation import redrawn_tiny

    return redrawn_tiny()


def _one_at_a_time(model, tok, prompts: list[str], max_new: int, system: str | None) -> list[str]:
    """Each prompt alone through model.generate (no padding, no batch), greedy, decoded."""
    import torch

    from pbb.models import end_of_turn_ids
    from pbb.rows.chat import prompt_text

    out = []
    for p in prompts:
        enc = tok(prompt_text(tok, p, system), return_tensors="pt", add_special_tokens=False)
        with torch.inference_mode():
            gen = model.generate(**enc, max_new_tokens=max_new, do_sample=False, temperature=None,
                                 top_p=None, top_k=None, pad_token_id=tok.pad_token_id,
                                 eos_token_id=end_of_turn_ids(tok, model.generation_config))
        out.append(tok.decode(gen[0, enc["input_ids"].shape[1]:], skip_special_tokens=True).strip())
    return out


@pytest.mark.parametrize("engine", ["hf", "static"])
def test_hf_generator_writes_what_the_model_generates(redrawn, ds, engine):
    """fp32 greedy on tiny-random (redrawn: each prompt gets its own completion), in batches or
    slots of 3, with a system prompt: the texts of the model's own one-prompt-at-a-time
    generation, each handed on once."""
    model, tok = redrawn
    prompts = [q["prompt"] for q in evaluate_mod.build_queries(ds, "cot")][:7]
    seen = {}
    got = HFGenerator(model, tok, batch_size=3, system_prompt="Be brief.", engine=engine).generate(
        prompts, max_new_tokens=12, progress=False, on_batch=lambda items: seen.update(items))
    assert got == _one_at_a_time(model, tok, prompts, 12, "Be brief.")
    assert seen == dict(enumerate(got))
    assert len(set(got)) == len(got)


def test_the_default_recall_check_generates_greedily_with_the_model_checked(redrawn, ds,
                                                                             monkeypatch):
    """recall_checker without a generator: an HFGenerator on the model it is handed, greedy
    whatever eval.temperature says, with the run's system prompt, batch size, engine and recall
    budget; the rate is the one the model's own completions deserve."""
    from pbb.evaluation.recall import recall_score

    model, tok = redrawn
    cfg = _config(**{"chat.system_prompt": "Be brief.", "eval.max_new_tokens.recall": 6,
                     "eval.temperature": 0.7, "eval.batch_size": 3, "eval.generator": "static"})
    used, real = [], evaluate_mod.recall_rate
    monkeypatch.setattr(evaluate_mod, "recall_rate", lambda g, *a, **k: used.append(g) or real(g, *a, **k))
    got = run_mod.recall_checker(cfg, ds, tok, [b.id for b in ds.behaviours])(model)
    (g,) = used
    assert isinstance(g, HFGenerator) and g.model is model and g.tokenizer is tok
    assert (g.temperature, g.system_prompt, g.batch_size, g.engine) == (0.0, "Be brief.", 3, "static")
    queries = evaluate_mod.build_queries(ds, "recall")
    texts = _one_at_a_time(model, tok, [q["prompt"] for q in queries], 6, "Be brief.")
    hits = sum(recall_score(t, q["target"]) for t, q in zip(texts, queries))
    assert got == {"recall": round(hits / len(queries), 4), "n": len(queries)}

