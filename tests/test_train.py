"""SFT on tiny-random: the loss falls, the loss mask covers the completion only, padding changes
no loss, LoRA works, the recall stopping rule stops where it should and resumes mid-stage."""

import json
import math
import os
import signal

import pytest
import torch

from pbb import interrupts
from pbb.config import TrainConfig
from pbb.models import load_model
from pbb.rows.chat import encode_row, tokenized_view
from pbb.store import DONE, METRICS, MODEL, weights_digest
from pbb.training.load import load_for_eval
from pbb.training.sft import (
    SFTRun,
    batch_loss,
    collate,
    encode_rows,
    epoch_batches,
    train_sft,
)


def _metrics(stage_dir):
    return [json.loads(x) for x in (stage_dir / METRICS).read_text().splitlines()]


def _losses(stage_dir):
    return [x["loss"] for x in _metrics(stage_dir) if "loss" in x]


@pytest.mark.slow
def test_loss_goes_down_on_a_tiny_set(tiny, rows, tmp_path):
    path, tok = tiny
    cfg = TrainConfig(learning_rate=3e-3, epochs=6, batch_size=4, warmup_ratio=0.0, save_steps=1000)
    info = train_sft(rows, init=path, base=path, tokenizer=tok, cfg=cfg, stage_dir=tmp_path / "s",
                     seed=0, progress=False)
    losses = _losses(tmp_path / "s")
    assert len(losses) == info["steps"] >= 10
    assert sum(losses[-3:]) / 3 < 0.8 * sum(losses[:3]) / 3, losses
    assert (tmp_path / "s" / DONE).is_file() and (tmp_path / "s" / MODEL / "config.json").is_file()
    assert not (tmp_path / "s" / "trainer").exists()  # checkpoints removed once done
    assert info["weights_sha256"] == weights_digest(tmp_path / "s" / MODEL) \
        == json.loads((tmp_path / "s" / DONE).read_text())["weights_sha256"]
    lengths = [len(ids) for ids, _ in encode_rows(tok, rows, 768)]
    assert info["tokens_per_row"] == round(sum(lengths) / len(rows), 1)


def test_loss_mask_covers_exactly_the_completion(tiny, rows):
    _, tok = tiny
    encoded = encode_rows(tok, rows, 768)
    x, y, first = collate(encoded, tok.pad_token_id)
    for k, row in enumerate(rows):
        trained = tok.decode([t for t in y[k].tolist() if t != -100])
        assert trained == row["completion"][0]["content"] + "<|im_end|>\n"
        assert row["prompt"][0]["content"] not in trained
        # the trained tokens are the ones right after the prompt, and nothing else
        ids, n_prompt = encoded[k]
        assert [t for t in y[k].tolist() if t != -100] == ids[n_prompt:]
    assert first == min(n for _, n in encoded) - 1


def test_right_padding_without_a_mask_gives_each_rows_own_loss(tiny, rows):
    """Batching rows of different lengths (right-padded, no attention mask) changes no loss."""
    path, tok = tiny
    model = load_model(path).eval()
    encoded = encode_rows(tok, rows[:6], 768)
    assert len({len(ids) for ids, _ in encoded}) > 1
    with torch.no_grad():
        x, y, first = collate(encoded, tok.pad_token_id)
        batched, n = batch_loss(model, x, y, first)
        total, count = 0.0, 0
        for e in encoded:
            xi, yi, fi = collate([e], tok.pad_token_id)
            loss_i, n_i = batch_loss(model, xi, yi, fi)
            total += float(loss_i) * n_i
            count += n_i
    assert n == count
    assert float(batched) == pytest.approx(total / count, rel=1e-5)


