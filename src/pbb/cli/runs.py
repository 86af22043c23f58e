"""The commands that run and read experiments: run, plan, sweep, claims, export, score, report.

Each is a thin shell over :mod:`pbb.api` or the module that does the work, imported inside the
command so that ``pbb --help`` stays fast.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from pbb.cli.options import (
    Force,
    Out,
    console,
    err_console,
    parse_assignments,
    resumable,
)
from pbb.errors import PbbError

# options that `pbb run` and `pbb plan` share
RunConfigFile = Annotated[Path, typer.Argument(help="YAML config, e.g. configs/quickstart.yaml")]
RunOut = Annotated[Path | None, typer.Option("--out", help="run directory (default runs/<name>)")]
RunSets = Annotated[list[str] | None, typer.Option(
    "--set", help="override a config key by dotted path, e.g. --set train.max_steps=2")]
Smoke = Annotated[bool, typer.Option(
    "--smoke", help="shrink the config to a 1-2 minute tiny-random run (default --out "
    "runs/<name>-smoke) to check it end to end")]
StagesRoot = Annotated[Path | None, typer.Option(
    "--stages-root", help="a stage store shared with other runs, e.g. runs/claims/stages: "
    "stages trained there already are reused, the others are trained there (new, or holding "
    "stage folders only)")]
Jobs = Annotated[int, typer.Option(
    "--jobs", min=1, help="points (of a sweep, or of each claim) run at once, each its own "
    "process (one GPU each where there are GPUs, see --jobs-per-device); logs in <sweep>/logs")]
JobsPerDevice = Annotated[str, typer.Option(
    "--jobs-per-device", metavar="K|auto", help="at most K jobs share a GPU (auto: as many as "
    "fit its free memory by a per-run estimate); at most GPUs x K run at once, the other points "
    "wait. No effect without GPUs; pbb sweep: --executor local only")]


def run_cmd(
    config: RunConfigFile,
    out: RunOut = None,
    overrides: RunSets = None,
    progress: Annotated[bool, typer.Option(help="show progress bars")] = True,
    smoke: Smoke = False,
    stages_root: StagesRoot = None,
) -> None:
    """Data -> curricula -> training -> evaluation -> summary.json, report.md, accuracy.png.

    Start the same command again to resume an interrupted run.
    """
    from pbb.api import run

    resumable("")
    run(config, out, overrides=parse_assignments(overrides), smoke=smoke, progress=progress,
        stages_root=stages_root)


def plan_cmd(
    config: RunConfigFile,
    out: RunOut = None,
    overrides: RunSets = None,
    smoke: Smoke = False,
    stages_root: StagesRoot = None,
) -> None:
    """What `pbb run` would do, before any of it: stages, reuse, evaluations, expected time
    (a sweep file: what `pbb sweep` would do, point by point).

    Each curriculum's stages (rows, epochs, tokens, stopping rule) and which are trained
    already, the evaluations (modes x splits x queries), and the time this machine's last
    measured rates give. Writes nothing in the run folder and trains nothing (the tokenizer
    only; a model used for the first time is put in the model cache, as `pbb run` would).
    """
    from pbb.api import plan
    from pbb.config import read_yaml_mapping

    sets = parse_assignments(overrides)
    if "sweep" in read_yaml_mapping(config):  # a sweep file: the plan of each of its points
        from pbb.experiments.plan import plan_sweep

        _claims_hint(config, out, stages_root)
        print(plan_sweep(config, out, sets, smoke, stages_root))
        return
    print(plan(config, out, overrides=sets, smoke=smoke, stages_root=stages_root))


def _claims_hint(config: Path, out: Path | None, stages_root: Path | None = None) -> None:
    """Say so where a claim's config is planned or swept into a folder of its own."""
    from pbb.experiments.claims import claims_hint

    if out is None and stages_root is None and (hint := claims_hint(config)):
        err_console.print(hint, style="yellow", markup=False, soft_wrap=True)


