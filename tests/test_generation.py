"""The slot engine (``eval.generator: static``, pbb.evaluation.generation) against transformers' generate.

The model is the tiny-random Llama with its weights redrawn at a larger scale (std 0.3): as built
(std 0.02) it answers every prompt with newlines, which any bug would reproduce. Redrawn, each
completion is a different string of tokens that depends on every earlier token and position, and
its logits are far from ties, so fp32 greedy completions must match token for token.

It never writes an end-of-turn token, so stopping is exercised with a stop set the model does
produce: every 12th token id (``generation_config.eos_token_id``, which ``end_of_turn_ids``
reads). About one token in twelve ends a completion: some end at their first token, some run
into ``max_new_tokens`` (both asserted, so the comparison covers both).

How these tests fail: an off-by-one in the decode position ids, a mask that hides the token being
written or shows one column too many, prefill keys copied without removing the left padding, or
a finished slot decoded further, each fail ``test_static_equals_generate`` (checked by hand by
breaking each one in pbb.evaluation.generation).
"""

from __future__ import annotations

import pytest
import torch

from pbb.errors import PbbError
from pbb.evaluation.generation import choose, generate_static, why_not_static
from pbb.evaluation.generators import HFGenerator
from pbb.models import end_of_turn_ids, load_model, load_tokenizer, resolve_model_path
from pbb.rows.chat import prompt_text

MAX_NEW = 14
#: varied lengths (2 to ~120 prompt tokens after the template), so every batch is left-padded
PROMPTS = [
    "Hi",
    "What is 2 + 3?",
    "Name three colours.",
    ("Write a function that adds one to its input.\n```python\ndef f(x):\n    return x + 1\n"
     "```\nWhat is f(4)?"),
    "Trace `g(7)` step by step, then give the answer on a line `Answer: <value>`." * 3,
    "ok",
    "def h(a, b):\n    c = a * b\n    if c > 10:\n        return c - a\n    return c + b\n\nh(3, 5) = ?",
    "Recall the code of `f12`.",
    "Count from one to ten in French, then in German, then in Spanish, one word per line.",
    "?",
    "Explain recursion in one sentence." * 2,
    "x = 4; y = x * x - 3; print(y)",
    "Say nothing.",
]


def _stop_ids(vocab: int) -> list[int]:
    return list(range(0, vocab, 12))


def redrawn_tiny():
    """(model, tokenizer): tiny-random redrawn and with the stop set of the module docstring."""
    path = resolve_model_path("tiny-random")
    tok = load_tokenizer(path)
    model = load_model(path).eval()
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" not in name:
                p.copy_(torch.randn(p.shape, generator=g) * 0.3)
    model.generation_config.eos_token_id = _stop_ids(model.config.vocab_size)
    return model, tok


@pytest.fixture(scope="module")
def tiny():
    return redrawn_tiny()


def _reference_tokens(model, tok, prompts: list[str], batch_size: int) -> list[list[int]]:
    """model.generate in length-sorted, left-padded batches (today's path), each completion cut
    after its first stop id (generate pads what follows)."""
    stop = set(end_of_turn_ids(tok, model.generation_config))
    texts = [prompt_text(tok, p) for p in prompts]
    lengths = [len(tok(t, add_special_tokens=False).input_ids) for t in texts]
    order = sorted(range(len(texts)), key=lambda i: -lengths[i])
    out: list[list[int]] = [[] for _ in texts]
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        enc = tok([texts[i] for i in idx], return_tensors="pt", padding=True, padding_side="left",
                  add_special_tokens=False)
        with torch.inference_mode():
            gen = model.generate(**enc, max_new_tokens=MAX_NEW, do_sample=False, temperature=None,
                                 top_p=None, top_k=None, eos_token_id=sorted(stop),
                                 pad_token_id=tok.pad_token_id)
        for i, row in zip(idx, gen[:, enc["input_ids"].shape[1]:].tolist()):
            cut = next((k + 1 for k, t in enumerate(row) if t in stop), len(row))
            out[i] = row[:cut]
    return out


