"""``pbb plan CONFIG``: what ``pbb run`` would do with a config, before any of it is done.

Why: a run is hours of training and generation; a wrong ``--set`` or a stage that would be
retrained instead of reused shows only once the time is spent. The plan says it first: the
stages each curriculum trains (rows, epochs and steps, tokens counted with the model's
tokenizer, the stopping rule), which of them are trained already and would be reused (their
stage directory, by the same :func:`pbb.store.stage_key` the run uses, is done), the
evaluations (modes x splits x queries, which are done), and an expected time from the rates
this machine measured last (:mod:`pbb.experiments.rates`), or where it has measured nothing
for the model and device, from the rates of the reference machine shipped with pbb (said so),
else the words "no measured rate on this machine". A machine that measured some rates plans
with those alone; what it never measured (GRPO steps where it only trained SFT) is left out of
its total and timed apart at the reference machine's rates, so the plan neither mixes two
machines in one figure nor hides most of a run's time. An item is timed at one machine's rates:
a stage missing any of its rates here (an SFT stage whose recall checks have none) is timed
wholly at the reference's.

Nothing is written and no model's weights are loaded: the data set is generated in memory
where the run would generate it, and the tokenizer is all of the model that is read.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

from pbb.config import RunConfig
from pbb.evaluation import reuse
from pbb.evaluation.evaluate import (
    build_queries,
    completion_tokens,
    gold_lengths,
    mean_cut,
)
from pbb.evaluation.report import SPLITS
from pbb.experiments import rates as rates_mod
from pbb.experiments.run import (
    budget_warnings,
    check_before_work,
    open_data,
    same_run,
    shared_evaluation,
)
from pbb.folders import check_out, check_stage_store
from pbb.memo import memoized, once
from pbb.rows import curricula as curricula_mod
from pbb.store import (
    RunStore,
    SweepStore,
    checkpoint_step,
    is_done,
    out_dir,
    stage_key,
)
from pbb.training.precision import use_bf16

NO_RATE = "no measured rate on this machine"
#: what a time planned at the reference machine's rates says of itself
REFERENCE_WORDS = "at the reference machine's rates: none measured here yet"
#: what the work with no rate here would take at the reference machine's rates says of itself
APART_WORDS = "at the reference machine's rates"


@dataclass
class PlannedStage:
    """One stage of one curriculum as the run would meet it.

    ``status``: ``train`` (from the start), ``resume`` (from the checkpoint at ``resume_step``),
    ``reused`` (done earlier: its directory holds a finished stage) or ``shared`` (trained
    for an earlier curriculum of this run, ``shared_with``). ``steps`` and ``tokens`` are the
    most it trains; ``tokens`` is 0 for an RL stage. ``sooner``: a recall target may end it
    before them (its time, and the plan's, are then at most), which a plan cannot foresee.
    """

    curriculum: str
    stage: str
    trainer: str
    rows: int
    directory: Path
    status: str
    epochs: float
    steps: int
    tokens_per_epoch: int = 0
    tokens: int = 0
    stopping: str = ""
    recall_queries: int = 0
    resume_step: int | None = None
    shared_with: str | None = None
    seconds: float | None = None
    apart_seconds: float | None = None  # no rate here: at the reference machine's (Plan.fallback)
    sooner: bool = False


@dataclass
class PlannedEval:
    """One (curriculum, mode) evaluation: its queries by split, and ``done``, ``reused`` (another
    run evaluated the same model the same way: its samples are taken), ``shared`` (an earlier
    point of a planned sweep makes that evaluation) or ``pending``; ``kept``: where a trained
    model's evaluation is kept for other runs."""

    curriculum: str
    mode: str
    queries: dict[str, int]
    status: str
    seconds: float | None = None
    kept: Path | None = None
    shared_with: str | None = None
    apart_seconds: float | None = None  # no rate here: at the reference machine's (Plan.fallback)


@dataclass
class Plan:
    name: str
    model: str
    seed: int
    out: Path
    data: str
    machine: str
    rates: dict
    stages: list[PlannedStage] = field(default_factory=list)
    evals: list[PlannedEval] = field(default_factory=list)
    untrained: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    #: the reference machine in words, where ``rates`` are its (none measured here)
    reference: str = ""
    #: the reference machine's rates where ``rates`` are this machine's: they time, apart, the
    #: work this machine has no rate for (``apart_seconds`` of the items)
    fallback: dict = field(default_factory=dict)

    def work(self) -> list[PlannedStage | PlannedEval]:
        """What the run would do: stages to train or resume, evaluations not done."""
        return [s for s in self.stages if s.status in ("train", "resume")] + \
            [e for e in self.evals if e.status == "pending"]

    def __str__(self) -> str:
        return render(self)

    def expected_seconds(self) -> tuple[float, int]:
        """The time of the work with a measured rate, and how many items have none."""
        todo = self.work()
        return (sum(w.seconds for w in todo if w.seconds is not None),
                sum(w.seconds is None for w in todo))

    def apart(self) -> tuple[float, int]:
        """The work with no rate here, at the reference machine's rates: its time and items."""
        apart = [w.apart_seconds for w in self.work() if w.apart_seconds is not None]
        return sum(apart), len(apart)

    def sooner(self) -> int:
        """How many stages to train may end before their planned steps (a recall target)."""
        return sum(isinstance(w, PlannedStage) and w.sooner for w in self.work())


def make_plan(cfg: RunConfig, out: Path, stages_root: Path | None = None) -> Plan:
    """The plan of ``pbb run`` with ``cfg`` into ``out`` (stages in ``stages_root`` when runs
    share them, as a sweep's points do)."""
    out = Path(out)
    check_out(out, "run", replace=False, write=False)  # what pbb run refuses, the plan refuses
    base = check_before_work(cfg)
    cfg, ds = _open_data(cfg, out)  # the plan's text says where its data is
    same_run(cfg, out)
    store = RunStore(out, stages_root)
    served = cfg.eval.backend == "openai"  # nothing trains: served models are only evaluated
    tok = None if served else _tokenizer(base, cfg.model_options())
    built = curricula_mod.build_for_run(cfg, ds)
    machine = rates_mod.machine_key(cfg.model)
    measured, reference, fallback = rates_mod.read_rates(machine), "", {}
    bf16 = served or use_bf16(cfg.train.precision)  # a served model's rates: its server's
    if not measured:
        reference, measured = rates_mod.reference_rates(machine, bf16)
    else:
        fallback = rates_mod.reference_rates(machine, bf16)[1]
    source = str(ds.path) if ds.path is not None else "generated for this run"
    plan = Plan(cfg.name, cfg.model, cfg.seed, out,
                f"{len(ds.behaviours)} {ds.domain.name} behaviours ({len(ds.split('train'))} "
                f"train, {len(ds.split('eval'))} eval), {source}", machine, measured,
                reference=reference, fallback=fallback)
    first: dict[Path, str] = {}  # stage directory -> the curriculum that trains it

    def gold(mode: str, max_train: int | None) -> list[int] | None:
        return _gold_lengths(cfg, ds, tok, mode, max_train)

    for name, stages in built.items():
        parent, final = "base", None
        for st in [] if served else stages:
            key = stage_key(cfg, parent, st.rows, st.trainer, st)
            planned = _stage(cfg, tok, name, st, store.stage_dir(st.name, key), measured,
                             fallback)
            if planned.directory in first:
                planned.status, planned.shared_with = "shared", first[planned.directory]
            first.setdefault(planned.directory, name)
            plan.stages.append(planned)
            parent, final = key, planned.directory
        if not stages or served:
            plan.untrained.append(name)
        plan.evals += _evals(cfg, ds, store, name, final, rates=measured, fallback=fallback,
                             gold=gold)
    plan.warnings = budget_warnings(cfg, ds, tok, lengths=gold)
    return plan


def _open_data(cfg: RunConfig, out: Path):
    """:func:`open_data` for a plan; inside :func:`pbb.memo.memoized` a data set generated in
    memory is generated once for its seed and data block (the same seed and block give the same
    data set, byte for byte): a sweep's points mostly share one (the GPU crossover twin's 30
    points, 5 data sets)."""
    from pbb.data import MANIFEST

    if cfg.data.path or (RunStore(out).data / MANIFEST).is_file():
        return open_data(cfg, out, announce=False)
    key = json.dumps([cfg.seed, cfg.data.model_dump(mode="json")], sort_keys=True)
    return cfg, once(None, ("data set", key), lambda: open_data(cfg, out, announce=False)[1])


@cache
def _tokenizer(base, options):
    """The model's tokenizer, loaded once a process: ``pbb claims --plan`` plans every point of
    every claim, most of them on one model (a load was ~1 s of each point's plan)."""
    from pbb.models import load_tokenizer

    return load_tokenizer(base, options)


def _stage(cfg: RunConfig, tok, curriculum: str, st, directory: Path, rates: dict,
           fallback: dict) -> PlannedStage:
    """The stage as the run would meet it, timed at ``rates``, else (``apart_seconds``) at
    ``fallback``'s."""
    done = is_done(directory)
    step = None if done else checkpoint_step(directory)
    status = "reused" if done else "train" if step is None else "resume"
    if st.trainer == "rl":
        planned = _rl_stage(cfg, curriculum, st, directory, status)
        written = _rl_written(cfg, tok, st, directory)
        replayed = _replay_tokens(cfg, tok, st, directory)

        def timed(r: dict) -> float | None:
            per_step = rates_mod.rl_step_seconds(r, cfg.rl.completion_tokens_per_step, written)
            if per_step is not None and replayed:  # the SFT term on replayed rows, every step
                rate = rates_mod.sft_rate(r, replayed[1])
                per_step = per_step + replayed[0] / rate if rate else None
            return None if per_step is None else planned.steps * per_step
    else:
        planned = _sft_stage(cfg, tok, curriculum, st, directory, status)

        def timed(r: dict) -> float | None:
            return _sft_seconds(planned, r)
    left = 1.0 if step is None else max(0, planned.steps - step) / max(1, planned.steps)
    seconds = timed(rates)  # what is left after the checkpoint, if any
    planned.seconds = None if seconds is None else seconds * left
    if seconds is None and fallback:
        apart = timed(fallback)
        planned.apart_seconds = None if apart is None else apart * left
    planned.resume_step = step
    return planned


#: the mean gold completion tokens of each GRPO stage planned in this process, by its directory
_RL_GOLD: dict[tuple, float | None] = {}


def _rl_written(cfg: RunConfig, tok, st, directory: Path) -> float | None:
    """The tokens a GRPO step's completions are expected to write: its completions times the
    mean of its rows' gold completions (a model that executes them writes those), each cut at
    ``rl.max_completion_length``; None without a tokenizer or rows."""
    if tok is None:
        return None
    counted = (str(directory), cfg.model, cfg.rl.max_completion_length)
    if counted not in _RL_GOLD:  # the same stage in several curricula, points, claims
        _RL_GOLD[counted] = mean_cut(completion_tokens(tok, st.own_rows),
                                     cfg.rl.max_completion_length)
    mean = _RL_GOLD[counted]
    return None if mean is None else mean * cfg.rl.completions_per_step


def _replay_tokens(cfg: RunConfig, tok, st, directory: Path) -> tuple[float, float] | None:
    """(tokens a GRPO step's replay term trains, their rows' mean tokens): the stage's replayed
    rows (:mod:`pbb.training.replay`), which a step trains as SFT does; None without them or
    a tokenizer."""
    from pbb.training import replay

    rows = st.replayed_rows
    if tok is None or not rows:
        return None
    cut = cfg.train.for_stage(st.name, st.train).max_length  # as train_one_stage passes it
    mean = _cut_tokens(cfg, tok, rows, cut, (directory, "replay")) / len(rows)
    each = replay.per_step(len(rows), len(st.own_rows), cfg.rl)
    return each * mean, mean


#: tokens an epoch of each stage planned in this process, by its directory (whose key hashes its
#: rows and settings), the model, ``max_length`` and the system prompt: tokenizing a stage's rows
#: was most of a plan's time (~3.5 s a point of the GPU twins), and ``pbb claims --plan`` meets
#: the same stage in several curricula, points and claims
_EPOCH_TOKENS: dict[tuple, int] = {}


def _cut_tokens(cfg: RunConfig, tok, rows: list[dict], cut: int, named: tuple) -> int:
    """The tokens of ``rows``, each cut at ``cut`` as training cuts it, counted once a process
    for what ``named`` names (a stage's directory, and which of its rows)."""
    from pbb.rows.chat import encode_rows

    counted = (*map(str, named), cfg.model, cut, cfg.chat.system_prompt)
    if counted not in _EPOCH_TOKENS:  # a stage shared by curricula, points or claims: once
        _EPOCH_TOKENS[counted] = sum(min(len(ids), cut)
                                     for ids, _ in encode_rows(tok, rows, cfg.chat.system_prompt))
    return _EPOCH_TOKENS[counted]


def _sft_stage(cfg: RunConfig, tok, curriculum: str, st, directory: Path,
               status: str) -> PlannedStage:
    """Rows, epochs, steps and tokens as :mod:`pbb.training.sft` counts them: rows cut to
    ``train.max_length``, one step per ``batch_size x grad_accum`` rows, ``max_steps`` a cap."""
    train = cfg.train.for_stage(st.name, st.train)
    rule = cfg.train.stopping_rule(st.name, st.train)
    per_epoch = _cut_tokens(cfg, tok, st.rows, train.max_length, (directory,))
    steps_per_epoch = math.ceil(math.ceil(len(st.rows) / train.batch_size) / train.grad_accum)
    epochs = rule[1] if rule else train.epochs
    steps = math.ceil(steps_per_epoch * epochs)
    if train.max_steps > 0:
        steps = min(steps, train.max_steps)
    ids = st.recall_ids
    if rule:
        stopping = (f"until recall >= {rule[0]:.0%} of {len(ids)} instructions, at most "
                    f"{rule[1]} epochs")
        checks = math.ceil(steps / steps_per_epoch)
    else:
        stopping = _count(train.epochs, "epoch")
        checks = 1 if ids and cfg.train.recall_after_stage else 0
    if train.max_steps > 0:
        stopping += f", at most {_count(train.max_steps, 'step')} (train.max_steps)"
    return PlannedStage(curriculum, st.name, "sft", len(st.rows), directory, status,
                        epochs=round(steps / steps_per_epoch, 3), steps=steps,
                        tokens_per_epoch=per_epoch,
                        tokens=round(per_epoch * steps / steps_per_epoch), stopping=stopping,
                        recall_queries=checks * len(ids), sooner=rule is not None)


def _rl_stage(cfg: RunConfig, curriculum: str, st, directory: Path, status: str) -> PlannedStage:
    """GRPO steps: ``num_generations`` completions a prompt, ``batch_size x grad_accum``
    completions a step (over all processes), ``rl.epochs`` passes, ``rl.max_steps`` a cap."""
    rl = cfg.rl
    completions = len(st.own_rows) * rl.num_generations * rl.epochs
    steps = math.ceil(completions / rl.completions_per_step)
    if rl.max_steps > 0:
        steps = min(steps, rl.max_steps)
    stopping = (f"{_count(rl.epochs, 'pass', 'passes')} over the prompts, "
                f"{rl.num_generations} completions each")
    if rl.max_steps > 0:
        stopping += f", at most {_count(rl.max_steps, 'step')} (rl.max_steps)"
    return PlannedStage(curriculum, st.name, "rl", len(st.own_rows), directory, status,
                        epochs=rl.epochs, steps=steps, stopping=stopping)


def _sft_seconds(planned: PlannedStage, rates: dict) -> float | None:
    tokens_per_second = rates_mod.sft_rate(rates, planned.tokens_per_epoch / max(planned.rows, 1))
    if not tokens_per_second:
        return None
    seconds = planned.tokens / tokens_per_second
    if planned.recall_queries:
        measured = rates.get(rates_mod.EVAL) or {}  # the checks' own rate, else evaluations'
        recall = rates_mod.positive(measured.get(rates_mod.RECALL_CHECK)) or \
            rates_mod.positive(measured.get("recall"))
        if recall is None:
            return None
        seconds += planned.recall_queries / recall
    return seconds


#: the gold completions' token counts of a run's queries, by the data and what picks the queries:
#: the claims share data sets across claims, and a plan counts them for its warnings too
_GOLD_LENGTHS: dict[tuple, list[int]] = {}


def _gold_lengths(cfg: RunConfig, ds, tok, mode: str, max_train: int | None) -> list[int] | None:
    """The tokens of each gold completion ``mode`` asks for (None without a tokenizer)."""
    if tok is None:
        return None
    counted = (str(ds.path), json.dumps(cfg.data.model_dump(mode="json"), sort_keys=True),
               cfg.seed, cfg.model, mode, cfg.eval.max_test_inputs, max_train,
               cfg.data.instruction_format)
    if counted not in _GOLD_LENGTHS:
        _GOLD_LENGTHS[counted] = gold_lengths(ds, mode, tok, cfg.eval.max_test_inputs,
                                              max_train, cfg.data.instruction_format)
    return _GOLD_LENGTHS[counted]


def _evals(cfg: RunConfig, ds, store: RunStore, curriculum: str, final: Path | None,
           rates: dict, fallback: dict, gold) -> list[PlannedEval]:
    """Every evaluation mode of one curriculum, with the queries ``pbb run`` asks (a curriculum
    that trains nothing, ``final`` None, answers eval behaviours only), timed at the rate
    measured on completions of the length it expects: a trained model's the gold completions'
    (``gold(mode, max_train)``: their lengths, None where not counted), an untrained model's
    its budget (an untuned model explains rather than stops); where ``rates`` have none, at
    ``fallback``'s (``apart_seconds``)."""
    out = []
    max_train = cfg.eval.max_train_behaviours if final is not None else 0
    for mode in cfg.eval.modes:
        queries: dict[str, int] = {}
        for q in build_queries(ds, mode, cfg.eval.max_test_inputs, max_train,
                               cfg.data.instruction_format):
            queries[q["split"]] = queries.get(q["split"], 0) + 1
        kept = shared_evaluation(cfg, ds, final, mode, max_train) \
            if final is not None else None
        status = "done" if store.samples(curriculum, mode).is_file() else \
            "reused" if kept is not None and reuse.is_kept(kept) else "pending"
        planned = PlannedEval(curriculum, mode, queries, status, kept=kept)
        if status == "pending":
            budget = cfg.eval.max_new_tokens[mode]
            lengths = gold(mode, max_train)
            expected = None if lengths is None else budget if final is None else \
                mean_cut(lengths, budget)

            def timed(r: dict) -> float | None:
                rate = rates_mod.eval_rate(r, mode, expected)
                return sum(queries.values()) / rate if rate else None
            planned.seconds = timed(rates)
            if planned.seconds is None and fallback:
                planned.apart_seconds = timed(fallback)
        out.append(planned)
    return out


def duration(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.0f} s"
    minutes = round(seconds / 60)
    return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"


def _count(n: float, word: str, plural: str | None = None) -> str:
    shown = f"{int(n):,}" if float(n).is_integer() else f"{n:g}"
    return f"{shown} {word if n == 1 else plural or word + 's'}"


def _time(item: PlannedStage | PlannedEval) -> str:
    if item.status in ("done", "reused", "shared"):
        return ""
    if item.seconds is not None:
        return f"~{duration(item.seconds)}"
    return NO_RATE + ("" if item.apart_seconds is None
                      else f"; ~{duration(item.apart_seconds)} {APART_WORDS}")


def _unknown(unknown: int, apart: tuple[float, int], every: bool = False) -> str:
    """The total's words for the items with no rate here (``every`` item of the work), and
    their time at the reference machine's rates."""
    seconds, timed = apart
    return (NO_RATE if every else f", and {unknown} item(s) with {NO_RATE}") + (
        "" if not timed else f" ({'all' if timed == unknown else timed} of them "
                             f"~{duration(seconds)} {APART_WORDS})")


def _sooner(stages: int) -> str:
    """The total's words where a recall target may end ``stages`` stages before the steps
    they are timed at: the figure is the most the work takes."""
    return "" if not stages else (f" at most ({_count(stages, 'stage')} may stop sooner, at "
                                  f"{'its' if stages == 1 else 'their'} recall target)")


def _stage_line(s: PlannedStage) -> str:
    what = f"{s.curriculum}/{s.stage}"
    if s.status == "shared":
        return f"  {what}: the same stage as {s.shared_with}/{s.stage}, trained once"
    steps = ("up to " if s.stopping.startswith("until") else "") + _count(s.steps, "step")
    size = (f"{s.tokens_per_epoch:,} tokens an epoch; {steps}, ~{s.tokens:,} tokens"
            if s.trainer == "sft" else steps)
    status = {"train": "to train", "reused": "trained earlier: reused",
              "resume": f"to resume from step {s.resume_step}"}[s.status]
    recall = f", {s.recall_queries} recall completions" if s.recall_queries else ""
    timing = _time(s)
    rows = _count(s.rows, "row" if s.trainer == "sft" else "prompt")
    return (f"  {what} ({s.trainer}): {rows}, {s.stopping}; {size}{recall}\n"
            f"      {s.directory.name}: {status}" + (f" ({timing})" if timing else ""))


def _eval_line(e: PlannedEval) -> str:
    queries = " + ".join(f"{e.queries[split]:,} {split}" for split in SPLITS
                         if split in e.queries) or "no"
    timing = _time(e)
    status = {"done": "done earlier", "reused": "evaluated earlier by another run: taken",
              "shared": f"the same evaluation as {e.shared_with}: taken from it"}.get(
        e.status, "to run" + (f" ({timing})" if timing else ""))
    return f"  {e.curriculum}/{e.mode}: {queries} queries: {status}"


def _rates_text(what: str, last: float | None, measured: object, number: str, unit: str,
                length: str) -> str:
    """``SFT 465 tokens/s (rows ~54 tokens), 290 tokens/s (rows ~235 tokens)``: by length
    where measured so (what the plan takes), else the last rate, else nothing."""
    found = rates_mod.by_length(measured)
    if found:
        return f"{what} " + ", ".join(f"{number.format(r)} {unit} ({length} ~{b} tokens)"
                                      for b, r in found.items())
    last = rates_mod.positive(last)
    return f"{what} {number.format(last)} {unit}" if last else ""


def render(plan: Plan) -> str:
    """The plan as ``pbb plan`` prints it."""
    if plan.rates:
        sft, rl = plan.rates.get(rates_mod.SFT), plan.rates.get(rates_mod.RL)
        sft_text = _rates_text("SFT", sft, plan.rates.get(rates_mod.SFT_BY_LENGTH), "{:,.0f}",
                               "tokens/s", "rows")
        evals = plan.rates.get(rates_mod.EVAL_BY_LENGTH)
        evals = evals if isinstance(evals, dict) else {}
        last = plan.rates.get(rates_mod.EVAL)
        per_written = rates_mod.positive(plan.rates.get(rates_mod.RL_PER_WRITTEN))
        per_token = rates_mod.positive(plan.rates.get(rates_mod.RL_PER_TOKEN))
        rl_text = (f"RL {rl:.1f} s/step" if rl else "") + (
            f" ({1000 * per_written:.1f} ms a token its completions wrote)"
            if rl and per_written else
            f" ({1000 * per_token:.1f} ms a token of a step's completion budget)"
            if rl and per_token else "")
        measured = [sft_text, rl_text,
                    *(_rates_text(m, r, evals.get(m), "{:.2f}", "completions/s", "completions")
                      for m, r in (last if isinstance(last, dict) else {}).items())]
        rates = (f"none measured here yet; the reference machine's ({plan.reference}): "
                 if plan.reference else "last measured here: ") + ", ".join(m for m in measured if m)
    else:
        rates = NO_RATE
    lines = [f"plan of {plan.name}: model {plan.model}, seed {plan.seed}, into {plan.out}",
             f"data: {plan.data}", f"rates ({plan.machine}): {rates}", "", "stages:"]
    lines += [_stage_line(s) for s in plan.stages]
    lines += [f"  {c}: no training" for c in plan.untrained]
    lines += ["", "evaluations (queries by split of the behaviours):"]
    lines += [_eval_line(e) for e in plan.evals]
    lines += [f"  warning: {w}" for w in plan.warnings]
    seconds, unknown = plan.expected_seconds()
    if not plan.work():
        total = "nothing to do: every stage and evaluation is done"
    elif unknown == len(plan.work()):
        total = _unknown(unknown, plan.apart(), every=True)
    else:
        total = f"~{duration(seconds)}" + _sooner(plan.sooner()) + (
            _unknown(unknown, plan.apart()) if unknown else "") + (
            f" ({REFERENCE_WORDS})" if plan.reference else "")
    lines += ["", f"expected time: {total}"]
    return "\n".join(lines)


def plan_sweep(path: Path, out: Path | None = None, overrides: dict | None = None,
               smoke: bool = False, stages_root: Path | None = None) -> str:
    """The plan of ``pbb sweep`` with a sweep file: each point's plan, a stage that an earlier
    point trains and an evaluation it makes counted once (its later points share them), then
    the whole sweep's time."""
    planned = plan_points(path, out, overrides, smoke, stages_root)
    return "\n\n".join(planned.texts) + f"\n\nsweep of {planned.points} points into " \
                                         f"{planned.root}: expected time {planned.total()}"


@dataclass
class PlannedSweep:
    """A sweep's plans: each point's text, and the work left with its expected seconds."""

    root: Path
    points: int
    texts: list[str]
    seconds: float = 0.0
    unknown: int = 0  # items of work with no measured rate
    apart_seconds: float = 0.0  # those of them timed at the reference machine's rates ...
    apart_items: int = 0  # ... and how many
    work: int = 0
    reference: int = 0  # points planned at the reference machine's rates
    busy: int = 0  # points with work to do
    sooner: int = 0  # stages to train that a recall target may end before their planned steps

    def add(self, other: PlannedSweep) -> None:
        """Count another sweep's points and work into this one (a total over sweeps)."""
        self.points += other.points
        self.seconds += other.seconds
        self.unknown += other.unknown
        self.apart_seconds += other.apart_seconds
        self.apart_items += other.apart_items
        self.work += other.work
        self.reference += other.reference
        self.busy += other.busy
        self.sooner += other.sooner

    def total(self) -> str:
        if not self.work:
            return "nothing to do"
        apart = (self.apart_seconds, self.apart_items)
        if self.unknown == self.work:
            return _unknown(self.unknown, apart, every=True)
        return f"~{duration(self.seconds)}" + _sooner(self.sooner) + (
            _unknown(self.unknown, apart) if self.unknown else "") + (
            "" if not self.reference else f" ({REFERENCE_WORDS})" if self.reference == self.busy
            else f" ({self.reference} of its {self.busy} points {REFERENCE_WORDS})")


def plan_points(path: Path, out: Path | None = None, overrides: dict | None = None,
                smoke: bool = False, stages_root: Path | None = None,
                trained: dict[Path, str] | None = None,
                evaluated: dict[Path, str] | None = None,
                restored: frozenset[str] = frozenset(),
                earlier: dict | None = None) -> PlannedSweep:
    """Each point's plan of a sweep file. ``trained`` / ``evaluated`` (stage directory or kept
    evaluation -> who makes it) carry what earlier points, or earlier sweeps sharing
    ``stages_root`` (``pbb claims``), will make: those count once, where they are made.
    ``restored``: the folders (``runs/<point>``) of points finished elsewhere that the run
    restores before it starts (``pbb claims``' archives): nothing to do there. ``earlier``:
    the sweep record the points keep their names from (:func:`load_sweep`) where the sweep's
    folder has none yet (the archive restored)."""
    from pbb.experiments.sweep import done, keep_names, load_sweep, read_record

    if stages_root is not None:
        check_stage_store(stages_root, write=False)
    raw, _, points = load_sweep(path, overrides, smoke)
    sweep = SweepStore(out_dir(str(raw.get("name", "sweep")), out, smoke))
    if sweep.record.is_file():
        earlier = read_record(sweep)
    if earlier is not None:  # as the sweep will name them (load_sweep checked them distinct)
        points = keep_names(path, raw, points, earlier)
    trained = {} if trained is None else trained
    evaluated = {} if evaluated is None else evaluated
    planned = PlannedSweep(sweep.root, len(points), [])
    with memoized():  # the points share data sets and curricula: built once
        for p in points:
            if sweep.run_dir(p["name"]).relative_to(sweep.root).as_posix() in restored:
                planned.texts.append(f"point {p['name']}: finished elsewhere, restored before the "
                                     "run starts; nothing to do")
                continue
            if done(sweep, p):  # as the sweep sees it, whatever stages are here
                planned.texts.append(f"point {p['name']}: done earlier; nothing to do")
                continue
            plan = make_plan(p["config"], sweep.run_dir(p["name"]), stages_root or sweep.stages)
            for s in plan.stages:
                if s.status in ("train", "resume") and s.directory in trained:
                    s.status, s.shared_with = "shared", trained[s.directory]
                trained.setdefault(s.directory, f"{p['name']}: {s.curriculum}")
            for e in plan.evals:
                if e.status == "pending" and e.kept in evaluated:
                    e.status, e.shared_with = "shared", evaluated[e.kept]
                if e.kept is not None:
                    evaluated.setdefault(e.kept, f"{p['name']}: {e.curriculum}/{e.mode}")
            planned.texts.append(render(plan))
            sec, unk = plan.expected_seconds()
            planned.seconds += sec
            planned.unknown += unk
            apart, timed = plan.apart()
            planned.apart_seconds += apart
            planned.apart_items += timed
            todo = plan.work()
            planned.work += len(todo)
            planned.busy += bool(todo)
            planned.reference += bool(plan.reference and todo)
            planned.sooner += plan.sooner()
    return planned
