"""``pbb sweep``: many runs over a grid of config keys, sharing every stage they have in common.

A sweep file is a run config with one more top-level key::

    sweep:
      grid: {seed: [0, 1]}                       # a product over dotted keys
      points:                                    # then each of these overrides (default: one {})
        - {curricula: [proactive]}
        - {curricula: [demos_only], curriculum.demos_only_k: 1}
        - {curricula: [demos_only], curriculum.demos_only_k: 10}
      analysis: {mode: cot}                      # sample-efficiency analysis (when possible)

Layout::

    SWEEP_DIR/sweep.json             the points, their overrides and run directories
    SWEEP_DIR/stages/<stage>-<key>/  every trained stage, shared by all points (keyed by a hash
                                     of model, training settings, seed, rows and parent stage)
    SWEEP_DIR/runs/<point>/          one ordinary run directory per point
    SWEEP_DIR/sweep_summary.json, report.md, efficiency.png, curricula.png

Resume: start the same command again; finished points (their ``summary.json``) are skipped,
an interrupted one resumes like any run, and a stage another point already trained is reused.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import re
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from rich.console import Console

from pbb import dist
from pbb.config import (
    RunConfig,
    apply_overrides,
    error_line,
    holds_config,
    read_yaml_mapping,
    set_dotted,
)
from pbb.errors import PbbError
from pbb.evaluation.metrics import per_behaviour_field, proportion_ci
from pbb.folders import check_out, check_stage_store, mark
from pbb.jsonio import atomic_write_json, atomic_write_text, read_json
from pbb.records import SweepRecord, check, read_samples, read_summary
from pbb.store import (
    BARS_PLOT,
    CURVE_PLOT,
    RunStore,
    SweepStore,
    lock_when_made,
    out_dir,
)

console = Console(stderr=True, soft_wrap=True)  # a message is one line in a log file


class AnalysisConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    mode: str | None = Field(None, description="eval mode of the curve (default: the first)")
    instruction: str = Field("proactive", description="curriculum that gives the line")
    demos: str = Field("demos_only", description="curriculum whose accuracy vs k is the curve")
    resamples: int = Field(1000, ge=100)


class SlurmConfig(BaseModel):
    """Job settings for ``pbb sweep --executor slurm`` (one job per point, through submitit)."""

    model_config = ConfigDict(extra="forbid")

    partition: str | None = None
    account: str | None = None
    time_min: int = Field(240, ge=1, description="wall-time limit of a job, minutes")
    gpus_per_job: int = Field(1, ge=0)
    cpus_per_job: int = Field(8, ge=1)
    mem_gb: int | None = Field(None, ge=1)
    extra: dict[str, object] = Field(default_factory=dict, description="more submitit slurm_* "
                                     "parameters, e.g. {qos: high, constraint: a100}")


class SweepSpec(BaseModel):
    model_config = ConfigDict(extra="forbid")

    grid: dict[str, list] = Field(default_factory=dict)
    points: list[dict[str, object]] = Field(default_factory=lambda: [{}], min_length=1)
    order: Literal["grid", "points"] = Field(
        "grid", description="grid: every point at each grid combination in turn; points: each "
        "point at every grid combination in turn (a claim's prerequisite at every seed first)")
    analysis: AnalysisConfig = Field(default_factory=AnalysisConfig)
    slurm: SlurmConfig = Field(default_factory=SlurmConfig)


def _point_name(i: int, overrides: dict) -> str:
    parts = []
    for k, v in overrides.items():
        short = k.split(".")[-1].replace("demos_only_k", "k")
        value = "+".join(map(str, v)) if isinstance(v, list) else str(v)
        parts.append(f"{short}-{value}")
    return re.sub(r"[^A-Za-z0-9_.+=-]", "", f"{i:03d}_" + "_".join(parts))[:100]


def _named(record: dict | None) -> dict[str, str]:
    """The point names of a sweep record, by the point's overrides (as :func:`_overrides_key`)."""
    return {_overrides_key(p["overrides"]): p["name"] for p in (record or {}).get("points", [])}


def _overrides_key(overrides: dict) -> str:
    return json.dumps(overrides, sort_keys=True, ensure_ascii=False)


