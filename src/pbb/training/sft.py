"""SFT of one stage: a plain, length-grouped PyTorch loop (completion-only loss, bf16 autocast).

Why not TRL's SFTTrainer here (RL stages still use TRL's GRPOTrainer): PBB rows are short
(~50-130 tokens) and many, so padding, per-step work and the rows' own length dominate. Measured
on this project's rows (``benchmarks/bench_sft.py``), the trainer path with its defaults trained
~3x fewer rows per second than this loop. The loop does only what a PBB stage needs:

* rows are encoded once with :func:`pbb.rows.chat.encode_row` (no system prompt unless configured:
  the same text evaluation prompts with), prompt tokens masked out of the loss;
* batches group rows of similar length (shuffled mega-batches sorted by length, as
  transformers' ``group_by_length`` does) and are **right-padded without an attention mask**: in
  a causal model a real token never attends to a later pad, so the mask is not needed and SDPA
  takes its fused causal path;
* or, with ``train.packing`` (on with CUDA by default), the rows of a whole optimizer step are
  **packed** end to end into sequences, each row attending only to itself (:mod:`pbb.training.packing`):
  no padding, fewer forward passes, the same update up to float rounding. On a CPU it measured
  no faster than the padded path (whose padding is small once lengths are grouped), so ``auto``
  leaves it off there;
* logits are computed only where the loss needs them (``logits_to_keep``): from the first
  completion position of the batch on (padded), at the completion positions only (packed);
* AdamW with fp32 master weights (fused), bf16 autocast where the hardware has it, warmup then
  cosine to ``min_lr_ratio`` of the peak, gradient clipping;
* no host synchronisation a step: the loss and gradient norm stay on the device and are read
  every :data:`FLUSH_EVERY` steps (and before checkpoints, recall checks and the end), every
  step's record still written once, in order.

An optional *recall check* runs after every epoch (the stopping rule of declarative stages:
train until the stage's instructions are recalled, see :mod:`pbb.experiments.run`). Checkpoints
(``trainer/checkpoint-N/``: model, optimizer, scheduler, position in the data) are written
every ``save_steps`` steps and after every recall check; an interrupted stage resumes from the
last one, logs cut back to it. Under ``accelerate launch`` the same loop trains in the launcher's
setup (DDP, FSDP, DeepSpeed ZeRO): :mod:`pbb.training.engine` does the backward, the step, the
checkpoints and the saved weights for it.
"""

from __future__ import annotations

import math
import os
import random
import time
from collections.abc import Callable
from pathlib import Path

from tqdm import tqdm

from pbb.config import TrainConfig
from pbb.errors import PbbError
from pbb.jsonio import append_jsonl, read_json
from pbb.rows.chat import encode_row
from pbb.training.engine import (
    STATE,
    launcher_setup,
    make_engine,
    write_checkpoint,
    written_by_one_process,
)
from pbb.training.load import load_trainable
from pbb.training.packing import (
    collate_packed,
    forward_passes,
    isolates,
    layout,
    pack,
    packed_loss,
)
from pbb.training.precision import fp32_attention_on_cpu, trim_heap, use_bf16
from pbb.training.stages import (
    METRICS,
    MODEL,
    finish_stage,
    save_model_atomic,
    start_stage,
)

TRIM_EVERY = 10  # optimizer steps between heap trims (see pbb.training.precision.trim_heap)
#: optimizer steps between reads of the step metrics off the device (one synchronisation for
#: all of them); they are also read before every checkpoint, recall check and the stage's end
FLUSH_EVERY = 10
#: ``train.max_batch_tokens: auto``: tokens of one forward pass on a CPU and on a GPU
MAX_BATCH_TOKENS = {"cpu": 1024, "cuda": 8192}
#: ``train.packing: auto`` on a CPU (on with CUDA): see :func:`packing_wanted`
CPU_PACKING = False
#: packed sequences are rounded up to a multiple of this on CUDA (fewer distinct shapes for
#: compiled kernels and the allocator); on a CPU they are not padded at all
CUDA_PAD_MULTIPLE = 64
#: set to 1 to ``torch.compile`` the model of an SFT stage on CUDA (not measured yet: off)
COMPILE_ENV = "PBB_TORCH_COMPILE"


