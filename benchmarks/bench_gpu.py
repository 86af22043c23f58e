"""SFT and generation throughput of pbb's own code paths, for a model or a real model *shape*.

For one model — a pbb model name (``--model``: the bundled ``smollm2-135m-instruct``,
``tiny-random``, a local directory) or a shipped shape config instantiated with random weights
(``--shape configs/models/qwen3-1.7b.json``: the published config of that model, no weights
needed) — it measures:

* **SFT** (``sft`` lines, one per mode): optimizer steps of pbb's loop as :mod:`pbb.training.sft` runs
  them — fp32 master weights, bf16 autocast where the hardware has it, AdamW with the loop's
  settings, rows grouped by length (:func:`pbb.training.sft.epoch_batches`), cut to
  ``--max-batch-tokens`` (:func:`pbb.training.sft.split_by_tokens`), right-padded
  (:func:`pbb.training.sft.collate`), completion-only loss (:func:`pbb.training.sft.batch_loss`), backward and
  clipped step through :func:`pbb.training.engine.make_engine` — on synthetic rows (random token ids,
  lengths spread ±50% around ``--row-tokens``, the first ``--prompt-fraction`` of each row the
  prompt). Mode ``padded`` is that loop; mode ``packed`` runs where :mod:`pbb.training.packing` exists
  and keeps the model's packed rows apart (``isolates``): each step's rows packed
  (``pack``, first-fit decreasing) into sequences of at most ``--max-batch-tokens`` tokens, one
  a forward pass (``collate_packed``, position ids restarting per row), the loss through
  ``packed_loss``; where :func:`pbb.training.sft.step_parts` exists the step is cut exactly as the loop
  cuts it (packed sequences of ``packing.sequence_tokens`` tokens for the model's attention,
  grouped into passes of at most ``--max-batch-tokens``). ``tokens_per_s`` counts the rows' real tokens (padding excluded, as a pbb
  stage counts them) over the timed steps (``--warmup`` steps first, untimed); AdamW runs at
  learning rate 0 (the same work; the weights stay as loaded for the generation figures).
  ``mfu_pct`` = 6 x params x tokens/s against ``--peak-tflops`` (dense bf16 peak of the card;
  default 989 = H100/H200 SXM): every parameter counted for every token, although the LM head
  computes only the completion's logits, so it slightly over-counts the work done.
* **generation** (``generate`` lines, one per precision and engine): :class:`pbb.evaluation.generators.HFGenerator`
  on ``--gen-prompts`` synthetic prompts (chat template applied as in evaluation), greedy,
  ``--gen-new-tokens`` at most, through each of ``--gen-engines`` this pbb has (``hf``: batches
  of ``--gen-batch`` through ``model.generate``; ``static``: :mod:`pbb.evaluation.generation`'s slot engine,
  its slots on CUDA sized by free memory); ``completions_per_s``, and ``tokens_per_s`` of
  generated tokens (each completion's tokens up to and including its end-of-turn token, counted
  from what ``model.generate`` / ``generate_static`` return; a random model rarely stops, so it
  generates the whole budget).
* **peak memory** of each phase: ``torch.cuda.max_memory_allocated`` on a GPU (reset before the
  phase); on a CPU the process's peak resident size (``ru_maxrss``, never reset: the peak so far).

Every figure line is ``KIND key=value ...`` (machine-readable; ``--json FILE`` writes them too).
A shape model uses the SmolLM2 tokenizer for its prompts (ids beyond it are dropped when
decoding: nothing here reads the text).

Usage:
  python benchmarks/bench_gpu.py --tiny                           # seconds on a CPU (tiny-random)
  python benchmarks/bench_gpu.py --model smollm2-135m-instruct --steps 20 --tokens-per-step 16384
  python benchmarks/bench_gpu.py --shape configs/models/qwen3-0.6b.json --steps 8
  python benchmarks/bench_gpu.py --shape configs/models/qwen3-0.6b.json --set num_hidden_layers=2
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import random
import resource
import sys
import time
from pathlib import Path

GIB = 2**30
WORDS = ("def", "return", "if", "else", "for", "while", "x", "y", "z", "a", "b", "n", "+", "-",
         "*", "//", "%", "==", "(", ")", ":", "=", "0", "1", "2", "3", "5", "7", "11", "42",
         "compute", "value", "result", "input", "output", "function", "step", "loop")


def load_shape(path: Path, sets: dict) -> tuple[object, str]:
    """A transformers config from a shipped shape JSON (keys starting with ``_`` are notes),
    ``sets`` overriding its keys; and the shape's name."""
    from transformers import AutoConfig

    raw = json.loads(Path(path).read_text())
    values = {k: v for k, v in raw.items() if not k.startswith("_")}
    values.update(sets)
    model_type = values.pop("model_type")
    values.pop("architectures", None)
    return AutoConfig.for_model(model_type, **values), raw.get("_name", Path(path).stem)


