"""Throughput of `pbb data import`: simple functions x inputs per minute through the sandbox.

Usage: python benchmarks/bench_import.py [--functions 1000] [--inputs 5] [--workers 2]
Writes a JSONL of simple arithmetic/string/list functions, imports it (sandbox workers,
every call run twice for the determinism check) and prints functions/minute and calls/minute.
Goal (issue 6): at least 1,000 functions x 5 inputs per minute on 2 cores.
"""

import argparse
import json
import tempfile
import time
from pathlib import Path

from pbb.data.importers import import_functions
from pbb.domains.imported import ImportedConfig

BODIES = ["return a * {i} + b", "return [x * {i} for x in range(a % 7)] + [b]",
          "return str(a) * ({i} % 3 + 1) + str(b)", "return max(a, b) - min(a, {i})",
          "return sorted([a, b, {i}])"]


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--functions", type=int, default=1000)
    p.add_argument("--inputs", type=int, default=5)
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        f = Path(tmp) / "funcs.jsonl"
        f.write_text("".join(json.dumps({
            "code": f"def fn_{i}(a, b):\n    " + BODIES[i % len(BODIES)].format(i=i),
            "inputs": [f"{j}, {i % 11 - j}" for j in range(args.inputs)]}) + "\n"
            for i in range(args.functions)))
        t0 = time.perf_counter()
        ds, report = import_functions(f, test_inputs=1, eval_fraction=0.5, seed=0,
                                      cfg=ImportedConfig(workers=args.workers), progress=False)
        dt = time.perf_counter() - t0
    ok = len(ds.behaviours)
    print(f"imported {ok}/{args.functions} functions x {args.inputs} inputs in {dt:.2f} s "
          f"with {args.workers} workers: {60 * args.functions / dt:,.0f} functions/min, "
          f"{60 * args.functions * args.inputs / dt:,.0f} calls/min (each call run twice)")


if __name__ == "__main__":
    main()
