"""Summaries, tables and plots, rebuilt from the run directory's files alone.

``summary.json`` holds ``results``: one entry per (curriculum, mode, split) with ``accuracy,
ci_low, ci_high, n_behaviours, n_samples``, and ``comparisons``: paired differences between a
curriculum and its control on the same behaviours (:data:`CONTROLS`). ``report.md`` and
``accuracy.png`` show the same numbers; ``rewards.png`` plots each RL stage's reward per step.
``pbb report RUN_DIR`` regenerates them all from ``eval/*/*/samples.jsonl`` and the stages'
``metrics.jsonl``.
"""

from __future__ import annotations

import os
from pathlib import Path

from rich.console import Console
from rich.table import Table

from pbb.errors import PbbError
from pbb.evaluation.metrics import bootstrap_ci, per_behaviour, proportion_ci, summarize
from pbb.jsonio import atomic_write_json, atomic_write_text, read_json, read_jsonl
from pbb.records import Summary, check, read_samples
from pbb.store import METRICS, PLOT, REPORT, REWARD_PLOT, SUMMARY, RunStore

SPLITS = ("eval", "train")
#: (curriculum, control, what the difference measures), shown whenever both were run
CONTROLS = [
    ("retroactive", "rl_only", "PBB effect of retroactive training (minus what RL alone gives)"),
    ("retroactive", "retroactive_sft", "RL vs SFT in stage 2"),
    ("retroactive", "retroactive@activation_warmup", "what RL adds to its SFT warm start"),
    ("rl_only", "rl_only@activation_warmup", "what RL adds to the control's warm start"),
    ("proactive", "mixture", "curriculum vs homogeneous mixture"),
    ("proactive", "stage1_only", "effect of stage 2 (the eval instructions)"),
    ("mixture", "stage1_only", "effect of the eval instructions mixed into stage 1"),
]


def evaluated(run_dir: Path, curricula: list[str], modes: list[str]):
    """(curriculum, mode, samples) for every evaluation the run has finished."""
    for c in curricula:
        for m in modes:
            path = RunStore(run_dir).samples(c, m)
            if path.is_file():
                yield c, m, read_samples(path)


def collect(run_dir: Path, curricula: list[str], modes: list[str], resamples: int,
            seed: int, sample_metrics: dict[str, str] | None = None) -> list[dict]:
    results = []
    for c, m, samples in evaluated(run_dir, curricula, modes):
        for split in SPLITS:
            part = [s for s in samples if s["split"] == split]
            if part:
                results.append({"curriculum": c, "mode": m, "split": split,
                                **summarize(part, resamples, seed, sample_metrics)})
    return results


def compare(run_dir: Path, curricula: list[str], modes: list[str], resamples: int,
            seed: int) -> list[dict]:
    """Paired differences (curriculum - control) over the same behaviours, per mode and split."""
    out = []
    for a, b, meaning in CONTROLS:
        if a not in curricula or b not in curricula:
            continue
        for m in modes:
            pa, pb = (RunStore(run_dir).samples(c, m) for c in (a, b))
            if not (pa.is_file() and pb.is_file()):
                continue
            sa, sb = read_samples(pa), read_samples(pb)
            for split in SPLITS:
                acc_a = per_behaviour([s for s in sa if s["split"] == split])
                acc_b = per_behaviour([s for s in sb if s["split"] == split])
                common = sorted(set(acc_a) & set(acc_b))
                if not common:
                    continue
                diffs = [acc_a[k] - acc_b[k] for k in common]
                low, high = bootstrap_ci(diffs, resamples, seed)
                out.append({"curriculum": a, "control": b, "meaning": meaning, "mode": m,
                            "split": split, "difference": sum(diffs) / len(diffs),
                            "ci_low": low, "ci_high": high, "n_behaviours": len(common)})
    return out


def composition(run_dir: Path, ds, curricula: list[str], modes: list[str], resamples: int,
                seed: int) -> list[dict]:
    """Accuracy on eval composites (known from their instruction only), grouped by the splits
    of their two parts.

    ``eval+eval``: both parts known from instructions only (in ``proactive``; from
    demonstrations only in ``demos_only``); ``train+train``: both from instructions and
    demonstrations; ``train+eval``: one of each.
    """
    splits = {b.id: b.split for b in ds.behaviours}
    parts = {b.id: ds.domain.composite_parts(b, splits) for b in ds.split("eval")}
    composites = {b_id: g for b_id, g in parts.items() if g is not None}
    if not composites:
        return []
    out = []
    for c, m, samples in evaluated(run_dir, curricula, modes):
        acc = per_behaviour([s for s in samples if s["behaviour_id"] in composites])
        groups: dict[str, list[float]] = {}
        for b_id, a in sorted(acc.items()):
            groups.setdefault(composites[b_id], []).append(a)
        for g, values in sorted(groups.items()):
            low, high = proportion_ci(values, resamples, seed)
            out.append({"curriculum": c, "mode": m, "parts": g,
                        "accuracy": sum(values) / len(values), "ci_low": low,
                        "ci_high": high, "n_behaviours": len(values)})
    return out


