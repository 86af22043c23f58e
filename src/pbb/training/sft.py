"""SFT of one stage: a plain, length-grouped PyTorch loop (completion-only loss, bf16 autocast).

Why not TRL's SFTTrainer here (RL stages still use TRL's GRPOTrainer): PBB rows are short
(~50-130 tokens) and many, so padding, per-step work and the rows' own length dominate, and on
this project's rows the trainer path with its defaults trains several times fewer rows per
second than this loop (``benchmarks/bench_sft.py``; figures in docs/benchmarks.md). The loop
does only what a PBB stage needs:

* rows are encoded once with :func:`pbb.rows.chat.encode_rows` (no system prompt unless configured:
  the same text evaluation prompts with), prompt tokens masked out of the loss;
* batches group rows of similar length (shuffled mega-batches sorted by length, as
  transformers' ``group_by_length`` does) and are **right-padded without an attention mask**: in
  a causal model a real token never attends to a later pad, so the mask is not needed and SDPA
  takes its fused causal path;
* or, with ``train.packing`` (on with CUDA by default), the rows of a whole optimizer step are
  **packed** end to end into sequences, each row attending only to itself (:mod:`pbb.training.packing`):
  no padding, fewer forward passes, the same update up to float rounding. On a CPU it is no
  faster than the padded path (whose padding is small once lengths are grouped;
  docs/benchmarks.md), so ``auto`` leaves it off there;
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
last one, logs cut back to it. A stop (Ctrl-C, SIGTERM) in one process also writes one: a step
is finished first (:func:`pbb.interrupts.deferred`), a recall check is dropped and run again on
resume, so a stop loses no step. The loop is :class:`SFTRun`, where it stands :class:`SFTState`
(what a checkpoint saves); :func:`train_sft` runs it. Under ``accelerate launch`` the same loop trains in the launcher's
setup (DDP, FSDP, DeepSpeed ZeRO): :mod:`pbb.training.engine` does the backward, the step, the
checkpoints and the saved weights for it.
"""

from __future__ import annotations

import contextlib
import math
import os
import random
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import NamedTuple

from tqdm import tqdm

from pbb import clock, dist, interrupts
from pbb.config import TrainConfig
from pbb.errors import PbbError
from pbb.jsonio import append_jsonl, read_json
from pbb.rows import chat
from pbb.store import METRICS, MODEL, TRAINER, finish_stage, start_stage
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
from pbb.training.stages import save_model_atomic

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
#: the parts of a stage's working time (pbb.clock) that ``done.json``'s ``time_split`` counts
TIME_SPLIT = ("encode", "forward_backward", "optimizer", "checkpoint", "recall")
#: set to 1 to ``torch.compile`` the model of an SFT stage on CUDA (not measured yet: off)
COMPILE_ENV = "PBB_TORCH_COMPILE"


def encode_rows(tok, rows: list[dict], max_length: int,
                system_prompt: str | None = None) -> list[tuple[list[int], int]]:
    """Token ids and prompt length of every row; rows cut to ``max_length`` tokens."""
    out = []
    for r, (ids, n_prompt) in zip(rows, chat.encode_rows(tok, rows, system_prompt), strict=True):
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


def pad_id(tokenizer) -> int:
    """The id :func:`collate` pads with: the tokenizer's pad token, else 0 (a padded position
    is never a target, and right padding changes no logit before it)."""
    return tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0


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


@dataclass
class SFTState:
    """Where a stage's training stands: what a checkpoint's ``state.json`` holds (in this key
    order) and what a resumed run starts from."""

    step: int = 0  # optimizer steps done
    epoch: int = 0  # whole epochs done
    micro: int = 0  # micro-batches of the current epoch done
    rows: int = 0
    tokens: int = 0
    loss_sum: float = 0.0  # the logged step losses, summed (train_loss is their mean)
    loss_n: int = 0
    recall: list[dict] = field(default_factory=list)  # one record per recall check
    seconds: float = 0.0  # training time of the runs before this one, up to their checkpoint


