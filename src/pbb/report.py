"""Summaries, tables and plots, rebuilt from the run directory's files alone.

``summary.json`` holds ``results``: one entry per (curriculum, mode, split) with ``accuracy,
ci_low, ci_high, n_behaviours, n_samples``. ``report.md`` and ``accuracy.png`` show the same
numbers; ``pbb report RUN_DIR`` regenerates all three from ``eval/*/*/samples.jsonl``.
"""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from pbb.evaluate import SAMPLES
from pbb.jsonio import atomic_write_json, atomic_write_text, read_json, read_jsonl
from pbb.metrics import summarize

SUMMARY = "summary.json"
REPORT = "report.md"
PLOT = "accuracy.png"
SPLITS = ("eval", "train")


def collect(run_dir: Path, curricula: list[str], modes: list[str], resamples: int,
            seed: int) -> list[dict]:
    results = []
    for c in curricula:
        for m in modes:
            path = Path(run_dir) / "eval" / c / m / SAMPLES
            if not path.is_file():
                continue
            samples = read_jsonl(path)
            for split in SPLITS:
                part = [s for s in samples if s["split"] == split]
                if part:
                    results.append({"curriculum": c, "mode": m, "split": split,
                                    **summarize(part, resamples, seed)})
    return results


def _fmt(r: dict) -> str:
    return f"{100 * r['accuracy']:.1f} [{100 * r['ci_low']:.1f}, {100 * r['ci_high']:.1f}]"


def table_rows(results: list[dict]) -> tuple[list[str], list[list[str]]]:
    """One row per (curriculum, mode); eval and train accuracy (%) with 95% intervals."""
    header = ["curriculum", "mode", "eval behaviours", "train behaviours (held-out inputs)", "n"]
    keyed = {(r["curriculum"], r["mode"], r["split"]): r for r in results}
    rows = []
    for c, m in dict.fromkeys((r["curriculum"], r["mode"]) for r in results):
        ev, tr = keyed.get((c, m, "eval")), keyed.get((c, m, "train"))
        n = f"{ev['n_behaviours'] if ev else 0}+{tr['n_behaviours'] if tr else 0} behaviours"
        rows.append([c, m, _fmt(ev) if ev else "-", _fmt(tr) if tr else "-", n])
    return header, rows


def markdown(summary: dict) -> str:
    header, rows = table_rows(summary["results"])
    lines = [f"# {summary.get('name', 'run')}", "",
             f"Model `{summary.get('model')}`, domain `{summary.get('domain')}`, seed "
             f"{summary.get('seed')}. Accuracy in % (mean over behaviours of the per-behaviour "
             "accuracy on held-out test inputs) with a 95% bootstrap interval over behaviours.", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    if summary.get("timing"):
        lines += ["", "Wall time (s): " + ", ".join(f"{k} {v:.0f}" for k, v in summary["timing"].items())]
    if summary.get("peak_rss_mib"):
        lines += [f"Peak memory (RSS of the process that finished the run): "
                  f"{summary['peak_rss_mib']:.0f} MiB"]
    lines += ["", f"![accuracy]({PLOT})", ""]
    return "\n".join(lines)


def plot(results: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    modes = list(dict.fromkeys(r["mode"] for r in results))
    curricula = list(dict.fromkeys(r["curriculum"] for r in results))
    fig, axes = plt.subplots(1, len(SPLITS), figsize=(5 + 1.2 * len(modes) * len(curricula) / 2, 4),
                             sharey=True, squeeze=False)
    width = 0.8 / max(1, len(curricula))
    for ax, split in zip(axes[0], SPLITS):
        for k, c in enumerate(curricula):
            xs, ys, lo, hi = [], [], [], []
            for j, m in enumerate(modes):
                r = next((r for r in results if (r["curriculum"], r["mode"], r["split"]) == (c, m, split)), None)
                if r:
                    xs.append(j + (k - (len(curricula) - 1) / 2) * width)
                    ys.append(100 * r["accuracy"])
                    lo.append(100 * (r["accuracy"] - r["ci_low"]))
                    hi.append(100 * (r["ci_high"] - r["accuracy"]))
            ax.bar(xs, ys, width, yerr=np.array([lo, hi]), capsize=3, label=c)
        ax.set_xticks(range(len(modes)), modes)
        ax.set_title(f"{split} behaviours")
        ax.set_ylim(0, 100)
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel("accuracy (%), 95% CI")
    axes[0][-1].legend(fontsize=8)
    fig.tight_layout()
    tmp = Path(path).with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=120)
    plt.close(fig)
    tmp.replace(path)


def print_table(summary: dict, console: Console | None = None) -> None:
    header, rows = table_rows(summary["results"])
    t = Table(title=f"{summary.get('name')}: accuracy % [95% CI]")
    for h in header:
        t.add_column(h)
    for r in rows:
        t.add_row(*r)
    (console or Console()).print(t)


def write_report(run_dir: Path, summary: dict) -> None:
    run_dir = Path(run_dir)
    atomic_write_json(run_dir / SUMMARY, summary)
    atomic_write_text(run_dir / REPORT, markdown(summary))
    if summary["results"]:
        plot(summary["results"], run_dir / PLOT)


def written(run_dir: Path) -> str:
    """The line both `pbb run` and `pbb report` end with."""
    return "wrote " + ", ".join(str(Path(run_dir) / f) for f in (SUMMARY, REPORT, PLOT))


def rebuild(run_dir: Path) -> dict:
    """Recompute results from samples files, keeping the run's metadata (``pbb report``)."""
    from pbb.config import load_config

    run_dir = Path(run_dir)
    cfg = load_config(run_dir / "config.yaml")
    old = read_json(run_dir / SUMMARY) if (run_dir / SUMMARY).is_file() else {}
    summary = {**old, "name": cfg.name, "model": cfg.model, "domain": cfg.data.domain,
               "seed": cfg.seed,
               "results": collect(run_dir, cfg.curricula, cfg.eval.modes, cfg.eval.bootstrap, cfg.seed)}
    write_report(run_dir, summary)
    return summary
