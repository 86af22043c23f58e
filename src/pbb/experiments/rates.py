"""How fast this machine ran pbb's work the last time: SFT tokens a second, RL seconds a step,
and evaluation completions a second per mode, by model and device.

Why: ``pbb plan`` says how long a config will take before any of it runs, and the only honest
source for that is what this machine measured. Every finished stage and evaluation of
``pbb run`` records its rate here (the last one wins: the machine, libraries and settings drift,
an average of old runs would not); the plan divides its work by them and says so where it has
none. The file is the machine's, not a run's: it lives in the pbb cache (``$PBB_CACHE``,
:func:`pbb.models.cache_dir`), next to the models it measured.

Work that was resumed is not recorded: its time covers only part of the work it counts.

SFT's rate is also kept by the stage's mean tokens a row (:data:`SFT_BY_LENGTH`). Why: a token
of a longer row costs more (attention, and padding to the longest row of a batch); on the 2-core
CPU the 135M model trained 465 tokens/s at 54 tokens a row, ~400 at 140 and 290 at 239 (a
cipher stage, which one flat rate planned 1.3x too short).
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
RL = "rl_seconds_per_step"
EVAL = "completions_per_second"
#: the recall checks of a stopping rule, in process (a ``recall`` evaluation may be served)
RECALL_CHECK = "recall_check"


def rates_path() -> Path:
    """``PBB_RATES`` where set (the test suite points it at a temporary file, so that its
    tiny runs never land in a user's rates), else ``rates.json`` in pbb's cache."""
    from pbb.models import cache_dir

    return Path(os.environ["PBB_RATES"]) if os.environ.get("PBB_RATES") else cache_dir() / RATES


def machine_key(model: str) -> str:
    """Whose rates: a model on this kind of device (``cpu``, ``cuda``), and under a launcher
    how many processes share the work."""
    from pbb import dist

    kind, processes = dist.device().split(":")[0], dist.world()
    return f"{model} on {kind}" + (f" x{processes}" if processes > 1 else "")


def read_rates(key: str) -> dict:
    """The rates recorded for ``key`` (empty where there are none, or the file is unreadable:
    a plan without rates is still a plan)."""
    path = rates_path()
    try:
        every = read_json(path) if path.is_file() else {}
    except PbbError:
        return {}
    found = every.get(key) if isinstance(every, dict) else None
    return found if isinstance(found, dict) else {}


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
            for name, value in update.items():
                if isinstance(value, dict):
                    mine[name] = {**(mine.get(name) or {}), **value}
                else:
                    mine[name] = value
            every[key] = mine
            atomic_write_json(path, every)
    except (OSError, PbbError):
        pass  # a cache that cannot be written (read-only home): the run goes on without it


def record_stage(key: str, info: dict) -> None:
    """A finished stage's rate, from its ``done.json``: SFT tokens a second (the recall checks'
    time left out: the plan counts those as recall completions), or RL seconds a step; and the
    recall completions a second of its recall checks (:data:`RECALL_CHECK`). Why the last: a
    stopping rule's stage plans its checks at that rate, and a machine that never ran a
    ``recall`` evaluation mode would otherwise plan every such stage with no rate at all."""
    if info.get("resumed") or not info.get("steps"):
        return
    seconds = info.get("seconds") or 0.0
    if info.get("algorithm") == "grpo":
        _record(key, {RL: round(seconds / info["steps"], 4)})
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


def row_bucket(tokens_per_row: float) -> int:
    """The power of two at or above a mean tokens a row, 64 at least: rows of like length
    share a rate."""
    return max(64, 1 << math.ceil(math.log2(max(tokens_per_row, 1.0))))


def sft_rate(rates: dict, tokens_per_row: float) -> float | None:
    """SFT tokens a second for rows of this mean length: the rate measured at the nearest
    length bucket (on a log scale; the shorter of two as near), else the last stage's, else
    None."""
    by_length = {int(b): r for b, r in (rates.get(SFT_BY_LENGTH) or {}).items()
                 if str(b).isdigit() and isinstance(r, (int, float)) and r > 0}
    if not by_length:
        return rates.get(SFT)
    want = math.log2(row_bucket(tokens_per_row))
    return by_length[min(by_length, key=lambda b: (abs(math.log2(b) - want), b))]


def record_eval(key: str, mode: str, completions: int, seconds: float) -> None:
    """A finished evaluation's completions a second (one mode, started from nothing)."""
    if completions and seconds > 0:
        _record(key, {EVAL: {mode: round(completions / seconds, 4)}})