def _composition_lines(rows: list[dict]) -> list[str]:
    if not rows:
        return []
    return ["", "## Composition", "",
            "Accuracy (%) on composite behaviours h(a) = f(g(a)), by the splits of f and g "
            "(train: instruction + demonstrations; eval: instruction only in proactive, "
            "demonstrations only in demos_only), with 95% intervals over composites.", "",
            "| curriculum | mode | parts | accuracy | composites |", "|---|---|---|---|---|",
            *(f"| {r['curriculum']} | {r['mode']} | {r['parts']} | {_fmt(r)} | {r['n_behaviours']} |"
              for r in rows)]


def _fmt_diff(r: dict) -> str:
    return f"{100 * r['difference']:+.1f} [{100 * r['ci_low']:+.1f}, {100 * r['ci_high']:+.1f}]"


def _comparison_lines(comparisons: list[dict]) -> list[str]:
    if not comparisons:
        return []
    lines = ["", "## Controls", "",
             "Paired difference in accuracy (percentage points, curriculum minus control, over "
             "the same behaviours) with a 95% bootstrap interval. An interval that contains 0 "
             "shows no effect at this size.", "",
             "| curriculum - control | measures | mode | eval behaviours | train behaviours |",
             "|---|---|---|---|---|"]
    keyed = {(r["curriculum"], r["control"], r["mode"], r["split"]): r for r in comparisons}
    for a, b, m in dict.fromkeys((r["curriculum"], r["control"], r["mode"]) for r in comparisons):
        ev, tr = keyed.get((a, b, m, "eval")), keyed.get((a, b, m, "train"))
        lines.append(f"| {a} - {b} | {ev['meaning'] if ev else tr['meaning']} | {m} | "
                     f"{_fmt_diff(ev) if ev else '-'} | {_fmt_diff(tr) if tr else '-'} |")
    return lines


def _generation_lines(results: list[dict]) -> list[str]:
    rows = [r for r in results if "generation" in r]
    if not rows:
        return []

    def pct(m: dict, ci: bool = False) -> str:
        text = f"{100 * m['mean']:.1f}"
        return f"{text} [{100 * m['ci_low']:.1f}, {100 * m['ci_high']:.1f}]" if ci else text

    lines = ["", "## Generation metrics", "",
             "Means over behaviours, in %. validity: outputs in the language (whatever the query "
             "constrained), with a 95% interval; distinct: distinct outputs per query (low = mode "
             "collapse); novelty: valid outputs that are not training demonstrations; chance: "
             "validity of random strings over the grammar's terminals with the lengths of its "
             "reference strings.", "",
             "| curriculum | mode | behaviours | validity | distinct | novelty | chance |",
             "|---|---|---|---|---|---|---|"]
    for r in rows:
        g = r["generation"]
        lines.append(f"| {r['curriculum']} | {r['mode']} | {r['split']} | {pct(g['validity'], True)} | "
                     f"{pct(g['distinct'])} | {pct(g['novelty'])} | {pct(g['chance'])} |")
    return lines


def _rl_lines(stages: dict) -> list[str]:
    seen, rows = set(), []
    for curriculum, entries in stages.items():
        for e in entries:
            if e.get("algorithm") != "grpo" or e["dir"] in seen:
                continue
            seen.add(e["dir"])
            rows.append(f"| {curriculum}/{e['stage']} | {e['steps']} | {e.get('reward_first', '-')} "
                        f"-> {e.get('reward_last', '-')} | {e.get('correct_first', '-')} -> "
                        f"{e.get('correct_last', '-')} | {e.get('frac_reward_zero_std', '-')} | "
                        f"{e.get('frac_correct_zero_std', '-')} | "
                        f"{e.get('completion_length', '-')} | {e.get('seconds', '-')} |")
    if not rows:
        return []
    return ["", "## RL stages", "",
            "Mean over the first and last tenth of the steps. `frac zero std`: share of groups "
            "whose completions all got the same reward (no learning signal); `correct zero std`: "
            "the same on correctness alone, format aside.", "",
            "| stage | steps | reward | correct | frac zero std | correct zero std "
            "| completion tokens | seconds |",
            "|---|---|---|---|---|---|---|---|", *rows, "", f"![rewards]({REWARD_PLOT})"]


