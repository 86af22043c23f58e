"""Packed SFT batches (pbb.training.packing) on tiny-random in fp32: rows packed end to end keep apart
(a row's logits packed are its logits alone), the loss and gradients are the unpacked rows',
position ids restart per row, and a stage trained packed is the stage trained padded. Each
isolation check carries its control: the same comparison without the position ids (the rows
attending to each other) must fail it."""

import json

import pytest
import torch

from pbb.config import TrainConfig
from pbb.jsonio import read_json
from pbb.models import load_model
from pbb.store import METRICS, MODEL
from pbb.training.packing import (
    DENSE_SEQUENCE_TOKENS,
    IGNORE,
    Layout,
    collate_packed,
    forward_passes,
    isolates,
    layout,
    pack,
    packed_loss,
)
from pbb.training.sft import (
    batch_loss,
    collate,
    encode_rows,
    packing_wanted,
    step_parts,
    train_sft,
)


@pytest.fixture(scope="module")
def encoded(tiny, rows):
    return encode_rows(tiny[1], rows, 768)


def _metrics(stage_dir):
    return [json.loads(x) for x in (stage_dir / METRICS).read_text().splitlines()]


def test_first_fit_decreasing_bounds_every_bin_and_places_every_row_once():
    lengths = [50, 10, 30, 30, 20, 5, 64, 90, 7]
    rows = [0, 1, 2, 3, 4, 5, 6, 8]  # not every row of the data set
    bins = pack(rows, lengths, 64)
    assert sorted(i for b in bins for i in b) == sorted(rows)
    assert all(sum(lengths[i] for i in b) <= 64 for b in bins)
    assert bins == [[6], [0, 1], [2, 3], [4, 8, 5]]  # longest first, each into the first fit
    assert pack(rows, lengths, 64) == bins  # deterministic
    assert pack([7, 1], lengths, 64) == [[7], [1]]  # a row over the bound runs alone


def test_position_ids_restart_per_row_and_targets_stay_inside_each_row():
    rows = [([11, 12, 13, 14, 15], 3), ([21, 22, 23], 1), ([31, 32, 33, 34], 2)]
    b = collate_packed([rows], pad_id=0)
    assert b.input_ids.tolist() == [[11, 12, 13, 14, 15, 21, 22, 23, 31, 32, 33, 34]]
    assert b.position_ids.tolist() == [[0, 1, 2, 3, 4, 0, 1, 2, 0, 1, 2, 3]]
    # position t predicts token t + 1, completion tokens only; a row's last position predicts
    # nothing (the next token is the next row's first)
    assert b.targets.tolist() == [[IGNORE, IGNORE, 14, 15, IGNORE, 22, 23, IGNORE,
                                   IGNORE, 33, 34, IGNORE]]
    assert b.keep.tolist() == [2, 3, 5, 6, 9, 10] and b.n == 6
    # several sequences: padded to the longest (rounded up), the tail a document of its own
    two = collate_packed([rows[:1], rows[1:]], pad_id=0, multiple=4)
    assert two.input_ids.shape == (2, 8)
    assert two.position_ids.tolist() == [[0, 1, 2, 3, 4, 0, 1, 2], [0, 1, 2, 0, 1, 2, 3, 0]]
    assert two.input_ids[0, 5:].tolist() == [0, 0, 0] and two.n == 6
    assert two.keep.dtype == torch.bool and two.keep.sum() == 6
    assert (two.targets[~two.keep] == IGNORE).all()


def _row_logits_alone(model, ids):
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids]), use_cache=False).logits[0]


def test_a_rows_logits_packed_equal_its_logits_alone(tiny, encoded):
    """No row attends to another: each row's logits in a packed sequence are its logits alone.
    Control: the same sequence without position ids (one causal document) changes them."""
    path, _ = tiny
    model = load_model(path).eval()
    seq = encoded[:5]
    b = collate_packed([seq], pad_id=0)
    with torch.no_grad():
        packed = model(input_ids=b.input_ids, position_ids=b.position_ids, use_cache=False).logits[0]
        mixed = model(input_ids=b.input_ids, use_cache=False).logits[0]
    at = 0
    for k, (ids, _) in enumerate(seq):
        alone = _row_logits_alone(model, ids)
        span = slice(at, at + len(ids))
        assert torch.allclose(packed[span], alone, atol=1e-5, rtol=1e-5), k
        if k:  # every row after the first: attends to its neighbours without the isolation
            assert (mixed[span] - alone).abs().max() > 1e-2, k
        at += len(ids)