def sweep_cmd(
    config: Annotated[Path, typer.Argument(help="sweep YAML: a run config with a `sweep:` section")],
    out: Annotated[Path | None, typer.Option("--out", help="sweep directory (default runs/<name>)")] = None,
    overrides: Annotated[list[str] | None, typer.Option(
        "--set", help="override a key of every point, e.g. --set model=tiny-random")] = None,
    progress: Annotated[bool, typer.Option(help="show progress bars")] = True,
    smoke: Annotated[bool, typer.Option(
        "--smoke", help="every point shrunk to a tiny-random run (default --out "
        "runs/<name>-smoke)")] = False,
    jobs: Jobs = 1,
    jobs_per_device: JobsPerDevice = "1",
    executor: Annotated[str, typer.Option(
        "--executor", help="local (this machine, --jobs at a time) or slurm (one job per "
        "point through submitit; settings in the sweep's `slurm:` keys)")] = "local",
    stages_root: StagesRoot = None,
) -> None:
    """Run every point of a grid, sharing trained stages; then the sample-efficiency analysis.

    Start the same command again to resume: finished points are skipped.
    """
    from pbb.experiments.executors import parse_jobs_per_device
    from pbb.experiments.sweep import run_sweep

    if executor not in ("local", "slurm"):
        raise PbbError(f"--executor {executor!r}: expected local or slurm")
    per_device = parse_jobs_per_device(jobs_per_device)
    if executor == "slurm" and per_device != 1:
        raise PbbError("--jobs-per-device is for --executor local; a Slurm job gets the GPUs of "
                       "the sweep's slurm.gpus_per_job")
    _claims_hint(config, out, stages_root)
    resumable("the sweep (finished points and trained stages are kept)")
    summary = run_sweep(config, out, parse_assignments(overrides), progress=progress, smoke=smoke,
                        jobs=jobs, executor=executor, jobs_per_device=per_device,
                        stages_root=stages_root)
    eff = summary.get("efficiency", {})
    if "statement" in eff:
        console.print(f"[bold]crossover[/]: {eff['statement']}")


def claims_cmd(
    only: Annotated[list[str] | None, typer.Option(
        "--only", metavar="NAME", help="run only this claim (repeatable); the table still "
        "lists every claim")] = None,
    gpu: Annotated[bool, typer.Option(
        "--gpu", help="the GPU twins: configs/gpu/claims/, default --out runs/claims-gpu, "
        "table docs/claims-gpu.md")] = False,
    out: Annotated[Path | None, typer.Option(
        "--out", help="one sweep per claim and their shared stages (default runs/claims)")] = None,
    overrides: Annotated[list[str] | None, typer.Option(
        "--set", help="override a key of every claim's points, e.g. --set sweep.grid.seed=[0]")]
    = None,
    doc: Annotated[Path | None, typer.Option(
        "--doc", help="the table to write (default docs/claims.md); its figure goes beside it")]
    = None,
    configs: Annotated[Path | None, typer.Option(
        "--configs", help="folder of the claims' sweep configs, <claim>.yaml (default "
        "configs/claims)")] = None,
    execute: Annotated[bool, typer.Option(
        "--run/--no-run", help="--no-run: run nothing, write the table from the sweeps already "
        "in --out")] = True,
    smoke: Annotated[bool, typer.Option(
        "--smoke", help="every point shrunk to a tiny-random run (default --out "
        "runs/claims-smoke, the table beside it: runs/claims-smoke.md)")] = False,
    progress: Annotated[bool, typer.Option(help="show progress bars")] = True,
    plan: Annotated[bool, typer.Option(
        "--plan", help="print what would run and its expected time on this machine's measured "
        "rates, run nothing, write nothing")] = False,
    jobs: Jobs = 1,
    jobs_per_device: JobsPerDevice = "1",
) -> None:
    """The paper's claims: run each claim's sweep (stages shared between claims), then write
    the table of verdicts with every figure from the runs' samples.

    Start the same command again to resume; once everything ran it runs nothing and writes the
    same table. A claim whose prerequisite has points of its own runs those first, and the rest
    only where it is met.
    """
    from pbb.experiments.claims import CPU, GPU, run_claims
    from pbb.experiments.executors import parse_jobs_per_device

    per_device = parse_jobs_per_device(jobs_per_device)  # a bad value stops before any work
    default_configs, default_out, default_doc = GPU if gpu else CPU
    if smoke:  # a smoke run's table never replaces the measured one
        default_out = default_out.with_name(default_out.name + "-smoke")
        default_doc = Path(f"{out or default_out}.md")
    if plan:
        return _claims_plan(gpu, jobs, configs or default_configs, out or default_out, only,
                            parse_assignments(overrides), smoke, doc or default_doc)
    if execute:
        resumable("the claims (finished points and trained stages are kept)")
    measured = run_claims(configs or default_configs, out or default_out, only,
                          parse_assignments(overrides), smoke=smoke, progress=progress,
                          doc=doc or default_doc, execute=execute, jobs=jobs,
                          jobs_per_device=per_device)
    for m in measured:
        e = m["entry"]
        console.print(f"{e.name}: {', '.join(e.verdicts)}{e.notes}", markup=False,
                      soft_wrap=True)  # a claim a line, in a terminal and in a log file
    console.print(f"wrote {doc or default_doc}")


