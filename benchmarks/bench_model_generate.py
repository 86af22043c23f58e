"""Generation engines (``eval.generator``): transformers' generate (``hf``) against pbb's slot
engine (``static``), on the quickstart's CoT queries.

The queries are those of ``configs/quickstart.yaml`` (its data set, 30 eval + 15 train behaviours
x 3 test inputs = 135 CoT prompts; ``--prompts`` takes the first N, ``--repeat`` repeats the set
for a bigger workload). Greedy, ``max_new_tokens`` 160 and batch size 96 as the quickstart
evaluates. Each engine runs in fp32 and with bf16 weights (what ``eval.precision: auto`` gives on
bf16 hardware). Prints, per engine and precision, wall time, generated tokens/s (every token
decoded, the stop token included) and completions/s (median of ``--rounds`` runs, the engines
alternated; and per CPU second of this process, the figure a busy machine skews least, best
with ``--threads 1``), the decode work (rows run by the decode steps: hf keeps decoding finished rows until
its batch's longest ends, static refills or drops their slots; a figure no busy machine skews),
and how many completions differ from hf's in the same precision. ``--explain`` shows, for each bf16 difference, the first token where the
two diverge and the two candidates' logits there (a near-tie that bf16 rounding flips).

Usage: python benchmarks/bench_model_generate.py [--model smollm2-135m-instruct]
    [--prompts 135] [--repeat 1] [--batch-size 96] [--max-new-tokens 160]
    [--engines hf,static] [--precisions fp32,bf16] [--rounds 1] [--threads N] [--explain]
Goal (issue 24): >= 20,000 generated tokens/s for the bundled model on an H200 (static).
"""

import argparse
import copy
import math
import statistics
import time

import torch

from pbb import data
from pbb.config import load_config
from pbb.evaluation.evaluate import build_queries
from pbb.evaluation.generation import cuda_slots, generate_static
from pbb.models import end_of_turn_ids, load_model, load_tokenizer, resolve_model_path
from pbb.rows.chat import prompt_text


def hf_tokens(model, tok, ids, *, batch_size, max_new_tokens, stop,
              stats: dict | None = None) -> list[list[int]]:
    """pbb's hf path (HFGenerator, engine hf) returning token ids, cut after the stop.
    ``stats``: ``decode_steps`` and ``slot_steps`` (rows decoded, finished ones included)."""
    steps = rows = 0
    order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
    out: list[list[int]] = [[] for _ in ids]
    stops = set(stop)
    device = next(model.parameters()).device
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        width = max(len(ids[i]) for i in idx)
        input_ids = torch.tensor([[tok.pad_token_id] * (width - len(ids[i])) + ids[i] for i in idx],
                                 device=device)
        mask = torch.tensor([[0] * (width - len(ids[i])) + [1] * len(ids[i]) for i in idx],
                            device=device)
        with torch.inference_mode():
            gen = model.generate(input_ids=input_ids, attention_mask=mask,
                                 max_new_tokens=max_new_tokens, do_sample=False, temperature=None,
                                 top_p=None, top_k=None, eos_token_id=stop,
                                 pad_token_id=tok.pad_token_id)
        for i, row in zip(idx, gen[:, width:].tolist()):
            cut = next((k + 1 for k, t in enumerate(row) if t in stops), len(row))
            out[i] = row[:cut]
        steps += gen.shape[1] - width - 1  # the first token comes from the prefill
        rows += (gen.shape[1] - width - 1) * len(idx)
    if stats is not None:
        stats.update(decode_steps=steps, slot_steps=rows, prefills=math.ceil(len(ids) / batch_size),
                     slots=batch_size)
    return out