def _check_distinct(path: Path, points: list[dict]) -> None:
    """Two points of the same overrides are one run twice (and one name, once kept from an
    earlier plan); two of the same name would share a run folder (overrides that differ only
    past the 100 characters a name keeps)."""
    for what, of in (("overrides", lambda p: _overrides_key(p["overrides"])),
                     ("name", lambda p: p["name"])):
        seen = [of(p) for p in points]
        if twin := next((v for v in seen if seen.count(v) > 1), None):
            raise PbbError(f"{path}: two points have the same {what}, {twin}: make them differ")


def load_sweep(path: Path, overrides: dict | None = None, smoke: bool = False,
               earlier: dict | None = None) -> tuple[dict, SweepSpec, list[dict]]:
    """(base config dict, sweep spec, points); every point's config is validated up front.
    ``smoke``: every point under the smoke overlay (:func:`pbb.config.apply_overrides`).
    ``earlier``: the record (``sweep.json``) of this sweep as it was planned before, in its
    folder or an archive of its runs: a point it has (the same overrides) keeps the name it had
    there, and a new point is named by its place in the plan. Why: a name is the point's place,
    and a new seed or point moves the places of others (with ``order: points`` a third seed of
    the first point comes before the second point's seeds); names that followed the places
    would call a finished run another point's, and the grown sweep would be refused."""
    path = Path(path)
    written = read_yaml_mapping(path, "sweep")
    if "sweep" not in written:
        raise PbbError(f"{path}: a sweep file is a run config with a `sweep:` section")
    sweep_raw = {"sweep": written.pop("sweep") or {}}
    mine = {}
    for key, value in (overrides or {}).items():  # --set sweep.grid.seed=[0] edits the sweep
        if key.startswith("sweep."):
            set_dotted(sweep_raw, key, value)
        else:
            mine[key] = value
    raw = apply_overrides(written, mine, smoke)
    try:
        spec = SweepSpec(**sweep_raw["sweep"])
    except ValidationError as e:
        raise PbbError(error_line(e, f"{path}: sweep")) from None
    keys = list(spec.grid)
    points = []
    combos = list(itertools.product(*(spec.grid[k] for k in keys)))
    pairs = (itertools.product(combos, spec.points) if spec.order == "grid"
             else ((combo, extra) for extra in spec.points for combo in combos))
    for combo, extra in pairs:
        ov = {**dict(zip(keys, combo)), **extra}
        cfg_raw = apply_overrides(written, {**mine, **ov}, smoke)
        name = _point_name(len(points), ov)
        cfg_raw["name"] = _run_name(raw, name)
        try:
            cfg = RunConfig(**cfg_raw)
        except ValidationError as e:
            raise PbbError(error_line(e, f"{path}: point {name}")) from None
        if cfg.data.path:  # the data block as the data set says (pbb.experiments.run.open_data)
            from pbb.experiments.run import with_data_path

            cfg, _ = with_data_path(cfg)
        points.append({"name": name, "overrides": ov, "config": cfg})
    if not points:
        raise PbbError(f"{path}: the grid is empty")
    return raw, spec, keep_names(path, raw, points, earlier)


def _run_name(raw: dict, point: str) -> str:
    """A point's run name (its config's ``name``): the sweep's, then the point's."""
    return f"{raw.get('name', 'sweep')}/{point}"


def keep_names(path: Path, raw: dict, points: list[dict], earlier: dict | None) -> list[dict]:
    """:func:`load_sweep`'s ``points`` (of the sweep file ``path``, base config ``raw``) with
    the names ``earlier`` gave the same overrides (its ``earlier``), checked distinct. Apart
    from :func:`load_sweep` so that a caller that learns the sweep's folder from its points
    (its name is the config's) names them after reading the folder's record without building
    and validating every point's config again."""
    kept = _named(earlier)
    named = []
    for p in points:
        name = kept.get(_overrides_key(p["overrides"]), p["name"])
        if name != p["name"]:
            p = {**p, "name": name,
                 "config": p["config"].model_copy(update={"name": _run_name(raw, name)})}
        named.append(p)
    _check_distinct(path, named)
    return named