def encode_rows(tok, rows: list[dict], max_length: int,
                system_prompt: str | None = None) -> list[tuple[list[int], int]]:
    """Token ids and prompt length of every row; rows cut to ``max_length`` tokens."""
    out = []
    for r in rows:
        ids, n_prompt = encode_row(tok, r, system_prompt)
        if n_prompt >= max_length:
            raise PbbError(f"train.max_length: a prompt of {n_prompt} tokens does not fit "
                           f"{max_length} (row of behaviour {r['behaviour_id']}); raise it")
        out.append((ids[:max_length], n_prompt))
    return out


def epoch_batches(lengths: list[int], batch_size: int, seed: int, epoch: int,
                  group_by_length: bool = True) -> list[list[int]]:
    """The micro-batches (row indices) of one epoch, deterministic in (seed, epoch).

    With ``group_by_length``: shuffle, cut into mega-batches of 50 batches, sort each by length,
    cut into batches, shuffle the batches. Rows of a batch then have similar lengths (little
    padding) while every epoch still sees a new order and new batch mates.
    """
    rng = random.Random(f"{seed}|sft-epoch|{epoch}")
    idx = list(range(len(lengths)))
    rng.shuffle(idx)
    if not group_by_length:
        return [idx[i:i + batch_size] for i in range(0, len(idx), batch_size)]
    mega = batch_size * 50
    batches = []
    for i in range(0, len(idx), mega):
        chunk = sorted(idx[i:i + mega], key=lambda j: -lengths[j])
        batches += [chunk[k:k + batch_size] for k in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def split_by_tokens(batch: list[int], lengths: list[int], max_tokens: int) -> list[list[int]]:
    """Cut a batch (longest rows first) into parts whose padded size stays under ``max_tokens``.

    A memory bound, not a change of the update: the loss is the token mean over the whole
    batch whatever the cut. Activations and logits grow with rows x width, so an unbounded
    batch of long CoT rows costs gigabytes on a small machine.
    """
    parts: list[list[int]] = []
    for i in sorted(batch, key=lambda j: -lengths[j]):
        if parts and (len(parts[-1]) + 1) * lengths[parts[-1][0]] <= max_tokens:
            parts[-1].append(i)
        else:
            parts.append([i])
    return parts


def max_batch_tokens(setting: int | str, device: str) -> int:
    """``train.max_batch_tokens`` resolved: ``auto`` is 1,024 tokens on a CPU, 8,192 on a GPU."""
    if setting == "auto":
        return MAX_BATCH_TOKENS["cuda" if device.startswith("cuda") else "cpu"]
    return int(setting)


def packing_wanted(setting: str, device: str) -> bool:
    """``train.packing`` resolved: ``auto`` packs with CUDA, and on a CPU only if
    :data:`CPU_PACKING` (measured there: see the config field's description)."""
    if setting == "auto":
        return device.startswith("cuda") or CPU_PACKING
    return setting == "on"


def step_parts(group: list[list[int]], lengths: list[int], max_tokens: int, rank: int,
               world: int, sequence: int | None = None, multiple: int = 1) -> list[tuple[list, bool]]:
    """This process's forward passes of one optimizer step: (rows, whether they are its own
    rows). Padded (``sequence`` None): its share of each batch, cut to the memory bound, as row
    indices. Packed: its share of the whole step packed into sequences of at most ``sequence``
    tokens, grouped into passes of at most ``max_tokens`` (padded to ``multiple``), as lists of
    sequences of row indices. A process whose share is empty runs one row with weight 0 (data
    parallel backward)."""
    if sequence:
        share = [i for b in group for i in b[rank::world]]
        if not share:
            return [([group[0][:1]], False)]
        sequences = pack(share, lengths, sequence)
        return [(p, True) for p in forward_passes(sequences, lengths, max_tokens, multiple)]
    parts = []
    for b in group:
        share = b[rank::world]
        parts += ([(p, True) for p in split_by_tokens(share, lengths, max_tokens)]
                  if share else [(b[:1], False)])
    return parts


def _floats(values: list) -> list[float]:
    """Tensors (or numbers) as floats, read off the device in one transfer where all are tensors."""
    import torch

    if values and all(isinstance(v, torch.Tensor) for v in values):
        return torch.stack([v.detach().double().reshape(()) for v in values]).tolist()
    return [float(v) if v is not None else float("nan") for v in values]


def collate(encoded: list[tuple[list[int], int]], pad_id: int):
    """Right-padded ``input_ids``, the loss targets (next token, -100 off the completion) and
    the first position whose logits the loss needs."""
    import torch

    width = max(len(ids) for ids, _ in encoded)
    x = torch.full((len(encoded), width), pad_id, dtype=torch.long)
    y = torch.full((len(encoded), width), -100, dtype=torch.long)
    for i, (ids, n_prompt) in enumerate(encoded):
        x[i, :len(ids)] = torch.tensor(ids)
        # position t predicts token t + 1: completion tokens n_prompt..len-1 are the targets of
        # positions n_prompt - 1 .. len - 2
        y[i, n_prompt - 1:len(ids) - 1] = torch.tensor(ids[n_prompt:])
    first = min(n for _, n in encoded) - 1
    return x, y, first


def batch_loss(model, x, y, first: int, attention_mask=None, n: int | None = None):
    """Mean cross-entropy over the completion tokens of a batch (and their count); ``n``, the
    count where the caller knows it, saves a device synchronisation."""
    import torch.nn.functional as F

    keep = x.shape[1] - first
    out = model(input_ids=x, attention_mask=attention_mask, logits_to_keep=keep, use_cache=False)
    logits = out.logits[:, -keep:].float()
    targets = y[:, first:]
    if n is None:
        n = int((targets != -100).sum())
    loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                           ignore_index=-100, reduction="sum")
    return loss / max(1, n), n


