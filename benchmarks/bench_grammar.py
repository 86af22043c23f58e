"""Time one membership check (the grammars verifier) on 50-token strings.

Usage: python benchmarks/bench_grammar.py [--grammars 200] [--length 50] [--per-grammar 10]
Draws grammars with the default knobs, keeps those that have strings of about ``--length``
terminals (the nearest achievable length within 10%), and times ``Verifier.member`` on sampled
members and on one-token mutations of them (half each). The parser of each grammar is built
before timing (it is cached per grammar in real use). Prints the median, 90th percentile and max.
Goal (issue 5): median under 5 ms on the 2-core reference machine.
"""

import argparse
import random
import statistics
import time

from pbb import data
from pbb.domains.grammars import grammar_of
from pbb.domains.grammars.analysis import Lengths, sample_exact
from pbb.domains.grammars.verify import verifier_for


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--grammars", type=int, default=200)
    p.add_argument("--length", type=int, default=50)
    p.add_argument("--per-grammar", type=int, default=10)
    args = p.parse_args()
    ds = data.generate("grammars", behaviours=args.grammars, demos=1, test_inputs=1,
                       eval_fraction=0.5, seed=0, progress=False)
    rng = random.Random(0)
    times, members, used, lengths = [], 0, 0, []
    for b in ds.behaviours:
        _, g = grammar_of(b.instruction)
        reach = Lengths(g, int(args.length * 1.1))
        near = [n for n in reach.start() if abs(n - args.length) <= args.length // 10]
        if not near:
            continue
        used += 1
        n = min(near, key=lambda m: abs(m - args.length))
        v = verifier_for(g)
        v.member(["warm-up"])
        for k in range(args.per_grammar):
            tokens, _ = sample_exact(g, reach, n, rng)
            if k % 2:
                tokens[rng.randrange(n)] = rng.choice(g.terminals)
            t0 = time.perf_counter()
            members += v.member(tokens, max_tokens=256, time_limit_s=5.0)
            times.append(time.perf_counter() - t0)
            lengths.append(n)
    times.sort()
    print(f"membership of {len(times)} strings of {min(lengths)}-{max(lengths)} terminals "
          f"({used} grammars, {members} members): median {1000 * statistics.median(times):.2f} ms, "
          f"p90 {1000 * times[int(0.9 * len(times))]:.2f} ms, max {1000 * times[-1]:.1f} ms")


if __name__ == "__main__":
    main()
