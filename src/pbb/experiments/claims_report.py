"""The claims table (``docs/claims.md``) and its figure, from what
:func:`pbb.experiments.claims.measure` measured.

The text holds no date, host or path other than those given, and every interval is seeded, so
the same runs give the same bytes: a second ``pbb claims`` rewrites the table unchanged.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from pbb.errors import PbbError
from pbb.experiments.claims_archive import archive_dir
from pbb.experiments.efficiency import format_n
from pbb.jsonio import atomic_write_text

#: the verdicts (:func:`pbb.experiments.claims.verdict` says when each is given)
REPRODUCED = "reproduced"
NOT_REPRODUCED = "not reproduced"
NOT_TESTABLE = "not testable at this size"
NOT_RUN = "not run"

HEADER = """# The paper's claims, measured

One row per comparison of a claim of the paper, measured by `pbb claims` (one sweep per claim;
the same command resumes them, `--only NAME` runs one) on the setting its section gives. A row
says what the paper reports, pbb's accuracy on each side (%), their paired difference in points
with a 95% interval over seeds and behaviours, and a verdict:

- **{reproduced}**: the interval excludes 0 in the paper's direction;
- **{not_reproduced}**: it excludes 0 the other way, or includes it;
- **{not_testable}**: the claim's prerequisite fails (its measured figure is given;
  `pbb claims` then leaves its other points unrun);
- **{not_run}**: no run measured it yet.

A verdict whose seeds disagree in sign says so while it has fewer than {seeds} seeds, and one
whose row's points (those running either side) have not all finished says "so far".