class LifeStart(NamedTuple):
    """Where this process's life of a stage began (a resumed stage's totals span earlier lives):
    what it trained since is its rate."""

    step: int
    rows: int
    tokens: int
    checks: int  # recall checks done before


class SFTRun:
    """One SFT stage, set up by the constructor (rows encoded, steps planned, model, optimizer
    and engine built, a checkpoint resumed) and trained by :meth:`run`.

    :meth:`run` trains :meth:`epoch` after epoch until the planned steps are done or
    :meth:`should_stop` ends the stage; an epoch is :meth:`step` after :meth:`step` (one
    optimizer step over ``train.grad_accum`` micro-batches). A step's loss and gradient norm stay
    on the device until :meth:`flush` reads them all at once and :meth:`log` writes their
    records; :meth:`checkpoint` saves where the run stands (:class:`SFTState`).
    """

    def __init__(self, rows: list[dict], *, init: Path | str, base: Path | str, tokenizer,
                 cfg: TrainConfig, stage_dir: Path, seed: int, progress: bool = True,
                 system_prompt: str | None = None,
                 recall_check: Callable[[object], dict] | None = None,
                 recall_target: float | None = None, max_epochs: int | None = None,
                 on_metrics: Callable[[dict], None] | None = None, model_options=None):
        import torch

        self.cfg, self.seed, self.tokenizer = cfg, seed, tokenizer
        self.recall_check, self.recall_target = recall_check, recall_target
        self.on_metrics = on_metrics
        self.main, self.world, self.rank = dist.is_main(), dist.world(), dist.rank()
        self.stage_dir = Path(stage_dir)
        self.resume = start_stage(self.stage_dir)
        self.t_start = clock.now()
        self.timing = dict.fromkeys(TIME_SPLIT, 0.0)  # seconds spent on each part of the stage
        with self._timed("encode"):
            self.encoded = encode_rows(tokenizer, rows, cfg.max_length, system_prompt)
        self.lengths = [len(ids) for ids, _ in self.encoded]
        self.device = dist.device()
        self.bf16 = use_bf16(cfg.precision)
        torch.manual_seed(seed)
        self._plan(max_epochs)
        self.state = SFTState()
        self._build(init, base, model_options)
        self.pad = pad_id(tokenizer)
        self.autocast = torch.autocast(device_type=self.device.split(":")[0], dtype=torch.bfloat16,
                                       enabled=self.bf16)
        self.max_tokens = max_batch_tokens(cfg.max_batch_tokens, self.device)
        self.multiple = CUDA_PAD_MULTIPLE if self.device.startswith("cuda") else 1
        self.trainer_dir = self.stage_dir / TRAINER
        self.bar = tqdm(total=self.total, initial=self.state.step,
                        desc=f"train {self.stage_dir.name}", unit="step",
                        disable=not (progress and self.main) or None, leave=False)
        self.seconds_before = self.state.seconds  # earlier lives', up to their last checkpoint
        self.t_run = clock.now() - self.seconds_before
        # the step records whose loss and gradient norm are still on the device: read and
        # written every FLUSH_EVERY steps (one synchronisation), and before anything that needs
        # them (a checkpoint, whose state holds the loss sum and behind which the metrics are
        # cut on resume; a recall check, logged after its steps; the end), so every step's
        # record is written once, in order
        self.pending: list[tuple[dict, object, object]] = []
        # on a CPU under bf16 autocast, attention in fp32 (see
        # pbb.training.precision.fp32_attention_on_cpu)
        self.undo_attention = fp32_attention_on_cpu(
            self.inner, enabled=self.device == "cpu" and self.bf16)
        # packed sequences as long as the pass where attention costs by the rows (a varlen
        # kernel, FlexAttention), short where it is a dense block-diagonal mask (SDPA, eager)
        self.how = layout(getattr(self.inner.config, "_attn_implementation", None),
                          self.max_tokens)
        self.packed = self._packing()

    def _plan(self, max_epochs: int | None) -> None:
        """Steps per epoch, the planned epochs and steps, and the warmup: with a recall target,
        the learning-rate schedule spans ``max_epochs``."""
        cfg = self.cfg
        self.micro_per_epoch = math.ceil(len(self.encoded) / cfg.batch_size)
        self.steps_per_epoch = math.ceil(self.micro_per_epoch / cfg.grad_accum)
        self.planned_epochs = max_epochs if self.recall_target is not None else cfg.epochs
        total = math.ceil(self.steps_per_epoch * self.planned_epochs)
        if cfg.max_steps > 0:
            total = min(total, cfg.max_steps)
        self.total = total
        self.warmup = math.ceil(cfg.warmup_ratio * total)

    def _build(self, init: Path | str, base: Path | str, model_options) -> None:
        """The model, optimizer, scheduler and engine, and a checkpoint's state where the stage
        resumes from one."""
        import torch

        cfg, resume = self.cfg, self.resume
        # a one-process checkpoint holds the weights in model/; under the launcher accelerate's
        # load_state puts them into the prepared model
        start = resume / MODEL if resume and written_by_one_process(resume) else init
        model = load_trainable(start, base, cfg, model_options).to(self.device)
        if resume:
            self.state = SFTState(**read_json(resume / STATE))
        # where this life began: what it trains is its rate (rows/s, and a resumed stage's
        # rate in the machine's rates: last_life)
        self.life_start = LifeStart(self.state.step, self.state.rows, self.state.tokens,
                                    len(self.state.recall))
        model.train()
        if cfg.gradient_checkpointing:
            model.gradient_checkpointing_enable()
        if self.device.startswith("cuda") and os.environ.get(COMPILE_ENV) == "1":
            model.compile(dynamic=True)  # in place: the module, its state dict and saving unchanged
        # fused AdamW: one kernel for all parameters (on CUDA only where the parameters are
        # plain tensors: one process or DDP; FSDP and DeepSpeed keep their default)
        fused = self.device == "cpu" or (self.device.startswith("cuda")
                                         and launcher_setup() in ("single", "ddp"))
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad],
                                      lr=cfg.learning_rate, betas=(0.9, cfg.adam_beta2),
                                      weight_decay=cfg.weight_decay, fused=fused or None)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            optimizer, lr_lambda(self.total, self.warmup, cfg.schedule, cfg.min_lr_ratio))
        # one process, or DDP / FSDP / DeepSpeed as the launcher asked (pbb.training.engine)
        self.engine = make_engine(model, optimizer, self.scheduler,
                                  max_grad_norm=cfg.max_grad_norm, batch_size=cfg.batch_size,
                                  bf16=self.bf16)
        if resume:
            self.engine.load_checkpoint(resume)
        self.inner = self.engine.inner  # what is saved and asked to recall; engine.model trains

    def _packing(self) -> bool:
        """Whether steps are packed: where ``train.packing`` wants it and the model, as it
        trains, keeps packed rows apart (:func:`pbb.training.packing.isolates`)."""
        if not packing_wanted(self.cfg.packing, self.device):
            return False
        if dist.broadcast(isolates(self.engine.model, self.inner.config, self.pad, self.how)):
            return True
        if self.cfg.packing == "on":
            raise PbbError("train.packing: on, but this model does not keep packed rows apart "
                           "(its attention is not built from the position ids); use auto or off")
        return False  # auto: padded

    @contextlib.contextmanager
    def _timed(self, part: str):
        """Count the block's working time towards ``part`` of the stage's ``time_split``."""
        t = clock.now()
        yield
        self.timing[part] += clock.now() - t

    def run(self) -> dict:
        """Train the stage to its end, save the model, and return (and store in ``done.json``)
        what was done."""
        stop = False  # checkpoints follow only recall checks that did not stop the stage
        # an epoch whose steps are all done but not its end (a stop's checkpoint at its last
        # step, or in its recall check) still ends here, its recall check with it
        while not stop and (self.state.step < self.total
                            or self.state.micro == self.micro_per_epoch):
            stop = self.epoch()
        self.flush()
        self.bar.close()
        if self.recall_check is not None and self.recall_target is None:
            with self._kept_if_stopped():
                self.check_recall()  # measured once at the end: logged, no stopping rule
        self.undo_attention()  # the saved model names the usual implementation
        self.engine.save_model(
            lambda m, weights: save_model_atomic(m, self.tokenizer, self.stage_dir, weights))
        return finish_stage(self.stage_dir, self.summary())

    def epoch(self) -> bool:
        """Train the rest of the current epoch (all of it but where a resumed run starts inside
        it, or the planned steps end inside it); after a whole epoch, the stopping rule and a
        checkpoint. True when the stage should stop."""
        s = self.state
        batches = epoch_batches(self.lengths, self.cfg.batch_size, self.seed, s.epoch,
                                self.cfg.group_by_length)
        while s.micro < len(batches) and s.step < self.total:
            self.step(batches[s.micro:s.micro + self.cfg.grad_accum], len(batches))
        if s.micro < len(batches):
            return False  # the planned steps ended inside the epoch
        s.epoch += 1
        s.micro = 0
        if self.recall_check is None or self.recall_target is None:
            return False
        with self._kept_if_stopped(epoch_end=len(batches)):
            stop = self.should_stop()
        if not stop and s.step < self.total:
            self.checkpoint()
        return stop

    @contextlib.contextmanager
    def _kept_if_stopped(self, epoch_end: int | None = None):
        """A stop inside the block (a recall check: minutes of generation) first checkpoints the
        steps done, the check dropped: a resumed run checks again and trains no step twice. With
        ``epoch_end`` (the epoch's micro-batches) the check ends an epoch, which the checkpoint
        leaves not ended. In one process only (see :meth:`step`)."""
        s = self.state
        checks = len(s.recall)
        try:
            yield
        except KeyboardInterrupt:
            if self.world == 1:
                del s.recall[checks:]
                if epoch_end is not None:
                    s.epoch, s.micro = s.epoch - 1, epoch_end
                self.checkpoint()
            raise

    def step(self, group: list[list[int]], n_batches: int) -> None:
        """One optimizer step over ``group`` (micro-batches of row indices; an epoch has
        ``n_batches``); its record waits in :attr:`pending` until the next :meth:`flush`.

        A stop that comes during the step waits for its end (in one process: with several, each
        would stop at its own step and the checkpoint's collectives hang), then the step is
        checkpointed and the stop raised."""
        with interrupts.deferred(self.world == 1):
            saved = self._step(group, n_batches)
        if interrupts.take_pending():
            if not saved:
                self.checkpoint()
            raise KeyboardInterrupt

    def _step(self, group: list[list[int]], n_batches: int) -> bool:
        """:meth:`step`'s work; True when it wrote the step's checkpoint."""
        s = self.state
        dist.follow_share()  # a sweep's job takes the cores of jobs that have ended
        with self._timed("forward_backward"):
            loss = self._forward_backward(group)
        step_tokens = sum(self.lengths[i] for b in group for i in b)
        step_rows = sum(len(b) for b in group)
        with self._timed("optimizer"):
            grad_norm = self.engine.step(self.cfg.max_grad_norm)  # on the device
        s.micro += len(group)
        s.step += 1
        s.tokens += step_tokens
        s.rows += step_rows
        self.pending.append(({
            "step": s.step, "epoch": round(s.epoch + s.micro / n_batches, 4), "loss": None,
            "learning_rate": self.scheduler.get_last_lr()[0], "grad_norm": None,
            "rows": step_rows, "tokens": step_tokens}, loss, grad_norm))
        self.bar.update(1)
        if s.step % FLUSH_EVERY == 0:
            self.flush()
        if s.step % TRIM_EVERY == 0:
            trim_heap()
        if s.step % self.cfg.save_steps == 0 and s.step < self.total:
            self.checkpoint()
            return True
        return False

    def _forward_backward(self, group: list[list[int]]):
        """The forward and backward passes of one step over this process's rows (all of them in
        one process), padded or packed, cut to the memory bound; returns this process's share of
        the step's loss, summed on the device (no synchronisation a step)."""
        import torch

        step_loss = torch.zeros((), dtype=torch.float64, device=self.device)
        n_target = sum(len(self.encoded[i][0]) - self.encoded[i][1] for b in group for i in b)
        parts = step_parts(group, self.lengths, self.max_tokens, self.rank, self.world,
                           self.how.sequence if self.packed else None, self.multiple)
        for k, (part, mine) in enumerate(parts):
            batch = self._batch(part)
            # data parallel: gradients are reduced once a step, in the last backward
            last = k == len(parts) - 1
            with self.engine.quiet(last):
                with self.autocast:
                    loss, n = self._loss(batch)
                # token mean over the whole optimizer step (every process's rows), however it
                # was cut; DDP / FSDP / ZeRO average over processes, hence x world
                self.engine.backward(loss * ((n / n_target) * self.world if mine else 0.0), last)
            if mine:
                step_loss += loss.detach().double() * n / n_target
        return step_loss

    def _batch(self, part: list):
        """One forward pass's inputs on the device: packed sequences, or padded rows with the
        first position the loss needs and their count of target tokens."""
        if self.packed:
            return collate_packed([[self.encoded[i] for i in seq] for seq in part], self.pad,
                                  self.multiple, self.how).to(self.device)
        rows = [self.encoded[i] for i in part]
        x, y, first = collate(rows, self.pad)
        return x.to(self.device), y.to(self.device), first, sum(len(ids) - m for ids, m in rows)

    def _loss(self, batch):
        """The mean loss over a forward pass's target tokens, and their count."""
        if self.packed:
            return packed_loss(self.engine.model, batch)
        x, y, first, n = batch
        return batch_loss(self.engine.model, x, y, first, n=n)

    def flush(self) -> None:
        """Read the pending steps' losses and gradient norms off the device (one transfer; the
        losses summed over processes) and log their records, in order."""
        import torch

        if not self.pending:
            return
        losses = torch.stack([loss for _, loss, _ in self.pending])
        if self.world > 1:  # each process's rows' share of the step's token mean, summed
            import torch.distributed as td

            td.all_reduce(losses)
        norms = _floats([norm for _, _, norm in self.pending])
        for (record, _, _), loss, norm in zip(self.pending, losses.tolist(), norms, strict=True):
            self.state.loss_sum += loss
            self.state.loss_n += 1
            self.log({**record, "loss": round(loss, 6), "grad_norm": round(norm, 4)})
        self.bar.set_postfix(loss=f"{loss:.3f}", epoch=self.state.epoch + 1)
        self.pending.clear()

    def log(self, record: dict) -> None:
        """A ``metrics.jsonl`` record, also given to ``on_metrics`` (trackers); one process
        writes the stage's files."""
        if not self.main:
            return
        append_jsonl(self.stage_dir / METRICS, record)
        if self.on_metrics is not None:
            self.on_metrics(record)

    def checkpoint(self) -> None:
        """``trainer/checkpoint-STEP``: weights, optimizer, scheduler and :class:`SFTState`."""
        self.flush()
        with self._timed("checkpoint"):
            self.state.seconds = clock.now() - self.t_run
            write_checkpoint(self.engine, self.trainer_dir, self.state.step, asdict(self.state))

    def should_stop(self) -> bool:
        """The stopping rule after an epoch: a recall check, and stop once it reaches
        ``recall_target``."""
        return self.check_recall()["recall"] >= self.recall_target

    def check_recall(self) -> dict:
        """Run the recall check (the main process asks, the others wait) and log it."""
        self.flush()
        with self._timed("recall"):
            result = None
            self.inner.eval()
            with self.engine.for_generation() as m:
                if self.main:
                    with self.autocast:
                        result = self.recall_check(m)
            self.inner.train()
            result = dist.broadcast(result)
        s = self.state
        s.recall.append({"epoch": s.epoch, **result})
        self.log({"step": s.step, "epoch": s.epoch,
                  **{f"recall/{k}": v for k, v in result.items()}})
        return result

    def last_life(self) -> dict:
        """What this process trained and in what time (:func:`pbb.experiments.rates.record_stage`
        takes a resumed stage's rate from it: its totals span lives it did not time)."""
        s, start = self.state, self.life_start
        return {"steps": s.step - start.step, "tokens": s.tokens - start.tokens,
                "seconds": round(clock.now() - self.t_start, 1), "recall": s.recall[start.checks:]}

    def summary(self) -> dict:
        """What ``done.json`` records of the stage."""
        s, cfg, n_rows = self.state, self.cfg, max(1, len(self.encoded))
        tokens = sum(self.lengths)
        prompt_tokens = sum(n for _, n in self.encoded)
        # throughput of the training steps this process ran (recall checks and saving excluded)
        busy = max(1e-9, self.timing["forward_backward"] + self.timing["optimizer"])
        return {
            "rows": len(self.encoded), "steps": s.step,
            "epochs": round(s.step / self.steps_per_epoch, 3),
            "train_loss": round(s.loss_sum / max(1, s.loss_n), 6), "tokens": s.tokens,
            "tokens_per_row": round(tokens / n_rows, 1),
            "prompt_tokens_per_row": round(prompt_tokens / n_rows, 1),
            "completion_tokens_per_row": round((tokens - prompt_tokens) / n_rows, 1),
            # None when this life trained nothing (a stage resumed at its last step): no rate
            "rows_per_second": (round((s.rows - self.life_start.rows) / busy, 3)
                                if s.rows > self.life_start.rows else None),
            # all lives: a claim's cost (docs/claims.md) counts a stage resumed across sessions
            "seconds": round(clock.now() - self.t_start + self.seconds_before, 1),
            "seconds_before": round(self.seconds_before, 1),
            "time_split": {k: round(v, 1) for k, v in self.timing.items()},
            "method": cfg.method, "bf16": self.bf16, "learning_rate": cfg.learning_rate,
            "planned_epochs": self.planned_epochs, "recall": s.recall,
            "resumed": self.resume is not None, "processes": self.world, "packed": self.packed,
            "last_life": self.last_life(),
            "max_batch_tokens": self.max_tokens,
            **({"packed_sequence_tokens": self.how.sequence} if self.packed else {})}