def done(sweep: SweepStore, point: dict) -> bool:
    """Whether the sweep's point is done: its summary exists and its config, as this version
    writes it, is the one the sweep asks for now."""
    run = sweep.run(point["name"])
    return run.summary.is_file() and holds_config(run.config, point["config"])


def _pending(sweep: SweepStore, points: list[dict],
             select: Callable[[object], bool] | None = None) -> list[tuple[int, dict]]:
    """The points (1-based index, point) still to run: those ``select`` accepts (all without
    it) and not :func:`done`. A done one is said only where selected, so passes that select
    apart (``pbb claims``: a prerequisite's points, then the rest) say each point once."""
    pending = []
    for i, p in enumerate(points, start=1):
        if select and not select(p["config"]):
            continue
        if done(sweep, p):
            console.print(f"[dim]sweep point {i}/{len(points)} {p['name']}: done earlier[/]")
        else:
            pending.append((i, p))
    return pending


def run_sweep(path: Path, out: Path | None = None, overrides: dict | None = None,
              progress: bool = True, smoke: bool = False, jobs: int = 1,
              executor: str = "local", jobs_per_device: int | str = 1,
              stages_root: Path | None = None, remedy: str = "use another --out",
              select: Callable[[object], bool] | None = None,
              after_point: Callable[[str], None] | None = None) -> dict:
    """Run the sweep's pending points, then its report. ``stages_root``: a stage store shared
    with other sweeps (``pbb claims``, ``--stages-root``) instead of the sweep's own, checked
    before any work; points run at once (``jobs``, Slurm) train each stage once there under its
    stage lock, as in the sweep's own store. ``remedy``: what the error
    says to do where ``out`` holds a different sweep (``pbb claims`` has one --out for all its
    claims). ``select``: run only the points whose config it accepts (``pbb claims`` runs a
    claim's prerequisite first and the rest only where it is met). ``after_point``: called with
    each point's name once it has finished here (not under Slurm; ``pbb claims`` packs the
    claim's archive then, so that a machine lost mid-sweep keeps the points it finished)."""
    from pbb.experiments.run import run

    if stages_root is not None:
        check_stage_store(stages_root)
    raw, spec, points = load_sweep(path, overrides, smoke)
    out = out_dir(str(raw.get("name", "sweep")), out, smoke)
    sweep = SweepStore(out)
    check_out(out, "sweep", replace=False)
    if sweep.record.is_file():  # its points keep their names (a sweep grown, or planned anew)
        points = keep_names(path, raw, points, read_record(sweep))
    stages = stages_root or sweep.stages
    record = sweep_record(raw, spec, points)
    with contextlib.ExitStack() as held:  # the main process's lock (its points run, each locked)
        lock = lock_when_made(held, out, "sweep")
        dist.on_main(lambda: (lock(), _record_sweep(sweep, record, points, remedy, made=lock)))
        pending = _pending(sweep, points, select)
        if executor == "slurm" and pending:
            from pbb.experiments.executors import run_slurm

            run_slurm([p for _, p in pending], out, spec.slurm, stages)
        elif jobs > 1 and len(pending) > 1:
            from pbb.experiments.executors import run_local

            run_local([p for _, p in pending], out, jobs, jobs_per_device, stages, after_point)
        else:
            for i, p in pending:
                console.print(f"[bold]sweep point {i}/{len(points)}[/] {p['name']}")
                run(p["config"], sweep.run_dir(p["name"]), progress=progress, stages_root=stages)
                if after_point:
                    after_point(p["name"])
        return report(out)


def sweep_record(raw: dict, spec: SweepSpec, points: list[dict]) -> dict:
    """The record (``sweep.json``) of the sweep :func:`load_sweep` returned: its name, base
    config, analysis and points (name, overrides, run folder)."""
    return {"name": raw.get("name", "sweep"), "base": raw, "analysis": spec.analysis.model_dump(),
            "points": [{"name": p["name"], "overrides": p["overrides"],
                        "dir": SweepStore.run_rel(p["name"])} for p in points]}


def read_record(sweep: SweepStore) -> dict:
    """The sweep's ``sweep.json``, checked (a broken one is a one-line error naming it)."""
    return check(SweepRecord, read_json(sweep.record), str(sweep.record))


