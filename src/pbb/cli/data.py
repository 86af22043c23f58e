"""``pbb data``: generate, import, show and validate data sets."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.panel import Panel
from rich.table import Table

from pbb import data as data_mod
from pbb.cli.options import Force, Out, console, parse_assignments
from pbb.folders import check_out

app = typer.Typer(no_args_is_help=True, help="Generate, inspect and check data sets.")
Seed = Annotated[int, typer.Option(help="random seed")]


def _eval_fraction(what: str):
    return Annotated[float, typer.Option(help=f"share of {what} held out as eval")]


def _knobs(help: str):
    return Annotated[list[str] | None, typer.Option("--set", help=help)]


@app.command("generate")
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


@app.command("import-grammars")
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


@app.command("import")
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


@app.command("show")
def data_show(
    path: Annotated[Path, typer.Argument(help="data set directory")],
    n: Annotated[int, typer.Option("-n", min=1, help="behaviours to show")] = 3,
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


@app.command("validate")
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

