"""Evaluation throughput: pbb's batched generation vs a one-prompt-at-a-time generate loop.

Same model, same prompts (CoT queries of a quickstart-like data set), greedy, same
max_new_tokens, both stopping at the end of the assistant turn. Prints generations/s for both
and their ratio, and checks that both produced the same completions where they agree in length.

Usage: python benchmarks/bench_eval.py [--model smollm2-135m-instruct] [--prompts 32]
Goal (issue 3): ratio >= 8.
"""

import argparse
import time

import torch

from pbb import data
from pbb.evaluate import build_queries, generate
from pbb.models import end_of_turn_ids, load_model, load_tokenizer, resolve_model_path


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="smollm2-135m-instruct")
    p.add_argument("--prompts", type=int, default=32)
    p.add_argument("--batch-size", type=int, default=16)
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

    t = time.time()
    batched = generate(model, tok, prompts, batch_size=a.batch_size, max_new_tokens=a.max_new_tokens,
                       progress=False)
    t_batched = time.time() - t

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
    print(f"model {a.model}, {len(prompts)} {a.mode} prompts, max_new_tokens {a.max_new_tokens}")
    print(f"one at a time: {len(prompts) / t_single:.2f} generations/s ({t_single:.0f} s)")
    print(f"pbb batched (batch {a.batch_size}, length-sorted, left-padded): "
          f"{len(prompts) / t_batched:.2f} generations/s ({t_batched:.0f} s)")
    print(f"ratio: {t_single / t_batched:.2f}x; identical completions: {same}/{len(prompts)}")


if __name__ == "__main__":
    main()