def parse_sets(items: list[str]) -> dict:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--set {item!r}: expected key=value")
        try:
            out[key] = json.loads(value)
        except json.JSONDecodeError:
            out[key] = value
    return out


def build(args, device: str):
    """(model in fp32 on ``device``, tokenizer, name)."""
    import torch

    from pbb.models import (
        DEFAULT_MODEL,
        TINY_RANDOM,
        load_model,
        load_tokenizer,
        resolve_model_path,
        smollm2_path,
    )

    torch.manual_seed(0)
    if args.shape:
        from transformers import AutoModelForCausalLM

        cfg, name = load_shape(args.shape, parse_sets(args.set))
        with torch.device(device):  # initialised where it runs: seconds, not minutes, for 2B
            model = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32)
        tok = load_tokenizer(smollm2_path())
        return model, tok, name
    if args.set:
        raise SystemExit("--set changes a --shape config; a --model is used as it is")
    model_name = args.model or (TINY_RANDOM if args.tiny else DEFAULT_MODEL)
    path = resolve_model_path(model_name)
    return load_model(path, device=device), load_tokenizer(path), model_name


def n_params(model) -> int:
    """Parameters, tied ones once (what a saved model holds)."""
    return sum(p.numel() for p in model.parameters())


def sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def reset_peak(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()


def peak_gib(device: str) -> tuple[float, str]:
    import torch

    if device.startswith("cuda"):
        return torch.cuda.max_memory_allocated() / GIB, "cuda_max_allocated"
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GIB, "process_max_rss"


def synthetic_rows(n: int, row_tokens: int, prompt_fraction: float, vocab: int,
                   seed: int) -> list[tuple[list[int], int]]:
    """``(ids, n_prompt)`` rows as :func:`pbb.training.sft.encode_rows` gives them: lengths spread ±50%
    around ``row_tokens``, at least one prompt and one completion token each."""
    rng = random.Random(seed)
    rows = []
    for _ in range(n):
        length = max(2, round(row_tokens * rng.uniform(0.5, 1.5)))
        n_prompt = min(length - 1, max(1, round(length * prompt_fraction)))
        rows.append(([rng.randrange(3, vocab) for _ in range(length)], n_prompt))
    return rows


def sft_modes(requested: str) -> list[str]:
    modes = [m.strip() for m in requested.split(",") if m.strip()]
    for m in modes:
        if m not in ("padded", "packed"):
            raise SystemExit(f"--sft-modes: {m!r} is not padded or packed")
    return modes


def packing_module():
    """``pbb.training.packing`` where it exists with what the packed mode needs, else None."""
    try:
        from pbb.training import packing
    except ImportError:
        return None
    if not all(hasattr(packing, f) for f in ("pack", "collate_packed", "packed_loss")):
        return None
    return packing


def default_max_batch_tokens(device: str) -> int:
    """What a pbb stage uses by default on ``device`` (``train.max_batch_tokens``)."""
    from pbb.config import TrainConfig
    from pbb.training import sft

    setting = TrainConfig().max_batch_tokens
    if hasattr(sft, "max_batch_tokens"):  # ``auto``: by device
        return sft.max_batch_tokens(setting, device)
    return int(setting)


def measure_sft(model, tok, args, device: str, bf16: bool, mode: str) -> dict:
    """Timed optimizer steps of pbb's SFT loop on synthetic rows (``mode`` padded or packed)."""
    import inspect

    import torch

    from pbb.training import sft
    from pbb.training.engine import make_engine
    from pbb.training.precision import fp32_attention_on_cpu
    from pbb.training.sft import (
        batch_loss,
        collate,
        epoch_batches,
        lr_lambda,
        split_by_tokens,
    )

    rows_per_step = max(1, args.tokens_per_step // args.row_tokens)
    steps = args.warmup + args.steps
    config = model.config.get_text_config() if hasattr(model.config, "get_text_config") else model.config
    encoded = synthetic_rows(rows_per_step * steps, args.row_tokens, args.prompt_fraction,
                             config.vocab_size, seed=1)
    lengths = [len(ids) for ids, _ in encoded]
    batches = epoch_batches(lengths, rows_per_step, seed=0, epoch=0)
    pad = tok.pad_token_id if tok.pad_token_id is not None else 0
    packing = packing_module() if mode == "packed" else None
    multiple = getattr(sft, "CUDA_PAD_MULTIPLE", 1) if device.startswith("cuda") else 1
    says_n = "n" in inspect.signature(batch_loss).parameters
    # pbb's loop cuts a step into forward passes with sft.step_parts where this pbb has it (packed
    # sequences as long as packing.sequence_tokens allows for the model's attention)
    loop_parts = hasattr(sft, "step_parts") and "sequence" in inspect.signature(sft.step_parts).parameters
    sequence = None
    if packing is not None:
        sequence = args.max_batch_tokens
        if hasattr(packing, "sequence_tokens"):
            sequence = packing.sequence_tokens(getattr(model.config, "_attn_implementation", None),
                                               args.max_batch_tokens)
    model.train()
    # lr 0: the whole AdamW update runs, the weights stay as loaded (generation measures the
    # model itself afterwards)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=0.0,
                                  betas=(0.9, 0.999), weight_decay=0.0,
                                  fused=device == "cpu" or None)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(steps, 0, "constant", 0.0))
    engine = make_engine(model, optimizer, scheduler, max_grad_norm=1.0,
                         batch_size=rows_per_step, bf16=bf16)
    autocast = torch.autocast(device_type=device.split(":")[0], dtype=torch.bfloat16, enabled=bf16)
    undo = fp32_attention_on_cpu(model, enabled=device == "cpu" and bf16)
    losses, tokens, rows, width_sum, passes = [], 0, 0, 0, 0
    t0 = None
    reset_peak(device)
    for step, batch in enumerate(batches[:steps]):
        if step == args.warmup:
            sync(device)
            t0 = time.perf_counter()
        n_target = sum(len(encoded[i][0]) - encoded[i][1] for i in batch)
        if loop_parts:  # the loop's own cut: padded parts, or packed sequences grouped in passes
            parts = [part for part, _ in sft.step_parts([batch], lengths, args.max_batch_tokens,
                                                         0, 1, sequence, multiple)]
        elif packing is not None:  # an older pbb: one packed sequence a forward pass
            parts = [[seq] for seq in packing.pack(batch, lengths, args.max_batch_tokens)]
        else:
            parts = split_by_tokens(batch, lengths, args.max_batch_tokens)
        step_loss = 0.0
        for k, part in enumerate(parts):
            with autocast:
                if packing is not None:  # part: sequences of row indices
                    packed = packing.collate_packed([[encoded[i] for i in seq] for seq in part],
                                                    pad, multiple).to(device)
                    width = packed.input_ids.numel()
                    loss, n = packing.packed_loss(engine.model, packed)
                else:
                    rows_here = [encoded[i] for i in part]
                    n_here = sum(len(ids) - n_prompt for ids, n_prompt in rows_here)
                    x, y, first = collate(rows_here, pad)
                    x, y = x.to(device), y.to(device)
                    width = x.numel()
                    loss, n = (batch_loss(engine.model, x, y, first, n=n_here) if says_n
                               else batch_loss(engine.model, x, y, first))
            engine.backward(loss * (n / n_target), k == len(parts) - 1)
            step_loss = step_loss + loss.detach() * (n / n_target)  # read once, at the end
            if step >= args.warmup:
                width_sum += width
                passes += 1
        engine.step(1.0)
        losses.append(step_loss)
        if step >= args.warmup:
            tokens += sum(lengths[i] for i in batch)
            rows += len(batch)
    sync(device)
    seconds = time.perf_counter() - t0
    undo()
    losses = [float(x) for x in losses]
    mem, kind = peak_gib(device)
    del engine, optimizer, scheduler
    model.zero_grad(set_to_none=True)
    tps = tokens / seconds
    n = n_params(model)
    out = {"mode": mode, "steps": args.steps, "warmup": args.warmup,
           "rows_per_step": rows_per_step, "tokens_per_step": round(tokens / args.steps),
           "max_batch_tokens": args.max_batch_tokens,
           **({"packed_sequence_tokens": sequence} if sequence else {}),
           "forward_passes_per_step": round(passes / args.steps, 2),
           "padding_pct": round(100 * (1 - tokens / max(1, width_sum)), 2),
           "seconds": seconds, "step_ms": 1000 * seconds / args.steps,
           "tokens_per_s": tps, "rows_per_s": rows / seconds,
           "mfu_pct": 100 * 6 * n * tps / (args.peak_tflops * 1e12),
           "peak_mem_gib": round(mem, 3), "peak_mem_kind": kind,
           "loss_first": round(losses[0], 4), "loss_last": round(losses[-1], 4)}
    return out