def _claims_plan(gpu: bool, jobs: int, *args) -> None:
    """``pbb claims --plan``: what would run and its expected time, on this machine's rates
    (said first where they are a CPU's and the twins are sized for a GPU, or where ``--jobs``
    would run points at once: the plan adds their times up)."""
    from pbb import dist
    from pbb.experiments.claims import plan_claims

    if gpu and dist.device() == "cpu":
        console.print("note: this machine has no GPU: the times below are its CPU rates, "
                      "not a GPU's", markup=False)
    if jobs > 1:
        console.print(f"note: --jobs {jobs}: the times below are the points' one after another; "
                      "run at once they take less wall time", markup=False)
    console.print(plan_claims(*args), markup=False)


def export_cmd(
    fmt: Annotated[str, typer.Argument(metavar="FORMAT", help="hf (datasets + parquet, for trl sft), "
                                       "openai (chat finetuning JSONL + Batch API eval queries) or "
                                       "lm-eval (a task folder for lm-evaluation-harness)")],
    source: Annotated[Path, typer.Argument(help="a run directory or a data set directory")],
    out: Out,
    config: Annotated[Path | None, typer.Option(
        help="for a data set: the run config whose curricula to export (default settings "
        "without one)")] = None,
    model: Annotated[str | None, typer.Option(
        help="openai: the model named in the eval requests (default the run's model)")] = None,
    force: Force = False,
) -> None:
    """Write a data set's or a run's behaviours, stage rows and eval queries for other tools."""
    from pbb.interop.export import export

    exported = export(fmt, source, out, config=config, force=force, model=model)
    console.print(f"wrote {out}: {len(exported)} stages ("
                  + ", ".join(f"{s.curriculum}/{s.stage} {len(s.rows)} rows" for s in exported)
                  + ")")


def score_cmd(
    source: Annotated[Path, typer.Argument(help="the run or data set the queries came from")],
    completions: Annotated[Path, typer.Argument(help="JSONL: custom_id + completion, or Batch "
                                                "API output lines")],
    out: Out,
    curriculum: Annotated[str, typer.Option(
        help="what the model that wrote them was trained with (e.g. proactive, untuned)")],
    config: Annotated[Path | None, typer.Option(
        help="for a data set: the run config the queries were exported with")] = None,
    force: Force = False,
) -> None:
    """Score completions produced elsewhere with pbb's verifiers; write a run directory."""
    from pbb.evaluation.report import print_table, written
    from pbb.interop.score import score

    summary = score(source, completions, out, curriculum=curriculum, config=config, force=force)
    print_table(summary)
    print(written(out))


def report_cmd(run_dir: Annotated[Path, typer.Argument(help="a run or sweep directory")]) -> None:
    """Re-render a run's (or a sweep's) summary, report and plots from its files."""
    from pbb.evaluation.report import print_table, rebuild, written
    from pbb.store import RunStore, SweepStore

    sweep, run = SweepStore(run_dir), RunStore(run_dir)
    if sweep.record.is_file():
        from pbb.experiments.sweep import report

        summary = report(run_dir)
        print(f"wrote {sweep.summary}, {sweep.report}"
              + (f" ({summary['efficiency']['statement']})" if "statement" in summary.get("efficiency", {}) else ""))
        return
    if not run.config.is_file():
        raise PbbError(f"{run_dir}: not a run directory (no {run.config.name})")
    summary = rebuild(run_dir)
    print_table(summary)
    print(written(run_dir))

