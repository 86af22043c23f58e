""""An instruction is worth N demonstrations": the crossover of a sample-efficiency curve.

The curve is eval-behaviour accuracy of ``demos_only`` against ``k`` (demonstrations per eval
behaviour); the line is the accuracy one instruction gives (``proactive``). N is where the curve
reaches the line, by linear interpolation in log k between the two grid points around the first
crossing. When the curve starts above the line, N is "fewer than the smallest k tried"; when it
never reaches it, "more than the largest k tried".

Intervals resample seeds, and behaviours within each seed (paired across k and the instruction
run, which share their data), recomputing the curve, the line and N each time.
"""

from __future__ import annotations

import math

import numpy as np

BELOW_ALL = "more than the largest k"   # the curve never reaches the line
ABOVE_ALL = "fewer than the smallest k"  # the curve is already at or above it at the first k


def crossover(ks: list[float], curve: list[float], target: float) -> tuple[str, float]:
    """(kind, N): kind is ``crossing``, :data:`ABOVE_ALL` or :data:`BELOW_ALL`; N is the
    interpolated crossing (or the smallest / largest k for the other kinds)."""
    if len(ks) != len(curve) or not ks:
        raise ValueError("ks and curve must be non-empty and of the same length")
    order = sorted(range(len(ks)), key=lambda i: ks[i])
    ks, curve = [ks[i] for i in order], [curve[i] for i in order]
    if curve[0] >= target:
        return ABOVE_ALL, ks[0]
    for i in range(1, len(ks)):
        if curve[i] >= target:
            lo, hi = math.log(ks[i - 1]), math.log(ks[i])
            t = (target - curve[i - 1]) / (curve[i] - curve[i - 1])
            return "crossing", math.exp(lo + t * (hi - lo))
    return BELOW_ALL, ks[-1]


def _as_number(kind: str, n: float) -> float:
    return {ABOVE_ALL: 0.0, BELOW_ALL: math.inf}.get(kind, n)


def estimate(per_seed: dict[int, dict], resamples: int = 1000, seed: int = 0) -> dict:
    """The curve, the line and N with 95% intervals.

    ``per_seed[s] = {"curve": {k: {behaviour: accuracy}}, "instruction": {behaviour: accuracy}}``;
    point estimates are means over seeds of each seed's mean over behaviours (the numbers in the
    runs' ``summary.json``).
    """
    seeds = sorted(s for s, v in per_seed.items() if v.get("instruction") and v.get("curve"))
    if not seeds:
        raise ValueError("no seed has both a demos_only curve and an instruction run")
    # a seed whose curve is not yet complete (its sweep still running) waits: taken in, it would
    # cut every seed's curve to the k it has
    tried = set().union(*(per_seed[s]["curve"] for s in seeds))
    seeds = [s for s in seeds if set(per_seed[s]["curve"]) == tried] or seeds
    ks = sorted(set.intersection(*(set(per_seed[s]["curve"]) for s in seeds)))
    behaviours = {s: sorted(per_seed[s]["instruction"]) for s in seeds}
    arrays = {s: (np.array([[per_seed[s]["curve"][k].get(b, np.nan) for b in behaviours[s]]
                            for k in ks]),
                  np.array([per_seed[s]["instruction"][b] for b in behaviours[s]])) for s in seeds}

    def stats(chosen_seeds, pick) -> tuple[list[float], float]:
        curve = np.mean([np.nanmean(arrays[s][0][:, pick(s)], axis=1) for s in chosen_seeds], axis=0)
        line = float(np.mean([np.mean(arrays[s][1][pick(s)]) for s in chosen_seeds]))
        return [float(x) for x in curve], line

    curve, line = stats(seeds, lambda s: slice(None))
    kind, n = crossover(ks, curve, line)
    # each seed's own N: whether the seeds agree is not in a pooled interval's width alone
    alone = [_as_number(*crossover(ks, *stats([s], lambda s: slice(None)))) for s in seeds]
    rng = np.random.default_rng(seed)
    boot_curves, boot_lines, boot_n = [], [], []
    for _ in range(resamples):
        chosen = [seeds[i] for i in rng.integers(0, len(seeds), len(seeds))]
        picks = {s: rng.integers(0, len(behaviours[s]), len(behaviours[s])) for s in set(chosen)}
        c, li = stats(chosen, lambda s: picks[s])
        boot_curves.append(c)
        boot_lines.append(li)
        boot_n.append(_as_number(*crossover(ks, c, li)))
    boot_curves = np.array(boot_curves)
    lo_n, hi_n = np.percentile(boot_n, [2.5, 97.5], method="lower"), np.percentile(
        boot_n, [2.5, 97.5], method="higher")
    return {
        "ks": ks, "seeds": seeds,
        "curve": [{"k": k, "accuracy": curve[i],
                   "ci_low": float(np.percentile(boot_curves[:, i], 2.5)),
                   "ci_high": float(np.percentile(boot_curves[:, i], 97.5))} for i, k in enumerate(ks)],
        "instruction": {"accuracy": line, "ci_low": float(np.percentile(boot_lines, 2.5)),
                        "ci_high": float(np.percentile(boot_lines, 97.5))},
        "crossover": {"kind": kind, "n": n, "ci_low": float(lo_n[0]), "ci_high": float(hi_n[1]),
                      "resamples": resamples, "per_seed": alone},
    }


def format_n(x: float, ks: list[float]) -> str:
    """N as a number, or beyond the k tried (0: below the smallest, inf: above the largest)."""
    if math.isinf(x):
        return f"> {max(ks):g}"
    if x == 0:
        return f"< {min(ks):g}"
    return f"{x:.1f}"


def describe(c: dict, ks: list[float]) -> str:
    """One sentence for a crossover estimate (with its interval)."""
    interval = f"95% interval [{format_n(c['ci_low'], ks)}, {format_n(c['ci_high'], ks)}]"
    if c["kind"] == BELOW_ALL:
        return f"one instruction is worth more than {max(ks):g} demonstrations (the largest k tried); {interval}"
    if c["kind"] == ABOVE_ALL:
        return f"one instruction is worth fewer than {min(ks):g} demonstrations (the smallest k tried); {interval}"
    return f"one instruction is worth about {c['n']:.1f} demonstrations; {interval}"