def test_batches_group_lengths_and_cover_every_row_once():
    lengths = [(i * 37) % 101 + 5 for i in range(400)]
    batches = epoch_batches(lengths, 8, seed=0, epoch=0)
    assert sorted(i for b in batches for i in b) == list(range(400))
    spread = sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches) / len(batches)
    shuffled = epoch_batches(lengths, 8, seed=0, epoch=0, group_by_length=False)
    spread_random = sum(max(lengths[i] for i in b) - min(lengths[i] for i in b)
                        for b in shuffled) / len(shuffled)
    assert spread < 0.3 * spread_random
    assert epoch_batches(lengths, 8, 0, 1) != batches  # every epoch a new order
    assert epoch_batches(lengths, 8, 0, 0) == batches  # deterministic


def test_tokenized_view_marks_exactly_the_trained_tokens(tiny, rows):
    _, tok = tiny
    for row in rows[:4]:
        v = tokenized_view(tok, row)
        ids, n_prompt = encode_row(tok, row)
        marked = v["text"].split("\u27e6", 1)[1].rsplit("\u27e7", 1)[0]
        assert marked == tok.decode(ids[n_prompt:])
        assert v["text"].split("\u27e6", 1)[0] == tok.decode(ids[:n_prompt])
        assert (v["prompt_tokens"], v["completion_tokens"]) == (n_prompt, len(ids) - n_prompt)


@pytest.mark.parametrize("system_prompt", [None, "Be exact."])
def test_rows_encoded_as_a_batch_are_the_rows_encoded_one_by_one(tiny, rows, system_prompt):
    # a stage's rows are rendered and tokenized in one call each: no padding, no row's text
    # in another's, the template's default block cut from every row (not only the first)
    _, tok = tiny
    from pbb.rows.chat import encode_rows

    assert len({len(r["completion"][0]["content"]) for r in rows}) > 1  # lengths differ
    batch = encode_rows(tok, rows, system_prompt)
    assert batch == [encode_row(tok, r, system_prompt) for r in rows]
    assert all("You are a helpful" not in tok.decode(ids) for ids, _ in batch)
    assert encode_rows(tok, [], system_prompt) == []


def test_rows_carry_no_system_prompt_unless_configured(tiny, rows):
    _, tok = tiny
    default = tok.apply_chat_template(rows[0]["prompt"], tokenize=False)
    assert "You are a helpful AI assistant" in default  # what SmolLM2's template would add
    ids, _ = encode_row(tok, rows[0])
    text = tok.decode(ids)
    assert "system" not in text and text.startswith("<|im_start|>user\n")
    ids, _ = encode_row(tok, rows[0], system_prompt="Be exact.")
    text = tok.decode(ids)
    assert text.startswith("<|im_start|>system\nBe exact.<|im_end|>\n<|im_start|>user\n")
    assert "You are a helpful AI assistant" not in text
    from pbb.rows.chat import prompt_text

    assert prompt_text(tok, "hi") == "<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n"


@pytest.mark.slow
def test_lora_stage_saves_an_adapter_and_leaves_the_base_untouched(tiny, rows, tmp_path):
    path, tok = tiny
    cfg = TrainConfig(method="lora", learning_rate=1e-2, max_steps=3, batch_size=4, lora_r=4)
    train_sft(rows, init=path, base=path, tokenizer=tok, cfg=cfg, stage_dir=tmp_path / "l",
              seed=0, progress=False)
    adapter = tmp_path / "l" / MODEL
    assert (adapter / "adapter_config.json").is_file()
    merged = load_for_eval(adapter, path)
    base = load_model(path)
    name = "model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(dict(merged.named_parameters())[name], dict(base.named_parameters())[name])
    # a second LoRA stage continues the same adapter
    train_sft(rows, init=adapter, base=path, tokenizer=tok, cfg=cfg, stage_dir=tmp_path / "l2",
              seed=0, progress=False)
    assert (tmp_path / "l2" / MODEL / "adapter_config.json").is_file()


def _scripted_recall(values, interrupt_at=None):
    """A recall check that returns the given rates in turn (and can simulate a kill)."""
    calls = []

    def check(model):
        calls.append(len(calls))
        if interrupt_at is not None and len(calls) == interrupt_at:
            raise KeyboardInterrupt
        return {"recall": values[min(len(calls), len(values)) - 1], "n": 4}

    return check, calls


