"""Time data generation: 1,000 behaviours x 100 demonstrations (traces included) by default.

Usage: python benchmarks/bench_generate.py [--behaviours 1000] [--demos 100] [--repeats 3]
Prints the median wall time of `generate` + `save` and the size of the data set on disk.
Goal (issue 2): under 60 s on the 2-core reference machine.
"""

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from pbb import data


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--behaviours", type=int, default=1000)
    p.add_argument("--demos", type=int, default=100)
    p.add_argument("--test-inputs", type=int, default=10)
    p.add_argument("--repeats", type=int, default=3)
    args = p.parse_args()
    times = []
    size = 0
    for r in range(args.repeats):
        with tempfile.TemporaryDirectory() as tmp:
            t0 = time.perf_counter()
            ds = data.generate("arithmetic", behaviours=args.behaviours, demos=args.demos,
                               test_inputs=args.test_inputs, eval_fraction=0.5, seed=r,
                               progress=False)
            data.save(ds, Path(tmp) / "set")
            times.append(time.perf_counter() - t0)
            size = sum(f.stat().st_size for f in (Path(tmp) / "set").iterdir())
    print(f"generate+save {args.behaviours} behaviours x {args.demos} demos "
          f"(+{args.test_inputs} test inputs, traces included): median {statistics.median(times):.2f} s "
          f"over {args.repeats} runs (min {min(times):.2f}, max {max(times):.2f}); "
          f"on disk {size / 2**20:.1f} MiB")


if __name__ == "__main__":
    main()