def _record_sweep(sweep: SweepStore, record: dict, points: list[dict], remedy: str,
                  made=lambda: None) -> None:
    """Write ``record`` (``sweep.json``) into the sweep's folder: a new sweep, or this one grown
    by more points (those run stay as they are); a different sweep there is refused. ``made``
    is called once the folder exists, before the first write (the sweep's lock: another
    process may have made the folder since the checks)."""
    from pbb.experiments.run import check_before_work

    out = sweep.root
    old = read_record(sweep) if sweep.record.is_file() else None
    if old is not None and not of_plan(old, record, started(out, old)):
        raise PbbError(f"{out}: holds a different sweep (differs in "
                       f"{_first_difference(old, record)}); {remedy}")
    if old != record:
        for p in points:
            check_before_work(p["config"])
        if old is not None:
            console.print(f"{out}: the sweep's plan goes from {len(old['points'])} to "
                          f"{len(record['points'])} points; those run before are kept")
        out.mkdir(parents=True, exist_ok=True)
        made()
        mark(out, "sweep")
        atomic_write_json(sweep.record, record)
    else:
        mark(out, "sweep")


def _eval_accuracies(run_dir: Path, curriculum: str, mode: str, split: str = "eval",
                     field: str = "score") -> dict[str, float] | None:
    """Per-behaviour mean of ``field`` (the score, or ``recall_exact`` of CoT samples)."""
    f = RunStore(run_dir).samples(curriculum, mode)
    if not f.is_file():
        return None
    part = [s for s in read_samples(f) if s["split"] == split and field in s]
    return per_behaviour_field(part, field) if part else None


def report(out: Path) -> dict:
    """Analyse a sweep's runs; write sweep_summary.json, report.md and the plots."""
    from pbb.config import load_config
    from pbb.experiments import efficiency

    out, sweep = Path(out), SweepStore(out)
    record = read_record(sweep)
    analysis = AnalysisConfig(**record.get("analysis", {}))
    rows, per_seed = [], {}
    for p in record["points"]:
        rdir = out / p["dir"]
        point = RunStore(rdir)
        if not point.summary.is_file():
            continue
        cfg = load_config(point.config)
        summ = read_summary(point.summary)
        mode = analysis.mode or cfg.eval.modes[0]
        for r in summ["results"]:
            label = r["curriculum"] + (f" k={cfg.curriculum.demos_only_k}"
                                       if r["curriculum"] == "demos_only" else "")
            rows.append({"point": p["name"], "seed": cfg.seed, "label": label, "mode": r["mode"],
                         "split": r["split"], "accuracy": r["accuracy"], "dir": p["dir"]})
        seed_entry = per_seed.setdefault(cfg.seed, {"curve": {}, "instruction": None})
        if analysis.demos in cfg.curricula:
            acc = _eval_accuracies(rdir, analysis.demos, mode)
            if acc is not None:
                seed_entry["curve"][cfg.curriculum.demos_only_k] = acc
        if analysis.instruction in cfg.curricula:
            acc = _eval_accuracies(rdir, analysis.instruction, mode)
            if acc is not None:
                seed_entry["instruction"] = acc
    summary = {"name": record["name"], "points_done": len({r["point"] for r in rows}),
               "points": len(record["points"]), "curricula": _bars(out, rows)}
    try:
        est = efficiency.estimate(per_seed, analysis.resamples)
        statement = efficiency.describe(est["crossover"], est["ks"])
        if est["instruction"]["accuracy"] == 0:
            statement += " (but one instruction alone gives 0% here, so N says little)"
        summary["efficiency"] = {**est, "mode": analysis.mode or "first eval mode",
                                 "statement": statement}
    except ValueError as e:
        summary["efficiency"] = {"unavailable": str(e)}
    atomic_write_json(sweep.summary, summary)
    plot_curve(summary, sweep.curve_plot)
    plot_bars(summary, sweep.bars_plot)
    atomic_write_text(sweep.report, sweep_markdown(summary))
    return summary