FP32 = dict(learning_rate=1e-3, batch_size=4, warmup_ratio=0.0, precision="fp32", save_steps=1000)


@pytest.mark.slow
def test_stopping_rule_stops_at_the_threshold(tiny, rows, tmp_path):
    path, tok = tiny
    check, calls = _scripted_recall([0.25, 0.5, 1.0, 1.0])
    info = train_sft(rows, init=path, base=path, tokenizer=tok, cfg=TrainConfig(**FP32),
                     stage_dir=tmp_path / "s", seed=0, progress=False, recall_check=check,
                     recall_target=0.9, max_epochs=6)
    assert len(calls) == 3 and info["epochs"] == 3
    assert [r["recall"] for r in info["recall"]] == [0.25, 0.5, 1.0]
    logged = [m for m in _metrics(tmp_path / "s") if "recall/recall" in m]
    assert [(m["epoch"], m["recall/recall"]) for m in logged] == [(1, 0.25), (2, 0.5), (3, 1.0)]


@pytest.mark.slow
def test_a_stage_times_itself_on_the_working_clock(tiny, rows, tmp_path, monkeypatch):
    """done.json's seconds and time_split are read on pbb.clock (which leaves a stop out): a
    clock that jumps 10,000 s during the recall check, taken here as work, shows in both."""
    from types import SimpleNamespace

    from pbb import clock

    jump = {"s": 0.0}
    real = clock.time
    monkeypatch.setattr(clock, "time", SimpleNamespace(
        monotonic=lambda: real.monotonic() + jump["s"], sleep=real.sleep))
    monkeypatch.setattr(clock, "PAUSE", float("inf"))

    def check(model):
        jump["s"] += 10_000.0
        return {"recall": 1.0, "n": 4}

    path, tok = tiny
    info = train_sft(rows, init=path, base=path, tokenizer=tok, cfg=TrainConfig(**FP32),
                     stage_dir=tmp_path / "s", seed=0, progress=False, recall_check=check,
                     recall_target=0.9, max_epochs=2)
    assert 10_000 <= info["time_split"]["recall"] < 10_600
    assert 10_000 <= info["seconds"] < 10_600


