"""The ``pbb`` command line (typer).

Every user error surfaces as a :class:`~pbb.errors.PbbError` and is printed as one line
``error: ...`` with exit code 1; tracebacks are for bugs only.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
import yaml
from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from pbb import data as data_mod
from pbb import dist
from pbb.errors import PbbError
from pbb.folders import check_out

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="Programming by Backprop: data, training curricula, evaluation, reports.")
data_app = typer.Typer(no_args_is_help=True, help="Generate, inspect and check data sets.")
app.add_typer(data_app, name="data")
console = Console()


def _print_version(value: bool) -> None:
    if value:
        import pbb

        print(f"pbb {pbb.__version__}")
        raise typer.Exit()


@app.callback()
def _options(version: bool = typer.Option(False, "--version", callback=_print_version,
                                          is_eager=True, help="print pbb's version and exit")) -> None:
    """Programming by Backprop: data, training curricula, evaluation, reports."""


def parse_assignments(items: list[str] | None, flag: str = "--set") -> dict[str, object]:
    """``["a.b=3", "c=x"]`` -> ``{"a.b": 3, "c": "x"}`` (values parsed as YAML scalars/lists)."""
    out: dict[str, object] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise PbbError(f"{flag} {item!r}: expected KEY=VALUE")
        try:
            out[key.strip()] = yaml.safe_load(value) if value.strip() else ""
        except yaml.YAMLError:
            raise PbbError(f"{flag} {item!r}: value is not valid YAML") from None
    return out


# options that several `pbb data` commands share
Out = Annotated[Path, typer.Option("--out", help="output directory")]
Seed = Annotated[int, typer.Option(help="random seed")]
Force = Annotated[bool, typer.Option(help="replace --out if it is a folder of this kind that pbb wrote (never anything else)")]


def _eval_fraction(what: str):
    return Annotated[float, typer.Option(help=f"share of {what} held out as eval")]


def _knobs(help: str):
    return Annotated[list[str] | None, typer.Option("--set", help=help)]


@data_app.command("generate")
def data_generate(
    domain: Annotated[str, typer.Argument(help="domain name, e.g. arithmetic")],
    out: Out,
    behaviours: Annotated[int, typer.Option(help="number of behaviours")] = 100,
    demos: Annotated[int, typer.Option(help="demonstrations per behaviour")] = 20,
    test_inputs: Annotated[int, typer.Option(help="held-out test inputs per behaviour")] = 10,
    eval_fraction: _eval_fraction("behaviours") = 0.5,
    seed: Seed = 0,
    option: _knobs("domain knob KEY=VALUE, e.g. --set max_statements=3 (repeatable)") = None,
    force: Force = False,
) -> None:
    """Generate behaviours and demonstrations into DIR (deterministic in the seed)."""
    options = parse_assignments(option)
    check_out(out, "data", force=force)  # fail before the work, not after it
    ds = data_mod.generate(domain, behaviours=behaviours, demos=demos, test_inputs=test_inputs,
                           eval_fraction=eval_fraction, seed=seed, options=options)
    data_mod.save(ds, out, force=force)
    m = data_mod.read_json(out / data_mod.MANIFEST)["counts"]
    console.print(f"wrote {out}: {m['behaviours']} behaviours ({m['train_behaviours']} train, "
                  f"{m['eval_behaviours']} eval), {m['demonstrations']} demonstrations, "
                  f"{m['test_inputs']} test inputs")


@data_app.command("import-grammars")
def data_import_grammars(
    file: Annotated[Path, typer.Argument(help="grammar file: `grammar NAME` blocks of rules")],
    out: Out,
    demos: Annotated[int, typer.Option(help="demonstrations (sampled strings) per grammar")] = 20,
    test_inputs: Annotated[int, typer.Option(help="test queries per grammar")] = 10,
    eval_fraction: _eval_fraction("grammars") = 0.5,
    seed: Seed = 0,
    option: _knobs("grammars knob KEY=VALUE, e.g. --set max_length=12 (repeatable)") = None,
    force: Force = False,
) -> None:
    """Make a grammars data set from your own grammars (one behaviour per grammar)."""
    from pbb.data.importers import import_grammars

    options = parse_assignments(option)
    check_out(out, "data", force=force)
    ds = import_grammars(file, demos=demos, test_inputs=test_inputs, eval_fraction=eval_fraction,
                         seed=seed, options=options)
    data_mod.save(ds, out, force=force)
    console.print(f"wrote {out}: {len(ds.behaviours)} grammars ({len(ds.split('train'))} train, "
                  f"{len(ds.split('eval'))} eval), {demos} demonstrations and {test_inputs} test "
                  "queries each")


@data_app.command("import")
def data_import(
    file: Annotated[Path, typer.Argument(help="JSONL of functions: {code, inputs, outputs?, id?, name?}")],
    out: Out,
    test_inputs: Annotated[int, typer.Option(help="inputs per function held out for testing")] = 1,
    eval_fraction: _eval_fraction("functions") = 0.5,
    seed: Annotated[int, typer.Option(help="random seed (test inputs, split, fresh names)")] = 0,
    option: _knobs("sandbox knob KEY=VALUE: call_seconds, wall_seconds, memory_mb, "
                   "max_source_chars, max_input_chars, max_output_chars, workers") = None,
    force: Force = False,
) -> None:
    """Make a data set of your own functions; outputs are computed in a sandbox.

    Functions that raise, time out, are non-deterministic or disagree with given outputs are
    skipped; import_report.jsonl in DIR says why.
    """
    from collections import Counter

    from pbb.data.importers import REPORT, import_functions
    from pbb.domains.imported import ImportedDomain

    cfg = data_mod.parse_domain_config(ImportedDomain(), parse_assignments(option), where="--set")
    check_out(out, "data", force=force)
    ds, report = import_functions(file, test_inputs=test_inputs, eval_fraction=eval_fraction,
                                  seed=seed, cfg=cfg)
    data_mod.save(ds, out, force=force, extra={"source": str(file)},
                  extra_files={REPORT: report})
    skipped = [r for r in report if r["status"] == "skipped"]
    console.print(f"wrote {out}: {len(ds.behaviours)} functions imported, {len(skipped)} skipped "
                  f"(reasons in {out / REPORT})")
    for split in ("train", "eval"):
        these = [r for r in report if r.get("split") == split]
        few = sum(r["test_inputs"] == (0 if split == "train" else r["inputs"]) for r in these)
        how = ("all their inputs are demonstrations, no test input" if split == "train"
               else "all their inputs are test inputs")
        console.print(f"  {split}: {len(these)} functions"
                      + (f", {few} with too few inputs for both uses ({how})" if few else ""))
    kinds = Counter(r["reason"].split(":")[0] for r in skipped)
    for reason, n in kinds.most_common(5):
        console.print(f"  skipped {n}: {reason}")


@data_app.command("show")
def data_show(
    path: Annotated[Path, typer.Argument(help="data set directory")],
    n: Annotated[int, typer.Option("-n", help="behaviours to show")] = 3,
    demos: Annotated[int, typer.Option(help="demonstrations to show per behaviour")] = 2,
    tokenized: Annotated[bool, typer.Option(
        "--tokenized", help="show each row kind as the model sees it (chat template applied), "
        "trained tokens between ⟦ ⟧, with token counts")] = False,
    model: Annotated[str, typer.Option(help="whose tokenizer and chat template (--tokenized)")]
    = "smollm2-135m-instruct",
    system_prompt: Annotated[str | None, typer.Option(
        help="a system prompt, as chat.system_prompt in a run config (--tokenized)")] = None,
) -> None:
    """Show a few behaviours, their demonstrations and one rendered row of each kind."""
    from pbb.rows.render import ROW_KINDS, make_row, row_rng

    ds = data_mod.load(path)
    if tokenized:
        _show_tokenized(ds, model, system_prompt)
        return
    man = data_mod.read_json(Path(path) / data_mod.MANIFEST)
    console.print(f"[bold]{path}[/]: domain {ds.domain.name}, seed {ds.seed}, "
                  f"counts {man.get('counts')}")
    by_use = ds.by_behaviour("train")
    tests = ds.by_behaviour("test")
    for b in ds.behaviours[:n]:
        table = Table(show_header=True, header_style="bold")
        table.add_column("use")
        table.add_column("input")
        table.add_column("output")
        for d in by_use[b.id][:demos] + tests[b.id][:1]:
            table.add_row(d.use, d.input, d.output)
        console.print(Panel(b.instruction, title=f"{b.id}  {b.name}  ({b.split})",
                            subtitle=str(b.meta), expand=False))
        console.print(table)
    if ds.behaviours:
        b = ds.behaviours[0]
        demo = (by_use[b.id] or tests[b.id])[0]
        for kind in ROW_KINDS:
            row = make_row(ds.domain, b, kind, row_rng(ds.seed, "show", kind),
                           None if kind == "declarative" else demo)
            console.print(Panel(f"[cyan]user:[/] {row['prompt'][0]['content']}\n"
                                f"[green]assistant:[/] {row['completion'][0]['content']}",
                                title=f"row kind: {kind}", expand=False), markup=True)


def _show_tokenized(ds, model: str, system_prompt: str | None) -> None:
    """One row of each kind, as tokens the model sees, and mean counts over all rows."""
    from pbb.models import load_tokenizer, resolve_model_path
    from pbb.rows.chat import tokenized_view
    from pbb.rows.curricula import declarative_rows, demo_rows

    tok = load_tokenizer(resolve_model_path(model))
    b = ds.behaviours[0]
    rows = declarative_rows(ds, [b], 1) + demo_rows(ds, [b], ["direct", "cot"], 1)
    for row in rows:
        v = tokenized_view(tok, row, system_prompt)
        print(f"--- row kind {row['kind']}: {v['tokens']} tokens = {v['prompt_tokens']} prompt "
              f"(masked) + {v['completion_tokens']} trained (between \u27e6 \u27e7)")
        print(v["text"])
    sample = declarative_rows(ds, ds.behaviours[:50], 1) + demo_rows(ds, ds.behaviours[:50],
                                                                     ["direct", "cot"], 1)
    for kind in ("declarative", "direct", "cot"):
        views = [tokenized_view(tok, r, system_prompt) for r in sample if r["kind"] == kind]
        if views:
            mean = sum(v["tokens"] for v in views) / len(views)
            trained = sum(v["completion_tokens"] for v in views) / len(views)
            print(f"mean over {len(views)} {kind} rows: {mean:.1f} tokens, {trained:.1f} trained")


@data_app.command("validate")
def data_validate(path: Annotated[Path, typer.Argument(help="data set directory")]) -> None:
    """Re-execute every demonstration; print mismatches; exit 1 if there are any."""
    ds = data_mod.load(path)
    problems = data_mod.validate(ds)
    for p in problems:
        print(p)
    if problems:
        print(f"{len(problems)} problem(s) in {path}", file=sys.stderr)
        raise typer.Exit(1)
    print(f"ok: {len(ds.behaviours)} behaviours, {len(ds.demonstrations)} records re-executed "
          "and matching")


# options that `pbb run` and `pbb plan` share
RunConfigFile = Annotated[Path, typer.Argument(help="YAML config, e.g. configs/quickstart.yaml")]
RunOut = Annotated[Path | None, typer.Option("--out", help="run directory (default runs/<name>)")]
RunSets = Annotated[list[str] | None, typer.Option(
    "--set", help="override a config key by dotted path, e.g. --set train.max_steps=2")]
Smoke = Annotated[bool, typer.Option(
    "--smoke", help="shrink the config to a 1-2 minute tiny-random run (default --out "
    "runs/<name>-smoke) to check it end to end")]
StagesRoot = Annotated[Path | None, typer.Option(
    "--stages-root", hidden=True, help="a stage store shared with other runs (sweep jobs)")]


@app.command("run")
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

    run(config, out, overrides=parse_assignments(overrides), smoke=smoke, progress=progress,
        stages_root=stages_root)


@app.command("plan")
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
    measured rates give. Writes nothing and loads no model weights (the tokenizer only).
    """
    from pbb.api import plan
    from pbb.config import read_yaml_mapping

    sets = parse_assignments(overrides)
    if "sweep" in read_yaml_mapping(config):  # a sweep file: the plan of each of its points
        from pbb.experiments.plan import plan_sweep

        print(plan_sweep(config, out, sets, smoke, stages_root))
        return
    print(plan(config, out, overrides=sets, smoke=smoke, stages_root=stages_root))