def _stage_lines(stages: dict) -> list[str]:
    """Every SFT stage once: epochs, tokens per row, speed, and recall measured after it."""
    seen, rows = set(), []
    for curriculum, entries in stages.items():
        for e in entries:
            if e.get("algorithm") == "grpo" or e["dir"] in seen or "tokens_per_row" not in e:
                continue
            seen.add(e["dir"])
            recall = ", ".join(f"{100 * r['recall']:.0f}% (epoch {r['epoch']}, n={r['n']})"
                               for r in e.get("recall", [])) or "-"
            rate = e.get("rows_per_second")  # None: the life that finished it trained nothing
            rows.append(f"| {curriculum}/{e['stage']} | {e['rows']} | {e.get('epochs', '-')} | "
                        f"{e['tokens_per_row']} | {'-' if rate is None else rate} | "
                        f"{e.get('seconds', '-')} | {recall} |")
    if not rows:
        return []
    return ["", "## Training stages", "",
            "Each SFT stage once (shared stages are trained once). recall: share of the "
            "instructions this stage taught that the model reproduced exactly (greedy) after "
            "that epoch.", "",
            "| stage | rows | epochs | tokens/row | rows/s | seconds | recall |",
            "|---|---|---|---|---|---|---|", *rows]


def _fmt(r: dict) -> str:
    return f"{100 * r['accuracy']:.1f} [{100 * r['ci_low']:.1f}, {100 * r['ci_high']:.1f}]"


def _recall_cell(ev: dict | None, tr: dict | None) -> str:
    """CoT samples whose recalled instruction was exact, eval / train (% of behaviours' mean)."""
    parts = [f"{100 * r['recall_exact']['mean']:.0f}" if r and "recall_exact" in r else "-"
             for r in (ev, tr)]
    return "-" if parts == ["-", "-"] else " / ".join(parts)


def table_rows(results: list[dict]) -> tuple[list[str], list[list[str]]]:
    """One row per (curriculum, mode); eval and train accuracy (%) with 95% intervals.

    Mode ``recall`` is the share of instructions recalled exactly; the ``recalled in CoT``
    column gives, for CoT rows, the share of completions whose recall part was exact.
    """
    header = ["curriculum", "mode", "eval behaviours", "train behaviours (held-out inputs)",
              "recalled in CoT (eval / train)", "n"]
    keyed = {(r["curriculum"], r["mode"], r["split"]): r for r in results}
    rows = []
    for c, m in dict.fromkeys((r["curriculum"], r["mode"]) for r in results):
        ev, tr = keyed.get((c, m, "eval")), keyed.get((c, m, "train"))
        n = f"{ev['n_behaviours'] if ev else 0}+{tr['n_behaviours'] if tr else 0} behaviours"
        rows.append([c, m, _fmt(ev) if ev else "-", _fmt(tr) if tr else "-", _recall_cell(ev, tr),
                     n])
    return header, rows


def _data_sentence(data: dict | None) -> str:
    if not data or not data.get("counts"):
        return ""
    c, sha = data["counts"], data.get("sha256", {})
    digest = (sha.get("behaviours.jsonl") or "")[:12]
    return (f" Data set `{data.get('path')}`: {c.get('behaviours')} {data['domain']} behaviours "
            f"({c.get('train_behaviours')} train, {c.get('eval_behaviours')} eval), data seed "
            f"{data.get('seed')}, behaviours.jsonl sha256 {digest}.")