def _bars(out: Path, rows: list[dict]) -> list[dict]:
    """Per (label, mode, split): the mean over points (seeds) of the runs' accuracy, with a
    bootstrap interval over the per-behaviour accuracies of all those runs; CoT rows also the
    mean share of completions whose recalled instruction was exact (``recall_exact``)."""
    groups: dict[tuple[str, str, str], list[dict]] = {}
    for r in rows:
        groups.setdefault((r["label"], r["mode"], r.get("split", "eval")), []).append(r)
    bars = []
    for (label, mode, split), rs in groups.items():
        curriculum = label.split(" ")[0]
        values, recalled = [], []
        for r in rs:
            acc = _eval_accuracies(out / r["dir"], curriculum, mode, split) or {}
            values += list(acc.values())
            rec = _eval_accuracies(out / r["dir"], curriculum, mode, split, "recall_exact") or {}
            recalled += list(rec.values())
        low, high = proportion_ci(values)
        bar = {"label": label, "mode": mode, "split": split,
               "accuracy": sum(r["accuracy"] for r in rs) / len(rs), "ci_low": low,
               "ci_high": high, "runs": len(rs), "seeds": sorted({r["seed"] for r in rs})}
        if recalled:
            bar["recall_exact"] = sum(recalled) / len(recalled)
        bars.append(bar)
    def order(b: dict) -> tuple:
        name, _, k = b["label"].partition(" k=")
        return (b["mode"], name, int(k) if k else -1)

    return sorted(bars, key=order)


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def sweep_markdown(summary: dict) -> str:
    lines = [f"# Sweep {summary['name']}", "",
             f"{summary['points_done']} of {summary['points']} points done.", ""]
    eff = summary.get("efficiency", {})
    if "curve" in eff:
        lines += ["## Sample efficiency", "",
                  f"Eval-behaviour accuracy (%) of demos_only against k, mean over seeds "
                  f"{eff['seeds']}, with 95% intervals (resampling seeds and behaviours).", "",
                  "| k | demos_only | instruction (proactive) |", "|---|---|---|"]
        ins = eff["instruction"]
        for c in eff["curve"]:
            lines.append(f"| {c['k']} | {_pct(c['accuracy'])} [{_pct(c['ci_low'])}, {_pct(c['ci_high'])}] | "
                         f"{_pct(ins['accuracy'])} [{_pct(ins['ci_low'])}, {_pct(ins['ci_high'])}] |")
        lines += ["", f"**Crossover:** {eff['statement']}.", "", f"![efficiency]({CURVE_PLOT})", ""]
    elif eff:
        lines += [f"Sample-efficiency analysis unavailable: {eff.get('unavailable')}", ""]
    lines += ["## Curricula", "", "Accuracy (%), mean over runs (seeds), 95% interval over "
              "behaviours of all those runs; mode `recall`: instructions recalled exactly; "
              "recalled in CoT: CoT completions whose recalled instruction was exact.", "",
              "| curriculum | mode | eval behaviours | train behaviours (held-out inputs) | "
              "recalled in CoT (eval / train) | runs |", "|---|---|---|---|---|---|"]
    keyed = {(b["label"], b["mode"], b.get("split", "eval")): b for b in summary["curricula"]}

    def cell(b: dict | None) -> str:
        return "-" if b is None else f"{_pct(b['accuracy'])} [{_pct(b['ci_low'])}, {_pct(b['ci_high'])}]"

    for label, mode in dict.fromkeys((b["label"], b["mode"]) for b in summary["curricula"]):
        ev, tr = keyed.get((label, mode, "eval")), keyed.get((label, mode, "train"))
        rec = " / ".join(f"{100 * b['recall_exact']:.0f}" if b and "recall_exact" in b else "-"
                         for b in (ev, tr))
        lines.append(f"| {label} | {mode} | {cell(ev)} | {cell(tr)} | "
                     f"{'-' if rec == '- / -' else rec} | {(ev or tr)['runs']} |")
    lines += ["", f"![curricula]({BARS_PLOT})", ""]
    return "\n".join(lines)