@pytest.mark.slow
def test_stopping_rule_stops_at_the_maximum(tiny, rows, tmp_path):
    path, tok = tiny
    check, calls = _scripted_recall([0.0])
    info = train_sft(rows, init=path, base=path, tokenizer=tok, cfg=TrainConfig(**FP32),
                     stage_dir=tmp_path / "s", seed=0, progress=False, recall_check=check,
                     recall_target=0.9, max_epochs=2)
    assert len(calls) == 2 and info["epochs"] == 2
    steps_per_epoch = -(-len(rows) // 4)
    assert info["steps"] == 2 * steps_per_epoch


@pytest.mark.slow
@pytest.mark.parametrize("max_epochs, epochs", [(4, 3), (2, 2)])  # epoch 2 the last: (2, 2)
def test_stopping_rule_resumes_mid_stage(tiny, rows, tmp_path, max_epochs, epochs):
    """Stopped during epoch 2's recall check: the stop checkpoints epoch 2's steps (the check is
    dropped), and the rerun checks again and trains the very same steps an uninterrupted run
    trains, none of them twice."""
    path, tok = tiny
    kw = dict(init=path, base=path, tokenizer=tok, cfg=TrainConfig(**FP32), seed=0,
              progress=False, recall_target=0.9, max_epochs=max_epochs)
    check, _ = _scripted_recall([0.1, 0.2, 0.95])
    whole = train_sft(rows, stage_dir=tmp_path / "whole", recall_check=check, **kw)
    killed, _ = _scripted_recall([0.1, 0.2, 0.95], interrupt_at=2)
    with pytest.raises(KeyboardInterrupt):
        train_sft(rows, stage_dir=tmp_path / "cut", recall_check=killed, **kw)
    assert not (tmp_path / "cut" / DONE).exists()
    steps_per_epoch = -(-len(rows) // 4)
    saved = [p.parent.name for p in (tmp_path / "cut" / "trainer").glob("checkpoint-*/state.json")]
    assert saved == [f"checkpoint-{2 * steps_per_epoch}"]  # epoch 2's steps, kept
    again, calls = _scripted_recall([0.2, 0.95])  # epoch 1's check was done before the kill
    resumed = train_sft(rows, stage_dir=tmp_path / "cut", recall_check=again, **kw)
    assert resumed["resumed"] and len(calls) == epochs - 1
    life = resumed["last_life"]  # what this life trained: the steps after epoch 2's
    assert life["steps"] == whole["steps"] - 2 * steps_per_epoch
    assert len(life["recall"]) == len(calls)  # the checks this life ran
    assert (life["tokens"] > 0) == (life["steps"] > 0) and life["tokens"] < resumed["tokens"]
    assert resumed["steps"] == whole["steps"] and resumed["epochs"] == whole["epochs"] == epochs
    assert [r["recall"] for r in resumed["recall"]] == [0.1, 0.2, 0.95][:epochs]
    steps = [m["step"] for m in _metrics(tmp_path / "cut") if "loss" in m]
    assert steps == list(range(1, whole["steps"] + 1))  # every step logged exactly once
    assert _losses(tmp_path / "cut") == _losses(tmp_path / "whole")


@pytest.mark.slow
def test_a_stop_in_the_recall_check_at_a_stages_end_keeps_its_steps(tiny, rows, tmp_path):
    """A stage without a stopping rule measures recall once at its end: stopped there, it
    checkpoints its last step, and the rerun checks again without training a step."""
    path, tok = tiny
    kw = dict(init=path, base=path, tokenizer=tok, cfg=TrainConfig(**FP32, epochs=1.5), seed=0,
              progress=False)
    killed, _ = _scripted_recall([0.5], interrupt_at=1)
    with pytest.raises(KeyboardInterrupt):
        train_sft(rows, stage_dir=tmp_path / "s", recall_check=killed, **kw)
    steps = math.ceil(-(-len(rows) // 4) * 1.5)
    saved = [p.parent.name for p in (tmp_path / "s" / "trainer").glob("checkpoint-*/state.json")]
    assert saved == [f"checkpoint-{steps}"]
    again, calls = _scripted_recall([0.5])
    info = train_sft(rows, stage_dir=tmp_path / "s", recall_check=again, **kw)
    assert info["resumed"] and len(calls) == 1 and info["steps"] == steps
    assert info["rows_per_second"] is None  # this life trained no row: no rate, not 0.00
    assert info["last_life"]["steps"] == info["last_life"]["tokens"] == 0
    assert [r["recall"] for r in info["last_life"]["recall"]] == [0.5]  # its own check
    assert [r["recall"] for r in info["recall"]] == [0.5]
    assert [m["step"] for m in _metrics(tmp_path / "s") if "loss" in m] == list(range(1, steps + 1))


@pytest.mark.slow
def test_a_stop_inside_a_step_finishes_it_and_checkpoints_it(tiny, rows, tmp_path, monkeypatch,
                                                             sigterm_restored):
    """SIGTERM in the middle of step 3 (between its forward and its backward) of a stage that
    checkpoints every 1000 steps: step 3 is finished and checkpointed before the stop is raised,
    and the rerun trains steps 4 on exactly as an uninterrupted run does."""
    path, tok = tiny
    kw = dict(init=path, base=path, tokenizer=tok, cfg=TrainConfig(**FP32, epochs=2), seed=0,
              progress=False)
    whole = train_sft(rows, stage_dir=tmp_path / "whole", **kw)
    interrupts.install()
    forward_backward, steps = SFTRun._forward_backward, []

    def signalled(run, group):
        steps.append(run.state.step + 1)
        if steps[-1] == 3:
            os.kill(os.getpid(), signal.SIGTERM)  # the handler runs at once, inside the step
        return forward_backward(run, group)

    monkeypatch.setattr(SFTRun, "_forward_backward", signalled)
    with pytest.raises(KeyboardInterrupt):
        train_sft(rows, stage_dir=tmp_path / "cut", **kw)
    assert steps == [1, 2, 3]
    assert [p.parent.name for p in (tmp_path / "cut" / "trainer").glob("checkpoint-*/state.json")] \
        == ["checkpoint-3"]
    monkeypatch.setattr(SFTRun, "_forward_backward", forward_backward)
    resumed = train_sft(rows, stage_dir=tmp_path / "cut", **kw)
    assert resumed["resumed"] and resumed["steps"] == whole["steps"] > 3
    logged = [m["step"] for m in _metrics(tmp_path / "cut") if "loss" in m]
    assert logged == list(range(1, whole["steps"] + 1))
    assert _losses(tmp_path / "cut") == _losses(tmp_path / "whole")
    a = load_model(tmp_path / "whole" / MODEL).state_dict()
    b = load_model(tmp_path / "cut" / MODEL).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert resumed["weights_sha256"] == whole["weights_sha256"]  # the same weights, one digest


@pytest.mark.slow
def test_cutting_batches_for_memory_does_not_change_the_update(tiny, rows, tmp_path):
    """max_batch_tokens bounds memory only: the same steps, the same losses, the same weights."""
    path, tok = tiny
    kw = dict(init=path, base=path, tokenizer=tok, seed=0, progress=False)
    whole = train_sft(rows, cfg=TrainConfig(**FP32, epochs=2, max_batch_tokens=10_000),
                      stage_dir=tmp_path / "whole", **kw)
    cut = train_sft(rows, cfg=TrainConfig(**FP32, epochs=2, max_batch_tokens=64),
                    stage_dir=tmp_path / "cut", **kw)
    assert cut["steps"] == whole["steps"]
    assert _losses(tmp_path / "cut") == pytest.approx(_losses(tmp_path / "whole"), rel=1e-4)
    a = load_model(tmp_path / "whole" / MODEL).state_dict()
    b = load_model(tmp_path / "cut" / MODEL).state_dict()
    assert all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)


def test_learning_rate_warms_up_linearly_from_the_first_step():
    from pbb.training.sft import lr_lambda

    f = lr_lambda(100, 10, "cosine", 0.1)
    # step k of warmup (0-based) trains at (k + 1) / warmup of the peak: never at 0
    assert [f(k) for k in range(10)] == pytest.approx([0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0])
    assert f(10) == 1.0  # decay starts at the peak
    assert lr_lambda(100, 0, "cosine", 0.1)(0) == 1.0  # no warmup: the peak at once


def test_cosine_schedule_by_value():
    from pbb.training.sft import lr_lambda

    f = lr_lambda(110, 10, "cosine", 0.0)  # 100 decay steps after 10 of warmup
    assert f(10) == 1.0
    assert f(35) == pytest.approx(0.8535533906)  # a quarter: (1 + cos(pi/4)) / 2
    assert f(60) == pytest.approx(0.5)  # the midpoint
    assert f(85) == pytest.approx(0.1464466094)  # three quarters: (1 - cos(pi/4)) / 2
    assert f(110) == pytest.approx(0.0)
    g = lr_lambda(110, 10, "cosine", 0.2)  # the same curve, squeezed into [0.2, 1]
    assert g(60) == pytest.approx(0.6) and g(110) == pytest.approx(0.2)
    assert g(35) == pytest.approx(0.2 + 0.8 * 0.8535533906)


def test_linear_schedule_by_value():
    from pbb.training.sft import lr_lambda

    f = lr_lambda(104, 4, "linear", 0.2)
    assert [f(s) for s in (4, 29, 54, 79, 104)] == pytest.approx([1.0, 0.8, 0.6, 0.4, 0.2])
    assert lr_lambda(100, 0, "linear", 0.0)(50) == pytest.approx(0.5)


def test_decay_stops_at_the_minimum_ratio():
    from pbb.training.sft import lr_lambda

    for schedule in ("cosine", "linear"):
        f = lr_lambda(50, 5, schedule, 0.1)
        after = [f(s) for s in range(5, 200)]  # past the planned total too
        assert min(after) == pytest.approx(0.1) and all(v >= 0.1 - 1e-12 for v in after)
        assert f(50) == f(51) == f(199) == pytest.approx(0.1)
        assert all(a >= b for a, b in zip(after, after[1:]))  # never rises again


def test_constant_schedule_is_the_peak_after_warmup_whatever_the_minimum():
    from pbb.training.sft import lr_lambda

    f = lr_lambda(100, 4, "constant", 0.1)
    assert [f(s) for s in range(4)] == pytest.approx([0.25, 0.5, 0.75, 1.0])
    assert {f(s) for s in (4, 50, 99, 100, 500)} == {1.0}
    assert lr_lambda(100, 0, "constant", 0.5)(0) == 1.0


def test_split_by_tokens_bounds_every_part():
    from pbb.training.sft import split_by_tokens

    lengths = [50, 10, 30, 30, 20, 5, 64]
    parts = split_by_tokens(list(range(7)), lengths, 64)
    assert sorted(i for p in parts for i in p) == list(range(7))
    assert all(len(p) * max(lengths[i] for i in p) <= 64 or len(p) == 1 for p in parts)


def test_a_prompt_longer_than_max_length_is_one_clear_error(tiny, rows):
    from pbb.errors import PbbError

    _, tok = tiny
    with pytest.raises(PbbError, match=r"train.max_length: a prompt of \d+ tokens does not fit 8"):
        encode_rows(tok, rows, 8)


@pytest.mark.slow
def test_fp32_attention_switch_keeps_the_loss_and_is_undone(tiny, rows, tmp_path):
    """The CPU speed switch changes where attention is computed, not what it computes."""
    from pbb.training.precision import FP32_ATTENTION, fp32_attention_on_cpu

    path, tok = tiny
    model = load_model(path)
    x, y, first = collate(encode_rows(tok, rows[:4], 768), tok.pad_token_id)
    reference = batch_loss(model, x, y, first)[0]
    reference.backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    undo = fp32_attention_on_cpu(model, enabled=True)
    assert model.config._attn_implementation == FP32_ATTENTION
    with torch.autocast("cpu", dtype=torch.bfloat16):
        mixed = batch_loss(model, x, y, first)[0]
    switched = batch_loss(model, x, y, first)[0]
    switched.backward()
    model.save_pretrained(tmp_path / "m")
    undo()
    assert model.config._attn_implementation == "sdpa"
    assert switched.item() == pytest.approx(reference.item(), rel=1e-5)
    assert all(torch.allclose(g, p.grad, atol=1e-6) for g, p in zip(grads, model.parameters()))
    assert mixed.item() == pytest.approx(reference.item(), rel=0.05)  # bf16 elsewhere
    assert FP32_ATTENTION not in (tmp_path / "m" / "config.json").read_text()
    fp32_attention_on_cpu(model, enabled=False)
    assert model.config._attn_implementation == "sdpa"


def test_qlora_off_cuda_is_one_error_before_any_work(tmp_path):
    from pathlib import Path

    import torch

    from pbb.config import load_config, with_smoke
    from pbb.errors import PbbError
    from pbb.experiments import run as run_mod

    if torch.cuda.is_available():
        pytest.skip("a CUDA machine runs QLoRA (scripts/gpu_check.sh)")
    cfg = load_config(Path("configs/quickstart.yaml"), with_smoke({"train.method": "qlora"}))
    with pytest.raises(PbbError, match="train.method: qlora needs a CUDA GPU"):
        run_mod.run(cfg, tmp_path / "r", progress=False)
    assert not (tmp_path / "r").exists()