@app.command("sweep")
def sweep_cmd(
    config: Annotated[Path, typer.Argument(help="sweep YAML: a run config with a `sweep:` section")],
    out: Annotated[Path | None, typer.Option("--out", help="sweep directory (default runs/<name>)")] = None,
    overrides: Annotated[list[str] | None, typer.Option(
        "--set", help="override a key of every point, e.g. --set model=tiny-random")] = None,
    progress: Annotated[bool, typer.Option(help="show progress bars")] = True,
    smoke: Annotated[bool, typer.Option(
        "--smoke", help="every point shrunk to a tiny-random run (default --out "
        "runs/<name>-smoke)")] = False,
    jobs: Annotated[int, typer.Option(
        "--jobs", min=1, help="points run at once, each its own process (one GPU each where "
        "there are GPUs, see --jobs-per-device); logs in <out>/logs")] = 1,
    jobs_per_device: Annotated[str, typer.Option(
        "--jobs-per-device", metavar="K|auto", help="--executor local: at most K jobs share a "
        "GPU (auto: as many as fit its free memory by a per-run estimate); at most GPUs x K run "
        "at once, the other points wait. No effect without GPUs")] = "1",
    executor: Annotated[str, typer.Option(
        "--executor", help="local (this machine, --jobs at a time) or slurm (one job per "
        "point through submitit; settings in the sweep's `slurm:` keys)")] = "local",
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
    summary = run_sweep(config, out, parse_assignments(overrides), progress=progress, smoke=smoke,
                        jobs=jobs, executor=executor, jobs_per_device=per_device)
    eff = summary.get("efficiency", {})
    if "statement" in eff:
        console.print(f"[bold]crossover[/]: {eff['statement']}")


@app.command("claims")
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
) -> None:
    """The paper's claims: run each claim's sweep (stages shared between claims), then write
    the table of verdicts with every figure from the runs' samples.

    Start the same command again to resume; once everything ran it runs nothing and writes the
    same table.
    """
    from pbb.experiments.claims import CPU, GPU, plan_claims, run_claims

    default_configs, default_out, default_doc = GPU if gpu else CPU
    if smoke:  # a smoke run's table never replaces the measured one
        default_out = default_out.with_name(default_out.name + "-smoke")
        default_doc = Path(f"{out or default_out}.md")
    if plan:
        from pbb import dist

        if gpu and dist.device() == "cpu":  # the twins are sized for a GPU; the rates are this machine's
            console.print("note: this machine has no GPU: the times below are its CPU rates, "
                          "not a GPU's", markup=False)
        console.print(plan_claims(configs or default_configs, out or default_out, only,
                                  parse_assignments(overrides), smoke), markup=False)
        return
    measured = run_claims(configs or default_configs, out or default_out, only,
                          parse_assignments(overrides), smoke=smoke, progress=progress,
                          doc=doc or default_doc, execute=execute)
    for m in measured:
        e = m["entry"]
        kept = " (kept from the table: none of its runs is here)" if e.kept else ""
        console.print(f"{e.name}: {', '.join(e.verdicts)}{kept}", markup=False)
    console.print(f"wrote {doc or default_doc}")


