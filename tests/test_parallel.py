"""The launcher's setups for SFT (pbb.training.engine): what each one refuses before any work, and
checkpoints that belong to another setup. Training under DDP is tested by real launches in
test_dist.py; FSDP and DeepSpeed run on GPUs only (scripts/launch_check.sh)."""

from pathlib import Path

import pytest
import torch

from pbb.config import load_config, with_smoke
from pbb.errors import PbbError
from pbb.experiments import run as run_mod
from pbb.training import engine as parallel


def _cfg(**overrides):
    return load_config(Path("configs/quickstart.yaml"), with_smoke(overrides))


@pytest.mark.parametrize(("env", "setup"), [
    ({}, "single"),
    ({"WORLD_SIZE": "2"}, "ddp"),
    ({"WORLD_SIZE": "2", "ACCELERATE_USE_FSDP": "true"}, "fsdp"),
    ({"ACCELERATE_USE_DEEPSPEED": "true"}, "deepspeed"),  # one process is still DeepSpeed's
])
def test_the_setup_is_what_the_launcher_asked_for(monkeypatch, env, setup):
    for k in ("WORLD_SIZE", "ACCELERATE_USE_FSDP", "ACCELERATE_USE_DEEPSPEED"):
        monkeypatch.delenv(k, raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    assert parallel.launcher_setup() == setup


def test_fsdp_on_a_cpu_is_one_error_before_any_work(monkeypatch, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("a GPU machine runs FSDP (scripts/launch_check.sh)")
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    with pytest.raises(PbbError, match="accelerate runs fsdp on GPUs only; on CPUs launch data "
                                       "parallel"):
        run_mod.run(_cfg(), tmp_path / "r", progress=False)
    assert not (tmp_path / "r").exists()


def test_deepspeed_without_the_package_is_one_error(monkeypatch):
    import importlib.util

    monkeypatch.setenv("ACCELERATE_USE_DEEPSPEED", "true")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "deepspeed" else real(name, *a))
    with pytest.raises(PbbError, match=r"deepspeed package is not installed \(pip install "
                                       r"'pbb\[deepspeed\]'\)"):
        parallel.check_setup("full")


@pytest.mark.parametrize(("env", "refused"), [
    ({"ACCELERATE_USE_FSDP": "true"}, True),
    ({"ACCELERATE_USE_DEEPSPEED": "true", "ACCELERATE_DEEPSPEED_ZERO_STAGE": "3"}, True),
    ({"ACCELERATE_USE_DEEPSPEED": "true", "ACCELERATE_DEEPSPEED_ZERO_STAGE": "2"}, False),
])
def test_adapters_are_refused_where_parameters_are_sharded(monkeypatch, env, refused):
    import importlib.util

    for k, v in env.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",  # as if deepspeed were installed
                        lambda name, *a: object() if name == "deepspeed" else real(name, *a))
    parallel.check_setup("full")  # full fine-tuning trains under every setup
    if refused:
        with pytest.raises(PbbError, match=r"train.method: lora under .* \(sharded parameters\)"):
            parallel.check_setup("lora")
    else:
        parallel.check_setup("lora")


def test_a_checkpoint_of_another_setup_is_refused_with_what_to_do(tmp_path):
    """A checkpoint written under the launcher (accelerate's save_state: no optimizer.pt) is
    not resumed by a plain run, and the error says how to go on."""
    ckpt = tmp_path / "trainer" / "checkpoint-4"
    ckpt.mkdir(parents=True)
    (ckpt / "model.safetensors").write_bytes(b"")
    (ckpt / "state.json").write_text("{}")
    model = torch.nn.Linear(2, 2)
    opt = torch.optim.AdamW(model.parameters())
    engine = parallel.Single(model, opt, torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0))
    with pytest.raises(PbbError, match="written under accelerate launch; resume it under the "
                                       "same launch"):
        engine.load_checkpoint(ckpt)


def test_gathered_weights_load_whole_or_not_at_all():
    """The recall check's copy under FSDP / ZeRO-3: a tied head may come through the embedding
    it shares; a weight the gathered state lacks is an error, not a random parameter."""
    from transformers import AutoModelForCausalLM

    from pbb.models import TINY_RANDOM, resolve_model_path

    trained = AutoModelForCausalLM.from_pretrained(resolve_model_path(TINY_RANDOM))
    state = {k: v + 1.0 for k, v in trained.state_dict().items() if k != "lm_head.weight"}
    copy = AutoModelForCausalLM.from_config(trained.config)
    parallel.load_whole(copy, state)  # lm_head is tied to the embedding
    assert torch.equal(copy.lm_head.weight, state["model.embed_tokens.weight"])
    assert all(torch.equal(copy.state_dict()[k], v) for k, v in state.items())
    del state["model.norm.weight"]
    with pytest.raises(PbbError, match=r"gathered weights do not fit the model: missing "
                                       r"\['model.norm.weight'\]"):
        parallel.load_whole(AutoModelForCausalLM.from_config(trained.config), state)
