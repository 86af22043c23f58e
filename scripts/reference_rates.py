"""Write the reference machine's rates that pbb ships (src/pbb/experiments/reference_rates.json)
from this machine's own (``rates.json`` in the pbb cache, :mod:`pbb.experiments.rates`), or add
to them what the runs of claims archives measured there.

Why: ``pbb plan`` and ``pbb claims --plan`` on a machine that has measured nothing yet (a fresh
clone) plan with these, labelled as the reference machine's, instead of saying only "no
measured rate". Run it on the reference machine (the 2-core CPU the README's times come from)
after runs that measured what the shipped configs do (SFT of short and long rows, GRPO, CoT and
recall evaluations); ``--measured`` says which runs, at which commit, and the file records
whether this machine ran in bf16 (its factors for a machine without bf16, measured elsewhere,
are kept: :func:`pbb.experiments.rates.reference_rates`). It writes into the source tree
(the editable install ``scripts/setup.sh`` makes), to be committed.

``--runs ARCHIVE ...`` (``docs/claims-runs/<claim>.tar.gz``), on any machine: adds the length
buckets the shipped file lacks, from the archives' finished points that ran in its precision
(their stages' ``bf16``; a stage or point resumed is left out: its time spans lives): SFT tokens
a second by row length and completions a second by mode and tokens written, the median of each
bucket. Why: the reference's rates file held short rows alone (91 and 128 tokens), so a fresh
clone planned a cipher stage (191-token rows) at 128's rate, 1.6x short, and a cipher CoT
evaluation (~330 tokens written) at 76's, ~5x short, though the archived runs timed both. The
first form replaces the file's rates with the machine's: run the second after it.

Usage: python scripts/reference_rates.py --machine "2 CPU cores, torch 2.13.0+cpu"
       --measured "2026-12-05, commit abc1234: the quickstart and ..." [--key KEY ...]
       python scripts/reference_rates.py --runs docs/claims-runs/ciphers_robustness.tar.gz
       --measured "the ciphers' runs of 2026-12-01 ..." [--key KEY]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path, PurePosixPath

import yaml

from pbb.errors import PbbError
from pbb.evaluation.evaluate import mean_cut, token_count
from pbb.experiments import claims_archive, rates
from pbb.jsonio import atomic_write_json, read_json
from pbb.models import DEFAULT_MODEL
from pbb.store import CONFIG, EVAL, JOBS, SAMPLES, SUMMARY
from pbb.training.precision import cpu_has_bf16


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--machine", help="the machine, in words (required without --runs)")
    ap.add_argument("--measured", required=True, help="when, at which commit, by which runs")
    ap.add_argument("--key", action="append",
                    help=f"a rates key to ship (default: {DEFAULT_MODEL} on cpu)")
    ap.add_argument("--runs", nargs="+", metavar="ARCHIVE",
                    help="claims archives whose runs add the length buckets the file lacks")
    args = ap.parse_args(argv)
    keys = args.key or [f"{DEFAULT_MODEL} on cpu"]
    if args.runs:
        try:
            return add_runs(args.runs, keys, args.measured)
        except PbbError as e:  # a broken or foreign archive: one line, the file left as it was
            print(e, file=sys.stderr)
            return 1
    if not args.machine:
        ap.error("--machine is required without --runs")
    path = rates.rates_path()
    mine = read_json(path) if path.is_file() else {}
    missing = [k for k in keys if not isinstance(mine.get(k), dict) or not mine[k]]
    if missing:
        print(f"{path}: no rates measured for {', '.join(missing)}", file=sys.stderr)
        return 1
    # the factors for a machine without bf16 were measured on another machine: kept
    kept = read_json(rates.REFERENCE).get(rates.WITHOUT_BF16) if rates.REFERENCE.is_file() else None
    atomic_write_json(rates.REFERENCE, {
        "machine": args.machine, "measured": args.measured,
        "precision": "bf16" if cpu_has_bf16() else "fp32",
        **({rates.WITHOUT_BF16: kept} if kept else {}), "rates": {k: mine[k] for k in keys}})
    print(f"wrote {rates.REFERENCE}: {', '.join(keys)}")
    return 0


def add_runs(archives: list[str], keys: list[str], measured: str) -> int:
    """Add to the shipped file, for each key, the buckets its model's runs in the archives
    measured and the file lacks (:func:`bucket_rates`); ``measured`` is appended to its words."""
    from pbb.models import load_tokenizer, resolve_model_path

    shipped = read_json(rates.REFERENCE)
    bf16 = shipped.get("precision") == "bf16"
    points = [p for archive in archives for p in archive_points(archive)]
    added = []
    for key in keys:
        model = key.split(" on ")[0]
        mine = [p for p in points if p["summary"].get("model") == model]
        tok = load_tokenizer(resolve_model_path(model)) if mine else None
        sft, evals = bucket_rates(mine, bf16, lambda text: token_count(tok, text))
        entry = shipped.setdefault("rates", {}).setdefault(key, {})
        for name, found in ((rates.SFT_BY_LENGTH, sft),
                            *((f"{rates.EVAL_BY_LENGTH}/{m}", r) for m, r in evals.items())):
            held = entry
            for part in name.split("/"):
                held = held.setdefault(part, {})
            new = {str(b): r for b, r in found.items() if str(b) not in held}
            held.update(new)
            added += [f"{key}: {name} {b}" for b in new]
    if not added:
        print("no bucket to add: the file has every one the runs measured")
        return 0
    shipped["measured"] = f"{shipped.get('measured', '')}; {measured}".lstrip("; ")
    atomic_write_json(rates.REFERENCE, shipped)
    print(f"wrote {rates.REFERENCE}: " + ", ".join(added))
    return 0


def bucket_rates(points: list[dict], bf16: bool, count) -> tuple[dict, dict]:
    """SFT tokens a second by :func:`~pbb.experiments.rates.row_bucket` of a stage's mean row
    (its recall checks' time left out, as :func:`~pbb.experiments.rates.record_stage` does),
    and completions a second by mode and bucket of the mean tokens written (``count``: a
    completion's tokens, each cut at the point's budget), each bucket's median, from the
    points whose every stage ran with ``bf16`` as asked and none resumed (an evaluation's
    machine is its point's)."""
    sft: dict[int, list[float]] = {}
    evals: dict[str, dict[int, list[float]]] = {}
    seen = set()
    for point in points:
        summary = point["summary"]
        stages = [s for each in (summary.get("stages") or {}).values() for s in each]
        if not stages or any(bool(s.get("bf16")) != bf16 or s.get("resumed") for s in stages):
            continue
        for s in stages:
            seconds = (s.get("seconds") or 0) - (s.get("time_split") or {}).get("recall", 0)
            if s.get("tokens") and s.get("tokens_per_row") and seconds > 0 \
                    and (s.get("dir"), s.get("seconds")) not in seen:
                seen.add((s.get("dir"), s.get("seconds")))  # a stage shared by curricula
                sft.setdefault(rates.row_bucket(s["tokens_per_row"]), []).append(
                    s["tokens"] / seconds)
        budgets = ((point["config"].get("eval") or {}).get("max_new_tokens") or {})
        for name, samples in point["samples"].items():
            mode = name.split("/")[1]
            seconds = ((summary.get("evals") or {}).get(name) or {}).get("seconds")
            if samples and seconds and budgets.get(mode):
                written = mean_cut([count(s["completion"]) for s in samples], budgets[mode])
                evals.setdefault(mode, {}).setdefault(rates.row_bucket(written), []).append(
                    len(samples) / seconds)
    median = lambda found: {b: float(f"{statistics.median(r):.4g}")  # noqa: E731
                            for b, r in sorted(found.items())}
    return median(sft), {mode: median(found) for mode, found in evals.items()}


def archive_points(path: str) -> list[dict]:
    """The finished points of a claims archive (read and checked as ``pbb claims`` reads it):
    each one's summary, config and samples by ``curriculum/mode``; none where its sweep ran its
    points as jobs (on shares of the cores, whose rates are not the machine's)."""
    kept = claims_archive.read(Path(path))
    if JOBS in kept.files:
        return []
    points = []
    for folder, files in claims_archive.point_files(kept).items():
        raw = {str(PurePosixPath(name).relative_to(folder)): body for name, body in files.items()}
        if CONFIG not in raw:
            continue
        try:
            points.append(_point(raw))
        except (ValueError, yaml.YAMLError) as e:  # torn or not UTF-8 (a point has its summary)
            raise PbbError(f"{path}: {folder}: a file not readable as written: {e}") from None
    return points


def _point(raw: dict[str, bytes]) -> dict:
    """A point's summary, config and samples by ``curriculum/mode`` from its archived files (only
    these are decoded, not its data set)."""
    samples = {}
    for name, body in raw.items():
        parts = PurePosixPath(name).parts  # eval/<curriculum>/<mode>/samples.jsonl
        if len(parts) == 4 and parts[0] == EVAL and parts[3] == SAMPLES:
            samples[f"{parts[1]}/{parts[2]}"] = [json.loads(line) for line in
                                                 body.decode().splitlines() if line.strip()]
    return {"summary": json.loads(raw[SUMMARY]), "samples": samples,
            "config": yaml.safe_load(raw[CONFIG].decode())}


if __name__ == "__main__":
    sys.exit(main())
