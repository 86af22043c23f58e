"""The docs stay true to the code and to themselves: the configuration reference is the schema's,
every relative link resolves, the README stays a front door (at most 250 lines), and its effect
table is the mean of the per-seed results it cites."""

import ast
import math
import re
import statistics
from pathlib import Path

import pytest

from tests.conftest import script

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
RESULTS = DOCS / "results"
README_MAX_LINES = 250


def _config_reference():
    return script("config_reference")


def test_configuration_reference_is_current():
    ref = _config_reference()
    written = (DOCS / "configuration.md").read_text(encoding="utf-8")
    assert written == ref.render(), (
        f"docs/configuration.md is stale (the schema in src/pbb/config.py changed); regenerate "
        f"it with `{ref.COMMAND}`")


def test_configuration_reference_lists_every_setting():
    from pbb.config import key_roles

    text = _config_reference().render()
    missing = [p for p in key_roles(deep=True) if f"| `{p}` |" not in text]
    assert not missing, f"settings missing from the reference: {missing}"
    assert "| `train.save_steps` | int, ≥ 1 | 50 | no |" in text  # type, default and role


def test_configuration_reference_check_flags_a_stale_file(tmp_path):
    ref = _config_reference()
    out = tmp_path / "configuration.md"
    out.write_text(ref.render() + "edited by hand\n", encoding="utf-8")
    assert ref.main(["--check", "--out", str(out)]) == 1
    assert ref.main(["--out", str(out)]) == 0
    assert ref.main(["--check", "--out", str(out)]) == 0


# --- links ---------------------------------------------------------------------------------

