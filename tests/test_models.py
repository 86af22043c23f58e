"""Any causal LM: where a model comes from, how its weights load, where its turn ends."""

from types import SimpleNamespace

import pytest

from pbb import models
from pbb.errors import PbbError
from pbb.models import (
    ModelOptions,
    end_of_turn_ids,
    load_model,
    load_tokenizer,
    resolve_model_path,
)


def test_an_id_missing_offline_is_one_error_that_says_how_to_provide_it(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path))  # an empty cache
    with pytest.raises(PbbError, match=r"not in the local Hugging Face cache and HF_HUB_OFFLINE "
                                       r"is set; .*hf download ID"):
        resolve_model_path("someone/no-such-model")


def test_dtype_and_remote_code_reach_from_pretrained(monkeypatch):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    seen = []
    real_model, real_tok = AutoModelForCausalLM.from_pretrained, AutoTokenizer.from_pretrained
    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained",
                        lambda path, **kw: seen.append(kw) or real_model(path, **kw))
    monkeypatch.setattr(AutoTokenizer, "from_pretrained",
                        lambda path, **kw: seen.append(kw) or real_tok(path, **kw))
    path = resolve_model_path(models.TINY_RANDOM)
    model = load_model(path, options=ModelOptions("bf16", trust_remote_code=True))
    assert next(model.parameters()).dtype == torch.bfloat16
    load_tokenizer(path, ModelOptions(trust_remote_code=True))
    assert [kw["trust_remote_code"] for kw in seen] == [True, True]
    # auto: fp32 master weights on every device (a GPU too: bf16 weights lose the updates)
    assert ModelOptions().torch_dtype() == torch.float32
    assert next(load_model(path).parameters()).dtype == torch.float32


def test_the_models_own_end_of_turn_ids_join_the_stop_rule():
    tok = load_tokenizer(resolve_model_path(models.TINY_RANDOM))
    plain = end_of_turn_ids(tok)
    assert tok.convert_tokens_to_ids("<|im_end|>") in plain and tok.eos_token_id in plain
    merged = end_of_turn_ids(tok, SimpleNamespace(eos_token_id=[5, 7]))
    assert set(merged) == set(plain) | {5, 7}
    assert set(end_of_turn_ids(tok, SimpleNamespace(eos_token_id=9))) == set(plain) | {9}


@pytest.mark.slow
def test_a_bf16_run_trains_and_saves_bf16_weights_under_its_own_stage_key(tmp_path):
    import json
    from pathlib import Path

    from safetensors import safe_open

    from pbb.config import load_config, with_smoke
    from pbb.experiments import run as run_mod
    from pbb.store import stage_key

    cfg = load_config(Path("configs/quickstart.yaml"),
                      with_smoke({"model_dtype": "bf16", "curricula": ["stage1_only"],
                                  "eval.modes": ["recall"]}))
    run_mod.run(cfg, tmp_path / "r", progress=False)
    plan = json.loads((tmp_path / "r" / "curricula.json").read_text())
    stage = tmp_path / "r" / plan["stage1_only"][0]["dir"]
    with safe_open(str(stage / "model" / "model.safetensors"), "pt") as f:
        assert {str(f.get_tensor(k).dtype) for k in f.keys()} == {"torch.bfloat16"}
    auto = load_config(Path("configs/quickstart.yaml"), with_smoke({"curricula": ["stage1_only"]}))
    rows = [{"prompt": [], "completion": []}]
    assert stage_key(cfg, "base", rows) != stage_key(auto, "base", rows)