def train_sft(rows: list[dict], *, init: Path | str, base: Path | str, tokenizer,
              cfg: TrainConfig, stage_dir: Path, seed: int, progress: bool = True,
              system_prompt: str | None = None,
              recall_check: Callable[[object], dict] | None = None,
              recall_target: float | None = None, max_epochs: int | None = None,
              on_metrics: Callable[[dict], None] | None = None, model_options=None) -> dict:
    """Train one SFT stage (:class:`SFTRun`); returns (and stores in ``done.json``) what was done.

    Without ``recall_target``: ``cfg.epochs`` epochs (fractions allowed) or ``cfg.max_steps``.
    With it: whole epochs, ``recall_check(model)`` after each (it returns ``{"recall": r, ...}``),
    stopping once ``r >= recall_target`` or after ``max_epochs``; the learning-rate schedule
    spans ``max_epochs``. Every ``metrics.jsonl`` record also goes to ``on_metrics`` (trackers).
    """
    return SFTRun(rows, init=init, base=base, tokenizer=tokenizer, cfg=cfg, stage_dir=stage_dir,
                  seed=seed, progress=progress, system_prompt=system_prompt,
                  recall_check=recall_check, recall_target=recall_target, max_epochs=max_epochs,
                  on_metrics=on_metrics, model_options=model_options).run()