def synthetic_prompts(n: int, words: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(max(1, round(words * rng.uniform(0.7, 1.3)))))
            for _ in range(n)]


@contextlib.contextmanager
def counting_generate(model, stop_ids: list[int]):
    """Count the tokens each completion generated (up to and including its first end-of-turn
    token) from what ``model.generate`` returns; yields the running list of counts."""
    import torch

    counts: list[int] = []
    original = model.generate

    def generate(*a, **kw):
        out = original(*a, **kw)
        ids = kw.get("input_ids", a[0] if a else None)
        new = out[:, ids.shape[1]:]
        stops = torch.isin(new, torch.tensor(stop_ids, device=new.device))
        has = stops.any(dim=1)
        first = stops.int().argmax(dim=1)
        counts.extend(torch.where(has, first + 1, torch.full_like(first, new.shape[1])).tolist())
        return out

    model.generate = generate
    static = None
    try:
        from pbb.evaluation import generation
    except ImportError:
        generation = None
    if generation is not None and hasattr(generation, "generate_static"):
        static = generation.generate_static

        def generate_static(*a, **kw):  # the slot engine: its token lists are cut after the stop
            out = static(*a, **kw)
            counts.extend(len(t) for t in out)
            return out

        generation.generate_static = generate_static
    try:
        yield counts
    finally:
        del model.generate  # the class's method again
        if static is not None:
            generation.generate_static = static