def explain(models: dict, tok, ids, a: list[int], b: list[int]) -> str:
    """Where two completions of one prompt diverge, and each model's logits of both candidates
    there (computed unbatched): a near-tie shows as a gap of a rounding step or two."""
    j = next((k for k, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)) - 1)
    parts = [f"token {j}: hf {tok.decode([a[j]])!r} vs {tok.decode([b[j]])!r}"]
    for name, model in models.items():
        device = next(model.parameters()).device
        with torch.inference_mode():
            logits = model(input_ids=torch.tensor([ids + a[:j]], device=device)).logits[0, -1]
        x, y = logits[a[j]].float().item(), logits[b[j]].float().item()
        parts.append(f"{name} logits {x:.4f} vs {y:.4f} (gap {abs(x - y):.4f})")
    return "; ".join(parts)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--model", default="smollm2-135m-instruct")
    p.add_argument("--prompts", type=int, default=None)
    p.add_argument("--repeat", type=int, default=1)
    p.add_argument("--batch-size", type=int, default=96)
    p.add_argument("--max-new-tokens", type=int, default=160)
    p.add_argument("--engines", default="hf,static")
    p.add_argument("--precisions", default="fp32,bf16")
    p.add_argument("--rounds", type=int, default=1, help="timed runs per engine (alternated)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    p.add_argument("--explain", action="store_true")
    a = p.parse_args()
    if a.threads:
        torch.set_num_threads(a.threads)
    cfg = load_config("configs/quickstart.yaml")
    d = cfg.data
    ds = data.generate(d.domain, behaviours=d.behaviours, demos=d.demos, test_inputs=d.test_inputs,
                       eval_fraction=d.eval_fraction, seed=cfg.seed, options=d.options,
                       progress=False)
    queries = build_queries(ds, "cot", max_train_behaviours=cfg.eval.max_train_behaviours)
    prompts = [q["prompt"] for q in queries][:a.prompts] * a.repeat
    path = resolve_model_path(a.model)
    tok = load_tokenizer(path)
    ids = [tok(prompt_text(tok, q), add_special_tokens=False).input_ids for q in prompts]
    device = "cuda" if torch.cuda.is_available() else "cpu"
    base = load_model(path).eval()
    stop = end_of_turn_ids(tok, base.generation_config)
    print(f"model {a.model} on {device}, {len(prompts)} CoT prompts ({min(map(len, ids))}-"
          f"{max(map(len, ids))} tokens), max_new_tokens {a.max_new_tokens}, batch size "
          f"{a.batch_size}, torch threads {torch.get_num_threads()}")
    for precision in a.precisions.split(","):
        dtype = torch.bfloat16 if precision == "bf16" else torch.float32
        model = copy.deepcopy(base).to(device=device, dtype=dtype).eval()
        results: dict[str, list[list[int]]] = {}
        work: dict[str, dict] = {}
        engines = a.engines.split(",")
        for engine in engines:  # warm-up: first calls allocate, load kernels
            if engine == "hf":
                hf_tokens(model, tok, ids[:2], batch_size=2, max_new_tokens=4, stop=stop)
            else:
                generate_static(model, ids[:2], slots=2, max_new_tokens=4, stop_ids=stop)
        times: dict[str, list[float]] = {e: [] for e in engines}
        cpus: dict[str, list[float]] = {e: [] for e in engines}
        for r in range(a.rounds):  # alternate engines, so that a busy machine slows both alike
            for engine in (engines if r % 2 == 0 else engines[::-1]):
                stats: dict = {}
                if device == "cuda":
                    torch.cuda.synchronize()
                t, cpu = time.perf_counter(), time.process_time()
                if engine == "hf":
                    toks = hf_tokens(model, tok, ids, batch_size=a.batch_size,
                                     max_new_tokens=a.max_new_tokens, stop=stop, stats=stats)
                else:
                    slots = a.batch_size if device == "cpu" else cuda_slots(
                        model, dtype, max(map(len, ids)) + a.max_new_tokens, len(ids))
                    toks = generate_static(model, ids, slots=slots,
                                           max_new_tokens=a.max_new_tokens, stop_ids=stop,
                                           stats=stats)
                if device == "cuda":
                    torch.cuda.synchronize()
                times[engine].append(time.perf_counter() - t)
                cpus[engine].append(time.process_time() - cpu)
                print(f"  ({precision} {engine} run {r + 1}: {times[engine][-1]:.1f} s, "
                      f"{cpus[engine][-1]:.1f} CPU s)", flush=True)
                results[engine] = toks
                work[engine] = stats
        for engine in engines:
            toks, st = results[engine], work[engine]
            secs = statistics.median(times[engine])
            cpu = statistics.median(cpus[engine])
            n_tok = sum(map(len, toks))
            size = f"batch {st['slots']}" if engine == "hf" else f"{st['slots']} slots"
            print(f"{precision} {engine} ({size}): median {secs:.1f} s of "
                  f"{', '.join(f'{x:.1f}' for x in times[engine])}; {n_tok / secs:,.0f} generated "
                  f"tokens/s, {len(toks) / secs:.2f} completions/s; {n_tok / cpu:,.0f} tokens "
                  f"per CPU second (median {cpu:.1f} CPU s) ({n_tok} tokens, "
                  f"{sum(len(x) < a.max_new_tokens for x in toks)} stopped before the cap); "
                  f"decode work {st['slot_steps']:,} rows in {st['decode_steps']} steps, "
                  f"{st['prefills']} prefills")
        if "hf" in results:
            ref = tok.batch_decode(results["hf"], skip_special_tokens=True)
            for engine, toks in results.items():
                if engine == "hf":
                    continue
                got = tok.batch_decode(toks, skip_special_tokens=True)
                diff = [i for i, (x, y) in enumerate(zip(got, ref)) if x.strip() != y.strip()]
                print(f"{precision} {engine} vs hf: {len(diff)}/{len(ref)} completions differ")
                if a.explain:
                    for i in diff:
                        models = {precision: model, **({"fp32": base} if dtype != torch.float32
                                                       else {})}
                        print(f"  prompt {i}: " + explain(models, tok, ids[i], results["hf"][i],
                                                          toks[i]))


if __name__ == "__main__":
    main()