def lr_lambda(total: int, warmup: int, schedule: str, min_ratio: float) -> Callable[[int], float]:
    def f(step: int) -> float:
        if warmup and step < warmup:
            return (step + 1) / warmup
        if schedule == "constant":
            return 1.0
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        if schedule == "linear":
            return 1.0 - (1.0 - min_ratio) * progress
        return min_ratio + (1.0 - min_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))
    return f


def train_sft(rows: list[dict], *, init: Path | str, base: Path | str, tokenizer,
              cfg: TrainConfig, stage_dir: Path, seed: int, progress: bool = True,
              system_prompt: str | None = None,
              recall_check: Callable[[object], dict] | None = None,
              recall_target: float | None = None, max_epochs: int | None = None,
              on_metrics: Callable[[dict], None] | None = None, model_options=None) -> dict:
    """Train one SFT stage; returns (and stores in ``done.json``) what was done.

    Without ``recall_target``: ``cfg.epochs`` epochs (fractions allowed) or ``cfg.max_steps``.
    With it: whole epochs, ``recall_check(model)`` after each (it returns ``{"recall": r, ...}``),
    stopping once ``r >= recall_target`` or after ``max_epochs``; the learning-rate schedule
    spans ``max_epochs``. Every ``metrics.jsonl`` record also goes to ``on_metrics`` (trackers).
    """
    import torch

    from pbb import dist

    main, world, rank = dist.is_main(), dist.world(), dist.rank()

    def log_metrics(record: dict) -> None:
        if not main:  # one process writes the stage's files
            return
        append_jsonl(stage_dir / METRICS, record)
        if on_metrics is not None:
            on_metrics(record)

    stage_dir = Path(stage_dir)
    resume = start_stage(stage_dir)
    t_start = time.time()
    timing = {"encode": 0.0, "forward_backward": 0.0, "optimizer": 0.0, "checkpoint": 0.0,
              "recall": 0.0}
    t = time.time()
    encoded = encode_rows(tokenizer, rows, cfg.max_length, system_prompt)
    timing["encode"] = time.time() - t
    lengths = [len(ids) for ids, _ in encoded]
    device = dist.device()
    bf16 = use_bf16(cfg.precision)
    torch.manual_seed(seed)

    micro_per_epoch = math.ceil(len(encoded) / cfg.batch_size)
    steps_per_epoch = math.ceil(micro_per_epoch / cfg.grad_accum)
    planned_epochs = max_epochs if recall_target is not None else cfg.epochs
    total = math.ceil(steps_per_epoch * planned_epochs)
    if cfg.max_steps > 0:
        total = min(total, cfg.max_steps)
    warmup = math.ceil(cfg.warmup_ratio * total)

    state = {"step": 0, "epoch": 0, "micro": 0, "rows": 0, "tokens": 0, "loss_sum": 0.0,
             "loss_n": 0, "recall": [], "seconds": 0.0}
    # a one-process checkpoint holds the weights in model/; under the launcher accelerate's
    # load_state puts them into the prepared model
    start = resume / MODEL if resume and written_by_one_process(resume) else init
    model = load_trainable(start, base, cfg, model_options).to(device)
    if resume:
        state = read_json(resume / STATE)
    rows_at_start = state["rows"]
    model.train()
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable()
    if device.startswith("cuda") and os.environ.get(COMPILE_ENV) == "1":
        model.compile(dynamic=True)  # in place: the module, its state dict and saving unchanged
    # fused AdamW: one kernel for all parameters (on CUDA only where the parameters are plain
    # tensors: one process or DDP; FSDP and DeepSpeed keep their default)
    fused = device == "cpu" or (device.startswith("cuda") and launcher_setup() in ("single", "ddp"))
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad],
                                  lr=cfg.learning_rate, betas=(0.9, cfg.adam_beta2),
                                  weight_decay=cfg.weight_decay, fused=fused or None)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lr_lambda(total, warmup, cfg.schedule, cfg.min_lr_ratio))
    # one process, or DDP / FSDP / DeepSpeed as the launcher asked (pbb.training.engine)
    engine = make_engine(model, optimizer, scheduler, max_grad_norm=cfg.max_grad_norm,
                         batch_size=cfg.batch_size, bf16=bf16)
    if resume:
        engine.load_checkpoint(resume)
    inner = engine.inner  # what is saved and asked to recall; engine.model is what trains
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    autocast = torch.autocast(device_type=device.split(":")[0], dtype=torch.bfloat16, enabled=bf16)
    max_tokens = max_batch_tokens(cfg.max_batch_tokens, device)
    multiple = CUDA_PAD_MULTIPLE if device.startswith("cuda") else 1
    trainer_dir = stage_dir / "trainer"
    bar = tqdm(total=total, initial=state["step"], desc=f"train {stage_dir.name}", unit="step",
               disable=not (progress and main) or None, leave=False)
    t_run = time.time() - state["seconds"]

    # the step records whose loss and gradient norm are still on the device: read and written
    # every FLUSH_EVERY steps (one synchronisation), and before anything that needs them
    # (a checkpoint, whose state holds the loss sum and behind which the metrics are cut on
    # resume; a recall check, logged after its steps; the end), so every step's record is
    # written once, in order, as before
    pending: list[tuple[dict, object, object]] = []

    def flush() -> None:
        if not pending:
            return
        losses = torch.stack([loss for _, loss, _ in pending])
        if world > 1:  # each process's rows' share of the step's token mean, summed
            import torch.distributed as td

            td.all_reduce(losses)
        norms = _floats([norm for _, _, norm in pending])
        for (record, _, _), loss, norm in zip(pending, losses.tolist(), norms, strict=True):
            state["loss_sum"] += loss
            state["loss_n"] += 1
            log_metrics({**record, "loss": round(loss, 6), "grad_norm": round(norm, 4)})
        bar.set_postfix(loss=f"{loss:.3f}", epoch=state["epoch"] + 1)
        pending.clear()

    def checkpoint() -> None:
        flush()
        t = time.time()
        state["seconds"] = time.time() - t_run
        write_checkpoint(engine, trainer_dir, state["step"], state)
        timing["checkpoint"] += time.time() - t

    def check_recall() -> bool:
        """Run the recall check after an epoch (the main process asks, the others wait); True
        when the stage should stop."""
        flush()
        t = time.time()
        result = None
        inner.eval()
        with engine.for_generation() as m:
            if main:
                with autocast:
                    result = recall_check(m)
        inner.train()
        result = dist.broadcast(result)
        timing["recall"] += time.time() - t
        state["recall"].append({"epoch": state["epoch"], **result})
        log_metrics({"step": state["step"], "epoch": state["epoch"],
                     **{f"recall/{k}": v for k, v in result.items()}})
        return recall_target is not None and result["recall"] >= recall_target

    # on a CPU under bf16 autocast, attention in fp32 (see pbb.training.precision.fp32_attention_on_cpu)
    undo_attention = fp32_attention_on_cpu(inner, enabled=device == "cpu" and bf16)
    # packed only where the model, as it trains, keeps packed rows apart (pbb.training.packing.isolates)
    packed = packing_wanted(cfg.packing, device)
    # packed sequences as long as the pass where attention costs by the rows (a varlen kernel,
    # FlexAttention), short where it is a dense block-diagonal mask (SDPA, eager)
    how = layout(getattr(inner.config, "_attn_implementation", None), max_tokens)
    if packed and not dist.broadcast(isolates(engine.model, inner.config, pad, how)):
        if cfg.packing == "on":
            raise PbbError("train.packing: on, but this model does not keep packed rows apart "
                           "(its attention is not built from the position ids); use auto or off")
        packed = False  # auto: padded, as before
    stop = False  # checkpoints follow only recall checks that did not stop the stage
    while not stop and state["step"] < total:
        batches = epoch_batches(lengths, cfg.batch_size, seed, state["epoch"], cfg.group_by_length)
        while state["micro"] < len(batches) and state["step"] < total:
            group = batches[state["micro"]:state["micro"] + cfg.grad_accum]
            t = time.time()
            # this step's share of the loss, summed on the device (no synchronisation a step)
            step_loss = torch.zeros((), dtype=torch.float64, device=device)
            n_target = sum(len(encoded[i][0]) - encoded[i][1] for b in group for i in b)
            # this process's rows (all of them in one process), padded or packed, cut to the
            # memory bound
            parts = step_parts(group, lengths, max_tokens, rank, world,
                               how.sequence if packed else None, multiple)
            for k, (part, mine) in enumerate(parts):
                if packed:
                    batch = collate_packed([[encoded[i] for i in seq] for seq in part], pad,
                                           multiple, how).to(device)
                else:
                    rows_k = [encoded[i] for i in part]
                    x, y, first = collate(rows_k, pad)
                    x, y = x.to(device), y.to(device)
                # data parallel: gradients are reduced once a step, in the last backward
                last = k == len(parts) - 1
                with engine.quiet(last):
                    with autocast:
                        if packed:
                            loss, n = packed_loss(engine.model, batch)
                        else:
                            loss, n = batch_loss(engine.model, x, y, first,
                                                 n=sum(len(ids) - m for ids, m in rows_k))
                    # token mean over the whole optimizer step (every process's rows), however
                    # it was cut; DDP / FSDP / ZeRO average over processes, hence x world
                    engine.backward(loss * ((n / n_target) * world if mine else 0.0), last)
                if mine:
                    step_loss += loss.detach().double() * n / n_target
            step_tokens = sum(lengths[i] for b in group for i in b)
            step_rows = sum(len(b) for b in group)
            timing["forward_backward"] += time.time() - t
            t = time.time()
            grad_norm = engine.step(cfg.max_grad_norm)  # on the device
            timing["optimizer"] += time.time() - t
            state["micro"] += len(group)
            state["step"] += 1
            state["tokens"] += step_tokens
            state["rows"] += step_rows
            pending.append(({
                "step": state["step"], "epoch": round(state["epoch"] + state["micro"] / len(batches), 4),
                "loss": None, "learning_rate": scheduler.get_last_lr()[0], "grad_norm": None,
                "rows": step_rows, "tokens": step_tokens}, step_loss, grad_norm))
            bar.update(1)
            if state["step"] % FLUSH_EVERY == 0:
                flush()
            if state["step"] % TRIM_EVERY == 0:
                trim_heap()
            if state["step"] % cfg.save_steps == 0 and state["step"] < total:
                checkpoint()
        if state["micro"] >= len(batches):  # a whole epoch is done
            state["epoch"] += 1
            state["micro"] = 0
            if recall_check is not None and recall_target is not None:
                stop = check_recall()
                if not stop and state["step"] < total:
                    checkpoint()
    flush()
    bar.close()
    if recall_check is not None and recall_target is None:
        check_recall()  # measured once at the end: logged, no stopping rule
    undo_attention()  # the saved model names the usual implementation
    engine.save_model(lambda m, weights: save_model_atomic(m, tokenizer, stage_dir, weights))
    rows_here = state["rows"] - rows_at_start
    n_rows = len(encoded)
    prompt_tokens = sum(n for _, n in encoded)
    info = {
        "rows": n_rows, "steps": state["step"], "epochs": round(state["step"] / steps_per_epoch, 3),
        "train_loss": round(state["loss_sum"] / max(1, state["loss_n"]), 6),
        "tokens": state["tokens"],
        "tokens_per_row": round(sum(lengths) / max(1, n_rows), 1),
        "prompt_tokens_per_row": round(prompt_tokens / max(1, n_rows), 1),
        "completion_tokens_per_row": round((sum(lengths) - prompt_tokens) / max(1, n_rows), 1),
        # throughput of the training steps this process ran (recall checks and saving excluded)
        "rows_per_second": round(rows_here / max(1e-9, timing["forward_backward"] + timing["optimizer"]), 3),
        "seconds": round(time.time() - t_start, 1), "time_split": {k: round(v, 1) for k, v in timing.items()},
        "method": cfg.method, "bf16": bf16, "learning_rate": cfg.learning_rate,
        "planned_epochs": planned_epochs, "recall": state["recall"],
        "resumed": resume is not None, "processes": world, "packed": packed,
        "max_batch_tokens": max_tokens, **({"packed_sequence_tokens": how.sequence} if packed else {})}
    return finish_stage(stage_dir, info)
