"""Write the reference machine's rates that pbb ships (src/pbb/experiments/reference_rates.json)
from this machine's own (``rates.json`` in the pbb cache, :mod:`pbb.experiments.rates`).

Why: ``pbb plan`` and ``pbb claims --plan`` on a machine that has measured nothing yet (a fresh
clone) plan with these, labelled as the reference machine's, instead of saying only "no
measured rate". Run it on the reference machine (the 2-core CPU the README's times come from)
after runs that measured what the shipped configs do (SFT of short and long rows, GRPO, CoT and
recall evaluations); ``--measured`` says which runs, at which commit, and the file records
whether this machine ran in bf16 (its factors for a machine without bf16, measured elsewhere,
are kept: :func:`pbb.experiments.rates.reference_rates`). It writes into the source tree
(the editable install ``scripts/setup.sh`` makes), to be committed.

Usage: python scripts/reference_rates.py --machine "2 CPU cores, torch 2.13.0+cpu"
       --measured "2026-12-05, commit abc1234: the quickstart and ..." [--key KEY ...]
"""

from __future__ import annotations

import argparse
import sys

from pbb.experiments import rates
from pbb.jsonio import atomic_write_json, read_json
from pbb.models import DEFAULT_MODEL
from pbb.training.precision import cpu_has_bf16


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--machine", required=True, help="the machine, in words")
    ap.add_argument("--measured", required=True, help="when, at which commit, by which runs")
    ap.add_argument("--key", action="append",
                    help=f"a rates key to ship (default: {DEFAULT_MODEL} on cpu)")
    args = ap.parse_args(argv)
    keys = args.key or [f"{DEFAULT_MODEL} on cpu"]
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


if __name__ == "__main__":
    sys.exit(main())