def _save(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    tmp = Path(path).with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(path)


def plot_curve(summary: dict, path: Path) -> None:
    eff = summary.get("efficiency", {})
    if "curve" not in eff:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ks = [c["k"] for c in eff["curve"]]
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(ks, [100 * c["accuracy"] for c in eff["curve"]], "o-", label="demos_only (k demonstrations)")
    ax.fill_between(ks, [100 * c["ci_low"] for c in eff["curve"]],
                    [100 * c["ci_high"] for c in eff["curve"]], alpha=0.25)
    ins = eff["instruction"]
    ax.axhline(100 * ins["accuracy"], color="C1", label="one instruction (proactive)")
    ax.axhspan(100 * ins["ci_low"], 100 * ins["ci_high"], color="C1", alpha=0.15)
    if eff["crossover"]["kind"] == "crossing":
        ax.axvline(eff["crossover"]["n"], color="gray", ls="--", label=f"N = {eff['crossover']['n']:.1f}")
    ax.set_xscale("log")
    ax.set_xticks(ks, [f"{k:g}" for k in ks])
    ax.minorticks_off()
    ax.set(xlabel="demonstrations per eval behaviour (k)", ylabel="eval accuracy (%)",
           title="An instruction is worth N demonstrations")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    _save(fig, path)


def plot_bars(summary: dict, path: Path) -> None:
    bars = [b for b in summary["curricula"] if b.get("split", "eval") == "eval"]
    if not bars:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(max(5, 0.8 * len(bars)), 4))
    xs = range(len(bars))
    ys = [100 * b["accuracy"] for b in bars]
    err = np.array([[max(0, 100 * (b["accuracy"] - b["ci_low"])) for b in bars],
                    [max(0, 100 * (b["ci_high"] - b["accuracy"])) for b in bars]])
    ax.bar(xs, ys, yerr=err, capsize=3)
    ax.set_xticks(list(xs), [f"{b['label']}\n{b['mode']}" for b in bars], fontsize=7, rotation=30)
    ax.set(ylabel="eval accuracy (%), 95% CI", ylim=(0, 100))
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    _save(fig, path)


def of_plan(old: dict, new: dict, ran: Collection[str] | None = None) -> bool:
    """Whether runs recorded as the sweep record ``old`` are runs of the sweep ``new``: the same
    record, or ``new`` is ``old`` with more points (the same base config but for ``sweep.grid`` /
    ``sweep.points``, every old point kept with its overrides, under the name and folder it has
    in ``old``: those ``new`` gives it where planned without ``old``, :func:`load_sweep`'s
    ``earlier``, may differ). Why: a claim whose seeds disagree needs more seeds, and its runs
    so far must stay usable. ``ran``: the folders (``runs/<point>``) of the old points that
    hold runs, where known; only those need be kept, so the points not started yet may be
    planned anew (a claim's unrun curricula split into points one sitting can finish)."""
    def without_points(record: dict) -> dict:
        sweep = {k: v for k, v in record["base"].get("sweep", {}).items() if k not in
                 ("grid", "points")}
        return {**record, "base": {**record["base"], "sweep": sweep}, "points": None}

    new = renamed(new, old)
    return old == new or (without_points(old) == without_points(new)
                          and all(p in new["points"] for p in old["points"]
                                  if ran is None or p["dir"] in ran))


def renamed(record: dict, earlier: dict) -> dict:
    """The sweep record ``record`` with its points named as ``earlier`` names the same overrides
    (what :func:`load_sweep` with ``earlier`` records)."""
    kept = _named(earlier)
    points = []
    for p in record["points"]:
        name = kept.get(_overrides_key(p["overrides"]), p["name"])
        points.append({**p, "name": name, "dir": SweepStore.run_rel(name)})
    return {**record, "points": points}


def started(sweep_dir: Path, record: dict) -> frozenset[str]:
    """The folders (``runs/<point>``) of the record's points that exist in ``sweep_dir``: the
    points a run has started or finished there (:func:`of_plan`'s ``ran``)."""
    return frozenset(p["dir"] for p in record["points"] if (Path(sweep_dir) / p["dir"]).exists())


def _first_difference(a, b, path: str = "") -> str:
    """The dotted path of the first place two JSON values differ (for an error message)."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if a.get(k) != b.get(k):
                return _first_difference(a.get(k), b.get(k), f"{path}.{k}" if path else str(k))
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b)):
            if x != y:
                return _first_difference(x, y, f"{path}[{i}]")
    return f"{path or 'the whole record'}: {a!r} here, {b!r} now"
