"""pbb from Python: a tiny data set, a tiny run on the tiny-random model, its accuracy table."""
import sys
import tempfile
from pathlib import Path

import pbb

out = Path(sys.argv[1] if len(sys.argv) > 1 else tempfile.mkdtemp(prefix="pbb-api-"))
data = pbb.make_data("arithmetic", behaviours=8, demos=2, test_inputs=2, out=out / "data")
config = {"name": "api-example", "model": "tiny-random", "curricula": ["proactive", "untuned"],
          "train": {"max_steps": 2}, "eval": {"modes": ["direct"], "max_new_tokens": {"direct": 8}}}
summary = pbb.run(config, out / "run", data=data, progress=False)
for r in summary["results"]:
    print(f"{r['curriculum']:>10} {r['mode']:>6} {r['split']:>5} {100 * r['accuracy']:5.1f}%")