def run_markdown(summary: dict) -> str:
    header, rows = table_rows(summary["results"])
    lines = [f"# {summary.get('name', 'run')}", "",
             f"Model `{summary.get('model')}`, domain `{summary.get('domain')}`, seed "
             f"{summary.get('seed')}.{_data_sentence(summary.get('data'))} Accuracy in % (mean over behaviours of the per-behaviour "
             "accuracy on held-out test inputs) with a 95% bootstrap interval over behaviours "
             "(exact Clopper-Pearson where every behaviour scored the same). "
             "Mode `recall`: instructions reproduced exactly (up to whitespace) from a "
             "declarative prompt; `recalled in CoT`: CoT completions whose recalled instruction "
             "was exact.", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    lines += _generation_lines(summary["results"])
    lines += _composition_lines(summary.get("composition", []))
    lines += _comparison_lines(summary.get("comparisons", []))
    lines += _stage_lines(summary.get("stages", {}))
    lines += _rl_lines(summary.get("stages", {}))
    if summary.get("timing"):
        lines += ["", "Working time (s): " + ", ".join(f"{k} {v:.0f}"
                                                      for k, v in summary["timing"].items())]
    if summary.get("peak_rss_mib"):
        lines += [f"Peak memory (RSS of the process that finished the run): "
                  f"{summary['peak_rss_mib']:.0f} MiB"]
    lines += ["", f"![accuracy]({PLOT})", ""]
    return "\n".join(lines)


def accuracy_figure(results: list[dict], curricula: list[str] | None = None,
                    title: str | None = None):
    """The accuracy bars (one panel per split, one group per mode) as a matplotlib figure.

    Each curriculum keeps one colour in every panel and the legend, fixed by its place in
    ``curricula`` (the config's order; curricula without results keep their place), never by
    the bars a panel happens to draw. A bar of height 0 is drawn as a stroke on the axis with a
    "0%" above its interval, in its colour: a 0% result is a result, not a missing bar.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    modes = list(dict.fromkeys(r["mode"] for r in results))
    curricula = list(dict.fromkeys([*(curricula or []), *(r["curriculum"] for r in results)]))
    colour = {c: f"C{k % 10}" for k, c in enumerate(curricula)}
    shown = [c for c in curricula if any(r["curriculum"] == c for r in results)]
    keyed = {(r["curriculum"], r["mode"], r["split"]): r for r in results}
    fig, axes = plt.subplots(1, len(SPLITS), figsize=(5 + 1.2 * len(modes) * len(shown) / 2, 4),
                             sharey=True, squeeze=False)
    width = 0.8 / max(1, len(shown))
    for ax, split in zip(axes[0], SPLITS):
        for k, c in enumerate(shown):
            found = [(j, keyed[c, m, split]) for j, m in enumerate(modes) if (c, m, split) in keyed]
            if not found:
                continue
            xs = [j + (k - (len(shown) - 1) / 2) * width for j, _ in found]
            ys = [100 * r["accuracy"] for _, r in found]
            err = np.array([[100 * (r["accuracy"] - r["ci_low"]) for _, r in found],
                            [100 * (r["ci_high"] - r["accuracy"]) for _, r in found]])
            ax.bar(xs, ys, width, yerr=err, capsize=3, label=c, color=colour[c])
            for x, (_, r) in zip(xs, found):
                if r["accuracy"] == 0:  # a flat stroke on the axis and a label above the interval
                    ax.plot([x - width / 2, x + width / 2], [0, 0], color=colour[c], linewidth=4,
                            solid_capstyle="butt", clip_on=False)
                    ax.text(x, 100 * r["ci_high"] + 1, "0%", ha="center", va="bottom",
                            fontsize=8, fontweight="bold", color=colour[c])
        ax.set_xticks(range(len(modes)), modes)
        ax.set_title(f"{split} behaviours")
        ax.set_ylim(0, 100)
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel("accuracy (%), 95% CI")
    handles = [plt.Rectangle((0, 0), 1, 1, color=colour[c]) for c in shown]
    axes[0][-1].legend(handles, shown, fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_title(summary: dict) -> str:
    """What the accuracy plot names: the run, its model and its seed."""
    return f"{summary.get('name', 'run')}: model {summary.get('model')}, seed {summary.get('seed')}"


def plot(results: list[dict], path: Path, curricula: list[str] | None = None,
         title: str | None = None) -> None:
    import matplotlib.pyplot as plt

    fig = accuracy_figure(results, curricula, title)
    tmp = Path(path).with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(path)


def rl_stage_dirs(summary: dict) -> dict[str, str]:
    """label -> stage directory (relative to the run) of every RL stage, each once."""
    out: dict[str, str] = {}
    for curriculum, entries in summary.get("stages", {}).items():
        for e in entries:
            if e.get("algorithm") == "grpo" and e["dir"] not in out.values():
                out[f"{curriculum}/{e['stage']}"] = e["dir"]
    return out


def plot_rewards(run_dir: Path, stage_dirs: dict[str, str], path: Path) -> bool:
    """Reward and zero-std share per step of each RL stage, from its ``metrics.jsonl``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = {}
    for label, d in stage_dirs.items():
        f = Path(run_dir) / d / METRICS
        if f.is_file():
            curves[label] = [r for r in read_jsonl(f) if "reward" in r]
    if not any(curves.values()):
        return False
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.5))
    for label, lines in curves.items():
        steps = [r["step"] for r in lines]
        ax1.plot(steps, [r["reward"] for r in lines], label=label)
        ax2.plot(steps, [r.get("frac_reward_zero_std", float("nan")) for r in lines], label=label)
    ax1.set(xlabel="step", ylabel="mean reward", title="reward")
    ax2.set(xlabel="step", ylabel="share", title="groups with zero reward std", ylim=(0, 1.05))
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
    ax1.legend(fontsize=8)
    fig.tight_layout()
    tmp = Path(path).with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(path)
    return True


