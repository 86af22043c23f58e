"""Evaluation throughput: pbb's batched generation vs a one-prompt-at-a-time generate loop.

Same model, same prompts (CoT queries of a quickstart-like data set), greedy, same
max_new_tokens, both stopping at the end of the assistant turn. The loop is plain fp32
``model.generate`` per prompt; pbb's path is what ``pbb run`` does (batched, length-sorted, bf16
weights where supported). Prints generations/s for both, their ratio, and how many completions
are identical (bf16 can flip a near-tie in greedy decoding).

Usage: python benchmarks/bench_eval.py [--model smollm2-135m-instruct] [--prompts 32]
Goal (issue 3): ratio >= 8.
"""

import argparse
import time

import torch

from pbb import data
from pbb.evaluation.evaluate import build_queries
from pbb.evaluation.generators import HFGenerator
from pbb.models import end_of_turn_ids, load_model, load_tokenizer, resolve_model_path
from pbb.training.precision import use_bf16


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="smollm2-135m-instruct")
    p.add_argument("--prompts", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-new-tokens", type=int, default=128)
    p.add_argument("--mode", default="cot")
    a = p.parse_args()
    ds = data.generate("arithmetic", behaviours=60, demos=2, test_inputs=3, eval_fraction=0.5,
                       seed=0, progress=False, options={"max_args": 2, "max_statements": 2,
                                                         "min_statements": 1})
    prompts = [q["prompt"] for q in build_queries(ds, a.mode)][: a.prompts]
    path = resolve_model_path(a.model)
    tok = load_tokenizer(path)
    model = load_model(path).eval()
    # pbb's path generates with bf16 weights where the CPU/GPU supports it (eval.precision: auto)
    fast = load_model(path).to(torch.bfloat16 if use_bf16("auto") else torch.float32).eval()

    t = time.time()
    batched = HFGenerator(fast, tok, batch_size=a.batch_size).generate(
        prompts, max_new_tokens=a.max_new_tokens, progress=False)
    t_batched = time.time() - t
    t = time.time()
    batched32 = HFGenerator(model, tok, batch_size=a.batch_size).generate(
        prompts, max_new_tokens=a.max_new_tokens, progress=False)
    t_batched32 = time.time() - t

    t = time.time()
    single = []
    with torch.inference_mode():
        for prompt in prompts:
            ids = tok.apply_chat_template([{"role": "user", "content": prompt}],
                                          add_generation_prompt=True, return_tensors="pt",
                                          return_dict=True)
            out = model.generate(**ids, max_new_tokens=a.max_new_tokens, do_sample=False,
                                 eos_token_id=end_of_turn_ids(tok), pad_token_id=tok.pad_token_id)
            single.append(tok.decode(out[0, ids["input_ids"].shape[1]:], skip_special_tokens=True).strip())
    t_single = time.time() - t
    same = sum(x == y for x, y in zip(batched, single))
    same32 = sum(x == y for x, y in zip(batched32, single))
    print(f"model {a.model}, {len(prompts)} {a.mode} prompts, max_new_tokens {a.max_new_tokens}")
    print(f"one at a time: {len(prompts) / t_single:.2f} generations/s ({t_single:.0f} s)")
    print(f"pbb batched (batch {a.batch_size}, length-sorted, left-padded, {fast.dtype}): "
          f"{len(prompts) / t_batched:.2f} generations/s ({t_batched:.0f} s)")
    print(f"ratio: {t_single / t_batched:.2f}x; identical completions: {same}/{len(prompts)}")
    print(f"pbb batched with eval.precision=fp32: {len(prompts) / t_batched32:.2f} generations/s "
          f"({t_batched32:.0f} s); ratio {t_single / t_batched32:.2f}x; identical completions: "
          f"{same32}/{len(prompts)}")


if __name__ == "__main__":
    main()