def _grads(model):
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def _rel(a, b):
    return float((a - b).norm() / b.norm().clamp_min(1e-30))


@pytest.mark.parametrize("shape", ["one sequence", "two sequences"])
def test_packed_loss_and_gradients_equal_the_unpacked_rows(tiny, encoded, shape):
    """fp32: the packed batch's loss and gradients are the rows' own, each run alone
    (token mean over the rows' completion tokens), to 1e-5 relative."""
    path, _ = tiny
    model = load_model(path)
    rows = encoded[:7]
    n_total = sum(len(ids) - m for ids, m in rows)
    model.zero_grad()
    reference = 0.0
    for e in rows:  # one row at a time: nothing to attend to but itself
        x, y, first = collate([e], 0)
        loss, n = batch_loss(model, x, y, first)
        (loss * n / n_total).backward()
        reference += loss.item() * n / n_total
    want = _grads(model)
    model.zero_grad()
    seqs = [rows] if shape == "one sequence" else [rows[:3], rows[3:]]
    batch = collate_packed(seqs, pad_id=0, multiple=1 if shape == "one sequence" else 16)
    loss, n = packed_loss(model, batch)
    loss.backward()
    got = _grads(model)
    assert n == n_total
    assert loss.item() == pytest.approx(reference, rel=1e-5)
    assert got.keys() == want.keys()
    worst = max(_rel(got[k], want[k]) for k in want)
    assert worst < 1e-5, worst
    # control: without the position ids the rows see each other and the gradients move
    model.zero_grad()
    out = model(input_ids=batch.input_ids, use_cache=False).logits
    logits = out[0, batch.keep] if batch.keep.dim() == 1 else out[batch.keep]
    targets = batch.targets[0, batch.keep] if batch.keep.dim() == 1 else batch.targets[batch.keep]
    torch.nn.functional.cross_entropy(logits.float(), targets, reduction="mean").backward()
    assert max(_rel(v, want[k]) for k, v in _grads(model).items()) > 1e-3


def test_packed_loss_through_a_lora_model_is_the_padded_loss(tiny, encoded):
    from peft import LoraConfig, get_peft_model

    path, _ = tiny
    model = get_peft_model(load_model(path), LoraConfig(r=4, lora_alpha=8, lora_dropout=0.0,
                                                        target_modules="all-linear",
                                                        task_type="CAUSAL_LM"))
    rows = encoded[:5]
    with torch.no_grad():
        x, y, first = collate(rows, 0)
        padded, n = batch_loss(model, x, y, first)
        packed, m = packed_loss(model, collate_packed([rows], pad_id=0))
    assert n == m and packed.item() == pytest.approx(padded.item(), rel=1e-5)
    assert isolates(model)


def test_isolation_probe_accepts_the_model_and_refuses_one_that_drops_position_ids(tiny):
    path, _ = tiny
    model = load_model(path)
    assert isolates(model)

    class Blind(torch.nn.Module):  # a model whose attention ignores the position ids
        def __init__(self, inner):
            super().__init__()
            self.inner, self.config = inner, inner.config

        def forward(self, position_ids=None, **kw):
            return self.inner(**kw)

    assert not isolates(Blind(model))


