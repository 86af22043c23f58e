"""SFT on tiny-random: the loss falls, the loss mask covers the completion only, LoRA works."""

import json

import pytest
import torch

from pbb import data
from pbb.config import TrainConfig
from pbb.curricula import declarative_rows, demo_rows
from pbb.models import load_tokenizer, resolve_model_path
from pbb.train import DONE, METRICS, MODEL, load_for_eval, sft_args, train_stage


@pytest.fixture(scope="module")
def tiny():
    path = resolve_model_path("tiny-random")
    return path, load_tokenizer(path)


@pytest.fixture(scope="module")
def rows():
    ds = data.generate("arithmetic", behaviours=4, demos=2, test_inputs=1, eval_fraction=0.5,
                       seed=0, progress=False)
    return declarative_rows(ds, ds.behaviours, 2) + demo_rows(ds, ds.split("train"), ["direct"])


def _losses(stage_dir):
    lines = [json.loads(x) for x in (stage_dir / METRICS).read_text().splitlines()]
    return [x["loss"] for x in lines if "loss" in x]


def test_loss_goes_down_on_a_tiny_set(tiny, rows, tmp_path):
    path, tok = tiny
    cfg = TrainConfig(learning_rate=3e-3, epochs=6, batch_size=4, warmup_ratio=0.0, save_steps=1000)
    info = train_stage(rows, init=path, base=path, tokenizer=tok, cfg=cfg, stage_dir=tmp_path / "s",
                       seed=0, progress=False)
    losses = _losses(tmp_path / "s")
    assert len(losses) == info["steps"] >= 10
    assert sum(losses[-3:]) / 3 < 0.8 * sum(losses[:3]) / 3, losses
    assert (tmp_path / "s" / DONE).is_file() and (tmp_path / "s" / MODEL / "config.json").is_file()
    assert not (tmp_path / "s" / "trainer").exists()  # checkpoints removed once done


def test_loss_mask_covers_exactly_the_completion(tiny, rows, tmp_path):
    from datasets import Dataset
    from trl import SFTTrainer

    path, tok = tiny
    from pbb.models import load_model

    args = sft_args(TrainConfig(), tmp_path, 0, False)
    ds = Dataset.from_list([{"prompt": r["prompt"], "completion": r["completion"]} for r in rows])
    trainer = SFTTrainer(model=load_model(path), args=args, train_dataset=ds, processing_class=tok)
    for k, rec in enumerate(trainer.train_dataset):
        trained = tok.decode([t for t in rec["labels"] if t != -100])
        assert trained.startswith(rows[k]["completion"][0]["content"])
        assert rows[k]["prompt"][0]["content"] not in trained
        assert trained.strip().endswith("<|im_end|>")


def test_lora_stage_saves_an_adapter_and_leaves_the_base_untouched(tiny, rows, tmp_path):
    from pbb.models import load_model

    path, tok = tiny
    cfg = TrainConfig(method="lora", learning_rate=1e-2, max_steps=3, batch_size=4, lora_r=4)
    train_stage(rows, init=path, base=path, tokenizer=tok, cfg=cfg, stage_dir=tmp_path / "l",
                seed=0, progress=False)
    adapter = tmp_path / "l" / MODEL
    assert (adapter / "adapter_config.json").is_file()
    merged = load_for_eval(adapter, path)
    base = load_model(path)
    name = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(dict(merged.named_parameters())[name], dict(base.named_parameters())[name])
    # a second LoRA stage continues the same adapter
    train_stage(rows, init=adapter, base=path, tokenizer=tok, cfg=cfg, stage_dir=tmp_path / "l2",
                seed=0, progress=False)
    assert (tmp_path / "l2" / MODEL / "adapter_config.json").is_file()