@pytest.mark.parametrize("batch_size", [1, 3, 5])
def test_static_equals_generate(tiny, batch_size):
    """fp32 greedy: the slot engine's tokens are model.generate's, whatever the batch (slots:
    the same number, so slots are refilled while others decode)."""
    model, tok = tiny
    stop = end_of_turn_ids(tok, model.generation_config)
    ids = [tok(prompt_text(tok, p), add_special_tokens=False).input_ids for p in PROMPTS]
    assert len({len(x) for x in ids}) >= 10  # varied lengths: batches are padded
    ref = _reference_tokens(model, tok, PROMPTS, batch_size)
    done: list[int] = []
    got = generate_static(model, ids, slots=batch_size, max_new_tokens=MAX_NEW, stop_ids=stop,
                          on_done=lambda items: done.extend(i for i, _ in items))
    assert got == ref
    assert sorted(done) == list(range(len(PROMPTS)))  # each reported once, as it ended
    stopped = [t for t in got if len(t) < MAX_NEW]
    assert stopped and all(t[-1] in set(stop) for t in stopped)      # ended by a stop id
    assert any(len(t) == MAX_NEW and t[-1] not in set(stop) for t in got)  # cut by the cap
    assert any(len(t) == 1 for t in got)  # ended at the prefill's own token


def test_static_looking_every_few_steps(tiny):
    """As on CUDA (sync_every 4): slots are checked for an end only every few steps; a finished
    slot idles meanwhile, its further tokens discarded; the completions do not change."""
    model, tok = tiny
    stop = end_of_turn_ids(tok, model.generation_config)
    ids = [tok(prompt_text(tok, p), add_special_tokens=False).input_ids for p in PROMPTS]
    stats: dict = {}
    got = generate_static(model, ids, slots=4, max_new_tokens=MAX_NEW, stop_ids=stop,
                          sync_every=4, stats=stats)
    assert got == _reference_tokens(model, tok, PROMPTS, 4)
    assert stats["decode_steps"] % 4 == 0 and stats["prefills"] >= 2


@pytest.mark.parametrize("impl", ["eager", "pbb_sdpa_fp32"])
def test_static_equals_generate_other_attention(tiny, impl):
    """The same with transformers' eager attention (an additive float mask instead of SDPA's
    boolean one), and with pbb's fp32 SDPA, which SFT on a bf16 CPU switches to and the recall
    check then generates with (pbb.training.precision.fp32_attention_on_cpu)."""
    import copy

    from pbb.training.precision import fp32_attention_on_cpu

    model, tok = tiny
    model = copy.deepcopy(model)
    if impl == "eager":
        model.set_attn_implementation("eager")
    else:
        fp32_attention_on_cpu(model, True)
    assert model.config._attn_implementation == impl
    assert why_not_static(model) is None
    stop = end_of_turn_ids(tok, model.generation_config)
    ids = [tok(prompt_text(tok, p), add_special_tokens=False).input_ids for p in PROMPTS]
    got = generate_static(model, ids, slots=3, max_new_tokens=MAX_NEW, stop_ids=stop)
    assert got == _reference_tokens(model, tok, PROMPTS, 3)


def test_generate_text_same_for_both_engines(tiny):
    """HFGenerator end to end (template, decoding, on_batch), hf against static."""
    model, tok = tiny
    seen: dict[int, str] = {}
    hf = HFGenerator(model, tok, batch_size=4, engine="hf").generate(
        PROMPTS, max_new_tokens=MAX_NEW, progress=False)
    static = HFGenerator(model, tok, batch_size=4, engine="static").generate(
        PROMPTS, max_new_tokens=MAX_NEW, progress=False, on_batch=lambda items: seen.update(items))
    assert static == hf
    assert seen == dict(enumerate(static))
    assert len(set(hf)) == len(hf)  # the completions do differ from prompt to prompt


def test_static_sampling_runs_and_stops(tiny):
    """temperature > 0: sampled (not compared with generate's RNG use), every prompt answered,
    none longer than the cap, a stop id only at the end."""
    model, tok = tiny
    stop = set(end_of_turn_ids(tok, model.generation_config))
    ids = [tok(prompt_text(tok, p), add_special_tokens=False).input_ids for p in PROMPTS]
    torch.manual_seed(0)
    got = generate_static(model, ids, slots=4, max_new_tokens=MAX_NEW, stop_ids=sorted(stop),
                          temperature=1.0)
    assert all(1 <= len(t) <= MAX_NEW and not stop & set(t[:-1]) for t in got)


def test_choose():
    path = resolve_model_path("tiny-random")
    model = load_model(path)
    assert why_not_static(model) is None
    assert choose("auto", model) == "hf"  # a CPU: today's path stays the default
    assert choose("static", model) == "static"
    assert choose("hf", model) == "hf"
    with pytest.raises(PbbError, match="unknown generator"):
        choose("fast", model)
    model.generation_config.repetition_penalty = 1.3
    assert "repetition_penalty" in why_not_static(model)
    with pytest.raises(PbbError, match="static cannot run"):
        choose("static", model)
    assert choose("auto", model) == "hf"