@app.command("export")
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


@app.command("score")
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


@app.command("report")
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


#: what Ctrl-C leaves, by command: every file pbb writes is complete or absent (atomic writes,
#: append-only logs repaired on resume), so the same command picks up where it stopped
INTERRUPTED = {
    "run": "interrupted; run the same command again to resume",
    "sweep": "interrupted; run the same command again to resume the sweep (finished points "
             "and trained stages are kept)",
    "claims": "interrupted; run the same command again to resume the claims (finished points "
              "and trained stages are kept)",
}
INTERRUPTED_ELSEWHERE = "interrupted; nothing was half-written (run the command again)"


def _interrupted() -> None:
    command = next((a for a in sys.argv[1:] if not a.startswith("-")), "")
    print(INTERRUPTED.get(command, INTERRUPTED_ELSEWHERE), file=sys.stderr)
    sys.exit(130)


def main() -> None:
    """Entry point: run the app, turning user errors into one line and exit code 1."""
    try:
        rc = app(standalone_mode=False)  # returns the exit code of typer.Exit in this mode
        if rc == 130:  # typer turns Ctrl-C into Exit(130) before it reaches the handler below
            _interrupted()
        dist.close()
        sys.exit(rc if isinstance(rc, int) else 0)
    except PbbError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        _interrupted()
    except typer.Exit as e:
        sys.exit(e.exit_code)
    except typer.Abort:
        sys.exit(1)
    except Exception as e:
        # Usage errors (missing option, bad type) carry their own message. typer may vendor its
        # own copy of click, so recognise them by shape rather than by class.
        message = getattr(e, "format_message", None)
        if callable(message) and isinstance(getattr(e, "exit_code", None), int):
            print(f"error: {message()}", file=sys.stderr)
            sys.exit(e.exit_code)
        raise


if __name__ == "__main__":
    main()