_FENCE = re.compile(r"^(```|~~~).*?^\1", re.S | re.M)
_CODE = re.compile(r"`[^`\n]*`")
_LINK = re.compile(r"!?\[[^\]\n]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"[`*]|\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip()).lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(md: Path) -> set[str]:
    out: set[str] = set()
    for line in _FENCE.sub("", md.read_text(encoding="utf-8")).splitlines():
        m = re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if m:
            base, n = slug(m.group(1)), 0
            while (base if n == 0 else f"{base}-{n}") in out:
                n += 1
            out.add(base if n == 0 else f"{base}-{n}")
    return out


def broken_links(md: Path) -> list[str]:
    """Relative links of ``md`` (``[x](path)``, ``[x](path#anchor)``, ``[x](#anchor)``) whose
    file does not exist, or whose anchor names no heading of a Markdown file."""
    text = _CODE.sub("", _FENCE.sub("", md.read_text(encoding="utf-8")))
    out = []
    for target in _LINK.findall(text):
        if re.match(r"[a-z][a-z0-9+.-]*:", target, re.I):  # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        dest = (md.parent / path).resolve() if path else md
        where = md.relative_to(ROOT) if md.is_relative_to(ROOT) else md.name
        if not dest.exists():
            out.append(f"{where}: {target} (no such file)")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            out.append(f"{where}: {target} (no heading with that anchor)")
    return out


def doc_files() -> list[Path]:
    return [README, *sorted(DOCS.rglob("*.md"))]


def test_every_relative_link_resolves():
    broken = [b for md in doc_files() for b in broken_links(md)]
    assert not broken, "broken links:\n" + "\n".join(broken)


def test_broken_links_are_found(tmp_path):
    (tmp_path / "there.md").write_text("# A heading\n\ntext\n", encoding="utf-8")
    md = tmp_path / "page.md"
    md.write_text("[ok](there.md) [ok](there.md#a-heading) ![img](there.md)\n"
                  "[gone](missing.md) [gone too](sub/missing.png#x) [bad anchor](there.md#nope)\n"
                  "[web](https://example.org/x.md) `[code](not-a-link.md)`\n"
                  "```\n[fenced](not-a-link-either.md)\n```\n", encoding="utf-8")
    found = broken_links(md)
    assert [f.split(": ", 1)[1] for f in found] == [
        "missing.md (no such file)", "sub/missing.png#x (no such file)",
        "there.md#nope (no heading with that anchor)"]


def test_slug_matches_github():
    assert slug("Stages and their keys") == "stages-and-their-keys"
    assert slug("`eval.backend: openai` — a served model") == "evalbackend-openai--a-served-model"
    assert slug("Top level") == "top-level"
    assert slug("The question (`configs/a_b.yaml`, 3 seeds)") == "the-question-configsa_byaml-3-seeds"


# --- the README ----------------------------------------------------------------------------

def test_readme_is_a_front_door():
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) <= README_MAX_LINES, (
        f"README.md has {len(lines)} lines (at most {README_MAX_LINES}): move detail to docs/")


#: t quantiles (0.975) by degrees of freedom, for the 95% interval over seeds
T975 = {1: 12.7062, 2: 4.3027, 3: 3.1824, 4: 2.7764, 5: 2.5706, 6: 2.4469, 7: 2.3646,
        8: 2.3060, 9: 2.2622, 10: 2.2281, 11: 2.2010, 12: 2.1788, 13: 2.1604, 14: 2.1448}


def seed_reports(folder: Path = RESULTS) -> dict[int, Path]:
    """The quickstart's report per seed: ``quickstart_seed<N>.md``, or its latest dated rerun
    ``quickstart_seed<N>_<YYYY-MM-DD>.md`` where there is one."""
    best: dict[int, tuple[str, Path]] = {}
    for p in folder.glob("quickstart_seed*.md"):
        m = re.fullmatch(r"quickstart_seed(\d+)(?:_(\d{4}-\d{2}-\d{2}))?\.md", p.name)
        if m and (int(m.group(1)) not in best or (m.group(2) or "") > best[int(m.group(1))][0]):
            best[int(m.group(1))] = (m.group(2) or "", p)
    return {seed: p for seed, (_, p) in sorted(best.items())}


def _number(cell: str) -> float | None:
    cell = cell.split("[")[0].split("/")[0].strip()
    return None if cell in ("-", "") else float(cell)


def seed_cells(report: Path) -> dict[tuple[str, str], float]:
    """(row, column) -> value of one seed's report (accuracy table and controls)."""
    out = {}
    for line in report.read_text(encoding="utf-8").splitlines():
        c = [x.strip() for x in line.strip().strip("|").split("|")]
        if len(c) == 6 and c[1] in ("recall", "cot"):
            out[(c[0], f"{c[1]}, eval")] = _number(c[2])
            out[(c[0], f"{c[1]}, train")] = _number(c[3])
            if c[1] == "cot":
                out[(c[0], "recalled in CoT, eval")] = _number(c[4])
        elif len(c) == 5 and c[0] == "proactive - stage1_only" and c[2] in ("recall", "cot"):
            out[("paired", f"{c[2]}, eval")] = _number(c[3])
            out[("paired", f"{c[2]}, train")] = _number(c[4])
    return out


def mean_interval(values: list[float], signed: bool = False) -> str:
    """``mean [low, high]``: the mean over seeds with a 95% Student-t interval, clipped to the
    range a percentage (or a difference of two) can take."""
    m = statistics.mean(values)
    h = T975[len(values) - 1] * statistics.stdev(values) / math.sqrt(len(values))
    lo, hi = (-100.0 if signed else 0.0), 100.0
    f = "{:+.1f}" if signed else "{:.1f}"
    return f"{f.format(m)} [{f.format(max(lo, m - h))}, {f.format(min(hi, m + h))}]"


EFFECT_COLUMNS = ("recall, eval", "cot, eval", "recalled in CoT, eval", "cot, train")
EFFECT_ROWS = (("proactive", "proactive"), ("stage1_only", "stage1_only (control)"),
               ("untuned", "untuned"), ("paired", "proactive − stage1_only, paired"))


def effect_table(reports: dict[int, Path]) -> str:
    """The README's effect table from the per-seed reports; a cell some seed lacks is ``-``."""
    cells = [seed_cells(p) for p in reports.values()]
    lines = ["| curriculum | recall, eval | CoT, eval | recalled in CoT, eval | CoT, train |",
             "|---|---|---|---|---|"]
    for key, label in EFFECT_ROWS:
        row = []
        for col in EFFECT_COLUMNS:
            values = [c.get((key, col)) for c in cells]
            ok = len(values) > 1 and None not in values
            row.append(mean_interval(values, signed=key == "paired") if ok else "-")
        lines.append(f"| {label} | " + " | ".join(row) + " |")
    return "\n".join(lines)


def test_readme_effect_table_is_the_mean_of_the_seed_reports():
    reports = seed_reports()
    assert len(reports) >= 2
    table = effect_table(reports)
    readme = README.read_text(encoding="utf-8")
    assert table in readme, (
        "README.md's effect table differs from the mean over the seed reports in docs/results "
        f"(seeds {sorted(reports)}); it should read:\n{table}")
    seeds = ", ".join(str(s) for s in reports)
    assert f"seeds {seeds}" in readme, f"README.md should name the seeds it averages: {seeds}"


def test_effect_table_follows_the_reports(tmp_path):
    row = "| proactive | cot | {} [0.0, 0.0] | 10.0 [0.0, 0.0] | 90 / 40 | 30+15 behaviours |\n"
    for seed, value in ((0, "50.0"), (1, "60.0")):
        (tmp_path / f"quickstart_seed{seed}.md").write_text(row.format(value), encoding="utf-8")
    (tmp_path / "quickstart_seed1_2026-01-02.md").write_text(row.format("70.0"), encoding="utf-8")
    reports = seed_reports(tmp_path)
    assert [p.name for p in reports.values()] == ["quickstart_seed0.md",
                                                  "quickstart_seed1_2026-01-02.md"]
    table = effect_table(reports)
    # mean 60.0, sd 14.14, t(1) 12.7062: half-width 127.1, clipped to [0, 100]
    assert "| proactive | - | 60.0 [0.0, 100.0] | 90.0 [90.0, 90.0] | 10.0 [10.0, 10.0] |" in table
    assert mean_interval([40.0, 50.0, 60.0]) == "50.0 [25.2, 74.8]"


@pytest.mark.parametrize("name", ["concepts", "domains", "curricula", "training", "rl",
                                  "evaluation", "sweeps", "gpu", "interop", "benchmarks",
                                  "footguns", "development", "configuration", "results/LOG"])
def test_readme_maps_every_docs_page(name):
    assert (DOCS / f"{name}.md").is_file()
    assert f"](docs/{name}.md)" in README.read_text(encoding="utf-8"), (
        f"README.md's map of docs/ does not link docs/{name}.md")


def test_the_readme_shows_the_python_example_the_tests_run():
    """The README's Python block is examples/api.py verbatim (tests/test_api.py runs that file)."""
    readme = (ROOT / "README.md").read_text()
    block = readme.split("```python\n", 1)[1].split("```", 1)[0]
    assert block == (ROOT / "examples" / "api.py").read_text()
    assert len(block.splitlines()) <= 15


def unresolved_names(text: str) -> list[str]:
    """The ``pbb.x.y`` names in backticks that are neither a module nor an attribute of one."""
    import importlib
    import warnings

    from pbb._moved import MOVED

    bad = []
    for name in sorted(set(re.findall(r"`(pbb(?:\.\w+)+)(?:\(\))?`", text))):
        if name.removeprefix("pbb.") in MOVED:  # an old module name, said as such
            continue
        parts = name.split(".")
        for cut in range(len(parts), 0, -1):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("error", DeprecationWarning)  # old names are stale
                    obj = importlib.import_module(".".join(parts[:cut]))
            except (ImportError, DeprecationWarning):
                continue
            try:
                for attr in parts[cut:]:
                    obj = getattr(obj, attr)
            except AttributeError:
                bad.append(name)
            break
        else:
            bad.append(name)
    return bad


def test_every_module_and_function_the_docs_name_exists():
    pages = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    pages = [p for p in pages if "results" not in p.parts or p.name == "LOG.md"]
    bad = {str(p.relative_to(ROOT)): unresolved_names(p.read_text()) for p in pages}
    assert not {k: v for k, v in bad.items() if v}
    assert unresolved_names("`pbb.store.RunStore` `pbb.store.nothing` `pbb.nomodule.x`") == [
        "pbb.nomodule.x", "pbb.store.nothing"]


def claim_verdicts(text: str, prefix: str = "") -> dict[str, str]:
    """claim anchor -> its verdicts joined by "; ", from a table whose rows start with a link
    ``[title](PREFIX#anchor)`` and end with the verdict; a verdict's qualifiers in parentheses
    (the prerequisite's figure, the points done so far) are the table's detail, not compared."""
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        m = re.match(rf"\| \[[^\]]*\]\({re.escape(prefix)}#(\w+)\) \|(?:.*\|)? ([^|]+) \|$", line)
        if m:
            out.setdefault(m.group(1), []).append(
                re.sub(r" \([^()]*\)(?=;|$)", "", m.group(2).strip()))
    return {k: "; ".join(v) for k, v in out.items()}


def test_the_readme_shows_the_claims_tables_verdicts():
    doc = (ROOT / "docs" / "claims.md").read_text().split("\n## ")[0]
    readme = (ROOT / "README.md").read_text()
    assert claim_verdicts(readme, "docs/claims.md") == claim_verdicts(doc)
    assert len(claim_verdicts(doc)) >= 13


def test_the_layout_in_the_development_page_lists_every_module():
    """docs/development.md's map of src/pbb names every module file, under its package."""
    text = (ROOT / "docs" / "development.md").read_text()
    layout = text.split("## Layout of `src/pbb`", 1)[1].split("```", 2)[1]
    listed, package = set(), ""
    for line in layout.splitlines():
        m = re.match(r"^(\s*)(\S+)", line)
        if not m:
            continue
        depth, name = len(m.group(1)) // 2, m.group(2)  # 1: src/pbb's own, 2: a package's
        if depth == 1 and name.endswith("/"):
            package = name
        elif name.endswith(".py"):
            listed.add(package + name if depth == 2 else name)
    src = ROOT / "src" / "pbb"
    modules = {str(p.relative_to(src)) for p in src.glob("*.py")}
    modules |= {str(p.relative_to(src)) for p in src.glob("*/*.py")
                if p.name != "__init__.py" or len(ast.parse(p.read_text()).body) > 1}  # code
    assert modules - listed == set(), "modules missing from docs/development.md"