def test_step_parts_pack_the_whole_step_within_the_bounds():
    lengths = [40, 30, 20, 60, 10, 50, 25, 35]
    group = [[0, 1, 2, 3], [4, 5, 6, 7]]
    parts = step_parts(group, lengths, 100, rank=0, world=1, sequence=100)
    assert parts == [([[3, 0]], True), ([[5, 7, 4]], True), ([[1, 6, 2]], True)]  # 270 tokens
    assert len(step_parts(group, lengths, 100, rank=0, world=1)) == 5  # padded: five parts
    # short sequences (dense attention), several a pass: every pass within the memory bound
    for seq, bound, multiple in ((64, 200, 1), (64, 200, 16), (128, 256, 64)):
        parts = step_parts(group, lengths, bound, rank=0, world=1, sequence=seq, multiple=multiple)
        assert sorted(i for p, _ in parts for q in p for i in q) == list(range(8))
        sizes = [[sum(lengths[i] for i in q) for q in p] for p, _ in parts]
        assert all(s <= seq for p in sizes for s in p)
        assert all(len(p) * (-(-max(p) // multiple) * multiple) <= bound for p in sizes)
    # data parallel: each process packs its share of every batch
    shares = [step_parts(group, lengths, 100, rank=r, world=2, sequence=100) for r in (0, 1)]
    assert sorted(i for s in shares for p, _ in s for q in p for i in q) == list(range(8))
    assert step_parts([[3]], lengths, 100, rank=1, world=2, sequence=100) == [([[3]], False)]


def test_layout_follows_the_attention_implementation():
    dense = layout("sdpa", 8192)
    assert dense == layout("eager", 8192) == Layout(DENSE_SEQUENCE_TOKENS)
    assert layout("sdpa", 128).sequence == 128
    assert layout("flash_attention_2", 8192) == Layout(8192, flatten=True, varlen=True)
    assert layout("flex_attention", 8192) == Layout(8192, flatten=True)
    assert forward_passes([[0], [1, 2], [3]], [100, 50, 40, 200], 300) == [[[3]], [[0], [1, 2]]]


def test_flattened_passes_carry_the_row_boundaries_for_a_varlen_kernel():
    rows = [([11, 12, 13, 14, 15], 3), ([21, 22, 23], 1), ([31, 32, 33, 34], 2)]
    b = collate_packed([rows[:2], rows[2:]], pad_id=0, multiple=8,
                       how=Layout(64, flatten=True, varlen=True))
    assert b.input_ids.shape == (1, 16) and b.keep.dim() == 1  # one row, padded to 16
    assert b.position_ids.tolist() == [[0, 1, 2, 3, 4, 0, 1, 2, 0, 1, 2, 3, 0, 1, 2, 3]]
    assert b.kwargs["cu_seq_lens_q"].tolist() == [0, 5, 8, 12, 16]  # three rows, the tail
    assert b.kwargs["max_length_q"] == b.kwargs["max_length_k"] == 5
    assert collate_packed([rows], pad_id=0).kwargs == {}


def test_a_flattened_pass_keeps_its_rows_apart_too(tiny, encoded):
    """The layout of a varlen kernel (all sequences of a pass in one row), here through SDPA
    (the boundaries a flash kernel would take are not read by it): the rows' own loss."""
    path, _ = tiny
    model = load_model(path)
    rows = encoded[:6]
    flat = Layout(4096, flatten=True)
    assert isolates(model, how=flat)
    with torch.no_grad():
        x, y, first = collate(rows, 0)
        padded, n = batch_loss(model, x, y, first)
        packed, m = packed_loss(model, collate_packed([rows[:2], rows[2:]], pad_id=0, how=flat))
    assert n == m and packed.item() == pytest.approx(padded.item(), rel=1e-5)


def test_packing_auto_is_on_with_cuda_and_follows_the_measurement_on_a_cpu():
    from pbb.training.sft import CPU_PACKING

    assert packing_wanted("auto", "cuda:0") and packing_wanted("on", "cpu")
    assert not packing_wanted("off", "cuda:0")
    assert packing_wanted("auto", "cpu") == CPU_PACKING


FP32 = {"learning_rate": 3e-3, "batch_size": 4, "warmup_ratio": 0.0, "precision": "fp32", "save_steps": 1000,
            "max_batch_tokens": 256}


@pytest.mark.slow
def test_a_stage_trained_packed_is_the_stage_trained_padded(tiny, rows, tmp_path):
    """Same steps, per-step losses and gradient norms within 1e-4, the same weights, and so the
    same greedy answers (what recall is measured on) for the stage's prompts."""
    path, tok = tiny
    kw = {"init": path, "base": path, "tokenizer": tok, "seed": 0, "progress": False}
    infos = {mode: train_sft(rows, cfg=TrainConfig(**FP32, epochs=3, packing=mode),
                             stage_dir=tmp_path / mode, **kw) for mode in ("off", "on")}
    assert infos["on"]["packed"] and not infos["off"]["packed"]
    a, b = (_metrics(tmp_path / m) for m in ("off", "on"))
    assert [r["step"] for r in b] == [r["step"] for r in a] == list(range(1, infos["on"]["steps"] + 1))
    assert [r["loss"] for r in b] == pytest.approx([r["loss"] for r in a], rel=1e-4)
    assert [r["grad_norm"] for r in b] == pytest.approx([r["grad_norm"] for r in a], rel=1e-4)
    assert a[-1]["loss"] < 0.9 * a[0]["loss"]  # it learned something to compare
    wa = load_model(tmp_path / "off" / MODEL)
    wb = load_model(tmp_path / "on" / MODEL)
    sa, sb = wa.state_dict(), wb.state_dict()
    assert max(_rel(sb[k], sa[k]) for k in sa) < 1e-4
    from pbb.rows.chat import encode_row

    for row in rows[:4]:
        ids, n_prompt = encode_row(tok, row)
        prompt = torch.tensor([ids[:n_prompt]])
        ga = wa.generate(prompt, max_new_tokens=12, do_sample=False)
        gb = wb.generate(prompt, max_new_tokens=12, do_sample=False)
        assert ga.tolist() == gb.tolist()


@pytest.mark.slow
def test_a_packed_stage_killed_mid_run_resumes_to_every_step_logged_once(tiny, rows, tmp_path):
    """The step records are read off the device in batches; a run killed between a checkpoint
    and the next batch resumes with every step's record written once, in order, with the
    uninterrupted run's values."""
    path, tok = tiny
    cfg = TrainConfig(**{**FP32, "save_steps": 3}, epochs=3, packing="on")
    kw = {"init": path, "base": path, "tokenizer": tok, "cfg": cfg, "seed": 0, "progress": False}
    whole = train_sft(rows, stage_dir=tmp_path / "whole", **kw)
    assert whole["steps"] > 7

    def kill_at_step_7(record):
        if record.get("step") == 7:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_sft(rows, stage_dir=tmp_path / "cut", on_metrics=kill_at_step_7, **kw)
    # killed while step 7's record was being written, before the checkpoint at step 9: the
    # last checkpoint is step 6's (whose records were written before it)
    assert [r["step"] for r in _metrics(tmp_path / "cut")] == list(range(1, 8))
    assert [c.name for c in (tmp_path / "cut" / "trainer").glob("checkpoint-*")] == ["checkpoint-6"]
    before = read_json(tmp_path / "cut" / "trainer" / "checkpoint-6" / "state.json")["seconds"]
    resumed = train_sft(rows, stage_dir=tmp_path / "cut", **kw)
    assert resumed["resumed"] and resumed["steps"] == whole["steps"]
    # its time counts the life before the kill, up to that life's last checkpoint
    assert whole["seconds_before"] == 0 < before
    assert resumed["seconds_before"] == pytest.approx(before, abs=0.1)
    assert resumed["seconds"] > resumed["seconds_before"]
    cut, ref = _metrics(tmp_path / "cut"), _metrics(tmp_path / "whole")
    assert [r["step"] for r in cut] == list(range(1, whole["steps"] + 1))
    assert [r["loss"] for r in cut] == pytest.approx([r["loss"] for r in ref], rel=1e-5)
    assert resumed["train_loss"] == pytest.approx(whole["train_loss"], rel=1e-5)


def test_packing_reads_yamls_bare_on_and_off():
    import yaml

    from pbb.config import TrainConfig

    assert TrainConfig(**yaml.safe_load("packing: on")).packing == "on"  # YAML's on is True
    assert TrainConfig(**yaml.safe_load("packing: off")).packing == "off"
    assert TrainConfig().packing == "auto" and TrainConfig().max_batch_tokens == "auto"