How the figures are made (every one recomputes from the runs' `samples.jsonl`):

- **Accuracy** of a condition: the mean over its runs (one a seed) of its mean over behaviours.
- **Paired difference** (a − b): the mean over the (seed, behaviour) pairs both conditions ran
  on, with a 95% bootstrap interval that draws seeds, then behaviours within them (so it carries
  the spread between seeds, not only between behaviours), and each seed's own mean difference
  (the crossover: each seed's own N).
- **Across claims**: a row "here − in" another claim sets a paired difference against the same
  difference in that claim's runs (other functions: unpaired, each side resampled apart; no
  seed's own); a condition named as another claim's runs pairs with this claim's runs on the
  data sets both ran (the same seed and data), and the row's verdict says how many of that
  claim's points it rests on while they have not all finished.
- **Times** are the runs' own (their summaries' timings, on the machine that ran them; a stage
  resumed after an interruption counts every life up to its last checkpoint; the work after it,
  done again, once); where a claim's points ran as jobs at once (`--jobs`), which the summed
  times overstate, the wall clock of those jobs follows.
- **Kept claims**: a claim none of whose runs is in the sweeps folder here keeps its rows and
  section from the table this one replaced, marked as kept (their figures were computed from
  runs elsewhere), rather than falling back to {not_run}; where its config's settings have
  changed since (its section's settings hash is not the config's now), its verdicts say so: its
  figures are not those of the config as it is.
- **The runs behind the table** are kept beside it, in `{runs}/` (a `<claim>.tar.gz` with
  each finished point's config, summary, data set and samples, and its sweep's jobs record; no
  weights): where the sweeps folder has no sweep of a claim, `pbb claims` restores its runs from
  there first, so that the table recomputes on any clone (`pbb claims --no-run`) and a run goes
  on from the points finished on any machine.
- **Shared stages**: a claim's points share a stage where its key agrees; a machine without its
  weights trains it anew, so a section names the stages its points record under one key but
  trained apart (as their records say: epochs, steps, precision, loss, and the weights' digest
  where every record of the key has one): points that share one did not start from the same
  model.

Sweeps: `{out}`; configs: `{configs}/`.
"""
#: seeds a claim needs where its per-seed differences disagree in sign
SEEDS_WHEN_THEY_DISAGREE = 5


def pct(x: float) -> str:
    return f"{100 * x:.1f}"


def signed(x: float) -> str:
    return f"{100 * x:+.1f}"


def duration(seconds: float) -> str:
    from pbb.experiments.plan import duration as plan_duration

    return plan_duration(seconds) if seconds else "-"


def _comparison_label(row: dict) -> str:
    comp = row["comparison"]
    where = {"eval": "", "train": ", train behaviours"}.get(comp.split, f", {comp.split}")
    only = ", composites" if comp.only == "composites" else ""
    against = f", here − in {comp.against}" if comp.against else ""
    if comp.a.setting and comp.a.setting == comp.b.setting:  # said once
        return f"{comp.a.short} − {comp.b.short} ({comp.a.setting}{where}{only}){against}"
    return f"{comp.a.label} − {comp.b.label}{where}{only}{against}"


def _figure_cell(row: dict) -> str:
    fig, other = row["figure"], row.get("other")
    if fig is None and other and not other["done"]:  # a gap row: the other claim not run yet
        return f"{NOT_RUN} (no run of {other['claim']} here)"
    if fig is None:
        return NOT_RUN if row["in_config"] else "not in this config"
    side = signed if row["comparison"].against else pct  # a gap sets differences side by side
    return (f"{side(fig['a'])} vs {side(fig['b'])}: **{signed(fig['difference'])}** "
            f"[{signed(fig['ci_low'])}, {signed(fig['ci_high'])}]")


def _crossover_cell(fig: dict | None) -> str:
    if fig is None:
        return NOT_RUN
    c, ins = fig["crossover"], fig["instruction"]
    factor = (f"; the interval spans a factor of {c['ci_high'] / c['ci_low']:.1f}"
              if 0 < c["ci_low"] and math.isfinite(c["ci_high"]) else "")
    curve = " / ".join(pct(p["accuracy"]) for p in fig["curve"])
    ks = " / ".join(f"{k:g}" for k in fig["ks"])
    caveat = " (one instruction alone gives 0% here, so N says little)" \
        if ins["accuracy"] == 0 else ""
    return (f"{fig['statement']}{factor}; one instruction {pct(ins['accuracy'])}%, k = {ks}: "
            f"{curve}%{caveat}")


def _crossover_seeds(fig: dict | None) -> str:
    """Each seed's own N (``"-"`` before any ran)."""
    if fig is None:
        return "-"
    return " / ".join(format_n(n, fig["ks"]) for n in fig["crossover"]["per_seed"])


def _verdict_cell(text: str, m: dict, fig: dict | None = None, counted: dict | None = None,
                  ) -> str:
    """A verdict with what qualifies it; ``counted``: the points a row rests on (finished and
    planned, :func:`.claims.row_points`), else the claim's."""
    shown = f"**{text}**" if text == REPRODUCED else text
    signs = {x > 0 for x in (fig or {}).get("per_seed", []) if x != 0}
    if len(signs) == 2 and len(fig["per_seed"]) < SEEDS_WHEN_THEY_DISAGREE:
        shown += f" (the seeds disagree in sign: {SEEDS_WHEN_THEY_DISAGREE} or more needed)"
    if text == NOT_TESTABLE and m["prerequisite"] is not None:
        pre = m["claim"].prerequisite
        shown += f" ({pre.what}: {pct(m['prerequisite'])}% < {pct(pre.at_least)}%)"
    counted = counted or m
    if text != NOT_RUN and counted["done"] < counted["points"]:
        shown += f" (so far: {counted['done']} of {counted['points']} points)"
    return shown


def _other_qualifier(row: dict) -> str:
    """What a gap row's verdict says of the other claim's runs it rests on: not all finished,
    or configured otherwise than that claim's config is now."""
    other = row.get("other")
    if not other or row["figure"] is None:
        return ""
    done = (f" (so far: {other['done']} of {other['points']} points of {other['claim']})"
            if other["done"] < other["points"] else "")
    return done + (f" ({other['claim']}'s runs configured otherwise than its config now)"
                   if other["otherwise"] else "")


def rows_of(m: dict) -> list[tuple[str, str, str, str]]:
    """(comparison, paper, pbb, verdict) of each row of one claim."""
    out = [(_comparison_label(r), r["comparison"].paper, _figure_cell(r),
            _verdict_cell(r["verdict"], m, r["figure"], r) + _other_qualifier(r))
           for r in m["rows"]]
    cross = m["claim"].crossover
    if cross is not None:
        label = f"N: {cross.demos} at k demonstrations vs one instruction ({cross.instruction})"
        out.append((f"{label}, {cross.mode}", cross.paper,
                    _crossover_cell(m["crossover"]["figure"]),
                    _verdict_cell(m["crossover"]["verdict"], m)))
    return out


def scale(m: dict) -> str:
    """Model and scale, from the claim's planned point configs."""
    models = sorted({c.model for c in m["cfgs"]})
    sizes = []
    for c in m["cfgs"]:
        d = c.data
        text = (f"{d.behaviours} behaviours of domain {d.domain} ({d.eval_fraction:.0%} eval), "
                f"{d.demos} demonstrations and {d.test_inputs} test inputs each")
        if text not in sizes:
            sizes.append(text)
    seeds = ", ".join(map(str, m["seeds"]))
    return f"{', '.join(models)}; {'; '.join(sizes)}; seeds {seeds}"


def _wall(measured: tuple[float, int, int] | None, done: int) -> str:
    """The Time line's wall clock, where the claim's points ran at once (:func:`.claims.wall`),
    and of how many of its ``done`` finished points."""
    if measured is None:
        return ""
    seconds, most, counted = measured
    of = "its finished points" if counted == done else f"{counted} of its {done} finished points"
    return (f"; {duration(seconds)} wall for {of}, run as jobs up to {most} at once (their jobs' "
            "spans in its sweep's jobs.json)")


def section(m: dict, doc: Path) -> list[str]:
    claim, cfg = m["claim"], m["config"]
    link = os.path.relpath(cfg.resolve(), doc.resolve().parent)
    lines = [f"## {claim.name}", "", f"**{claim.title}.** {claim.statement}", "",
             f"- Paper: {claim.paper}",
             f"- Config: [`{cfg}`]({link}), {m['done']} of {m['points']} points done",
             SETTINGS.format(m["measured_under"]),
             *([STALE_RUNS.format(name=claim.name)] if m["ran_otherwise"] else []),
             f"- Model and scale: {scale(m)}",
             f"- Time: {duration(m['spent'])} spent by its runs; {duration(m['alone'])} alone "
             "(with every stage it uses, those other claims trained included, once)"
             + _wall(m.get("wall"), m["done"])]
    if m.get("apart"):
        lines.append(_apart_line(m["apart"]))
    if claim.prerequisite is not None:
        pre, got = claim.prerequisite, m["prerequisite"]
        lines.append(f"- Prerequisite: {pre.what} ({pre.condition.label}) at least "
                     f"{pct(pre.at_least)}%: " + (NOT_RUN if got is None else f"{pct(got)}%"))
    if claim.note:
        lines.append(f"- Note: {claim.note}" if m.get("note_from") is None else
                     f"- Note, of the runs of `{m['note_from']}` (not this table's): {claim.note}")
    lines += ["", "| comparison | paper | pbb | per seed | verdict |", "|---|---|---|---|---|"]
    per_seed = [" / ".join(signed(x) for x in (r["figure"] or {}).get("per_seed", [])) or "-"
                for r in m["rows"]] + ([_crossover_seeds(m["crossover"]["figure"])]
                                       if claim.crossover else [])
    for (comp, paper, fig, verdict), seeds in zip(rows_of(m), per_seed):
        lines.append(f"| {comp} | {paper} | {fig} | {seeds} | {verdict} |")
    return lines + [""]


def _apart_line(apart: list[dict]) -> str:
    """The section's line on stages one key names that were trained apart
    (:func:`pbb.experiments.claims.trained_apart`): each with its trainings (what its records
    say of each) and the points that used them (``NNN_seed-S``)."""
    def training(t: dict) -> str:
        said = [f"{t['epochs']:g} epochs" if t.get("epochs") is not None else None,
                f"{t['steps']} steps" if t.get("steps") is not None else None,
                {True: "bf16", False: "fp32"}.get(t.get("bf16")),
                f"loss {t['train_loss']:.4f}" if t.get("train_loss") is not None else None,
                f"reward {t['reward_last']:.3f}" if t.get("reward_last") is not None else None,
                f"weights {t['weights_sha256'][:8]}" if t.get("weights_sha256") else None]
        points = ", ".join("_".join(n.split("_")[:2]) for n in t["points"])
        return f"{', '.join(x for x in said if x)} ({points})"

    return ("- Stages trained apart under one key (retrained where the stage store lacked their "
            "weights; the points that share one did not start from the same model): "
            + "; ".join(f"`{a['stage']}` (seed {a['seed']}): "
                        + " / ".join(training(t) for t in a["trainings"]) for a in apart))


@dataclass
class Entry:
    """One claim as the table shows it: its summary rows, its section, the seconds its runs
    spent and its plotted rows (label, figure, verdict); measured here or kept."""
    name: str
    rows: list[str]
    section: list[str]
    spent: float
    plotted: list[tuple[str, dict, str]] = field(default_factory=list)
    kept: bool = False
    #: its figures were measured under other settings than its config's now
    stale: bool = False

    @property
    def notes(self) -> str:
        """What the line ``pbb claims`` prints of it says after its verdicts."""
        return ((" (kept from the table: none of its runs is here)" if self.kept else "")
                + (STALE_VERDICT if self.stale else ""))

    @property
    def verdicts(self) -> list[str]:
        """Each row's verdict, read from its cell (without the cell's qualifiers)."""
        return [_verdict_of(_cells(row)[-1]) for row in self.rows]


def entry(m: dict, doc: Path) -> Entry:
    claim = m["claim"]
    rows = [f"| [{claim.title}](#{claim.name}) | {comp} | {paper} | {fig} | {verdict} |"
            for comp, paper, fig, verdict in rows_of(m)]
    plotted = [(f"{claim.name}: {_comparison_label(r)}", r["figure"], r["verdict"])
               for r in m["rows"] if r["figure"] is not None]
    if m["ran_otherwise"]:
        rows, plotted = _marked_stale(rows, plotted)
    return Entry(claim.name, rows, section(m, doc), m["spent"], plotted,
                 stale=m["ran_otherwise"])


#: how a kept claim's section line begins (a table kept again under another --out names that one)
KEPT_LINE = "- Kept from the table this one replaced"
KEPT = (KEPT_LINE + ": none of its runs is in `{out}` here "
        "(`pbb claims --only {name}` measures it anew)")
SETTINGS = "- Settings hash: `{}` (its points' settings that differ from the defaults)"
#: how the section lines of a claim measured under other settings begin (both below)
STALE_LINE = "- Measured under other settings than its config's now"
#: a kept claim whose config hashes otherwise now: its section's line, its verdicts' qualifier
STALE = (STALE_LINE + " (hash `{now}`): these figures are not the config's as it is; "
         "`pbb claims --only {name}` measures it anew")
STALE_VERDICT = " (measured under other settings than its config's now)"
#: a measured claim some of whose runs here were configured otherwise than its config is now
STALE_RUNS = (STALE_LINE + ": its runs here were configured otherwise (the config edited since "
              "they ran); with its sweep folder moved aside, `pbb claims --only {name}` "
              "measures it as configured")
_HASH = re.compile(r"^- Settings hash: `([0-9a-f]+)`")
_FIGURE = re.compile(r"^[+-]?\d+\.\d vs [+-]?\d+\.\d: "
                     r"\*\*([+-]\d+\.\d)\*\* \[([+-]\d+\.\d), ([+-]\d+\.\d)\]$")
_DONE = re.compile(r", (\d+) of \d+ points done$")
_SPENT = re.compile(r"^- Time: (?:(\d+) h )?(?:(\d+) min|(\d+) s|-) spent by its runs")


def kept_entries(doc: Path, out: Path, settings: dict[str, str]) -> dict[str, Entry]:
    """The claims that the table at ``doc`` (if any) shows measured, read back from its own
    format: their rows and sections verbatim (with the KEPT line), the minutes their runs
    spent, and the paired differences of their rows to plot (to the table's 0.1 points).

    ``settings``: each claim's settings hash now. A kept claim measured under another says so
    (:data:`STALE`, in its section and its verdicts, plotted grey); one that records none (a
    table written before hashes were) is taken as measured under its config's settings now."""
    if not Path(doc).is_file():
        return {}
    text = Path(doc).read_text(encoding="utf-8")
    head, *sections = text.split("\n## ")
    found = {}
    for body in sections:
        lines = f"## {body}".rstrip("\n").split("\n")
        name = lines[0][3:]
        done = next((int(g.group(1)) for g in map(_DONE.search, lines) if g), 0)
        rows = [r for r in head.split("\n") if r.startswith("| [") and f"](#{name}) | " in r]
        if not done or not rows:
            continue
        spent = next((_seconds(g) for g in map(_SPENT.match, lines) if g), 0.0)
        lines = [line for line in lines if not line.startswith(KEPT_LINE)]
        lines = _after(lines, "- Time: ", KEPT.format(out=out, name=name))
        measured_under = next((g.group(1) for g in map(_HASH.match, lines) if g), None)
        now = settings.get(name)
        if measured_under is None and now:
            lines = _after(lines, "- Config: ", SETTINGS.format(now))
        stale = measured_under is not None and now is not None and measured_under != now
        lines = [line for line in lines if not line.startswith(STALE_LINE)]
        rows = [row.replace(STALE_VERDICT, "") for row in rows]
        plotted = _plotted(name, rows)
        if stale:
            lines = _after(lines, "- Settings hash: ", STALE.format(now=now, name=name))
            rows, plotted = _marked_stale(rows, plotted)
        found[name] = Entry(name, rows, lines + [""], spent, plotted, kept=True, stale=stale)
    return found


def _after(lines: list[str], prefix: str, line: str) -> list[str]:
    """``lines`` with ``line`` after the first that starts with ``prefix`` (unless it is in)."""
    if line in lines:
        return lines
    at = next((i + 1 for i, x in enumerate(lines) if x.startswith(prefix)), 1)
    return lines[:at] + [line] + lines[at:]


def _marked_stale(rows: list[str], plotted: list[tuple[str, dict, str]]) -> tuple[list, list]:
    """Summary rows with :data:`STALE_VERDICT` after their verdict cell's text, and the plotted
    points as ``stale`` (grey)."""
    marked = []
    for row in rows:
        cells = _cells(row)
        marked.append("| " + " | ".join(cells[:-1] + [cells[-1] + STALE_VERDICT]) + " |")
    return marked, [(label, fig, "stale") for label, fig, _ in plotted]


def _seconds(g: re.Match) -> float:
    hours, minutes, seconds = (int(x) if x else 0 for x in g.groups())
    return 3600 * hours + 60 * minutes + seconds


def _plotted(name: str, rows: list[str]) -> list[tuple[str, dict, str]]:
    out = []
    for row in rows:
        cells = _cells(row)
        fig = _FIGURE.match(cells[3]) if len(cells) == 5 else None
        if fig:
            d, low, high = (float(x) / 100 for x in fig.groups())
            out.append((f"{name}: {cells[1]}", {"difference": d, "ci_low": low, "ci_high": high},
                        _verdict_of(cells[4])))
    return out


def _cells(row: str) -> list[str]:
    """The cells of a summary row as :func:`entry` writes it, ``| a | b | ... |``."""
    return [c.strip() for c in row.strip("|").split(" | ")]


def _verdict_of(cell: str) -> str:
    shown = cell.strip().replace("**", "")
    return next((v for v in (NOT_TESTABLE, NOT_REPRODUCED, REPRODUCED, NOT_RUN)
                 if shown.startswith(v)), shown)


def markdown(entries: list[Entry], out: Path, configs: Path, figure: str | None,
             runs: str) -> str:
    lines = [HEADER.format(out=out, configs=configs, runs=runs, reproduced=REPRODUCED,
                           not_reproduced=NOT_REPRODUCED, not_testable=NOT_TESTABLE,
                           not_run=NOT_RUN, seeds=SEEDS_WHEN_THEY_DISAGREE),
             "| claim | comparison | paper | pbb | verdict |", "|---|---|---|---|---|"]
    for e in entries:
        lines += e.rows
    spent = sum(e.spent for e in entries)
    lines += ["", f"Time of the runs so far: {duration(spent)} (each stage counted once, in the "
              "claim that trained it).", ""]
    if figure:
        lines += [f"![paired differences]({figure})", ""]
    for e in entries:
        lines += e.section
    return "\n".join(lines)


def plot(entries: list[Entry], path: Path) -> bool:
    """The paired differences with their intervals, one line a row (False: none to plot)."""
    rows = [p for e in entries for p in e.plotted]
    if not rows:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from pbb.experiments.sweep import _save

    colour = {REPRODUCED: "C2", NOT_REPRODUCED: "C3", NOT_TESTABLE: "C1", "stale": "C7"}
    fig, ax = plt.subplots(figsize=(8, 0.4 * len(rows) + 1.2))
    for i, (_, f, v) in enumerate(rows):
        y = len(rows) - 1 - i
        ax.errorbar(100 * f["difference"], y, xerr=[[100 * (f["difference"] - f["ci_low"])],
                                                     [100 * (f["ci_high"] - f["difference"])]],
                    fmt="o", color=colour.get(v, "C7"), capsize=3)
    ax.axvline(0, color="gray", lw=1)
    ax.set_yticks(range(len(rows)), [label for label, _, _ in reversed(rows)], fontsize=7)
    ax.set(xlabel="difference a − b (percentage points), 95% interval")
    # over the whole figure: the long claim labels leave the axes too narrow for it
    grey = ", grey measured under other settings" if any(v == "stale" for _, _, v in rows) else ""
    fig.suptitle(f"The paper's claims: green reproduced, red not, orange not testable{grey}",
                 fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    _save(fig, path)
    return True


def check_doc(doc: Path) -> None:
    """Refuse a ``doc`` that :func:`write` would overwrite but did not write: a file that is not
    a claims table, or, where there is no table yet, a file at its figure's path. Checked
    before any claim runs, not after hours of them."""
    doc = Path(doc)
    if doc.is_dir():
        raise PbbError(f"--doc {doc}: is a folder; give the table's file, e.g. {doc / 'claims.md'}")
    title = HEADER.split("\n", 1)[0]
    if doc.is_file():
        try:  # all of it: the table is read back whole (kept claims) after each point
            first = doc.read_text(encoding="utf-8").split("\n", 1)[0]
        except UnicodeDecodeError as e:
            raise PbbError(f"--doc {doc}: not UTF-8 text (byte {e.start}), so not a claims table "
                           "written by pbb; not overwritten: give another --doc or move it "
                           "aside") from None
        except OSError as e:
            raise PbbError(f"--doc {doc}: cannot read it ({e.strerror or e})") from None
        if first != title:
            raise PbbError(f"--doc {doc}: not a claims table written by pbb (its first line is "
                           f"not {title!r}); not overwritten: give another --doc or move it aside")
    elif doc.with_suffix(".png").exists():
        raise PbbError(f"--doc {doc}: its figure's path {doc.with_suffix('.png')} holds a file "
                       "that no claims table wrote; not overwritten: give another --doc")


def write(measured: list[dict], doc: Path, configs: Path, out: Path) -> list[Entry]:
    """``doc`` and, where any row has a figure, its plot beside it (``<doc stem>.png``). A
    claim with no run in ``out`` keeps what ``doc`` showed of it: a fresh clone (whose
    ``runs/`` is empty) that measures one claim does not wipe the others' measured figures."""
    doc = Path(doc)
    kept = kept_entries(doc, out, {m["claim"].name: m["settings"] for m in measured})
    entries = [kept[m["claim"].name] if not m["done"] and m["claim"].name in kept
               else entry(m, doc) for m in measured]
    doc.parent.mkdir(parents=True, exist_ok=True)
    png = doc.with_suffix(".png")
    figure = png.name if any(e.plotted for e in entries) else None
    # the table first: a figure left without its table would be refused as a stranger's file
    atomic_write_text(doc, markdown(entries, out, configs, figure, archive_dir(doc).name))
    plot(entries, png)
    return entries