def engine_unusable(model, engine: str) -> str | None:
    """Why ``engine`` cannot run ``model`` here (None: it can)."""
    if engine == "hf":
        return None
    from pbb.evaluation.generation import why_not_static

    return why_not_static(model)


def measure_generate(model, tok, args, device: str, precision: str, engine: str = "hf") -> dict:
    import torch

    from pbb.evaluation.generators import HFGenerator
    from pbb.models import end_of_turn_ids

    dtype = torch.bfloat16 if precision == "bf16" else torch.float32
    model.to(dtype=dtype).eval()
    prompts = synthetic_prompts(args.gen_prompts, args.gen_prompt_words, seed=2)
    stop = end_of_turn_ids(tok, getattr(model, "generation_config", None))
    generator = HFGenerator(model, tok, batch_size=args.gen_batch, engine=engine)
    generator.generate(prompts, max_new_tokens=2, progress=False)  # warm up: kernels, allocator
    reset_peak(device)
    with counting_generate(model, stop) as counts:
        sync(device)
        t0 = time.perf_counter()
        outs = generator.generate(prompts, max_new_tokens=args.gen_new_tokens, progress=False)
        sync(device)
        seconds = time.perf_counter() - t0
    counted = "generate_output"
    if len(counts) != len(prompts):  # generate() did not go through model.generate: re-tokenize
        counts = [len(tok(o, add_special_tokens=False).input_ids) + 1 for o in outs]
        counted = "retokenized"
    mem, kind = peak_gib(device)
    new_tokens = sum(counts)
    prompt_tokens = [len(tok(p, add_special_tokens=False).input_ids) for p in prompts]
    return {"engine": engine, "precision": precision, "prompts": len(prompts),
            "batch": args.gen_batch if engine == "hf" or not device.startswith("cuda")
            else "by_free_memory",
            "max_new_tokens": args.gen_new_tokens,
            "prompt_words": args.gen_prompt_words,
            "user_tokens_per_prompt": round(sum(prompt_tokens) / len(prompts), 1),
            "seconds": seconds, "completions_per_s": len(prompts) / seconds,
            "new_tokens": new_tokens, "new_tokens_per_completion": round(new_tokens / len(prompts), 1),
            "tokens_per_s": new_tokens / seconds, "counted": counted,
            "peak_mem_gib": round(mem, 3), "peak_mem_kind": kind}


def fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    return str(value).replace(" ", "_")


def line(kind: str, fields: dict) -> str:
    return kind + " " + " ".join(f"{k}={fmt(v)}" for k, v in fields.items())


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    what = p.add_mutually_exclusive_group()
    what.add_argument("--model", help="a pbb model name or directory (default the bundled "
                      "smollm2-135m-instruct; tiny-random with --tiny)")
    what.add_argument("--shape", type=Path, help="a shape config (configs/models/*.json): "
                      "that architecture with random weights")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a key of the --shape config (e.g. num_hidden_layers=2)")
    p.add_argument("--tiny", action="store_true", help="seconds on a CPU: tiny-random, 2 steps, "
                   "small batches (sizes given explicitly still win)")
    p.add_argument("--steps", type=int, help="timed optimizer steps (default 10; --tiny 2)")
    p.add_argument("--warmup", type=int, help="untimed steps first (default 2; --tiny 1)")
    p.add_argument("--tokens-per-step", type=int, help="row tokens per optimizer step (default "
                   "8192; --tiny 256)")
    p.add_argument("--row-tokens", type=int, help="mean tokens a row (default 100, about a "
                   "quickstart row; --tiny 32)")
    p.add_argument("--prompt-fraction", type=float, default=0.5)
    p.add_argument("--max-batch-tokens", type=int, help="tokens of one forward pass "
                   "(train.max_batch_tokens: padded batches are cut to it, packed sequences "
                   "hold at most this many; default pbb's default on the device)")
    p.add_argument("--sft-modes", default="padded,packed", help="padded (pbb's loop) and packed "
                   "(where pbb.training.packing exists; skipped with a note otherwise)")
    p.add_argument("--gen-prompts", type=int, help="default 64; --tiny 4")
    p.add_argument("--gen-batch", type=int, help="default = --gen-prompts")
    p.add_argument("--gen-new-tokens", type=int, help="default 128; --tiny 8")
    p.add_argument("--gen-prompt-words", type=int, help="default 40; --tiny 8")
    p.add_argument("--gen-precision", default="auto", help="comma list of auto, bf16, fp32 "
                   "(auto: bf16 where the hardware has it, as eval.precision: auto)")
    p.add_argument("--gen-engines", default="hf,static", help="comma list of generation engines "
                   "(eval.generator: hf = batches through model.generate, static = pbb.evaluation.generation's "
                   "slot engine, where this pbb has it and it can run the model; else skipped "
                   "with a note)")
    p.add_argument("--no-sft", action="store_true")
    p.add_argument("--no-generate", action="store_true")
    p.add_argument("--peak-tflops", type=float,
                   default=float(os.environ.get("PBB_PEAK_TFLOPS", "989")),
                   help="the card's dense bf16 peak, TFLOP/s (default $PBB_PEAK_TFLOPS or 989 = "
                   "H100/H200 SXM)")
    p.add_argument("--device", help="default cuda:0 where CUDA is available, else cpu")
    p.add_argument("--json", type=Path, help="also write every figure to this JSON file")
    args = p.parse_args(argv)
    tiny = args.tiny
    for key, normal, small in (("steps", 10, 2), ("warmup", 2, 1), ("tokens_per_step", 8192, 256),
                               ("row_tokens", 100, 32), ("gen_prompts", 64, 4),
                               ("gen_new_tokens", 128, 8), ("gen_prompt_words", 40, 8)):
        if getattr(args, key) is None:
            setattr(args, key, small if tiny else normal)
    args.gen_batch = args.gen_batch or args.gen_prompts
    if min(args.steps, args.tokens_per_step, args.row_tokens, args.gen_prompts,
           args.gen_new_tokens) < 1 or args.warmup < 0:
        raise SystemExit("steps, sizes and counts must be >= 1 (--warmup >= 0)")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

    import torch

    from pbb.training.precision import use_bf16

    device = args.device or ("cuda:0" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda"):
        torch.cuda.set_device(device)
    bf16 = use_bf16("auto")
    args.max_batch_tokens = args.max_batch_tokens or default_max_batch_tokens(device)
    t = time.perf_counter()
    model, tok, name = build(args, device)
    load_s = time.perf_counter() - t
    n = n_params(model)
    gpu = torch.cuda.get_device_name(device) if device.startswith("cuda") else "-"
    head = {"model": name, "params": n, "device": device, "gpu": gpu, "torch": torch.__version__,
            "bf16_autocast": bf16, "peak_tflops": args.peak_tflops, "load_s": round(load_s, 2)}
    results: dict = {"bench_gpu": head, "sft": [], "generate": []}
    print(line("bench_gpu", head), flush=True)
    if not args.no_sft:
        for mode in sft_modes(args.sft_modes):
            if mode == "packed" and packing_module() is None:
                print("sft mode=packed skipped: no pbb.training.packing module (pack, collate_packed, "
                      "packed_loss) here", flush=True)
                continue
            if mode == "packed" and not packing_module().isolates(model, pad_id=tok.pad_token_id or 0):
                print("sft mode=packed skipped: this model does not keep packed rows apart "
                      "(pbb.training.packing.isolates); pbb trains it padded", flush=True)
                continue
            r = measure_sft(model, tok, args, device, bf16, mode)
            results["sft"].append(r)
            print(line("sft", r), flush=True)
            gc.collect()
            if device.startswith("cuda"):
                torch.cuda.empty_cache()
    if not args.no_generate:
        precisions = []
        for precision in [x.strip() for x in args.gen_precision.split(",") if x.strip()]:
            if precision not in ("auto", "bf16", "fp32"):
                raise SystemExit(f"--gen-precision: {precision!r} is not auto, bf16 or fp32")
            precisions.append(("bf16" if bf16 else "fp32") if precision == "auto" else precision)
        # fp32 first: casting to bf16 and back would not give the fp32 weights again
        engines = [x.strip() for x in args.gen_engines.split(",") if x.strip()]
        for engine in engines:
            if engine not in ("hf", "static"):
                raise SystemExit(f"--gen-engines: {engine!r} is not hf or static")
        for precision in sorted(dict.fromkeys(precisions), key=lambda x: x != "fp32"):
            for engine in dict.fromkeys(engines):
                why = engine_unusable(model, engine)
                if why:
                    print(f"generate engine={engine} precision={precision} skipped: {why}",
                          flush=True)
                    continue
                r = measure_generate(model, tok, args, device, precision, engine)
                results["generate"].append(r)
                print(line("generate", r), flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))


if __name__ == "__main__":
    sys.exit(main())
