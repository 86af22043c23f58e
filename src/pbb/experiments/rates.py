"""How fast this machine ran pbb's work the last time: SFT tokens a second, RL seconds a step
(and a token its completions wrote, and of their budget), and evaluation completions a second
per mode, by model and device.

Why: ``pbb plan`` says how long a config will take before any of it runs, and the only honest
source for that is what this machine measured. Every finished stage and evaluation of
``pbb run`` records its rate here (the last one wins: the machine, libraries and settings drift,
an average of old runs would not); the plan divides its work by them and says so where it has
none. The file is the machine's, not a run's: it lives in the pbb cache (``$PBB_CACHE``,
:func:`pbb.models.cache_dir`), next to the models it measured.

A resumed stage is recorded by its last life alone (the steps, tokens and time that life ran),
and only where that life trained at least half the stage: the stage's totals span lives it never
timed.

A machine that has measured nothing yet for a model and device (a fresh clone, CI) plans with
the rates shipped with pbb (:data:`REFERENCE`), measured on the reference machine, the 2-core
CPU that the README's times are from, and says so: a time on other hardware is a guess, but one
that names its source beats none. They apply only where this machine has no rate at all for the
key (a run's plan takes one machine's rates; a sweep's or the claims' total says how many of its
points took the reference's); ``scripts/reference_rates.py`` writes them.

SFT's rate is also kept by the stage's mean tokens a row (:data:`SFT_BY_LENGTH`), and an
evaluation's by the mean tokens its completions wrote (:data:`EVAL_BY_LENGTH`; a plan expects a
trained model to write its gold completions' length, an untrained one its budget). Why: a token
of a longer row costs more (attention, and padding to the longest row of a batch); on the 2-core
CPU the 135M model trained 465 tokens/s at 54 tokens a row, ~400 at 140 and 290 at 239 (a
cipher stage, which one flat rate planned 1.3x too short); and a completion takes as long as
the tokens it writes: a cipher CoT evaluation (~200-token traces) ran 0.4 completions/s where
the last arithmetic one had measured 7.7, so it was planned 19x too short.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

from pbb.errors import PbbError
from pbb.jsonio import atomic_write_json, read_json

#: the file under the pbb cache
RATES = "rates.json"
SFT = "sft_tokens_per_second"
#: SFT tokens a second by :func:`row_bucket` of the stage's mean tokens a row
SFT_BY_LENGTH = "sft_tokens_per_second_by_row_tokens"
#: completions a second by mode, then by :func:`row_bucket` of the mean tokens written
EVAL_BY_LENGTH = "completions_per_second_by_tokens_written"
RL = "rl_seconds_per_step"
#: RL seconds a step per token of the step's completion budget (completions a step x
#: ``rl.max_completion_length``): a step trains on up to that many tokens (and, with
#: ``rl.num_iterations`` 1, as every config has it, samples them)
RL_PER_TOKEN = "rl_seconds_per_completion_token"
#: RL seconds a step per token its completions wrote (completions a step x their mean length),
#: what a plan takes first: a step's time goes with the tokens written, not the budget
#: (retroactive_rl's 1,024-token budget, 8 x 128, and familiar_retroactive's 1,792 both took
#: 22-37 s a step, their completions ~60-90 tokens either way, so the budget planned the second
#: ~1.7x long). One figure a token, no fixed part a step: within one config it explains little
#: (0.042-0.064 s over familiar_retroactive's stages); it assumes ``rl.num_iterations`` 1
RL_PER_WRITTEN = "rl_seconds_per_written_token"
EVAL = "completions_per_second"
#: the recall checks of a stopping rule, in process (a ``recall`` evaluation may be served)
RECALL_CHECK = "recall_check"


#: rates measured on the reference machine, shipped with pbb (:func:`reference_rates`)
REFERENCE = Path(__file__).with_name("reference_rates.json")
#: the reference file's factors for a machine that runs in fp32 where the reference ran in bf16
#: (its ``precision``): ``train`` (SFT and GRPO) and ``generate`` (evaluations), each this
#: machine's rate over the reference's
WITHOUT_BF16 = "without_bf16"


def reference_rates(key: str, bf16: bool = True) -> tuple[str, dict]:
    """The reference machine's rates for ``key`` and that machine in words (``("", {})`` where
    it has none). ``PBB_REFERENCE_RATES``: another file, or ``none`` (the test suite: its
    plans are of what the machine measured); a file missing or broken gives none, as a broken
    rates file does (a plan without rates is still a plan).

    ``bf16``: whether this machine will run in bf16. Where the reference did and this machine
    will not (most laptops' CPUs have no bf16 matmuls), the rates are scaled by the file's
    :data:`WITHOUT_BF16` factors, and the words say so: unscaled, a fresh clone on such a CPU
    planned the quickstart ~1.7x too short (SFT 144 tokens/s at 91-token rows in fp32 against
    the reference's 244 in bf16)."""
    chosen = os.environ.get("PBB_REFERENCE_RATES")
    shipped = {} if chosen == "none" else _file(REFERENCE if chosen is None else Path(chosen))
    found = _entry(shipped.get("rates"), key)
    if not found:
        return "", {}
    words = str(shipped.get("machine") or "the reference machine")
    factors = _entry(shipped, WITHOUT_BF16)
    train, generate = positive(factors.get("train")), positive(factors.get("generate"))
    if not bf16 and shipped.get("precision") == "bf16" and train and generate:
        found = _slower(found, train, generate)
        words += (f"; in bf16, so x{train:g} for training and x{generate:g} for generating here,"
                  " in fp32")
    return words, found


def _slower(found: dict, train: float, generate: float) -> dict:
    """Rates scaled for a machine ``train`` and ``generate`` times as fast: throughputs
    multiplied, seconds a step or token divided (a hand-edited entry's non-numbers kept)."""
    def times(value: object, factor: float) -> object:
        if isinstance(value, dict):
            return {k: times(v, factor) for k, v in value.items()}
        return value * factor if positive(value) else value

    factor = {SFT: train, SFT_BY_LENGTH: train, EVAL: generate, EVAL_BY_LENGTH: generate,
              RL: 1 / train, RL_PER_TOKEN: 1 / train, RL_PER_WRITTEN: 1 / train}
    return {name: times(value, factor[name]) if name in factor else value
            for name, value in found.items()}


def _file(path: Path) -> dict:
    """A rates file's JSON object (empty where it is missing, broken or not an object)."""
    try:
        every = read_json(path) if path.is_file() else {}
    except (PbbError, OSError):
        return {}
    return every if isinstance(every, dict) else {}


def _entry(every: object, key: str) -> dict:
    """``every[key]`` where ``every`` is a dict and that entry one too, else empty (a
    hand-edited file plans with what it has)."""
    found = every.get(key) if isinstance(every, dict) else None
    return found if isinstance(found, dict) else {}


def rates_path() -> Path:
    """``PBB_RATES`` where set (the test suite points it at a temporary file, so that its
    tiny runs never land in a user's rates), else ``rates.json`` in pbb's cache."""
    from pbb.models import cache_dir

    return Path(os.environ["PBB_RATES"]) if os.environ.get("PBB_RATES") else cache_dir() / RATES


def machine_key(model: str) -> str:
    """Whose rates: a model on this kind of device (``cpu``, ``cuda``), under a launcher how
    many processes share the work, and on a CPU a sweep's job's share of the cores where it was
    given one (:func:`pbb.experiments.executors.job_threads`): a plan of a run on all the cores
    reads the rates measured on all of them, not a share's."""
    from pbb import dist

    kind, processes = dist.device().split(":")[0], dist.world()
    key = f"{model} on {kind}" + (f" x{processes}" if processes > 1 else "")
    share = os.environ.get(dist.JOB_THREADS)  # a sweep's job on its share of the cores
    if kind == "cpu" and share:
        key += f", {share} thread" + ("" if share == "1" else "s")
    return key


def read_rates(key: str) -> dict:
    """The rates recorded for ``key`` (empty where there are none, or the file is unreadable:
    a plan without rates is still a plan)."""
    return _entry(_file(rates_path()), key)


def _record(key: str, update: dict) -> None:
    """Merge ``update`` into ``key``'s rates. Jobs of a sweep finish stages at once: the file is
    locked while it is read and replaced, so no job's rate is lost to another's write."""
    from filelock import FileLock

    path = rates_path()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(str(path) + ".lock"):
            every = read_json(path) if path.is_file() else {}
            every = every if isinstance(every, dict) else {}
            mine = every.get(key) if isinstance(every.get(key), dict) else {}
            every[key] = _merged(mine, update)
            atomic_write_json(path, every)
    except (OSError, PbbError):
        pass  # a cache that cannot be written (read-only home): the run goes on without it


def _merged(old: dict, new: dict) -> dict:
    """``old`` with ``new``'s values, nested dicts merged key by key (a rate measured for one
    mode or length leaves the others')."""
    out = dict(old)
    for name, value in new.items():
        out[name] = _merged(out[name] if isinstance(out.get(name), dict) else {}, value) \
            if isinstance(value, dict) else value
    return out


def record_stage(key: str, info: dict) -> None:
    """A finished stage's rate, from its ``done.json``: SFT tokens a second (the recall checks'
    time left out: the plan counts those as recall completions), or RL seconds a step; and the
    recall completions a second of its recall checks (:data:`RECALL_CHECK`). Why the last: a
    stopping rule's stage plans its checks at that rate, and a machine that never ran a
    ``recall`` evaluation mode would otherwise plan every such stage with no rate at all."""
    info = _timed_here(info)
    if not info or not info.get("steps"):
        return
    seconds = info.get("seconds") or 0.0
    if info.get("algorithm") == "grpo":
        if info.get("replayed_rows"):  # its steps' time holds the replay term, which a plan
            return                     # adds at the SFT rate (a GRPO step's rate is without it)
        update = {RL: round(seconds / info["steps"], 4)}
        if info.get("completion_tokens_per_step"):
            update[RL_PER_TOKEN] = float(
                f"{seconds / info['steps'] / info['completion_tokens_per_step']:.4g}")
        written = (positive(info.get("completions_per_step")) or 0) * \
            (positive(info.get("completion_length")) or 0)  # (a NaN length: none logged)
        if written:
            update[RL_PER_WRITTEN] = float(f"{seconds / info['steps'] / written:.4g}")
        _record(key, update)
        return
    recall_seconds = (info.get("time_split") or {}).get("recall", 0.0)
    seconds -= recall_seconds
    update: dict = {}
    if info.get("tokens") and seconds > 0:
        update[SFT] = round(info["tokens"] / seconds, 2)
        if info.get("tokens_per_row"):
            update[SFT_BY_LENGTH] = {str(row_bucket(info["tokens_per_row"])): update[SFT]}
    checked = sum(r.get("n", 0) for r in info.get("recall") or [])
    if checked and recall_seconds > 0:
        update[EVAL] = {RECALL_CHECK: round(checked / recall_seconds, 4)}
    if update:
        _record(key, update)


def _timed_here(info: dict) -> dict | None:
    """The part of a stage whose time this process measured: the whole of a fresh one; of a
    resumed one its last life (``last_life``: steps, tokens, seconds and recall checks), where
    that life trained at least half the stage's steps. Why: the totals span lives whose loading
    and steps the last one never timed; a life of a step or two is mostly its model's loading,
    which a plan spreads over a stage's steps."""
    if not info.get("resumed"):
        return info
    life = info.get("last_life") or {}
    if 2 * (life.get("steps") or 0) < (info.get("steps") or 0):
        return None
    return {**info, **life}


def row_bucket(tokens: float) -> int:
    """A mean length rounded to a quarter of an octave (..., 128, 152, 181, 215, 256, ...):
    work of like length shares a rate, and rows of 140 and 239 tokens (400 and 290 tokens/s
    here) do not."""
    return round(2 ** (round(4 * math.log2(max(tokens, 1.0))) / 4))


def positive(value: object) -> float | None:
    """A rate read from the file: a number above 0, else None (a hand-edited file)."""
    return float(value) if isinstance(value, (int, float)) and value > 0 else None


def by_length(measured: object) -> dict[int, float]:
    """A ``{bucket: rate}`` entry of the file as numbers, in bucket order (what is not a
    bucket and a rate is left out: a hand-edited file plans with what it has)."""
    found = {int(b): positive(r)
             for b, r in (measured.items() if isinstance(measured, dict) else ())
             if str(b).isascii() and str(b).isdigit() and int(b) > 0}
    return {b: r for b, r in sorted(found.items()) if r is not None}


def _nearest(measured: object, tokens: float) -> float | None:
    """The rate measured at the length bucket nearest ``tokens`` (on a log scale; of two as
    near, the longer's: a plan had better not come out short), None where none is."""
    found = by_length(measured)
    if not found:
        return None
    want = math.log2(max(tokens, 1.0))
    return found[min(found, key=lambda b: (abs(math.log2(b) - want), -b))]


def sft_rate(rates: dict, tokens_per_row: float) -> float | None:
    """SFT tokens a second for rows of this mean length: the nearest length bucket's, else the
    last stage's, else None."""
    found = _nearest(rates.get(SFT_BY_LENGTH), tokens_per_row)
    return found if found is not None else positive(rates.get(SFT))


def rl_step_seconds(rates: dict, completion_tokens: int,
                    written: float | None = None) -> float | None:
    """RL seconds a step whose completion budget is ``completion_tokens`` and whose completions
    are expected to write ``written`` tokens in all (their gold completions' mean length, cut
    at the budget, times the completions a step): the last GRPO stage's seconds a written token
    times that, else its seconds a budget token times the budget, else its seconds a step, else
    None. Why: a step's time goes with the tokens it samples and trains on; a budget the
    completions leave mostly unused planned a stage ~1.7x long (:data:`RL_PER_WRITTEN`)."""
    per_written = positive(rates.get(RL_PER_WRITTEN))
    if per_written and written:
        return per_written * written
    per_token = positive(rates.get(RL_PER_TOKEN))
    return per_token * completion_tokens if per_token else positive(rates.get(RL))


def eval_rate(rates: dict, mode: str, tokens: float | None) -> float | None:
    """Completions a second of ``mode`` for completions of ``tokens`` on average (None: not
    counted, as for a served model): the nearest length bucket's, else the mode's last
    evaluation's, else (``recall``) the stopping rule's recall checks', else None. Why the
    last: a recall evaluation writes the same instructions a recall check does, and a machine
    that trained with a stopping rule but recorded no rate of the mode (the shipped reference
    rates) would plan it with no rate at all."""
    every = rates.get(EVAL_BY_LENGTH)
    found = None
    if tokens is not None and isinstance(every, dict):
        found = _nearest(every.get(mode), tokens)
    last = rates.get(EVAL)
    last = last if isinstance(last, dict) else {}
    if found is None:
        found = positive(last.get(mode))
    if found is None and mode == "recall":
        found = positive(last.get(RECALL_CHECK))
    return found


def record_eval(key: str, mode: str, completions: int, seconds: float,
                tokens: float | None = None) -> None:
    """A finished evaluation's completions a second (one mode, started from nothing), also
    under the length bucket of the mean tokens its completions wrote, where counted."""
    if completions and seconds > 0:
        rate = round(completions / seconds, 4)
        update: dict = {EVAL: {mode: rate}}
        if tokens is not None:  # 0: empty completions (an untrained tiny model's)
            update[EVAL_BY_LENGTH] = {mode: {str(row_bucket(tokens)): rate}}
        _record(key, update)