#: the width of a table printed off a terminal (a log file, a pipe): rich's default there is 80
#: columns, which breaks every interval cell of the six-column table over two lines
LOG_WIDTH = 160


def table_console() -> Console:
    """A console on stdout whose tables keep a row on one line in a log file.

    On a terminal (or with ``COLUMNS`` set) rich's own width stands: a user sees the table as
    their window allows.
    """
    console = Console()
    if console.is_terminal or "COLUMNS" in os.environ:
        return console
    return Console(width=LOG_WIDTH)


def print_table(summary: dict) -> None:
    header, rows = table_rows(summary["results"])
    t = Table(title=f"{summary.get('name')}: accuracy % [95% CI]")
    for h in header:
        t.add_column(h)
    for r in rows:
        t.add_row(*r)
    table_console().print(t)


def write_report(run_dir: Path, summary: dict) -> None:
    run_dir = Path(run_dir)
    check(Summary, summary, str(run_dir / SUMMARY))  # a drifted field fails before disk
    atomic_write_json(run_dir / SUMMARY, summary)
    atomic_write_text(run_dir / REPORT, run_markdown(summary))
    if summary["results"]:
        # the config's order of curricula: the stages' (every curriculum of a run), then results'
        plot(summary["results"], run_dir / PLOT, list(summary.get("stages", {})),
             plot_title(summary))
    plot_rewards(run_dir, rl_stage_dirs(summary), run_dir / REWARD_PLOT)


def written(run_dir: Path) -> str:
    """The line both `pbb run` and `pbb report` end with."""
    return "wrote " + ", ".join(map(str, RunStore(run_dir).reports()))


def build_summary(run_dir: Path, cfg, ds) -> dict:
    """A run's numbers from its samples files: the one place ``pbb run`` and ``pbb report``
    make them. ``ds`` (the run's data set) gives the domain's metrics and composites; without it
    (data moved away) the composition entry is left out."""
    from pbb.domains import get_domain

    domain = ds.domain if ds is not None else get_domain(cfg.data.domain)
    stats = (cfg.eval.bootstrap, cfg.seed)
    summary = {"name": cfg.name, "model": cfg.model, "domain": domain.name, "seed": cfg.seed,
               **({"data": data_identity(ds)} if ds is not None else {}),
               "results": collect(run_dir, cfg.curricula, cfg.eval.modes, *stats,
                                  sample_metrics=domain.sample_metrics),
               "comparisons": compare(run_dir, cfg.curricula, cfg.eval.modes, *stats)}
    if ds is not None:
        summary["composition"] = composition(run_dir, ds, cfg.curricula, cfg.eval.modes, *stats)
    return summary


def data_identity(ds) -> dict:
    """What names the data set that ran: where it is, and from its manifest the domain, counts,
    seed and the sha256 of its files (the numbers are about exactly these records)."""
    from pbb.data import MANIFEST

    man = read_json(ds.path / MANIFEST) if ds.path is not None else {}
    return {"path": str(ds.path.resolve()) if ds.path is not None else None,
            "domain": ds.domain.name, "counts": man.get("counts"), "seed": ds.seed,
            "sha256": {name: f.get("sha256") for name, f in man.get("files", {}).items()}}


def rebuild(run_dir: Path) -> dict:
    """Recompute results from samples files, keeping the run's metadata (``pbb report``)."""
    from pbb.config import load_config
    from pbb.data import MANIFEST, load

    run_dir = Path(run_dir)
    store = RunStore(run_dir)
    cfg = load_config(store.config)
    old = read_json(store.summary) if store.summary.is_file() else {}
    if not isinstance(old, dict):
        raise PbbError(f"{store.summary}: not a JSON object; remove it and `pbb report` "
                       "writes it anew from the samples")
    data_dir = store.data_dir(cfg)
    ds = load(data_dir) if (data_dir / MANIFEST).is_file() else None
    summary = {**old, **build_summary(run_dir, cfg, ds)}
    write_report(run_dir, summary)
    return summary
